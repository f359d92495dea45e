"""Input files → bytes: directory and zip expansion into units, bounded reads (record size,
decompression ratio), ``.gz`` / ``.zst``, byte-order marks and encodings, JSON error text,
duplicate keys.

Inputs are expanded into *units* (a file, or one member of a zip archive) so that work can be
spread over processes unit by unit. A unit that cannot be read becomes a located reject, never a
skipped input.
"""

from __future__ import annotations

import codecs
import os
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from umi_data.readers import urls
from umi_data.readers.base import NO_CONFIG, ReaderConfig
from umi_data.readers.bounded_io import NotRegularFile, ReadLimitExceeded, check_regular, open_regular, read_limited
from umi_data.trajectory import Source, Trajectory
from umi_data.trajectory.findings import Finding

# Suffixes read below a directory or inside a zip (case-insensitive); ``.gz`` / ``.zst`` may follow
# any of the first four. A file given by name is read whatever its suffix (as JSON by default).
INPUT_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet", ".zip")
COMPRESSIONS = (".gz", ".zst")
_KINDS = ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".parquet", "parquet"))


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """Bounds that keep one hostile input from exhausting memory, and the optional slower checks.

    ``max_record_bytes``: a JSON file, a JSONL line, or anything decompressed (a zip member, a
    ``.gz``/``.zst`` file) may be at most this large (a plain JSONL or Parquet file may be larger:
    it holds many records); ``max_ratio``: a compressed input may expand
    to at most this many times its compressed size once past ``ratio_floor`` bytes (a zip bomb is
    refused from its header, before anything is inflated); ``duplicate_keys``: look for repeated
    JSON object keys (a second parse with Python's json, ~3× orjson's time); ``config``: the
    readers' settings (``--dataset-info``, ``--tools``), carried with the bounds to every worker."""

    max_record_bytes: int = 1 << 30
    max_ratio: float = 100.0
    ratio_floor: int = 16 << 20
    duplicate_keys: bool = True
    config: ReaderConfig = NO_CONFIG


DEFAULT_READ = ReadOptions()


@dataclass(slots=True)
class Record:
    """One input record: accepted when ``trajectory`` is set; ``findings`` explain the rest."""

    source: Source
    trajectory: Trajectory | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.trajectory is not None


@dataclass(frozen=True, slots=True)
class Unit:
    """A file, or a member of a zip archive (``member``), read as a whole by one worker.

    ``problem`` — ``(code, message)`` — marks an input path that yields no bytes to read (an
    unreadable or empty directory, a broken archive): it becomes one located reject, so no input
    path is ever skipped silently."""

    path: str
    member: str | None = None
    size: int = 0  # bytes, as listed when the input was expanded (0 when unknown)
    problem: tuple[str, str] | None = None

    @property
    def name(self) -> PurePath:
        """The unit's file name as a path (the member's, in an archive): what ids are made of."""
        return PurePosixPath(self.member) if self.member else Path(self.path)


def input_kind(name: str) -> tuple[str | None, str | None]:
    """``(kind, compression)`` from a file name, case-insensitively: kind ``json`` / ``jsonl``
    (also ``.ndjson``) / ``parquet`` / ``zip`` or None; compression ``gz`` / ``zst`` or None."""
    n = name.lower()
    comp = next((c[1:] for c in COMPRESSIONS if n.endswith(c)), None)
    if comp:
        n = n[: -len(comp) - 1]
    elif n.endswith(".zip"):
        return "zip", None
    return next((k for suffix, k in _KINDS if n.endswith(suffix)), None), comp


def _readable(name: str) -> bool:
    return input_kind(name)[0] is not None


def _is_answer_member(name: str) -> bool:
    p = PurePosixPath(name)  # BFCL's possible_answer/ is not a ToolBench answer folder
    return p.suffix.lower() == ".json" and p.parent.name.endswith("_answer") and p.parent.name != "possible_answer"


def _zip_units(path: str) -> list[Unit]:
    """The members of a zip archive worth reading. An archive holding ToolBench ``*_answer/``
    folders is ToolBench's ``data.zip``: only those folders hold trajectories (the rest are tool
    and query definitions, GBs of them). Any other archive: every readable member
    (``__MACOSX/`` resource forks aside)."""
    try:
        if not urls.is_url(path):
            check_regular(path)
    except NotRegularFile as e:
        return [Unit(path, None, 0, ("not_a_file", str(e)))]
    except OSError as e:
        return [Unit(path, None, 0, ("io_error", f"cannot read: {e.strerror or e}"))]
    try:
        infos = [i for i in archive(path).infolist() if not i.is_dir()]
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as e:
        return [Unit(path, None, _file_size(path), ("io_error", f"corrupt or truncated zip archive: {e}"))]
    infos.sort(key=lambda i: i.filename)
    answers = [i for i in infos if _is_answer_member(i.filename)]
    chosen = answers or [i for i in infos if _readable(i.filename) and input_kind(i.filename)[0] != "zip"
                         and not i.filename.startswith("__MACOSX/")]
    if not chosen:
        return [Unit(path, None, _file_size(path), ("no_input", f"the archive holds {len(infos)} file(s), none "
                     f"readable ({', '.join(INPUT_SUFFIXES[:-1])}, optionally .gz/.zst)"))]
    return [Unit(path, i.filename, i.file_size) for i in chosen]


def _walk(top: str) -> tuple[list[str], list[Unit], int]:
    """Files below ``top`` (symlinked directories followed, each real directory once, so a link
    loop ends), the units for directories that cannot be listed, and how many files were seen."""
    files: list[str] = []
    problems: list[Unit] = []
    seen_dirs: set[tuple[int, int]] = set()
    n_seen = 0

    def unreadable(e: OSError) -> None:
        problems.append(Unit(str(e.filename or top), None, 0,
                             ("io_error", f"cannot list directory: {e.strerror or e}")))

    for root, dirs, names in os.walk(top, onerror=unreadable, followlinks=True):
        try:
            st = os.stat(root)
        except OSError as e:
            unreadable(e)
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink back to a directory already read
            dirs[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirs.sort()
        n_seen += len(names)
        files.extend(os.path.join(root, f) for f in names if _readable(f))
    return sorted(files), problems, n_seen


def expand(paths: Iterable[str | os.PathLike[str]]) -> list[Unit]:
    """Every input path → units, in a stable order: files below directories (by suffix,
    case-insensitive, symlinks followed loop-proof), zip members (an archive given by name or
    found in a directory), and files given by name. A path that yields nothing readable (missing,
    unlistable, empty, a broken archive) still becomes a unit carrying its ``problem``, so it is
    reported where it is."""
    units: list[Unit] = []
    for p in map(str, paths):
        if urls.is_url(p):
            units.extend(_expand_url(p))
        elif os.path.isdir(p):
            files, problems, n_seen = _walk(p)
            found: list[Unit] = []
            for f in files:
                if input_kind(f)[0] == "zip":
                    found.extend(_zip_units(f))
                else:
                    found.append(Unit(f, None, _file_size(f)))
            if not found and not problems:
                what = f"holds {n_seen} file(s), none readable" if n_seen else "is empty"
                found.append(Unit(p, None, 0, ("no_input", f"the directory {what} (readable: "
                                               f"{', '.join(INPUT_SUFFIXES)}, optionally .gz/.zst)")))
            units.extend(sorted(found + problems, key=lambda u: (u.path, u.member or "")))
        elif input_kind(p)[0] == "zip" and os.path.isfile(p):
            units.extend(_zip_units(p))
        else:
            units.append(Unit(p, None, _file_size(p)))
    return units


def _expand_url(url: str) -> list[Unit]:
    """:func:`expand` for a URL: the readable files below a directory (a prefix on an object
    store), by name, or the file; zip archives by member."""
    try:
        files, is_dir = urls.list_files(url)
    except OSError as e:
        return [Unit(url, None, 0, ("io_error", f"cannot list: {e.strerror or e}"))]
    if not files and not is_dir:
        return [Unit(url, None, 0, ("io_error", "cannot read: no such file or directory"))]
    found: list[Unit] = []
    for f, size in files:
        if is_dir and not _readable(f):
            continue
        found.extend(_zip_units(f) if input_kind(f)[0] == "zip" else [Unit(f, None, size)])
    if not found:
        what = f"holds {len(files)} file(s), none readable" if files else "is empty"
        found.append(Unit(url, None, 0, ("no_input", f"the directory {what} (readable: "
                                         f"{', '.join(INPUT_SUFFIXES)}, optionally .gz/.zst)")))
    return found


def _file_size(path: str) -> int:
    try:
        if urls.is_url(path):
            fs, p = urls.filesystem(path)
            return int(fs.size(p) or 0)
        return os.path.getsize(path)
    except OSError:
        return 0


_ARCHIVES: dict[tuple[int, str], zipfile.ZipFile] = {}


def archive(path: str) -> zipfile.ZipFile:
    """One open ZipFile per archive *and process*: opening parses the whole central directory
    (ToolBench's data.zip lists ~190k members), so re-opening it per member would make reading
    quadratic; the pid in the key keeps forked workers from sharing a file offset."""
    key = (os.getpid(), path if urls.is_url(path) else os.path.abspath(path))
    zf = _ARCHIVES.get(key)
    if zf is None:
        # never a FIFO or device: zipfile would block or read without end
        f = urls.open_input(path)[0] if urls.is_url(path) else open_regular(path)
        try:
            zf = zipfile.ZipFile(f)
        except BaseException:
            f.close()
            raise
        _ARCHIVES[key] = zf
    return zf


def decode_error(data: bytes, err: Exception, one_line: bool = False) -> tuple[str, str]:
    """(code, message) for bytes that failed to parse: nesting depth, encoding, then JSON
    syntax. ``one_line``: the bytes are one JSONL line, whose number the source already gives."""
    if "depth limit" in str(err) or "ecursion" in str(err):
        return "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels ({err})"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as u:
        line = data.count(b"\n", 0, u.start) + 1
        col = u.start - (data.rfind(b"\n", 0, u.start) + 1) + 1
        where = f"column {col}" if one_line else f"line {line}, column {col}"
        return "encoding", f"invalid UTF-8 byte 0x{data[u.start]:02x} ({where})"
    if not text.strip():
        return "empty_input", "empty text where a JSON value was expected"
    import json  # the standard library gives precise positions for syntax errors

    try:
        json.loads(text)
    except json.JSONDecodeError as j:
        where = f"column {j.colno}" if one_line else f"line {j.lineno}, column {j.colno}"
        return "json_syntax", f"{j.msg} ({where})"
    except RecursionError:
        return "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels"
    return "json_syntax", str(err)


MAX_DEPTH = 1024  # orjson's parse limit; deeper input is rejected as too_deep
_CHUNK = 1 << 20
_UTF16 = ("looks like UTF-16{} without a byte-order mark; convert it to UTF-8, e.g. "
          "`iconv -f UTF-16{} -t UTF-8 IN > OUT`")


class Refused(Exception):
    """A unit that is not read, with the (code, message) finding that says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return ""


def _inflate(read: Callable[[int], bytes], compressed: int, what: str, opts: ReadOptions) -> bytes:
    """Read a decompressing stream chunk by chunk, refusing it as soon as it grows past
    ``max_record_bytes`` or ``max_ratio`` × its compressed size, so a bomb costs at most that
    much memory."""
    limit = opts.max_record_bytes
    if compressed and opts.max_ratio:
        limit = min(limit, max(opts.ratio_floor, int(compressed * opts.max_ratio)))
    buf = bytearray()
    while chunk := read(_CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise Refused("too_large", too_large(what, len(buf), compressed, opts, streaming=True))
    return bytes(buf)


def too_large(what: str, size: int, compressed: int, opts: ReadOptions, streaming: bool = False) -> str:
    more = "over" if not streaming else "already over"
    if size > opts.max_record_bytes:
        return (f"{what} is {more} {_size(opts.max_record_bytes)} (size {_size(size)}); raise "
                "--max-record-bytes to read it")
    return (f"{what} expands {more} {opts.max_ratio:g}× its compressed size ({_size(compressed)} → "
            f"{_size(size)}): a decompression bomb? raise --max-ratio to read it")


def _read_bytes(unit: Unit, opts: ReadOptions) -> bytes:
    if unit.problem is not None:
        raise Refused(*unit.problem)
    kind, comp = input_kind(unit.member or unit.path)
    if unit.member is not None:
        zf = archive(unit.path)
        info = zf.getinfo(unit.member)
        declared, packed = info.file_size, info.compress_size
        if comp is None and (declared > opts.max_record_bytes or (
            opts.max_ratio and declared > opts.ratio_floor and declared > packed * opts.max_ratio
        )):
            raise Refused("too_large", too_large("the archive member", declared, packed, opts))
        with zf.open(info) as f:
            if comp is None:
                return _inflate(f.read, packed, "the archive member", opts)
            return _decompressed(f, comp, packed, "the decompressed archive member", opts)
    raw, size = urls.open_input(unit.path) if urls.is_url(unit.path) else _open_local(unit.path)
    with raw:
        if comp is None:
            many = kind in ("jsonl", "parquet")  # those hold many records: as large as the file is
            if not many and size > opts.max_record_bytes:
                raise Refused("too_large", too_large("the file", size, 0, opts)
                              + " (or write it as JSONL: the limit then applies per line)")
            # bounded while reading, whatever st_size said (a file growing meanwhile, /proc files)
            limit = max(opts.max_record_bytes, size) if many else opts.max_record_bytes
            try:
                return read_limited(raw, limit)
            except ReadLimitExceeded as e:
                if many:
                    raise Refused("too_large", f"the file gave more than {_size(limit)} while being read, more "
                                  f"than its size ({_size(size)}): is it growing? read a finished copy") from None
                raise Refused("too_large", too_large("the file", e.read, 0, opts, streaming=True)
                              + " (or write it as JSONL: the limit then applies per line)") from None
        return _decompressed(raw, comp, size, "the decompressed file", opts)


def _open_local(path: str) -> tuple[Any, int]:
    raw = open_regular(path)  # a FIFO, device or socket is refused, never opened
    return raw, os.fstat(raw.fileno()).st_size


def _decompressed(raw: Any, comp: str, size: int, what: str, opts: ReadOptions) -> bytes:
    """A ``.gz`` / ``.zst`` stream (a file, or a zip member: a compressed file inside an archive
    is read like the same file outside it), under the size and ratio limits of ``_inflate``."""
    if comp == "gz":
        import gzip

        with gzip.GzipFile(fileobj=raw) as g:
            return _inflate(g.read, size, what, opts)
    import pyarrow as pa  # zstd: pyarrow's codec, already a dependency

    with pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "zstd") as z:
        return _inflate(z.read, size, what, opts)


def read_bytes(unit: Unit, opts: ReadOptions = DEFAULT_READ) -> bytes | Record:
    """The unit's bytes (decompressed), or the record that says why they cannot be read:
    ``io_error`` (permissions, corrupt or truncated archive), ``too_large``, ``no_input``."""
    base = Source("unknown", unit.path, member=unit.member)
    try:
        return _read_bytes(unit, opts)
    except Refused as e:
        return Record(base, None, [Finding(e.code, str(e), base)])
    except NotRegularFile as e:
        return Record(base, None, [Finding("not_a_file", str(e), base)])
    except (OSError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as e:
        if unit.member is not None or input_kind(unit.path)[1] is not None:
            msg = f"corrupt or truncated {'archive member' if unit.member else 'compressed file'}: {e}"
        else:
            msg = f"cannot read: {e.strerror or e}" if isinstance(e, OSError) else f"cannot read: {e}"
        return Record(base, None, [Finding("io_error", msg, base)])
    except Exception as e:  # pyarrow's ArrowException (zstd) and the like
        if type(e).__module__.startswith("pyarrow"):
            return Record(base, None, [Finding("io_error", f"corrupt or truncated compressed file: {e}", base)])
        raise


def as_utf8(data: bytes) -> bytes:
    """UTF-8 bytes of a text with a byte-order mark (UTF-8, UTF-16, UTF-32); text without one
    is returned as is. Raises ``Refused('encoding', …)`` for UTF-16/32 without a BOM (NUL bytes
    in the first characters: a JSON text in UTF-8 never has any) or a BOM that does not decode."""
    head = data[:4]
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                       (codecs.BOM_UTF16_BE, "utf-16")):
        if head.startswith(bom):
            try:
                return data.decode(codec).encode("utf-8")
            except UnicodeError as e:
                raise Refused("encoding", f"starts with a {codec.upper()} byte-order mark but is not "
                               f"valid {codec.upper()}: {e}") from e
    if b"\x00" in head:
        order = "BE" if head[:1] == b"\x00" else "LE"
        raise Refused("encoding", _UTF16.format(f" ({order})" if len(head) > 1 else "", order))
    return data


class _DupDict(dict):
    dups: list[str]


def duplicate_keys(data: bytes | str) -> list[tuple[str, str]]:
    """``(pointer of the object, key)`` for every key repeated within one JSON object (orjson,
    like every JSON parser, silently keeps the last one). A second parse with Python's json,
    whose object hook sees the pairs; [] when there are none or the text does not parse."""
    import json

    found = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        d = dict(items)
        if len(d) == len(items):
            return d
        found = True
        dd = _DupDict(d)
        seen: set[str] = set()
        dd.dups = [k for k, _ in items if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
        return dd

    try:
        obj = json.loads(data, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return []
    if not found:
        return []
    out: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        ptr, x = stack.pop()
        if isinstance(x, dict):
            out.extend((ptr, k) for k in dict.fromkeys(getattr(x, "dups", ())))
            stack.extend((f"{ptr}/{_escape(k)}", v) for k, v in x.items())
        elif isinstance(x, list):
            stack.extend((f"{ptr}/{i}", v) for i, v in enumerate(x))
    return sorted(out)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
