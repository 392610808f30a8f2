"""The driver: everything that does I/O around the pure Raft core and state machine.

`node.Node` is one process's loop turn (sockets, clock, storage, replicas);
`replica.Replica` is one shard on the node; `requests` parses and checks
client frames; `run` is the asyncio shell with signals and systemd.
"""
