"""A fault cluster whose nodes keep their data on lazy filesystems, so the plug can be pulled.

`PowerCluster` is a `FaultCluster` in which node n's data dir
(`root/data/node<n>`) is the mountpoint of a lazy filesystem
(`tests/fault/lazyfs.py`) over `root/disk/node<n>`, the node's "disk".
`power_loss(n)` is a power cut: SIGKILL to the node and to its filesystem
at the same moment, so every byte the node wrote but had not fsynced is
gone; `start(n)` then powers the machine up: it remounts the disk and
starts the node on what survived.

`power_loss_mid_fsync(n)` cuts the power while the node is inside an fsync:
the filesystem holds the next fsync forever, then the plug is pulled, so the
node never learns the outcome and nothing of that fsync is on the disk.

A node that will not start again after a power loss (it exits, as a node
must rather than serve a log with a hole) is recorded in `refused` with the
tail of its log; a power-loss run must end with none.

Invariants:
- The node dies before its filesystem, or with it: it never runs on a dead
  mount. A mount is up whenever its node runs.
- `close()` stops every node by PID, then unmounts every filesystem
  (cleanly), whatever happened; the data dirs are plain directories again.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from tests.fault.cluster import FaultCluster
from tests.fault.lazymount import LazyMount, unavailable
from tests.integration.harness import ClusterOptions

HANG_WAIT_S = 2.0  # for the next fsync of a node under load (it fsyncs every loop turn with work)


@dataclass(frozen=True, slots=True)
class PowerLoss:
    """One power cut: the node, the unsynced bytes and files it dropped, whether an fsync was cut off."""

    node: int
    dirty_bytes: int
    dirty_files: int
    mid_fsync: bool


class PowerCluster(FaultCluster):
    """A `FaultCluster` on lazy filesystems; see the module docstring."""

    def __init__(
        self, root: Path, size: int = 3, seed: int = 0, options: ClusterOptions | None = None
    ) -> None:
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        self.mounts: dict[int, LazyMount] = {}
        self.losses: list[PowerLoss] = []
        self.refused: dict[int, str] = {}
        super().__init__(root, size=size, seed=seed, options=options)
        for node_id in self.node_ids:
            self.mounts[node_id] = LazyMount(
                root / "disk" / f"node{node_id}",
                self.data_dir(node_id),
                root / "logs" / f"lazyfs{node_id}.log",
            )

    # ---------------------------------------------------------------- power

    def start(self, node_id: int | None = None) -> None:
        """Power up: mount the node's disk (if the power was cut), then start the node on it."""
        for nid in self.node_ids if node_id is None else [node_id]:
            self.mounts[nid].mount()
        super().start(node_id)

    def power_loss(self, node_id: int) -> PowerLoss:
        """Cut the power of `node_id`: the node and its page cache die together. `start` powers it up."""
        return self._cut(node_id, mid_fsync=False)

    def power_loss_mid_fsync(self, node_id: int, wait_s: float = HANG_WAIT_S) -> PowerLoss:
        """Cut the power while `node_id` is inside an fsync (or after `wait_s` if it fsyncs nothing)."""
        mount = self.mounts[node_id]
        mount.arm_hang()
        hung = mount.wait_hung(wait_s) is not None
        return self._cut(node_id, mid_fsync=hung)

    def _cut(self, node_id: int, mid_fsync: bool) -> PowerLoss:
        self._plan_exit(node_id)  # before the signal: a poll from the nemesis thread must not see a crash
        process = self.local.nodes[node_id].process
        if process is not None and process.poll() is None:
            # SIGKILL first, reaped after the filesystem is gone: a node inside a FUSE call cannot
            # die until the filesystem answers or dies, and must never write after the cut.
            process.send_signal(signal.SIGKILL)
        mount = self.mounts[node_id]
        stats = mount.stats() if mount.mounted else {"dirty_bytes": 0, "dirty_files": 0}
        mount.pull_plug()
        self.kill(node_id)  # reap it, and forget that it was paused
        loss = PowerLoss(node_id, stats["dirty_bytes"], stats["dirty_files"], mid_fsync)
        self.losses.append(loss)
        return loss

    def check_started(self) -> None:
        """Record every node that exited on its own (a refusal to start), with its log's tail."""
        for node_id in self.node_ids:
            process = self.local.nodes[node_id].process
            # Only this harness sends signals (negative codes) and a SIGTERM ends a node with 0;
            # a positive code is the node's own decision to stop.
            if process is not None and process.poll() is not None and process.returncode > 0:
                self.refused[node_id] = self.log_text(node_id)[-2000:]

    def refusals(self) -> list[str]:
        """One problem line per node that would not start again (see `check_started`)."""
        self.check_started()
        return [f"node {n} refused to start after a power loss:\n{tail}" for n, tail in self.refused.items()]

    # ---------------------------------------------------------------- teardown

    def recover(self) -> None:
        self.check_started()
        super().recover()

    def close(self) -> None:
        """Stop every node by PID, then unmount every disk cleanly; safe to call twice."""
        try:
            self.check_started()
            super().close()
        finally:
            for mount in self.mounts.values():
                mount.unmount()
