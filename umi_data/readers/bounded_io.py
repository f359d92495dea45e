"""Opening and reading inputs safely: only regular files, and never more bytes than a limit.

A FIFO, device or socket found under an input directory (or given by name, or reached through a
symlink such as ``zero.json -> /dev/zero``) would hang a reader or feed it without end; such a
path is refused *before* it is opened. Reads go chunk by chunk against a running limit, because
``st_size`` says nothing for special files (0 for ``/dev/zero``) or files that grow while read.
"""

from __future__ import annotations

import os
import stat
from typing import IO, BinaryIO

_CHUNK = 1 << 20


class NotRegularFile(OSError):
    """The path is not a regular file (a FIFO, device, socket, directory): it is not read.
    ``mode`` is its ``st_mode``, for callers that word the refusal their own way."""

    mode: int = 0


class ReadLimitExceeded(ValueError):
    """More bytes than the limit: ``read`` is how many had been read when the read stopped."""

    def __init__(self, read: int, limit: int) -> None:
        super().__init__(f"over {limit} bytes")
        self.read, self.limit = read, limit


def kind_of(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words."""
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "a special file"


def _refuse(path: str | os.PathLike[str], mode: int) -> NotRegularFile:
    e = NotRegularFile(f"{os.fspath(path)} is {kind_of(mode)}, not a regular file; only regular files are read")
    e.mode = mode
    return e


def check_regular(path: str | os.PathLike[str]) -> None:
    """Raise :class:`NotRegularFile` unless ``path`` (symlinks followed) is a regular file; an
    ``OSError`` when it cannot be looked at. Never opens it."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, st.st_mode)


def open_regular(path: str | os.PathLike[str], buffering: int = -1) -> BinaryIO:
    """``open(path, "rb", buffering)`` for a regular file only. Checked before opening (a FIFO is never
    opened, so its writer side is never disturbed) and again on the open descriptor, which is
    opened non-blocking so that a file swapped for a FIFO in between cannot hang the open."""
    check_regular(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, st.st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def read_limited(f: IO[bytes], limit: int) -> bytes:
    """Everything ``f`` holds, read in chunks; :class:`ReadLimitExceeded` as soon as it gives
    more than ``limit`` bytes (whatever its size claimed)."""
    buf = bytearray()
    while chunk := f.read(min(_CHUNK, limit + 1 - len(buf))):
        buf += chunk
        if len(buf) > limit:
            raise ReadLimitExceeded(len(buf), limit)
    return bytes(buf)


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (see above)."""
    with open_regular(path) as f:
        return read_limited(f, limit)
