"""Inputs (and ``split`` outputs) named by URL — ``s3://``, ``gs://``, ``hdfs://``, ``file://``,
``memory://`` … — through fsspec's filesystems (``s3fs``, ``gcsfs``, pyarrow's HDFS, installed
by whoever needs them); a plain path stays a plain path and never goes through fsspec."""

from __future__ import annotations

import re
from typing import IO, Any

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: str) -> bool:
    return bool(_URL.match(path))


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path on it)``; raises ``OSError`` for a scheme no installed package
    serves (e.g. ``s3://`` without s3fs), with the package to install."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError, OSError) as e:  # HDFS without a JVM says so in 90 lines: keep the first
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise OSError(f"cannot open {url}: {first}") from e


def local_path(path: str) -> str | None:
    """The local path a plain path or ``file://`` URL names; None for any other URL."""
    if not is_url(path):
        return path
    if not path.startswith("file://"):
        return None
    return str(filesystem(path)[1])


def exists(path: str) -> bool:
    """Whether the input is there; raises ``OSError`` for a scheme no installed package serves."""
    import os

    if not is_url(path):
        return os.path.lexists(path)
    fs, p = filesystem(path)
    try:
        return bool(fs.exists(p))
    except OSError:
        return False


def url_of(fs: Any, path: str) -> str:
    """The URL of ``path`` on ``fs`` (``file:///abs``, ``s3://bucket/key``)."""
    return str(fs.unstrip_protocol(path))


def open_input(url: str) -> tuple[IO[bytes], int]:
    """A readable, seekable binary file for ``url`` and its size."""
    fs, p = filesystem(url)
    f = fs.open(p, "rb")
    try:
        size = int(getattr(f, "size", None) or fs.size(p) or 0)
    except OSError:
        size = 0
    return f, size


def list_files(url: str) -> tuple[list[tuple[str, int]], bool]:
    """``([(file URL, size)], is_dir)``: every file below a directory URL in name order, or the
    file itself."""
    fs, p = filesystem(url)
    if not fs.isdir(p):
        return [(url, int(fs.size(p) or 0))] if fs.exists(p) else [], False
    found = fs.find(p, detail=True)
    files = [(url_of(fs, k), int(v.get("size") or 0)) for k, v in sorted(found.items()) if v.get("type") != "directory"]
    return files, True


def overlaps(out: str, inp: str) -> bool:
    """Whether the output URL ``out`` is, holds or lies inside the input URL ``inp`` (same
    filesystem, by path): the URL form of the output guard, which has no symlinks to follow."""
    if not (is_url(out) and is_url(inp)) or local_path(out) is not None or local_path(inp) is not None:
        return False
    ofs, o = filesystem(out)
    ifs, i = filesystem(inp)
    o, i = o.rstrip("/"), i.rstrip("/")
    return bool(ofs.protocol == ifs.protocol and (o == i or f"{i}/".startswith(f"{o}/") or f"{o}/".startswith(f"{i}/")))
