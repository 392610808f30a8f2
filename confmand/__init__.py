"""Confman's daemon: one `confmand` process per host, replicating every shard it hosts with Raft.

`confmand.raft` (the Raft core) and `confmand.kv` (the config state machine) are pure: they do no
I/O, read no clock and draw no randomness of their own; the driver around them owns sockets,
timers and storage. `tests/unit/test_pure_boundary.py` enforces that line.
"""

from confmand import native as native  # first: it chooses compiled or pure hot modules (native/)

__version__ = "0.1.0"
