"""Known-wrong driver behaviours that tests switch on to prove the simulator catches them.

Each boolean breaks one of the driver's own safety rules; `raft` carries the
Raft core's `FaultSwitches` (confmand/raft/config.py) down to every replica,
so that one set of switches, parsed from one list of names, reaches both
layers of a real node. All are off in production and read only where the
rule is applied. docs/raft.md names the simulator seed that catches each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from confmand.raft import FaultSwitches

_RAFT_NAMES = tuple(f.name for f in fields(FaultSwitches))


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
    # A peer that shows another data dir than it first ran from (it lost its votes and log) is
    # taken back as it is, as if its dir were the one it always had.
    accept_lost_data_dir: bool = False
    # The Raft core's switches, handed to every replica's RaftConfig.
    raft: FaultSwitches = field(default_factory=FaultSwitches)

    @classmethod
    def names(cls) -> list[str]:
        """The driver's own switches."""
        return [f.name for f in fields(cls) if f.name != "raft"]

    @staticmethod
    def raft_names() -> list[str]:
        """The Raft core's switches."""
        return list(_RAFT_NAMES)

    def on(self) -> list[str]:
        """The names switched on, the driver's first: what `parse` takes back."""
        driver = [n for n in self.names() if getattr(self, n)]
        return driver + [n for n in _RAFT_NAMES if getattr(self.raft, n)]

    @classmethod
    def parse(cls, text: str) -> DriverFaults:
        """`a,b` -> the switches named on (driver or core); ValueError naming an unknown one."""
        wanted = [n.strip() for n in text.split(",") if n.strip()]
        known = cls.names() + cls.raft_names()
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise ValueError(f"unknown fault switch(es) {unknown}; known: {known}")
        raft = FaultSwitches(**{n: True for n in wanted if n in _RAFT_NAMES})
        return cls(**{n: True for n in wanted if n not in _RAFT_NAMES}, raft=raft)


NO_FAULTS = DriverFaults()
