"""Writers: atomic, deterministic output files.

Every file is written to a temporary file in the destination's directory, flushed and fsynced,
then moved into place with ``os.replace`` and its directory fsynced (so the rename itself survives
a crash); on an exception (Ctrl-C included) the temporary file is removed and the destination is
left as it was. Writers keep the key order their inputs give (``Trajectory.to_dict`` is
deterministic), so the same inputs give the same bytes. These are the only file writers of the
three packages: umi_train and umi_eval write through them too. The one exception to whole-file
writes is :class:`JsonlAppender`, for files that grow while a run goes and are resumed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import textwrap
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from umi_data.output.guard import clean_stale
from umi_data.trajectory import Trajectory


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (the file fsynced
    before, its directory after), on any exception it is removed. Parent directories are created."""
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
        fsync_dir(dest.parent)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if e.filename is None:  # a failed write() names no file: say which output it was
            raise OSError(e.errno, e.strerror or str(e), str(dest)) from e
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (a rename into it) to disk; a filesystem that cannot fsync a
    directory (``EINVAL``) is left as it is."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> None:
    """The whole file at once (``str`` as UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """One compact JSON value per line (orjson, key order kept; ``bytes`` rows are written as
    they are, already serialised); returns the number of rows."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for row in rows:
            f.write((row if isinstance(row, bytes) else orjson.dumps(row)) + b"\n")
            n += 1
    return n


def write_json_list(path: str | os.PathLike[str], items: Iterable[Any], indent: int | None = None) -> int:
    """A JSON list written item by item, one item per line; returns the item count.

    ``indent=None``: compact items (orjson, key order kept; ``bytes`` items are written as they
    are, already serialised) and a final newline — umi's ``.json`` outputs. ``indent=N``: laid out
    exactly like Python's ``json.dump(items, f, indent=N)``, no final newline (the layout of
    α-UMi's ``raw_data_stage_2.json``)."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(b"[")
        for item in items:
            f.write(b",\n" if n else b"\n")
            if indent is not None:
                f.write(textwrap.indent(json.dumps(item, indent=indent), " " * indent).encode("utf-8"))
            else:
                f.write(item if isinstance(item, bytes) else orjson.dumps(item))
            n += 1
        f.write(b"\n]" if n else b"]")
        if indent is None:
            f.write(b"\n")
    return n


class JsonlAppender:
    """JSON lines appended to a file that grows while a run goes (umieval's run, prediction and
    judge-cache files), the one exception to whole-file writes: each :meth:`write_rows` is one
    ``os.write`` of whole lines, then fsynced, so a crash leaves at most one torn last line (its
    reader cuts it off on the next open); a failed or short write (disk full) is cut back at once
    and raises, so later lines never continue a partial one. Thread-safe; rows written after
    :meth:`close` (a Ctrl-C) are dropped. ``truncate``: start the file empty."""

    def __init__(self, path: str | os.PathLike[str], mode: int = 0o666, truncate: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self.fd: int | None = os.open(self.path, flags, mode)
        self.lock = threading.Lock()

    def write(self, row: Any) -> None:
        """One row (a value, or ``bytes`` already serialised)."""
        self.write_rows((row,))

    def write_rows(self, rows: Iterable[Any]) -> None:
        data = b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in rows)
        if not data:
            return
        with self.lock:
            if self.fd is None:
                return
            size = os.fstat(self.fd).st_size
            try:
                n = os.write(self.fd, data)
                if n != len(data):
                    raise OSError(f"short write to {self.path} ({n} of {len(data)} bytes)")
                os.fsync(self.fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, size)
                raise

    def close(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


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
