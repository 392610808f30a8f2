"""A watcher of every key beside a fault run's clients: `AsyncClient.watch("")` in a thread.

It reaches the nodes through the same fault proxies as the clients, so every nemesis hits it
too; the client resumes each shard's stream at another node from its last progress. When the
cluster ends the whole watch (COMPACTED: no node kept the changes after its progress, as after
every node restarted) it opens a new one from the present, which starts a new run of coverage.
At the end the run waits until the watcher was told past every acknowledged write, then judges
what it was told (tests/watch_validation.py: stream shape, registers' writes told once at their
acknowledged versions, none missing where it was watching).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

from confctl.client import AsyncClient, Compacted, ConfmanError
from confctl.client.types import Version, WatchBatch
from tests.fault.history import History
from tests.watch_validation import Coverage, RunKey, acknowledged_at, watch_problems

PROGRESS_MS = 200
POLL_S = 0.2


class WatchRecorder:
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.runs: dict[RunKey, list[WatchBatch]] = {}
        self.coverage: dict[int | None, Coverage] = {}
        self.ended: list[str] = []
        self.watches = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> WatchRecorder:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def told_past(self, versions: Mapping[int | None, Version]) -> bool:
        """Whether each shard's stream was told up to at least its version in `versions`."""
        with self._lock:
            for shard, version in versions.items():
                coverage = self.coverage.get(shard)
                end = None if coverage is None else coverage.end
                if end is None or end < version:
                    return False
        return True

    def problems(self, history: History) -> list[str]:
        with self._lock:
            found = watch_problems(
                self.runs, self.coverage, history, judged=lambda key: key.startswith("reg")
            )
        found += [f"the watch failed: {e}" for e in self.ended if not e.startswith("COMPACTED")]
        return [f"watch: {p}" for p in found]

    # ------------------------------------------------------------------ the thread

    async def _main(self) -> None:
        client = AsyncClient(self.addresses, timeout_s=5.0)
        try:
            while not self._stop.is_set():
                await self._one_watch(client)
        finally:
            await client.aclose()

    async def _one_watch(self, client: AsyncClient) -> None:
        """One watch, until the cluster ends it or the run stops it."""
        self.watches += 1
        number = self.watches
        started: set[int | None] = set()
        watch = client.watch("", progress_ms=PROGRESS_MS)
        try:
            while not self._stop.is_set():
                try:
                    batch = await asyncio.wait_for(watch.__anext__(), POLL_S)
                except TimeoutError:
                    continue
                with self._lock:
                    coverage = self.coverage.setdefault(batch.shard, Coverage())
                    if batch.shard not in started:
                        started.add(batch.shard)
                        coverage.begin(None)
                    coverage.told(batch.progress)
                    self.runs.setdefault((batch.shard, number), []).append(batch)
        except Compacted as exc:
            self.ended.append(str(exc))
        except ConfmanError as exc:
            self.ended.append(str(exc))
            await asyncio.sleep(0.5)  # then a new watch: what failed is reported at the end
        finally:
            await watch.aclose()


def _is_register(key: str) -> bool:
    """The registers' keys: their written values are unique, so each told one names its write."""
    return key.startswith("reg")


def acknowledged_tops(history: History) -> dict[int | None, Version]:
    """Per shard, the newest version an acknowledged write of the history was given."""
    tops: dict[int | None, Version] = {}
    for op in history:
        acked = acknowledged_at(op)
        if acked is not None and op.shard is not None:
            tops[op.shard] = max(acked, tops.get(op.shard, acked))
    return tops
