"""Backups: a consistent copy of every shard in one checksummed file, and a new cluster seeded from it.

- `shard_export`: what a shard's leader answers to a `backup` read (its state, what it owns).
- `restore`: a new node's data dir seeded from a file (`confmand restore`).

The file itself and the collecting, which confctl does too, are the protocol's:
confmand/protocol/backup_file.py and confmand/protocol/backup_collect.py.

docs/deploy.md, *Back up and restore*, is the operator's side.
"""
