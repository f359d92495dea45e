"""Guards that keep a run from destroying data: an output must never be, contain or sit inside
an input; two runs must never write the same output at once; what a killed run left behind is
cleaned by the next run on the same output.

Used by ``convert`` (an output file), ``split`` (an OUTDIR) and ``umieval`` (prediction, run and
cases files, and every ``.rejects.jsonl`` sidecar): :func:`check_outputs` is the one rule for all the
files a command writes. Paths are compared after resolving symlinks, and an existing output file is
compared with the inputs by inode too, so ``-o link-to-input`` and a hard link to an input are caught.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
from collections.abc import Iterable, Iterator, Sequence
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
    files actually read (symlinked directories followed), checked too; an existing output with
    several names is compared with them by inode (a hard link to an input)."""
    o = _real(out)
    inputs = list(inputs)
    files = input_files if isinstance(input_files, list) else list(input_files)
    for p in inputs:
        r = _real(p)
        if _within(r, o):
            what = "is" if r == o else "contains"
            raise UnsafeOutput(f"output {out} {what} the input {p}; writing it would destroy the input — "
                               "choose another output path")
        if r.is_dir() and _within(o, r):
            raise UnsafeOutput(f"output {out} is inside the input directory {p}; the next run would read it "
                               "back as input — choose a path outside it")
    real_dirs: dict[str, str] = {}
    o_str, o_prefix = str(o), os.path.join(str(o), "")
    for f in files:  # one realpath per directory (realpath is slow Python), an lstat per file
        d, name = os.path.split(f)
        rd = real_dirs.get(d)
        if rd is None:
            rd = real_dirs[d] = os.path.realpath(d or ".")
        real = os.path.realpath(f) if os.path.islink(f) else os.path.join(rd, name)
        if real == o_str or real.startswith(o_prefix):
            raise UnsafeOutput(f"output {out} contains the input file {f} (through a symlink); writing it "
                               "would destroy the input — choose another output path")
    _check_hard_links(out, inputs, files)


def _check_hard_links(out: str | os.PathLike[str], inputs: Iterable[str], input_files: Iterable[str]) -> None:
    """An existing output file with more than one name may be an input under another name (a hard
    link: no path comparison can see it): compare inodes with every input."""
    try:
        ost = os.stat(out)
    except OSError:
        return
    if not stat.S_ISREG(ost.st_mode) or ost.st_nlink < 2:
        return
    for p in (*inputs, *input_files):
        with contextlib.suppress(OSError):
            st = os.stat(p)
            if (st.st_dev, st.st_ino) == (ost.st_dev, ost.st_ino):
                raise UnsafeOutput(f"output {out} is the input {p} (a hard link to the same file); writing it "
                                   "would destroy the input — choose another output path")


def check_outputs(
    outputs: Sequence[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str]],
    input_files: Iterable[str] = (), *, may_exist: Iterable[str | os.PathLike[str]] = (),
    overwrite_flag: str = "--overwrite",
) -> None:
    """The one output-safety rule for every file a command will write, checked before any of them
    is opened: each output is not, does not hold and does not lie inside an input
    (:func:`check_output`, symlinks and hard links resolved); no two outputs are the same file
    (same path after symlinks, or same inode); and an output that exists already is refused unless
    it is in ``may_exist`` (what the command resumes, or replaces because ``--overwrite`` was
    given), so a file nobody asked to replace is never replaced."""
    ins = [os.fspath(p) for p in inputs]
    files = list(input_files)
    for o in outputs:
        check_output(o, ins, files)
    seen: dict[object, tuple[int, str]] = {}
    names = [os.fspath(o) for o in outputs]
    for i, o in enumerate(names):  # by position: the same name given twice is the same file too
        keys: list[object] = [os.path.realpath(o)]
        with contextlib.suppress(OSError):
            st = os.stat(o)
            keys.append((st.st_dev, st.st_ino))
        for k in keys:
            if k in seen and seen[k][0] != i:
                if seen[k][1] == o:  # e.g. `-o lf/dataset_info.json --to sharegpt`: the output is its own sidecar
                    raise UnsafeOutput(f"{o} would be written twice by this command (as the output and as a file "
                                       "written beside it, which are the same file) — choose another output path")
                raise UnsafeOutput(f"outputs {seen[k][1]} and {o} are the same file; this command writes both — "
                                   "choose another output path")
            seen[k] = (i, o)
    allowed = {os.path.abspath(os.fspath(p)) for p in may_exist}
    for o in names:
        if os.path.lexists(o) and os.path.abspath(o) not in allowed:
            raise UnsafeOutput(f"{o} already exists; pass {overwrite_flag} to replace it, or choose another output")


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
def output_lock(out: str | os.PathLike[str], program: str = "umidata") -> Iterator[None]:
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
                raise UnsafeOutput(f"another {program} run{holder} is writing {out}; wait for it to finish "
                                   f"(lock: {lock})") from None
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
