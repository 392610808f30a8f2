"""Known-wrong driver behaviours that tests switch on to prove the simulator catches them.

Beside the Raft core's `FaultSwitches` (confmand/raft/config.py), these break
the driver's own safety rules, one each. All are off in production and read
only where the rule is applied. docs/raft.md names the simulator seed that
catches each one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class DriverFaults:
    # The Raft batch (entries, hard state) is written without fsync.
    raft_batch_unsynced: bool = False
    # Every message, votes and append acknowledgements included, leaves before the fsync.
    send_before_persist: bool = False
    # A leader answers linearizable reads from its local state, without a ReadIndex round.
    read_without_read_index: bool = False
    # Entries are applied once appended to the local log, before they are known committed.
    apply_before_commit: bool = False
    # The state-machine batch (and a Ready's commit index alone) is written without fsync, trusting
    # a later synced batch to cover it: LevelDB's log switch breaks that (google/leveldb#193).
    apply_batch_unsynced: bool = False

    @property
    def any_on(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def parse(cls, text: str) -> DriverFaults:
        """`a,b` -> the switches named on; ValueError naming an unknown one."""
        wanted = [n.strip() for n in text.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown driver fault(s) {unknown}; known: {cls.names()}")
        return cls(**dict.fromkeys(wanted, True))


NO_FAULTS = DriverFaults()
