"""Node storage on LevelDB (plyvel): every shard's Raft log, hard state, snapshots and
state-machine records in one DB per node (see docs/storage.md).

`NodeStorage.open(path, cluster_id, node_id)` checks or creates the data dir;
`NodeStorage.shard(id)` gives a `ShardStorage`, which holds what the Raft
core's `Storage` reads (confmand/server/snapshot_source.py) and is the state
machine's `KVStore` for that shard, and stages the shard's changes into a
node-wide `WriteBatch`; `NodeStorage.write(batch,
sync)` is the one write.
"""

from confmand.storage.batch import WriteBatch
from confmand.storage.errors import DataDirError, StorageError, StorageFullError, StorageUsageError
from confmand.storage.loading import FORMAT_VERSION
from confmand.storage.node_storage import NodeStorage
from confmand.storage.shard_storage import ShardStorage

__all__ = [
    "FORMAT_VERSION",
    "DataDirError",
    "NodeStorage",
    "ShardStorage",
    "StorageError",
    "StorageFullError",
    "StorageUsageError",
    "WriteBatch",
]
