"""The confctl CLI in-process (typer's CliRunner) against a fake client: output, exit codes, settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from confctl import __version__
from confctl.backup_files import read_backup
from confctl.cli import build_app
from confctl.client import (
    Compare,
    ConfmanError,
    InternalServerError,
    InvalidRequest,
    NodeStatus,
    TooLarge,
    TxnOp,
    Unavailable,
    Unsupported,
    Version,
)
from confctl.commands.common import ClientApi
from confctl.exit_codes import ExitCode
from confctl.settings import ClientSettings
from tests.unit.confctl_fake import EP, FakeClient, Harness

# ---------------------------------------------------------------- output


def test_put_then_get_prints_a_table_and_closes_the_client(cli: Harness) -> None:
    assert cli.run("put", "app/url", "https://x").code == ExitCode.OK
    got = cli.run("get", "app/url")
    assert got.code == ExitCode.OK
    assert "value           https://x" in got.out
    assert cli.client.closed


def test_json_output_is_one_object_per_line_with_stable_keys(cli: Harness) -> None:
    cli.client.data.update({"a/1": b"x", "a/2": b"\xff\xfe"})
    rows = cli.run("ls", "a/", "--output", "json").json()
    assert [r["key"] for r in rows] == ["a/1", "a/2"]
    assert rows[0]["value"] == "x"
    assert rows[0]["value_encoding"] == "utf-8"
    assert rows[1]["value"] == "//4="
    assert rows[1]["value_encoding"] == "base64"
    assert set(rows[0]) == set(rows[1])


def test_global_options_work_before_or_after_the_command(cli: Harness) -> None:
    cli.client.data["k"] = b"v"
    before = cli.run("-o", "json", "get", "k").json()
    after = cli.run("get", "k", "-o", "json").json()
    assert before == after
    assert before[0]["value"] == "v"


def test_binary_values_show_as_marked_base64_in_a_table(cli: Harness) -> None:
    cli.run("put", "bin", stdin=b"\x00\xff")
    assert cli.client.data["bin"] == b"\x00\xff"
    assert "base64:AP8=" in cli.run("get", "bin").out


def test_put_reads_the_value_from_a_file(cli: Harness, tmp_path: Path) -> None:
    path = tmp_path / "v.bin"
    path.write_bytes(b"from file")
    assert cli.run("put", "k", "--file", str(path)).code == ExitCode.OK
    assert cli.client.data["k"] == b"from file"


def test_ls_all_follows_every_page(cli: Harness) -> None:
    cli.client.data.update({f"p/{i}": b"v" for i in range(5)})
    rows = cli.run("ls", "p/", "--limit", "2", "--all", "-o", "json").json()
    assert [r["key"] for r in rows] == [f"p/{i}" for i in range(5)]
    assert [c[1][1] for c in cli.client.calls] == [None, "p/1", "p/3"]


def test_ls_without_all_says_on_stderr_how_to_get_the_next_page(cli: Harness) -> None:
    cli.client.data.update({"p/1": b"v", "p/2": b"v"})
    result = cli.run("ls", "p/", "--limit", "1")
    assert "--after 'p/1'" in result.err
    assert "p/2" not in result.out


def test_status_shows_every_node_with_lag_and_unreachable_ones(cli: Harness) -> None:
    result = cli.run("status")
    lines = result.out.splitlines()
    assert lines[0].split()[:5] == ["ID", "ADDRESS", "SHARD", "ROLE", "TERM"]
    assert "unreachable" in lines[3]
    rows = cli.run("status", "-o", "json").json()
    assert [(r["role"], r["lag"]) for r in rows] == [("leader", 0), ("follower", 2), ("unreachable", None)]


def test_status_counts_a_nodes_lag_only_against_the_leader_of_the_shard_its_row_is_of(cli: Harness) -> None:
    leader_of_1 = NodeStatus(EP, True, 1, "leader", 2, 1, 9, 9, 9, shard_id=1)
    follower_of_1 = NodeStatus("tcp://10.0.0.2:7101", True, 2, "follower", 2, 1, 9, 8, 9, shard_id=1)
    leader_of_3 = NodeStatus("tcp://10.0.0.4:7101", True, 4, "leader", 4, 4, 16, 16, 16, shard_id=3)
    follower_of_2 = NodeStatus("tcp://10.0.0.3:7101", True, 3, "follower", 2, 2, 12, 12, 12, shard_id=2)
    statuses = [leader_of_1, follower_of_1, leader_of_3, follower_of_2]
    cli.client.status_all = lambda endpoints=None: statuses  # type: ignore[method-assign]

    rows = cli.run("status", "-o", "json").json()

    assert [(r["id"], r["shard"], r["lag"]) for r in rows] == [(1, 1, 0), (2, 1, 1), (4, 3, 0), (3, 2, None)]


def test_status_exits_5_when_no_node_answers(cli: Harness) -> None:
    cli.client.status_all = lambda endpoints=None: [NodeStatus(EP, False, error="no reply")]  # type: ignore[method-assign]
    result = cli.run("status")
    assert result.code == ExitCode.UNAVAILABLE
    assert EP in result.err


def test_shards_prints_the_epoch_partitions_and_each_shards_replicas_leader_partitions_and_size(
    cli: Harness,
) -> None:
    lines = [line.split() for line in cli.run("shards").out.splitlines()]
    assert lines == [
        ["epoch", "4"],
        ["partitions", "8"],
        [],
        ["ID", "REPLICAS", "LEADER", "PARTITIONS", "BYTES"],
        ["0", "1,2,3", "1", "0", "7"],
        ["1", "2,3", "2", "3", "1007"],
        ["2", "3,1", "-", "5", "2007"],
    ]
    (as_json,) = cli.run("shards", "-o", "json").json()
    assert (as_json["epoch"], as_json["partitions"]) == (4, 8)
    assert as_json["shards"][2] == {
        "id": 2,
        "replicas": [3, 1],
        "leader": None,
        "partitions": 5,
        "bytes": 2007,
    }


def test_move_starts_a_partition_move_and_waits_for_the_map_to_name_the_new_shard(cli: Harness) -> None:
    result = cli.run("move", "0", "2", "-o", "json")

    assert result.code == ExitCode.OK
    assert cli.client.calls[-2:] == [("move_partition", (0, 2)), ("shard_map", ())]
    assert result.json() == [{"partition": 0, "shard": 2, "epoch": 5}]


def test_rebalance_dry_run_plans_moves_that_even_out_the_partitions_and_makes_none(cli: Harness) -> None:
    result = cli.run("rebalance", "--dry-run", "-o", "json")  # shard 1 owns 3 partitions, shard 2 five

    assert result.code == ExitCode.OK
    assert result.json() == [{"partition": 7, "from": 2, "to": 1}]
    assert cli.client.moves == []


def test_rebalance_makes_each_planned_move_in_turn(cli: Harness) -> None:
    result = cli.run("rebalance")

    assert result.code == ExitCode.OK
    assert cli.client.moves == [(7, 1)]
    assert "moved 1/1" in result.err


def test_add_shard_places_a_new_shard_on_the_nodes_holding_fewest_and_waits_for_it(cli: Harness) -> None:
    result = cli.run("add-shard", "-o", "json")  # data replicas: node 1 holds 1, node 2 one, node 3 two

    assert result.code == ExitCode.OK
    assert cli.client.placements == [(3, (1, 2))]
    assert result.json() == [{"shard": 3, "replicas": [1, 2]}]


def test_split_adds_a_shard_and_moves_the_upper_half_of_the_partitions_to_it(cli: Harness) -> None:
    result = cli.run("split", "2")  # shard 2 owns partitions 1, 2, 4, 6, 7

    assert result.code == ExitCode.OK
    assert cli.client.placements == [(3, (1, 2))]
    assert cli.client.moves == [(4, 3), (6, 3), (7, 3)]
    assert "moved 3/3" in result.err


def test_split_of_a_shard_owning_one_partition_is_refused(cli: Harness) -> None:
    cli.client.moves.extend([(0, 2), (3, 2), (5, 2)])  # shard 1 keeps nothing; one to give back
    cli.client.moves.append((5, 1))

    result = cli.run("split", "1")

    assert result.code == ExitCode.USAGE
    assert "nothing to split" in result.err
    assert cli.client.placements == []


def test_drain_moves_every_replica_of_the_node_away_the_meta_shards_too(cli: Harness) -> None:
    cli.client.nodes = (1, 2, 3, 4)

    result = cli.run("drain", "3")

    assert result.code == ExitCode.OK
    assert cli.client.placements == [(0, (1, 2, 4)), (1, (2, 4)), (2, (1, 2))]
    assert "node 3 holds no replica now" in result.err


def test_drain_dry_run_shows_the_plan_and_changes_nothing(cli: Harness) -> None:
    cli.client.nodes = (1, 2, 3, 4)

    result = cli.run("drain", "3", "--dry-run", "-o", "json")

    assert result.json()[0] == {"shard": 0, "from": [1, 2, 3], "to": [1, 2, 4]}
    assert cli.client.placements == []


def test_drain_with_no_node_to_take_a_replica_is_refused(cli: Harness) -> None:
    result = cli.run("drain", "3")  # the meta shard is on all three nodes

    assert result.code == ExitCode.USAGE
    assert "no other node" in result.err


def test_rebalance_moves_replicas_onto_a_new_node_and_spreads_the_preferred_leaders(cli: Harness) -> None:
    cli.client.nodes = (1, 2, 3, 4)
    cli.client.placed = {1: (2, 3, 1), 2: (3, 1, 2)}  # node 4 holds nothing

    result = cli.run("rebalance", "--dry-run", "-o", "json")

    placements = [r for r in result.json() if "shard" in r]
    assert placements == [{"shard": 2, "from": [3, 1, 2], "to": [4, 1, 2]}]


def test_shards_against_an_unsharded_cluster_says_so_and_exits_rejected(cli: Harness) -> None:
    cli.client.fail = Unsupported("unknown op 'shard_map'")
    result = cli.run("shards")
    assert result.code == ExitCode.REJECTED
    assert "not sharded" in result.err


def test_get_with_min_version_implies_a_version_read(cli: Harness) -> None:
    cli.client.data["k"] = b"v"
    cli.run("get", "k", "--min-version", "3:9")
    assert cli.client.calls[-1] == ("get", ("k", "version", Version(3, 9)))


def test_history_and_audit_render_their_records(cli: Harness) -> None:
    assert cli.run("history", "k", "-o", "json").json()[0]["value_encoding"] == "base64"
    audit = cli.run("audit", "--after-hlc", "5")
    assert audit.out.splitlines()[1].split() == ["7", "1:3", "ops", "put", "k"]
    assert cli.client.calls[-1] == ("audit", (5, 100, ""))


def test_audit_since_an_hlc_includes_it_and_a_prefix_is_passed_on(cli: Harness) -> None:
    cli.run("audit", "--since", "7", "--prefix", "app/")
    assert cli.client.calls[-1] == ("audit", (6, 100, "app/"))


def test_version_prints_the_bare_version_or_json(cli: Harness) -> None:
    assert cli.run("version").out.strip() == __version__
    assert cli.run("version", "-o", "json").json() == [{"version": __version__}]


# ---------------------------------------------------------------- exit codes


def test_a_missing_key_exits_3(cli: Harness) -> None:
    result = cli.run("get", "nope")
    assert (result.code, result.out) == (ExitCode.NOT_FOUND, "")
    assert result.err.startswith("confctl: NOT_FOUND")


def test_a_failed_cas_exits_4_with_the_current_version(cli: Harness) -> None:
    result = cli.run("cas", "k", "v", "--expected-version", "1:1")
    assert result.code == ExitCode.COMPARE_FAILED
    assert "1:2" in result.err


def test_a_txn_whose_compares_fail_exits_4(cli: Harness, tmp_path: Path) -> None:
    doc = {
        "compare": [{"key": "absent", "target": "exists", "exists": True}],
        "failure": [{"op": "delete", "key": "x"}],
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    result = cli.run("txn", str(path), "-o", "json")
    assert result.code == ExitCode.COMPARE_FAILED
    assert result.json()[0]["succeeded"] is False
    assert result.json()[0]["results"][0]["op"] == "delete"


def test_a_txn_that_succeeds_exits_0(cli: Harness) -> None:
    cli.client.data["a"] = b"1"
    doc = {
        "compare": [{"key": "a", "target": "value", "value": "MQ==", "value_encoding": "base64"}],
        "success": [{"op": "put", "key": "b", "value": "2"}],
    }
    assert cli.run("txn", "-", stdin=json.dumps(doc)).code == ExitCode.OK
    _, (compare, success, _failure) = cli.client.calls[-1]
    assert compare == (Compare("a", "value", value=b"1"),)
    assert success == (TxnOp("put", "b", b"2"),)


@pytest.mark.parametrize(
    "doc",
    [
        "not json",
        "[]",
        '{"compare": [{"key": "a", "target": "size"}]}',
        '{"success": [{"op": "put", "key": "a"}]}',
        '{"succes": []}',
        '{"compare": [{"key": "a", "target": "version", "version": "7"}]}',
    ],
)
def test_a_bad_txn_document_is_a_usage_error_naming_the_problem(cli: Harness, doc: str) -> None:
    result = cli.run("txn", "-", stdin=doc)
    assert result.code == ExitCode.USAGE
    assert result.err.startswith("confctl: -: ")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (Unavailable("no node answered within 5s (tried tcp://10.0.0.1:7101)"), ExitCode.UNAVAILABLE),
        (InvalidRequest("bad field"), ExitCode.REJECTED),
        (TooLarge("value over max_value_bytes (1048576)"), ExitCode.REJECTED),
        (InternalServerError("bug"), ExitCode.ERROR),
    ],
)
def test_client_errors_map_to_their_exit_code_with_one_line_and_no_traceback(
    cli: Harness, error: ConfmanError, code: ExitCode
) -> None:
    cli.client.fail = error
    result = cli.run("get", "k")
    assert result.code == code
    assert result.err.count("\n") == 1
    assert "Traceback" not in result.err
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_no_node_answers_message_lists_the_endpoints(cli: Harness) -> None:
    cli.client.fail = Unavailable(
        "no node answered within 5s (tried tcp://10.0.0.1:7101, tcp://10.0.0.2:7101)"
    )
    result = cli.run("put", "k", "v")
    assert result.code == ExitCode.UNAVAILABLE
    assert result.err == f"confctl: UNAVAILABLE: {cli.client.fail.message}\n"


def test_an_unexpected_exception_exits_1_without_a_traceback(cli: Harness) -> None:
    cli.client.fail = None
    cli.client.put = None  # type: ignore[assignment,method-assign]  # calling it raises TypeError
    result = cli.run("put", "k", "v")
    assert result.code == ExitCode.ERROR
    assert "internal error: TypeError" in result.err


def test_usage_errors_exit_2(cli: Harness) -> None:
    assert cli.run("get").code == ExitCode.USAGE
    assert cli.run("cas", "k", "v").code == ExitCode.USAGE  # neither expectation
    assert cli.run("get", "k", "--min-version", "nope").code == ExitCode.USAGE


# ---------------------------------------------------------------- where the cluster is


def _app_without_endpoints(seen: list[ClientSettings]) -> typer.Typer:
    def factory(settings: ClientSettings) -> ClientApi:
        seen.append(settings)
        return FakeClient(data={"k": b"v"})

    return build_app(factory)


def test_endpoints_come_from_the_environment_when_not_given() -> None:
    seen: list[ClientSettings] = []
    env = {"CONFMAN_ENDPOINTS": "tcp://a:1, tcp://b:2"}
    assert CliRunner().invoke(_app_without_endpoints(seen), ["get", "k"], env=env).exit_code == 0
    assert seen[0].endpoints == ("tcp://a:1", "tcp://b:2")


def test_endpoints_come_from_a_node_config_peers_client_addresses(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        'node_id = 1\nclient_address = "tcp://h1:7101"\n'
        '[[peers]]\nid = 2\nclient_address = "tcp://h2:7101"\n'
        '[[peers]]\nid = 3\nclient_address = "tcp://h3:7101"\n'
    )
    seen: list[ClientSettings] = []
    args = ["--config", str(config), "--timeout", "2", "--principal", "me", "get", "k"]
    result = CliRunner().invoke(_app_without_endpoints(seen), args, env={"CONFMAN_ENDPOINTS": ""})
    assert result.exit_code == 0
    assert seen[0] == ClientSettings(("tcp://h1:7101", "tcp://h2:7101", "tcp://h3:7101"), 2.0, "me")


def test_no_endpoints_anywhere_is_a_usage_error() -> None:
    result = CliRunner().invoke(_app_without_endpoints([]), ["get", "k"], env={"CONFMAN_ENDPOINTS": ""})
    assert result.exit_code == ExitCode.USAGE
    assert "CONFMAN_ENDPOINTS" in result.stderr


def test_a_malformed_endpoint_is_a_usage_error() -> None:
    result = CliRunner().invoke(_app_without_endpoints([]), ["-e", "localhost", "get", "k"])
    assert result.exit_code == ExitCode.USAGE
    assert "localhost" in result.stderr


def test_the_help_epilog_lists_the_exit_codes(cli: Harness) -> None:
    assert "5 unavailable" in CliRunner().invoke(cli.app, ["--help"]).stdout


# ---------------------------------------------------------------- nodes, leaders, backups


def test_node_add_checks_every_node_lists_the_new_one_then_rebalances_onto_it(cli: Harness) -> None:
    cli.client.nodes = (1, 2, 3, 4)
    cli.client.placed = {1: (2, 3, 1), 2: (3, 1, 2)}  # node 4 holds nothing

    result = cli.run("node", "add", "4")

    assert result.code == ExitCode.OK
    assert "node 4 answers and every node lists it" in result.err
    assert any(4 in nodes for _, nodes in cli.client.placements)


def test_node_add_names_the_nodes_whose_config_lacks_it_and_changes_nothing(cli: Harness) -> None:
    cli.client.nodes = (1, 2, 3, 4)
    cli.client.listed = {2: (1, 2, 3)}

    result = cli.run("node", "add", "4")

    assert result.code == ExitCode.ERROR
    assert "nodes [2] do not list node 4 yet" in result.err
    assert cli.client.placements == []


def test_node_add_of_a_node_that_does_not_answer_exits_5(cli: Harness) -> None:
    cli.client.nodes = (1, 2, 3, 4)
    cli.client.down = {4}

    result = cli.run("node", "add", "4", "--no-rebalance")

    assert result.code == ExitCode.UNAVAILABLE
    assert "node 4 does not answer at tcp://10.0.0.4:7101" in result.err


def test_node_remove_empties_the_node_then_names_the_configs_that_still_list_it(cli: Harness) -> None:
    cli.client.nodes = (1, 2, 3, 4)

    result = cli.run("node", "remove", "3")

    assert result.code == ExitCode.OK
    assert cli.client.placements == [(0, (1, 2, 4)), (1, (2, 4)), (2, (1, 2))]
    assert "nodes [1, 2, 4] still list it" in result.err


def test_node_remove_confirms_once_no_node_lists_it(cli: Harness) -> None:
    cli.client.nodes = (1, 2, 3, 4)
    cli.client.placed = {0: (1, 2, 4), 1: (2, 4), 2: (1, 2)}
    cli.client.listed = dict.fromkeys((1, 2, 4), (1, 2, 4))

    result = cli.run("node", "remove", "3")

    assert result.code == ExitCode.OK
    assert cli.client.placements == []
    assert "node 3 is out of the cluster" in result.err


def test_leader_transfer_makes_the_node_the_preferred_leader_and_waits_until_it_leads(cli: Harness) -> None:
    result = cli.run("leader", "transfer", "1", "3", "-o", "json")

    assert result.code == ExitCode.OK
    assert cli.client.placements == [(1, (3, 2))]
    assert result.json() == [{"shard": 1, "leader": 3}]


def test_leader_transfer_to_a_node_without_a_replica_says_how_to_place_one(cli: Harness) -> None:
    result = cli.run("leader", "transfer", "1", "1")  # shard 1 is on nodes 2 and 3

    assert result.code == ExitCode.USAGE
    assert "confctl replicas 1 1,2,3" in result.err
    assert cli.client.placements == []


def test_snapshot_save_writes_a_file_snapshot_status_reads_back(cli: Harness, tmp_path: Path) -> None:
    path = tmp_path / "cluster.backup"

    saved = cli.run("snapshot", "save", str(path))
    status = cli.run("snapshot", "status", str(path), "-o", "json")

    assert saved.code == ExitCode.OK
    assert [c[1] for c in cli.client.calls if c[0] == "backup_shard"] == [(0,), (1,), (2,)]
    assert [(c.shard, str(c.applied)) for c in read_backup(path).shards] == [
        (0, "4:20"),
        (1, "4:10"),
        (2, "4:20"),
    ]
    assert status.code == ExitCode.OK
    assert status.json()[0]["map_epoch"] == 4


def test_snapshot_status_of_a_damaged_file_exits_1_saying_what_is_wrong(cli: Harness, tmp_path: Path) -> None:
    path = tmp_path / "cluster.backup"
    cli.run("snapshot", "save", str(path))
    path.write_bytes(path.read_bytes()[:-10])

    result = cli.run("snapshot", "status", str(path))

    assert result.code == ExitCode.ERROR
    assert "corrupt or truncated" in result.err
