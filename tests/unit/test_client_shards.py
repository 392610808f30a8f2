"""The client's sans-I/O core against a sharded cluster: the map, routing, WRONG_SHARD, tokens, merges.

The cluster of these tests (`MAP`): nodes 1-3, 8 partitions, data shard 1 on nodes 2 and 3
(node 2 preferred), data shard 2 on nodes 1 and 2 (node 1 preferred). Namespace `db` lives in
shard 1, `app` in shard 2.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from confctl.client import merge, replies, requests
from confctl.client.call import ClientCore, Done, Fail, Send
from confctl.client.errors import InvalidArgument, Unavailable
from confctl.client.routing import Backoff, Router
from confctl.client.session import Session
from confctl.client.shards import ShardDirectory
from confctl.client.types import AuditRecord, AuditResult, Compare, ListItem, ListResult, TxnOp, Version
from confmand.protocol.shardmap import ShardMap, initial_map, partition_of

N1, N2, N3 = "tcp://10.0.1.1:7101", "tcp://10.0.1.2:7101", "tcp://10.0.1.3:7101"
ADDRESSES = {1: N1, 2: N2, 3: N3}
MAP = initial_map([1, 2, 3], data_shards=2, replication=2, partitions=8)
DB, APP = 1, 2  # the shards of namespaces `db` and `app`
WRITE_OK: dict[str, object] = {"version": "1:4", "prev_version": None}


def make_core(*endpoints: str, timeout_s: float = 5.0) -> ClientCore:
    return ClientCore(
        Session(b"c" * 16),
        Router(tuple(endpoints or (N3,))),
        timeout_s=timeout_s,
        attempt_timeout_s=1.0,
        backoff=Backoff(rng=random.Random(1)),
        shards=ShardDirectory(discover=True),
    )


def sent(step: object) -> dict[str, Any]:
    assert isinstance(step, Send), step
    msg: dict[str, Any] = msgpack.unpackb(step.frame, raw=False)
    return msg


def ok(step: object, shard: int | None = None, /, **fields: object) -> dict[str, Any]:
    rid = sent(step)["id"]
    return {"v": 1, "id": rid, "ok": True, "node": 1, "hlc": 5, "leader": None, "shard": shard, **fields}


def failed(
    step: object, code: str, retryable: bool, leader: str | None = None, **extra: object
) -> dict[str, Any]:
    hint = {"id": 9, "address": leader} if leader else None
    error = {"code": code, "message": "m", "retryable": retryable, **extra}
    rid = sent(step)["id"]
    return {"v": 1, "id": rid, "ok": False, "node": 2, "hlc": 5, "leader": hint, "error": error}


def map_wire(shard_map: ShardMap = MAP, leaders: dict[int, int] | None = None) -> dict[str, Any]:
    """A `shard_map` reply's fields: the map, each shard's leader as the node knows it, the nodes."""
    shards = [{**item, "leader": (leaders or {}).get(item["id"])} for item in _shards_of(shard_map)]
    nodes = [{"id": n, "address": a} for n, a in ADDRESSES.items()]
    return {"epoch": shard_map.epoch, "owners": list(shard_map.owners), "shards": shards, "nodes": nodes}


def _shards_of(shard_map: ShardMap) -> list[dict[str, Any]]:
    return [{"id": s, "replicas": list(nodes)} for s, nodes in shard_map.replicas.items()]


def map_reply(
    step: object, shard_map: ShardMap = MAP, leaders: dict[int, int] | None = None
) -> dict[str, Any]:
    return ok(step, **map_wire(shard_map, leaders))


def call(core: ClientCore, request: requests.Request, parse: Any) -> Any:
    return core.call(request, parse, now=0)


def put(key: str) -> tuple[requests.Request, Any]:
    return requests.put(key, b"v"), replies.write_result


# ---------------------------------------------------------------- the map


def test_the_first_routed_call_fetches_the_map_then_sends_to_the_shards_known_leader() -> None:
    core = make_core()
    c = call(core, *put("db/url"))
    fetch = c.start(0)
    assert (fetch.endpoint, sent(fetch)["op"]) == (N3, "shard_map")
    assert "shard" not in sent(fetch)

    step = c.on_reply(map_reply(fetch, leaders={DB: 3}), 0.1)

    assert step.endpoint == N3
    assert (sent(step)["op"], sent(step)["key"], sent(step)["shard"]) == ("put", "db/url", DB)
    assert sent(step)["seq"] == 1


def test_the_map_is_fetched_once_and_kept_for_later_calls() -> None:
    core = make_core()
    first = call(core, *put("db/a"))
    fetch = first.start(0)
    put_step = first.on_reply(map_reply(fetch), 0.1)
    assert isinstance(first.on_reply(ok(put_step, DB, **WRITE_OK), 0.2), Done)

    second = call(core, *put("app/b")).start(1)

    assert (sent(second)["op"], sent(second)["shard"], second.endpoint) == ("put", APP, N1)


def test_without_a_known_leader_a_call_tries_the_preferred_leader_then_the_other_replicas() -> None:
    core = make_core()
    c = call(core, *put("db/a"))
    to_preferred = c.on_reply(map_reply(c.start(0)), 0.1)
    to_other = c.on_silence(1.1)
    to_configured = c.on_silence(2.1)
    assert [s.endpoint for s in (to_preferred, to_other)] == [N2, N3]
    assert isinstance(to_configured, Send)
    assert to_configured.endpoint == N2  # the configured endpoint is N3 itself: round again
    assert to_configured.delay_s > 0


def test_not_leader_moves_the_hinted_leader_of_that_shard_only() -> None:
    core = make_core()
    c = call(core, *put("db/a"))
    step = c.on_reply(map_reply(c.start(0), leaders={DB: 2, APP: 1}), 0.1)
    retry = c.on_reply(failed(step, "NOT_LEADER", True, leader=N3), 0.2)
    assert (retry.endpoint, sent(retry)["seq"], sent(retry)["shard"]) == (N3, 1, DB)
    assert core.shards.leaders == {DB: N3, APP: N1}
    assert core.router.leader is None


def test_a_successful_replys_leader_hint_is_that_shards_leader() -> None:
    core = make_core()
    c = call(core, *put("app/a"))
    step = c.on_reply(map_reply(c.start(0)), 0.1)
    reply = ok(step, APP, **WRITE_OK, leader={"id": 2, "address": N2})
    assert isinstance(c.on_reply(reply, 0.2), Done)
    assert core.shards.leaders.get(APP) == N2
    assert DB not in core.shards.leaders


def test_a_node_that_does_not_know_shard_map_is_an_old_server_spoken_to_unrouted() -> None:
    core = make_core()
    c = call(core, *put("db/a"))
    step = c.on_reply(failed(c.start(0), "UNSUPPORTED", False), 0.1)
    assert sent(step)["op"] == "put"
    assert "shard" not in sent(step)
    assert isinstance(c.on_reply(ok(step, **WRITE_OK), 0.2), Done)
    assert core.session.token == Version(1, 4)

    later = core.call(*put("app/b"), now=1).start(1)
    assert sent(later)["op"] == "put"


def test_a_server_that_answers_shard_map_with_no_map_is_spoken_to_unrouted() -> None:
    """Servers from before the map was served list the op among the admin ops and answer it like ping."""
    core = make_core()
    c = call(core, *put("db/a"))
    step = c.on_reply(ok(c.start(0)), 0.1)
    assert (sent(step)["op"], "shard" in sent(step)) == ("put", False)
    assert core.shards.unsharded


def test_ping_and_status_are_never_routed_and_fetch_no_map() -> None:
    core = make_core()
    for request, parse in ((requests.ping(), replies.pong), (requests.status(), replies.status_result(""))):
        step = core.call(request, parse, now=0).start(0)
        assert sent(step)["op"] == request.op
        assert "shard" not in sent(step)


def test_a_map_fetch_that_meets_silence_moves_to_the_next_endpoint() -> None:
    core = make_core(N1, N2)
    c = call(core, *put("db/a"))
    c.start(0)
    again = c.on_silence(1.0)
    assert (again.endpoint, sent(again)["op"]) == (N2, "shard_map")


# ---------------------------------------------------------------- WRONG_SHARD


def test_wrong_shard_refetches_the_map_at_the_node_that_said_so_and_lands_with_the_same_seq() -> None:
    core = make_core()
    c = call(core, *put("db/a"))
    step = c.on_reply(map_reply(c.start(0)), 0.1)
    assert (step.endpoint, sent(step)["shard"]) == (N2, DB)
    newer = MAP.moved(partition_of("db", MAP.partitions), APP)

    refetch = c.on_reply(failed(step, "WRONG_SHARD", True, epoch=2, shard=APP), 0.2)
    assert (refetch.endpoint, sent(refetch)["op"], refetch.delay_s) == (N2, "shard_map", 0.0)
    landed = c.on_reply(map_reply(refetch, newer), 0.3)

    assert (landed.endpoint, sent(landed)["shard"]) == (N1, APP)
    assert sent(landed)["seq"] == sent(step)["seq"]
    assert core.shards.map == newer


def test_wrong_shard_again_and_again_backs_off_and_ends_unavailable_at_the_deadline() -> None:
    core = make_core(timeout_s=2.0)
    c = call(core, *put("db/a"))
    step: object = c.on_reply(map_reply(c.start(0)), 0.1)
    delays, now = [], 0.1
    while isinstance(step, Send):
        now += 0.05
        if sent(step)["op"] == "shard_map":
            delays.append(step.delay_s)
            step = c.on_reply(map_reply(step), now)
        else:
            step = c.on_reply(failed(step, "WRONG_SHARD", True, epoch=99, shard=APP), now)
        now += step.delay_s if isinstance(step, Send) else 0
    assert isinstance(step, Fail)
    assert isinstance(step.error, Unavailable)
    assert "WRONG_SHARD" in step.error.message
    assert delays[0] == 0.0
    assert all(d > 0 for d in delays[1:])
    assert core.session.ack == 2  # the seq is released


def test_wrong_shard_from_a_node_whose_map_is_no_newer_moves_on_without_a_refetch() -> None:
    core = make_core()
    c = call(core, *put("db/a"))
    step = c.on_reply(map_reply(c.start(0)), 0.1)
    next_replica = c.on_reply(failed(step, "WRONG_SHARD", True, epoch=1, shard=DB), 0.2)
    assert (next_replica.endpoint, sent(next_replica)["op"], sent(next_replica)["shard"]) == (N3, "put", DB)


# ---------------------------------------------------------------- session tokens


def test_a_write_on_one_shard_does_not_raise_the_read_floor_of_another() -> None:
    core = make_core()
    c = call(core, *put("db/a"))
    step = c.on_reply(map_reply(c.start(0)), 0.1)
    assert isinstance(c.on_reply(ok(step, DB, version="1:90", prev_version=None), 0.2), Done)

    on_app = sent(core.call(requests.get("app/a", "version"), replies.get_result("app/a"), now=1).start(1))
    on_db = sent(core.call(requests.get("db/b", "version"), replies.get_result("db/b"), now=1).start(1))

    assert (on_app["shard"], on_app["min_version"]) == (APP, "0:0")
    assert (on_db["shard"], on_db["min_version"]) == (DB, "1:90")
    assert core.session.tokens == {DB: Version(1, 90)}
    assert core.session.token is None


def test_an_explicit_min_version_wins_over_the_shards_token() -> None:
    core = make_core()
    core.shards.learn(replies.shard_map_result(map_wire()))
    core.session.observe_version(Version(1, 90), DB)
    msg = sent(core.call(requests.get("db/a", "version", "1:3"), replies.get_result("db/a"), now=0).start(0))
    assert msg["min_version"] == "1:3"


# ---------------------------------------------------------------- spread: list and audit


def _item(key: str) -> dict[str, object]:
    return {"key": key, "value": b"v", "version": "1:1", "create_version": "1:1", "changes": 1}


def test_a_list_within_one_namespace_goes_to_its_shard_only() -> None:
    core = make_core()
    c = call(core, requests.list_("app/"), replies.list_result)
    step = c.on_reply(map_reply(c.start(0)), 0.1)
    assert sent(step)["shard"] == APP
    done = c.on_reply(ok(step, APP, items=[_item("app/a")], more=False, next=None), 0.2)
    assert isinstance(done, Done)
    assert [i.key for i in done.value.items] == ["app/a"]


def test_a_list_across_namespaces_asks_every_shard_the_same_page_and_merges_in_key_order() -> None:
    core = make_core()
    c = call(core, requests.list_("", after="a", limit=3), replies.list_result)
    to_db = c.on_reply(map_reply(c.start(0)), 0.1)
    to_app = c.on_reply(ok(to_db, DB, items=[_item("db/a"), _item("db/b")], more=False, next=None), 0.2)
    done = c.on_reply(ok(to_app, APP, items=[_item("app/a"), _item("app/z")], more=False, next=None), 0.3)

    asked = [sent(to_db), sent(to_app)]
    assert [(m["shard"], m["prefix"], m["after"], m["limit"]) for m in asked] == [
        (DB, "", "a", 3),
        (APP, "", "a", 3),
    ]
    assert isinstance(done, Done)
    page = done.value
    assert ([i.key for i in page.items], page.more, page.next) == (["app/a", "app/z", "db/a"], True, "db/a")


def test_audit_asks_every_shard_and_merges_by_hlc_up_to_where_every_shard_has_looked() -> None:
    def record(hlc: int, key: str) -> dict[str, object]:
        return {"hlc": hlc, "version": "1:1", "principal": "p", "op": "put", "key": key}

    core = make_core()
    c = call(core, requests.audit(after_hlc=10, limit=10), replies.audit_result)
    to_db = c.on_reply(map_reply(c.start(0)), 0.1)
    to_app = c.on_reply(ok(to_db, DB, records=[record(11, "db/a"), record(30, "db/b")], more=False), 0.2)
    done = c.on_reply(ok(to_app, APP, records=[record(20, "app/a")], more=True), 0.3)

    assert [sent(s)["after_hlc"] for s in (to_db, to_app)] == [10, 10]
    assert isinstance(done, Done)
    # The app shard looked no further than hlc 20: db/b (30) waits for the next page, which
    # starts after 20, or a record of app's between 20 and 30 would be skipped.
    assert [(r.hlc, r.key, r.shard) for r in done.value.records] == [(11, "db/a", DB), (20, "app/a", APP)]
    assert (done.value.more, done.value.next_hlc) == (True, 20)


def test_a_txn_across_namespaces_is_refused_before_sending_naming_two_of_them() -> None:
    with pytest.raises(InvalidArgument, match="stays within one namespace: it names 'db' and 'app'"):
        requests.txn([], [TxnOp("put", "db/a", b"1"), TxnOp("put", "app/b", b"2")])


def test_a_txn_within_one_namespace_is_routed_by_its_keys() -> None:
    core = make_core()
    request = requests.txn([Compare("app/a", "exists", exists=False)], [TxnOp("put", "app/a", b"1")])
    c = call(core, request, replies.txn_result)
    assert sent(c.on_reply(map_reply(c.start(0)), 0.1))["shard"] == APP


# ---------------------------------------------------------------- merging pages (merge.py)


def _page(keys: list[str], after: str | None, limit: int) -> ListResult:
    """One shard's answer to a list page, as a server gives it."""
    matching = sorted(k for k in keys if after is None or k > after)
    items = tuple(ListItem(k, None, Version(1, 1), Version(1, 1), 1) for k in matching[:limit])
    more = len(matching) > limit
    return ListResult(items, more, items[-1].key if more else None)


@given(st.dictionaries(st.text("abc/", min_size=1, max_size=4), st.integers(0, 3)), st.integers(1, 5))
def test_paging_through_merged_pages_yields_every_key_once_in_order(
    owner: dict[str, int], limit: int
) -> None:
    """Each key lives in one shard; every shard answers the same page; the pages end, complete."""
    shards = [[k for k, s in owner.items() if s == shard] for shard in range(4)]
    seen: list[str] = []
    after: str | None = None
    for _ in range(len(owner) + 2):
        page = merge.list_pages([_page(keys, after, limit) for keys in shards], limit)
        seen.extend(item.key for item in page.items)
        assert len(page.items) <= limit
        if not page.more:
            break
        after = page.next
    assert seen == sorted(owner)


def test_an_audit_page_is_not_cut_between_two_records_of_one_hlc() -> None:
    def rec(hlc: int, shard: int) -> AuditRecord:
        return AuditRecord(hlc, Version(1, 1), "p", "put", "k", None, Version(1, 1), shard=shard)

    pages: list[tuple[int | None, AuditResult]] = [
        (1, AuditResult((rec(1, 1), rec(5, 1)), False)),
        (2, AuditResult((rec(5, 2), rec(9, 2)), False)),
    ]
    page = merge.audit_pages(pages, 2)
    assert ([(r.hlc, r.shard) for r in page.records], page.more) == ([(1, 1)], True)


@pytest.mark.parametrize("module", ["shards", "merge"])
def test_the_routing_and_merging_modules_do_no_io(module: str) -> None:
    source = (Path(__file__).resolve().parents[2] / "confctl" / "client" / f"{module}.py").read_text()
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"zmq", "asyncio", "time", "os", "socket", "threading", "selectors", "random"}


def test_a_pinned_call_stays_on_its_node_but_names_its_shard_and_raises_that_shards_token() -> None:
    core = make_core()
    pinned = core.call(*put("db/a"), now=0, endpoint=N1)
    fetch = pinned.start(0)
    assert isinstance(fetch, Send)
    assert (fetch.endpoint, sent(fetch)["op"]) == (N1, "shard_map")
    step = pinned.on_reply(map_reply(fetch), 0.1)
    assert isinstance(step, Send)
    assert (step.endpoint, sent(step)["shard"]) == (N1, DB)
    assert isinstance(pinned.on_reply(ok(step, DB, **WRITE_OK), 0.2), Done)

    read = call(core, requests.get("db/a", "version"), replies.get_result("db/a")).start(1)

    assert sent(read)["min_version"] == "1:4"  # the pinned write's version is this shard's floor


def test_a_filtered_audit_page_of_one_shard_holds_back_the_others_records_past_its_horizon() -> None:
    def record(hlc: int, key: str) -> AuditRecord:
        return AuditRecord(hlc, Version(1, 1), "p", "put", key, None, Version(1, 1))

    scanned_to_25 = AuditResult((), True, next_hlc=25)
    both = AuditResult((record(11, "db/a"), record(30, "db/b")), False)

    merged = merge.audit_pages([(APP, scanned_to_25), (DB, both)], limit=10)

    assert ([r.key for r in merged.records], merged.more, merged.next_hlc) == (["db/a"], True, 25)


def test_a_status_reply_says_how_many_of_its_shards_the_node_leads() -> None:
    lines = [{"shard_id": s, "role": role} for s, role in enumerate(("leader", "follower", "leader"))]
    base: dict[str, object] = {
        "node_id": 2,
        "role": "follower",
        "term": 3,
        "commit_index": 9,
        "applied_index": 9,
    }

    sharded = replies.status_result(N2)({**base, "shards": lines})
    older = replies.status_result(N2)(base)

    assert (sharded.shards_led, sharded.shards_hosted) == (2, 3)
    assert (older.shards_led, older.shards_hosted) == (None, None)


def test_a_shard_moved_off_its_map_replicas_is_asked_at_the_members_its_holder_named_first() -> None:
    core = make_core()
    c = call(core, *put("db/a"))
    fetch = c.start(0)
    wire = map_wire()
    for item in wire["shards"]:
        if item["id"] == DB:
            item["members"] = [1]  # node 1 holds shard DB now; the map still says nodes 2 and 3

    step = c.on_reply(ok(fetch, **wire), 0.1)

    assert step.endpoint == N1
    assert core.shards.candidates(DB, ())[:3] == (N1, N2, N3)
