"""confctl's command groups, one module each: keys, txn, cluster (status and audit)."""
