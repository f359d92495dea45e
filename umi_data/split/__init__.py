"""umidata split: sharded streaming over worker processes, Parquet shards, manifest and card; stats
of a split."""
