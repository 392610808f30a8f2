"""Whether this node's own clock is off from its peers' beyond the bound, so it must not stamp.

A node whose wall clock is more than `max_clock_offset_ms` away from the clocks of the
peers it hears would stamp audit records and replies out of order with the rest of the
cluster. Its peers already refuse its stamps (hlc.py); this is the node's own side: when
even the closest peer stamp of the last window is off by more than the bound, *and* at
least MIN_PEERS peers were heard in that time, the node takes its own clock for the wrong
one (as a CockroachDB node does). It then stamps nothing: as leader it refuses writes
(NOT_LEADER) and hands its leadership away, its replies carry `hlc: nil`, and `status`
says why. With fewer peers heard it cannot tell whose clock is wrong, and keeps going:
availability first (docs/protocol.md, *Clocks*).
"""

from __future__ import annotations

from collections.abc import Mapping

from confmand.hlc import PEER_WINDOW_MS, HybridClock

MIN_PEERS = 2  # with one peer, a disagreement does not say which of the two clocks is wrong
HEARD_WITHIN_S = 2 * PEER_WINDOW_MS / 1000


def clock_fault(clock: HybridClock, peer_contact: Mapping[int, float], now: float) -> str | None:
    """Why this node must not stamp (its clock is off from its peers'), or None when it may.

    `peer_contact` maps peer ids to when they were last heard (monotonic seconds, as `now`).
    """
    offset = clock.peer_offset_ms()
    if offset is None or abs(offset) <= clock.max_offset_ms:
        return None
    heard = sum(1 for at in peer_contact.values() if now - at <= HEARD_WITHIN_S)
    if heard < MIN_PEERS:
        return None
    side = "behind" if offset > 0 else "ahead of"
    return (
        f"this node's clock is {abs(offset)} ms {side} its {heard} peers' "
        f"(max_clock_offset_ms = {clock.max_offset_ms})"
    )
