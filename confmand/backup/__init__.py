"""Backups: a consistent copy of every shard in one checksummed file, and a new cluster seeded from it.

- `shard_export`: what a shard's leader answers to a `backup` read (its state, what it owns).
- `archive`: the file: its format, writing it, and reading it back with every check.
- `collect`: asking every shard's leader, until the copies agree with one shard map.
- `restore`: a new node's data dir seeded from a file (`confmand restore`).

docs/deploy.md, *Back up and restore*, is the operator's side.
"""
