"""Writers for ``umidata split``: Parquet shards per role and split, streamed row group by row
group so memory stays bounded by the row-group size, not by the corpus.

Each worker writes whole shards (a shard is a fixed group of input units), so compression runs
in parallel and the bytes of a shard do not depend on the worker count. The pipeline renames
them ``<split>-NNNNN-of-MMMMM.parquet`` once the count is known, which is what
``datasets.load_dataset("parquet", data_dir=...)`` expects (``dev`` maps to its validation
split), all inside a staging directory that replaces OUTDIR at the end.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

EXAMPLE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("turn", pa.int32(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("completion", pa.string(), nullable=False),
        pa.field("decision", pa.string(), nullable=True),
        pa.field("source", pa.string(), nullable=False),
    ],
    metadata={"umi.schema": "role-example/v1"},
)
COLUMNS = tuple(EXAMPLE_SCHEMA.names)
# `--template chat` rows (``umi_data.render.chat``): each message and the tool list are Arrow JSON, so a
# message holds only its own keys and call arguments stay JSON objects whatever their shape;
# 🤗 datasets decodes them to Python dicts (its ``Json`` feature), ready for a chat template.
CHAT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("step", pa.int32(), nullable=True),
        pa.field("turn", pa.int32(), nullable=True),
        pa.field("messages", pa.list_(pa.json_()), nullable=False),
        pa.field("tools", pa.json_(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ],
    metadata={"umi.schema": "chat-example/v1"},
)
# Long, repetitive prompts (every example repeats tool docs and history): zstd over large pages
# is what makes the output a fraction of the original JSON.
_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": ["role", "decision"],  # only columns present are used
    "data_page_size": 4 << 20,
    "write_statistics": ["step", "turn"],
}


class ShardWriter:
    """Rows of one (role, split, shard) → one Parquet file, written row group by row group.

    A row group is flushed every ``row_group_bytes`` of text, so memory stays bounded whatever
    the shard size; nothing is created until the first row arrives."""

    def __init__(self, path: str, row_group_bytes: int = 16 << 20, schema: pa.Schema = EXAMPLE_SCHEMA) -> None:
        self.path = path
        self.row_group_bytes = row_group_bytes
        self.schema = schema
        self.columns = tuple(schema.names)
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._buffer: dict[str, list[Any]] = {c: [] for c in self.columns}
        self._bytes = 0

    def add(self, row: dict[str, Any]) -> None:
        for c in self.columns:
            self._buffer[c].append(row[c])
        self.rows += 1
        if "prompt" in row:
            self._bytes += len(row["prompt"]) + len(row["completion"])
        else:
            self._bytes += sum(map(len, row["messages"])) + len(row["tools"])
        if self._bytes >= self.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer["id"]:
            return
        if self._writer is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, self.schema, **_WRITE_OPTIONS)
        table = pa.Table.from_pydict(self._buffer, schema=storage_schema(self.schema)).cast(self.schema)
        self._writer.write_table(table, row_group_size=len(self._buffer["id"]))
        self._buffer = {c: [] for c in self.columns}
        self._bytes = 0

    def close(self) -> int:
        """Flush and close; returns the number of rows written (0: no file was created)."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.rows


def storage_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every extension type (Arrow JSON) replaced by its storage type (text):
    pyarrow builds arrays from Python values only for plain types, then casts."""

    def plain(t: pa.DataType) -> pa.DataType:
        if isinstance(t, pa.BaseExtensionType):
            return t.storage_type
        if pa.types.is_list(t):
            return pa.list_(plain(t.value_type))
        return t

    return pa.schema([f.with_type(plain(f.type)) for f in schema], metadata=schema.metadata)


def drop_rows(path: str, keys: set[tuple[str, str]]) -> int:
    """Rewrite a shard without the rows whose ``(trajectory_id, source)`` is in ``keys`` (used
    for the rare duplicate found after its shard was written); returns the rows left."""
    meta = pq.read_schema(path).metadata or {}
    schema = CHAT_SCHEMA if meta.get(b"umi.schema") == b"chat-example/v1" else EXAMPLE_SCHEMA
    table = pq.read_table(path, schema=schema)
    ids = table.column("trajectory_id").to_pylist()
    sources = table.column("source").to_pylist()
    keep = pa.array([(i, s) not in keys for i, s in zip(ids, sources, strict=True)])
    table = table.filter(keep)
    os.remove(path)
    if table.num_rows:
        with pq.ParquetWriter(path, schema, **_WRITE_OPTIONS) as w:
            for batch in table.to_batches(max_chunksize=2_000):
                w.write_table(pa.Table.from_batches([batch], schema=schema))
    return table.num_rows


def unreadable_shard(paths: list[Path] | list[str]) -> str | None:
    """``"<file>: not a readable Parquet file (<reason>)"`` for the first file pyarrow cannot read
    in full, else None. For the error path only: polars' and datasets' own errors (a ZSTD or
    footer error) do not say which file they came from."""
    for path in paths:
        try:
            for _ in pq.ParquetFile(path).iter_batches(batch_size=2_000):
                pass
        except Exception as e:  # pyarrow raises OSError, ArrowInvalid, ArrowException …
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return f"{path}: not a readable Parquet file ({reason})"
    return None
