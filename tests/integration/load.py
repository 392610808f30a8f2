"""Write load for real-process tests: writer threads that record what was acknowledged, and a reader.

`WriteStream` runs a few threads, each a session `Writer` putting its own
keys (`PREFIX/THREAD/NUMBER`) one after another until it has written
`writes_each` or `stop()` is called. Every put retries across nodes until
acknowledged or `timeout_s` passes: an acknowledged put lands in `acked` with
its value and version, one that timed out in `unknown` (its outcome is not
known), and a non-retryable error in `errors`. `read_all` lists what a node
holds under a prefix, linearizably, for the no-lost-write checks.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.integration.harness import Cluster, Reply, Writer, ok, wait_until


class WriteStream:
    def __init__(
        self,
        cluster: Cluster,
        threads: int,
        writes_each: int | None = None,
        prefix: str = "stream",
        timeout_s: float = 4.0,
    ) -> None:
        self.addresses = cluster.addresses()
        self.writes_each = writes_each
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.acked: dict[str, tuple[bytes, str]] = {}  # key -> (value, version)
        self.unknown: list[str] = []
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,)) for t in range(threads)]

    def start(self) -> WriteStream:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stopping.set()
        self.join(timeout_s)

    def join(self, timeout_s: float = 60.0) -> None:
        for thread in self.threads:
            thread.join(timeout=timeout_s)
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"writer threads still running after {timeout_s} s: {alive}"

    def count(self) -> int:
        with self.lock:
            return len(self.acked) + len(self.unknown)

    def wait_for_more(self, writes: int, timeout_s: float, what: str) -> None:
        """Until `writes` more puts than now have finished (acknowledged or not)."""
        target = self.count() + writes
        wait_until(lambda: self.count() >= target or None, timeout_s, what)

    def _run(self, thread: int) -> None:
        writer = Writer(self.addresses, attempt_s=0.5)
        try:
            number = 0
            while not self._stopping.is_set() and (self.writes_each is None or number < self.writes_each):
                key, value = f"{self.prefix}/{thread}/{number:05d}", f"{thread}-{number}".encode()
                reply = writer.put(key, value, timeout_s=self.timeout_s)
                with self.lock:
                    if reply is None:
                        self.unknown.append(key)
                    else:
                        self.acked[key] = (value, reply["version"])
                number += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(exc)
        finally:
            writer.close()


def read_all(cluster: Cluster, node_id: int, prefix: str) -> dict[str, Reply]:
    """Every key under `prefix`, by linearizable list pages from `node_id`."""
    items: dict[str, Reply] = {}
    after: str | None = None
    while True:
        request: dict[str, Any] = {"op": "list", "prefix": prefix, "limit": 1000}
        if after is not None:
            request["after"] = after
        page = ok(cluster.call(node_id, request), "list")
        items.update((item["key"], item) for item in page["items"])
        if not page["more"]:
            return items
        after = page["next"]


def lost_or_changed(stream: WriteStream, stored: dict[str, Reply]) -> list[str]:
    """The acknowledged keys that `stored` lacks or holds with another value or version."""
    return sorted(
        key
        for key, (value, version) in stream.acked.items()
        if key not in stored or (stored[key]["value"], stored[key]["version"]) != (value, version)
    )
