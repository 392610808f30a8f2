"""The daemon and floor benchmarks still run end to end, and their parts do what they say.

The two end-to-end tests start the real scripts as subprocesses with tiny
durations (a 3-node cluster for a few seconds; a few dozen fsyncs) and check
the JSON line they end with: it checks that the benchmarks work, not how
fast anything is. The rest are pure checks of the pieces: percentiles
against a naive reference, how clients are split over generator processes,
the configs generated for the nodes, the worker's wire formats, and the
floor's ZeroMQ echo (it never drops a reply; a lost one is an error, not a hang).
"""

from __future__ import annotations

import json
import subprocess
import sys
from array import array
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from bench._cluster import NODE_IDS, node_config_toml
from bench._echo import echo_socket
from bench._stats import latency_summary_ms, percentile
from bench._worker import WorkerResult, WorkerSpec, key_name
from bench.daemon import SCENARIOS, parse_args, worker_specs
from bench.floor import _pipelined, put_request
from confmand.config import load_config
from confmand.local_cluster import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIO_KEYS = (
    "ops_per_s",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "errors",
    "generator_cpu_s",
    "cluster_cpu_s",
    "cluster_rss_mib",
)


# Only a guard against a hung benchmark: a loaded 2-core machine once took longer than 60 s.
def run_json(script: str, *args: str, timeout_s: float = 900.0) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, f"bench/{script}", "--json", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, (
        f"{script} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    report: dict[str, Any] = json.loads(done.stdout.rstrip("\n").splitlines()[-1])
    return report


# ---------------------------------------------------------------------- end to end


def test_daemon_benchmark_runs_every_scenario_without_errors() -> None:
    report = run_json(
        "daemon.py",
        *("--duration", "0.4", "--warmup", "0.1", "--idle", "0.2"),
        *("--clients", "4", "--processes", "2", "--sockets", "2", "--keys", "50"),
    )
    assert report["ok"] is True
    assert report["fsync"] is True
    assert report["idle_cluster_cpu_cores"] >= 0
    for name in SCENARIOS:
        for key in SCENARIO_KEYS:
            assert f"{name}_{key}" in report, f"{name}_{key}"
        assert report[f"{name}_ops_per_s"] > 0, name
        assert report[f"{name}_errors"] == 0, (name, report.get(f"{name}_error_codes"))
        assert report[f"{name}_p99_ms"] >= report[f"{name}_p50_ms"] > 0, name
        assert report[f"{name}_cluster_rss_mib"] > 0, name
    assert report["seq_put_generator_processes"] == 1
    assert report["mix_writes_per_s"] > 0


def test_shards_benchmark_loads_each_shard_count_through_its_leaders_and_measures_idle_cost() -> None:
    report = run_json(
        "shards.py",
        *("--shards", "1,4", "--rounds", "2", "--idle-shards", "8"),
        *("--duration", "0.4", "--warmup", "0.1", "--idle", "0.3"),
        *("--clients", "8", "--processes", "2", "--keys", "64", "--namespaces", "16"),
    )
    for count in (1, 4):
        assert report[f"shards_{count}_writes_per_s"] > 0
        assert (report[f"shards_{count}_errors"], report[f"shards_{count}_unanswered"]) == (0, 0)
        assert report[f"shards_{count}_put_p99_ms"] >= report[f"shards_{count}_put_p50_ms"] > 0
    assert report["idle_8_idle_cpu_pct_per_node_max"] >= 0
    assert report["idle_8_rss_mib_per_node_max"] > 0


def test_floor_benchmark_reports_fsync_zmq_and_msgpack() -> None:
    report = run_json(
        "floor.py",
        *("--fsync-ops", "20", "--rtt-ops", "200", "--pipelined-msgs", "2000", "--msgpack-ops", "1000"),
    )
    assert report["ok"] is True
    for key in (
        "fsync_write_p50_ms",
        "fsync_write_p99_ms",
        "fsync_writes_per_s",
        "zmq_rtt_p50_ms",
        "zmq_rtt_p99_ms",
        "zmq_pipelined_msgs_per_s",
        "msgpack_roundtrip_us",
        "msgpack_roundtrips_per_s",
    ):
        assert report[key] > 0, key
    assert report["fsync_write_p99_ms"] >= report["fsync_write_p50_ms"]


def test_a_bad_option_is_a_usage_error_and_starts_nothing() -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--scenarios", "put,nonsense"])
    assert exited.value.code == 2


# ---------------------------------------------------------------------- percentiles


@given(
    st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=1),
    st.sampled_from([0.5, 0.99, 0.999, 1.0]),
)
def test_percentile_is_the_smallest_sample_with_q_of_all_at_or_below_it(
    values: list[float], q: float
) -> None:
    ordered = sorted(values)
    expected = next(v for v in ordered if sum(1 for w in ordered if w <= v) >= q * len(ordered))
    assert percentile(ordered, q) == expected


def test_no_samples_have_zero_percentiles_and_a_bad_quantile_is_refused() -> None:
    assert latency_summary_ms([]) == {"p50_ms": 0.0, "p99_ms": 0.0, "p999_ms": 0.0, "mean_ms": 0.0}
    with pytest.raises(ValueError, match="quantile"):
        percentile([1.0], 0.0)


# ---------------------------------------------------------------------- load layout


@given(
    clients=st.integers(1, 600),
    processes=st.integers(1, 8),
    sockets=st.integers(1, 8),
    pipeline=st.integers(1, 4),
)
def test_clients_are_split_over_processes_and_none_is_lost(
    clients: int, processes: int, sockets: int, pipeline: int
) -> None:
    args = parse_args(
        [
            "--clients",
            str(clients),
            "--processes",
            str(processes),
            "--sockets",
            str(sockets),
            "--pipeline",
            str(pipeline),
        ]
    )
    addresses = {n: f"tcp://127.0.0.1:{7000 + n}" for n in NODE_IDS}
    specs = worker_specs(SCENARIOS["put"], args, 1, addresses, None)
    assert sum(spec.slots for spec in specs) == clients * pipeline
    assert len(specs) == min(processes, clients)
    assert max(spec.slots for spec in specs) - min(spec.slots for spec in specs) <= pipeline
    assert all(spec.addresses and set(spec.addresses) == {addresses[1]} for spec in specs)


def test_follower_scenarios_spread_sockets_over_both_followers_and_never_the_leader() -> None:
    args = parse_args(["--clients", "64", "--processes", "2", "--sockets", "3"])
    addresses = {n: f"tcp://127.0.0.1:{7000 + n}" for n in NODE_IDS}
    specs = worker_specs(SCENARIOS["stale_get"], args, 2, addresses, None)
    used = [a for spec in specs for a in spec.addresses]
    assert set(used) == {addresses[1], addresses[3]}
    assert abs(used.count(addresses[1]) - used.count(addresses[3])) <= 1


def test_sequential_scenarios_are_one_client_in_one_process() -> None:
    args = parse_args(["--clients", "256", "--pipeline", "8"])
    addresses = {n: f"tcp://127.0.0.1:{7000 + n}" for n in NODE_IDS}
    specs = worker_specs(SCENARIOS["seq_get"], args, 3, addresses, None)
    assert [(spec.slots, spec.addresses) for spec in specs] == [(1, [addresses[3]])]


# ---------------------------------------------------------------------- configs and wire formats


def test_generated_node_configs_load_with_fsync_on_and_distinct_ports(tmp_path: Path) -> None:
    ports = free_ports(6)
    assert len(set(ports)) == 6
    for node_id in NODE_IDS:
        path = tmp_path / f"node{node_id}.toml"
        path.write_text(node_config_toml(node_id, tmp_path / f"d{node_id}", ports[:3], ports[3:], fsync=True))
        config = load_config(path)
        assert config.node_id == node_id
        assert config.storage.fsync is True
        assert config.client_address == f"tcp://127.0.0.1:{ports[3 + NODE_IDS.index(node_id)]}"


def test_worker_spec_refuses_an_unknown_op_and_a_version_read_without_a_token() -> None:
    base = WorkerSpec(op="get", addresses=["tcp://127.0.0.1:1"], slots=1, keys=1)
    assert WorkerSpec.from_json(base.to_json()) == base
    with pytest.raises(ValueError, match="unknown op"):
        WorkerSpec.from_json(base.to_json().replace('"get"', '"scan"'))
    with pytest.raises(ValueError, match="min_version"):
        WorkerSpec.from_json(base.to_json().replace('"get"', '"version"'))


def test_worker_result_survives_the_wire() -> None:
    result = WorkerResult(array("d", [0.001, 0.002]), array("d", [0.01]), 1, {"TIMEOUT": 1}, 2, 7, 1.5, 0.25)
    back = WorkerResult.from_wire(result.to_wire())
    assert back == result


def test_keys_are_16_bytes() -> None:
    assert len(key_name(0).encode()) == 16
    assert len(key_name(999_999_999).encode()) == 16


# ---------------------------------------------------------------------- the floor's zmq echo


@pytest.fixture
def zmq_context() -> Any:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield context
    context.destroy(linger=0)


def test_the_echo_refuses_a_reply_to_a_full_peer_instead_of_dropping_it(zmq_context: Any) -> None:
    """The floor's pipelined run hung once: the echo ROUTER dropped a reply at the HWM, silently.

    Over inproc the ROUTER -> DEALER pipe holds SNDHWM + RCVHWM messages and
    nothing else buffers, so a DEALER that does not read fills it
    deterministically. A plain ROUTER would then report success and lose each
    further reply; the echo's socket must refuse it (zmq.Again, which its
    blocking send waits out), and every reply it accepted must arrive.
    """
    zmq_context.setsockopt(zmq.SNDHWM, 2)  # set before the bind: an inproc pipe takes the bound
    router = echo_socket(zmq_context, "inproc://floor-echo")  # side's HWMs as they were then
    zmq_context.setsockopt(zmq.SNDHWM, 1000)
    dealer = zmq_context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.RCVHWM, 2)
    dealer.setsockopt(zmq.SNDTIMEO, 5000)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect("inproc://floor-echo")
    requests = [b"m%d" % i for i in range(10)]
    for request in requests:
        dealer.send(request)
    accepted: list[bytes] = []
    refused = None
    for _ in requests:
        assert router.poll(5000), "a request did not reach the echo"
        frames = router.recv_multipart()
        try:
            router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            refused = frames
            break
        accepted.append(frames[-1])
    assert refused is not None, "a reply to a full peer was accepted: a plain ROUTER drops it"
    assert 0 < len(accepted) < len(requests)
    got: list[bytes] = []
    for _ in accepted:
        assert dealer.poll(5000), f"an accepted reply was lost: got {got}, accepted {accepted}"
        got.append(dealer.recv())
    assert got == accepted
    assert router.poll(5000, zmq.POLLOUT), "the drained peer is still full"
    router.send_multipart(refused, zmq.NOBLOCK)
    assert dealer.poll(5000)
    assert dealer.recv() == refused[-1]


def test_a_lost_pipelined_reply_is_an_error_not_a_hang(zmq_context: Any) -> None:
    """A peer that takes requests and answers none: the pipelined run fails within its timeout."""
    silent = zmq_context.socket(zmq.ROUTER)
    silent.setsockopt(zmq.LINGER, 0)
    silent.bind("inproc://floor-silent")
    dealer = zmq_context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVTIMEO, 50)
    dealer.setsockopt(zmq.SNDTIMEO, 50)
    dealer.connect("inproc://floor-silent")
    frame = msgpack.packb(put_request(1), use_bin_type=True)
    with pytest.raises(RuntimeError, match=r"3 messages outstanding \(0 of 3 replies received\)"):
        _pipelined(dealer, frame, 3, 3, 0.05)
