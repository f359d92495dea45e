"""Writers: atomic, deterministic output files.

Every file is written to a temporary file in the destination's directory, flushed and fsynced,
then moved into place with ``os.replace``; on an exception (Ctrl-C included) the temporary file
is removed and the destination is left as it was. Writers keep the key order their inputs give
(``Trajectory.to_dict`` is deterministic), so the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import textwrap
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from umi_data.output.guard import clean_stale
from umi_data.trajectory import Trajectory


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (after fsync),
    on any exception it is removed. Parent directories are created."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(dest.parent, dest.name)  # temporary files of killed runs (their pid is gone)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, dest)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if e.filename is None:  # a failed write() names no file: say which output it was
            raise OSError(e.errno, e.strerror or str(e), str(dest)) from e
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """One compact JSON value per line (orjson, key order kept; ``bytes`` rows are written as
    they are, already serialised); returns the number of rows."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for row in rows:
            f.write((row if isinstance(row, bytes) else orjson.dumps(row)) + b"\n")
            n += 1
    return n


def write_json_array(path: str | os.PathLike[str], blobs: Iterable[bytes]) -> int:
    """Serialised JSON values as one JSON array, one value per line; returns the count."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for blob in blobs:
            f.write(b",\n" if n else b"[\n")
            f.write(blob)
            n += 1
        f.write(b"\n]\n" if n else b"[]\n")
    return n


def write_json_list(path: str | os.PathLike[str], items: Iterable[Any]) -> int:
    """A JSON list written item by item, formatted like Python's ``json.dump(items, f,
    indent=2)`` (the layout of α-UMi's ``raw_data_stage_2.json``); returns the item count."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("[")
        for item in items:
            f.write(",\n" if n else "\n")
            f.write(textwrap.indent(json.dumps(item, indent=2), "  "))
            n += 1
        f.write("\n]" if n else "]")
    return n


def trajectory_rows(trajectories: Iterable[Trajectory]) -> Iterator[dict[str, Any]]:
    for t in trajectories:
        yield t.to_dict()


PARQUET_COLUMNS = ("id", "source_format", "outcome", "trajectory")


def write_trajectories_parquet(
    path: str | os.PathLike[str], trajectories: Iterable[Trajectory], batch_rows: int = 1024
) -> int:
    """One row per trajectory: ``id``, ``source_format``, ``outcome``, ``trajectory`` (the
    canonical JSON text, as the JSONL writer writes it). Written in row groups of
    ``batch_rows`` so memory stays bounded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.string()) for c in PARQUET_COLUMNS])
    n = 0
    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(str(tmp), schema)
        try:
            batch: dict[str, list[str]] = {c: [] for c in PARQUET_COLUMNS}

            def flush() -> None:
                if batch["id"]:
                    writer.write_table(pa.table(batch, schema=schema))
                    for v in batch.values():
                        v.clear()

            for t in trajectories:
                batch["id"].append(t.id)
                batch["source_format"].append(t.source.format)
                batch["outcome"].append(t.outcome)
                batch["trajectory"].append(orjson.dumps(t.to_dict()).decode())
                n += 1
                if len(batch["id"]) >= batch_rows:
                    flush()
            flush()
        finally:
            writer.close()
    return n


def rejects_path(out: str | os.PathLike[str]) -> Path:
    """``<dir>/<stem>.rejects.jsonl`` beside an output file (``t.jsonl`` → ``t.rejects.jsonl``)."""
    p = Path(out)
    return p.with_name(f"{p.stem}.rejects.jsonl")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (the manifest's shard digests, which
    umitrain checks before training)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
