"""Guards that keep a run from destroying data: an output must never be, contain or sit inside
an input; two runs must never write the same output at once; what a killed run left behind is
cleaned by the next run on the same output.

Used by ``convert`` (an output file) and ``split`` (an OUTDIR). Paths are compared after
resolving symlinks, so ``-o link-to-input`` is caught too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class UnsafeOutput(Exception):
    """The output would overwrite, delete or mix with an input, or another run holds it."""


def _real(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(p))


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output(out: str | os.PathLike[str], inputs: Iterable[str], input_files: Iterable[str] = ()) -> None:
    """Refuse an output that equals an input, contains one (replacing OUTDIR would delete it),
    or lies inside an input directory (the next run would read it back). ``input_files`` are the
    files actually read (symlinked directories followed), checked too."""
    o = _real(out)
    for p in inputs:
        r = _real(p)
        if _within(r, o):
            what = "is" if r == o else "contains"
            raise UnsafeOutput(f"output {out} {what} the input {p}; writing it would destroy the input — "
                               "choose another output path")  # fmt: skip
        if r.is_dir() and _within(o, r):
            raise UnsafeOutput(f"output {out} is inside the input directory {p}; the next run would read it "
                               "back as input — choose a path outside it")  # fmt: skip
    real_dirs: dict[str, str] = {}
    o_str, o_prefix = str(o), os.path.join(str(o), "")
    for f in input_files:  # one realpath per directory (realpath is slow Python), an lstat per file
        d, name = os.path.split(f)
        rd = real_dirs.get(d)
        if rd is None:
            rd = real_dirs[d] = os.path.realpath(d or ".")
        real = os.path.realpath(f) if os.path.islink(f) else os.path.join(rd, name)
        if real == o_str or real.startswith(o_prefix):
            raise UnsafeOutput(f"output {out} contains the input file {f} (through a symlink); writing it "
                               "would destroy the input — choose another output path")  # fmt: skip


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def clean_stale(parent: str | os.PathLike[str], name: str) -> list[Path]:
    """Remove what killed runs on ``parent/name`` left: ``.NAME.partial-PID`` / ``.NAME.old-PID``
    directories and ``.NAME.PID.*.tmp`` files whose process is gone. Returns what was removed."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(?:(?:partial|old)-(\d+)|(\d+)\..*\.tmp)$")
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for e in entries:
        m = pattern.match(e.name)
        if not m:
            continue
        pid = int(m.group(1) or m.group(2))
        if pid == os.getpid() or pid_alive(pid):
            continue
        path = Path(e.path)
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(path)
    return removed


@contextmanager
def output_lock(out: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` for the run (``.NAME.lock`` beside it, ``flock``: the
    kernel drops it when the process dies, so a killed run never leaves a stale lock). A second
    run on the same output fails at once with :class:`UnsafeOutput`."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): run unlocked
        yield
        return
    dest = Path(out)
    lock = dest.parent / f".{dest.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = ""
                with contextlib.suppress(OSError, ValueError):
                    holder = f" (process {int(lock.read_text().strip())})"
                raise UnsafeOutput(f"another umidata run{holder} is writing {out}; wait for it to finish "
                                   f"(lock: {lock})") from None  # fmt: skip
            raise
        try:  # the lock file may have been removed by the run that just finished: lock the current one
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
