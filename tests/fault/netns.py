"""Network namespaces for fault runs whose nodes talk to each other directly (root only).

The proxy of `tests.fault.proxy` keeps its own TCP connections to each node,
so it hides what the real network does to ZeroMQ's sockets (a reset, a
half-closed connection, a full receive window). A `NetnsLab` gives every
node a network namespace of its own, with one veth into a hub namespace
whose bridge joins them all: nodes reach each other at `address(node)`,
straight through the kernel. The hub namespace has an address on the bridge
too, so a driver running in it (`exec_prefix(lab.hub)`) reaches every node.
`cut`/`heal` partition the nodes with nftables rules in their namespaces.

Invariants:
- Every name starts with `confman-<tag>-`, where the tag is unique to the
  lab; `close()` deletes every namespace the lab made (deleting a namespace
  deletes its veth end, and a veth dies with either end) and is idempotent.
  Processes started in a namespace must be stopped before `close()`.
- Nothing here touches the root namespace's network: every address lives in
  a namespace this lab created.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence

SUBNET = "10.231.0"  # only ever inside this lab's own namespaces
HUB_HOST = 254
NFT_TABLE = "confman_fault"


_EMPTY_TABLE = f"table inet {NFT_TABLE} {{\n chain input {{\n  type filter hook input priority 0;\n }}\n}}\n"


class NetnsUnavailable(RuntimeError):
    """This machine or user cannot make network namespaces; the message says why."""


def unavailable_reason() -> str | None:
    """Why a `NetnsLab` cannot be made here, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (Debian: apt-get install iproute2 nftables)"
    probe = f"confman-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _run(*args: str, stdin: str | None = None) -> None:
    done = subprocess.run(list(args), input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetnsUnavailable(f"{' '.join(args)} failed: {done.stderr.strip()}")


class NetnsLab:
    """`size` node namespaces and a hub namespace joined by a bridge; a context manager."""

    def __init__(self, node_ids: Sequence[int], tag: str | None = None) -> None:
        if not node_ids or any(not 1 <= n < HUB_HOST for n in node_ids):
            raise ValueError(f"node ids must be in 1..{HUB_HOST - 1}: {node_ids}")
        self.node_ids = tuple(node_ids)
        self.tag = tag or str(os.getpid())
        self._made: list[str] = []
        self._cuts: set[tuple[int, int]] = set()

    @property
    def hub(self) -> str:
        return f"confman-{self.tag}-hub"

    def namespace(self, node_id: int) -> str:
        return f"confman-{self.tag}-n{node_id}"

    @staticmethod
    def address(node_id: int) -> str:
        return f"{SUBNET}.{node_id}"

    @staticmethod
    def hub_address() -> str:
        return f"{SUBNET}.{HUB_HOST}"

    @staticmethod
    def exec_prefix(namespace: str) -> list[str]:
        """Put before a command to run it in `namespace` (`ip netns exec` execs: the PID is the command's)."""
        return ["ip", "netns", "exec", namespace]

    # ---------------------------------------------------------------- lifetime

    def __enter__(self) -> NetnsLab:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise NetnsUnavailable(reason)
        self._add_namespace(self.hub)
        _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.hub, "addr", "add", f"{self.hub_address()}/24", "dev", "br0")
        _run("ip", "-n", self.hub, "link", "set", "br0", "up")
        for node_id in self.node_ids:
            ns = self.namespace(node_id)
            self._add_namespace(ns)
            hub_end = f"h{node_id}"
            _run(
                "ip",
                "-n",
                self.hub,
                "link",
                "add",
                hub_end,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            _run("ip", "-n", self.hub, "link", "set", hub_end, "master", "br0", "up")
            _run("ip", "-n", ns, "addr", "add", f"{self.address(node_id)}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            # One table per node namespace, empty until a cut: `heal` flushes its chain.
            _run("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=_EMPTY_TABLE)

    def _add_namespace(self, ns: str) -> None:
        _run("ip", "netns", "add", ns)
        self._made.append(ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")

    def close(self) -> None:
        """Delete every namespace this lab made (their veths and rules go with them); idempotent."""
        while self._made:
            ns = self._made.pop()
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._cuts.clear()

    def namespaces(self) -> list[str]:
        """The namespaces of this lab that exist now (for leak checks)."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        prefix = f"confman-{self.tag}-"
        return [line.split()[0] for line in listed.splitlines() if line.startswith(prefix)]

    # ---------------------------------------------------------------- partitions

    def cut(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Drop every packet from `a` to `b` for each `(a, b)`, in `b`'s namespace; other cuts stay."""
        for source, target in pairs:
            if (source, target) in self._cuts:
                continue
            _run(
                "ip", "netns", "exec", self.namespace(target), "nft", "add", "rule", "inet", NFT_TABLE,
                "input", "ip", "saddr", self.address(source), "drop",
            )  # fmt: skip
            self._cuts.add((source, target))

    def heal(self) -> None:
        """Every cut gone."""
        for node_id in {target for _, target in self._cuts}:
            _run(
                "ip",
                "netns",
                "exec",
                self.namespace(node_id),
                "nft",
                "flush",
                "chain",
                "inet",
                NFT_TABLE,
                "input",
            )
        self._cuts.clear()

    def cuts(self) -> list[tuple[int, int]]:
        return sorted(self._cuts)
