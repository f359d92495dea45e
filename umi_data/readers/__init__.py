"""Readers: input files → :class:`Record` (a trajectory, or the findings that reject it).

Inputs are expanded into *units* (a file, or one member of a zip archive) so that work can be
spread over processes unit by unit; each unit yields its records in order. A record is one
trajectory-sized piece of input (a ToolBench answer file, a JSON list element, a JSONL line):
every record comes out either accepted or rejected with its location, never dropped.

Format detection looks at the parsed record (``sniff``), so mixed inputs work; ``--format``
forces a reader for every record.
"""

from __future__ import annotations

import codecs
import os
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import orjson

from umi_data.readers import (
    alpha_umi,
    canonical,
    openai,
    openai_functions,
    openai_typed,
    sharegpt,
    toolbench,
    toolllama,
)
from umi_data.trajectory import Source, Trajectory
from umi_data.trajectory.findings import Finding

# Order matters for sniffing: the most specific shape first.
READERS: dict[str, ModuleType] = {
    canonical.FORMAT: canonical,
    toolbench.FORMAT: toolbench,
    alpha_umi.FORMAT: alpha_umi,
    toolllama.FORMAT: toolllama,
    sharegpt.FORMAT: sharegpt,
    openai_typed.FORMAT: openai_typed,
    openai_functions.FORMAT: openai_functions,
    openai.FORMAT: openai,
}
FORMATS = tuple(READERS)
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
    JSON object keys (a second parse with Python's json, ~3× orjson's time)."""

    max_record_bytes: int = 1 << 30
    max_ratio: float = 100.0
    ratio_floor: int = 16 << 20
    duplicate_keys: bool = True


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
    p = PurePosixPath(name)
    return p.suffix.lower() == ".json" and p.parent.name.endswith("_answer")


def _zip_units(path: str) -> list[Unit]:
    """The members of a zip archive worth reading. An archive holding ToolBench ``*_answer/``
    folders is ToolBench's ``data.zip``: only those folders hold trajectories (the rest are tool
    and query definitions, GBs of them). Any other archive: every readable member
    (``__MACOSX/`` resource forks aside)."""
    try:
        infos = [i for i in _archive(path).infolist() if not i.is_dir()]
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as e:
        return [Unit(path, None, _file_size(path), ("io_error", f"corrupt or truncated zip archive: {e}"))]
    infos.sort(key=lambda i: i.filename)
    answers = [i for i in infos if _is_answer_member(i.filename)]
    chosen = answers or [i for i in infos if _readable(i.filename) and input_kind(i.filename)[0] != "zip"
                         and not i.filename.startswith("__MACOSX/")]  # fmt: skip
    if not chosen:
        return [Unit(path, None, _file_size(path), ("no_input", f"the archive holds {len(infos)} file(s), none "
                     f"readable ({', '.join(INPUT_SUFFIXES[:-1])}, optionally .gz/.zst)"))]  # fmt: skip
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
                             ("io_error", f"cannot list directory: {e.strerror or e}")))  # fmt: skip

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
        if os.path.isdir(p):
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
                                               f"{', '.join(INPUT_SUFFIXES)}, optionally .gz/.zst)")))  # fmt: skip
            units.extend(sorted(found + problems, key=lambda u: (u.path, u.member or "")))
        elif input_kind(p)[0] == "zip" and os.path.isfile(p):
            units.extend(_zip_units(p))
        else:
            units.append(Unit(p, None, _file_size(p)))
    return units


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


_ARCHIVES: dict[tuple[int, str], zipfile.ZipFile] = {}


def _archive(path: str) -> zipfile.ZipFile:
    """One open ZipFile per archive *and process*: opening parses the whole central directory
    (ToolBench's data.zip lists ~190k members), so re-opening it per member would make reading
    quadratic; the pid in the key keeps forked workers from sharing a file offset."""
    key = (os.getpid(), os.path.abspath(path))
    zf = _ARCHIVES.get(key)
    if zf is None:
        zf = _ARCHIVES[key] = zipfile.ZipFile(path)
    return zf


def _traj_id(fmt: str, obj: Any, unit: Unit, index: int | None) -> str:
    """Stable ids: ToolBench by group folder + file stem (``G1_answer/10_…``, unique across
    groups), and in ToolEval layouts (``<method>/G1_instruction/<qid>_….json``) with the method
    folder too, so the same query answered by several systems is several trajectories; records
    that carry an id keep it; others by file stem and position."""
    name = PurePosixPath(unit.member) if unit.member else Path(unit.path)
    if fmt == toolbench.FORMAT:
        group = f"{name.parent.name}/{name.stem}"
        method = name.parent.parent.name
        return f"{method}/{group}" if name.parent.name.endswith("_instruction") and method else group
    if isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"]:
        return obj["id"]
    return f"{name.stem}/{index}" if index is not None else name.stem


# What each format needs at least, to say which one an unrecognised record is closest to.
_SHAPES: dict[str, tuple[str, ...]] = {
    canonical.FORMAT: ("format", "id", "instruction", "turns", "outcome", "source"),
    toolbench.FORMAT: ("answer_generation", "query", "train_messages", "function"),
    alpha_umi.FORMAT: ("conversations", "instruction", "tools"),
    sharegpt.FORMAT: ("conversations", "tools", "system"),
    openai.FORMAT: ("messages", "tools", "functions", "id", "metadata"),
}


def _unknown(obj: Any, source: Source) -> Finding:
    """Name the closest format and the field that did not match."""
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        return Finding("unknown_format", f"a record must be a JSON object, not a {kind}; see `umidata formats`", source)
    if obj and all(isinstance(v, dict) and ("file_name" in v or "hf_hub_url" in v) for v in obj.values()):
        return Finding("unknown_format", "this is a LLaMA-Factory dataset_info.json (dataset descriptions, not "
                       "records): the sharegpt reader reads the tags of the files it names from it; pass the data "
                       "files, not this one", source)
    keys = set(obj)
    fmt = max(_SHAPES, key=lambda f: (len(keys & set(_SHAPES[f])), -list(_SHAPES).index(f)))
    need = _SHAPES[fmt][0]
    if fmt == canonical.FORMAT and "format" in keys:
        why = f"`format` is {obj['format']!r}, not {canonical.FORMAT_VERSION!r}"
    else:
        why = f"it has no `{need}`"
    shown = ", ".join(sorted(keys)[:8]) or "none"
    return Finding("unknown_format", f"no reader recognises this record (keys: {shown}); closest format: {fmt}, "
                   f"but {why}; `umidata formats` shows every shape, --format forces one", source)


def _one(obj: Any, source: Source, unit: Unit, index: int | None, fmt: str | None) -> list[Record]:
    """The records of one input object: one, or one per request of a multi-turn chat."""
    reader = READERS.get(fmt) if fmt else next((r for r in READERS.values() if r.sniff(obj)), None)
    if reader is None:
        return [Record(source, None, [_unknown(obj, source)])]
    source.format = reader.FORMAT
    if not isinstance(obj, dict):
        return [Record(source, None, [Finding("schema", f"a {reader.FORMAT} record must be a JSON object", source)])]
    result = reader.read(obj, source, _traj_id(reader.FORMAT, obj, unit, index))
    if isinstance(result, list):
        return [Record(source, traj, findings) for traj, findings in result]
    traj, findings = result
    return [Record(source, traj, findings)]


def prefixed(records: Iterable[Record], prefix: str) -> Iterator[Record]:
    """``--id-prefix``: every trajectory id starts with ``prefix`` (e.g. the system that wrote
    the answers, so the same query answered by several systems stays several trajectories)."""
    for rec in records:
        if prefix and rec.trajectory is not None:
            rec.trajectory.id = prefix + rec.trajectory.id
        yield rec


def _decode_error(data: bytes, err: Exception, one_line: bool = False) -> tuple[str, str]:
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


class _Refused(Exception):
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
            raise _Refused("too_large", _too_large(what, len(buf), compressed, opts, streaming=True))
    return bytes(buf)


def _too_large(what: str, size: int, compressed: int, opts: ReadOptions, streaming: bool = False) -> str:
    more = "over" if not streaming else "already over"
    if size > opts.max_record_bytes:
        return (f"{what} is {more} {_size(opts.max_record_bytes)} (size {_size(size)}); raise "
                "--max-record-bytes to read it")  # fmt: skip
    return (f"{what} expands {more} {opts.max_ratio:g}× its compressed size ({_size(compressed)} → "
            f"{_size(size)}): a decompression bomb? raise --max-ratio to read it")  # fmt: skip


def _read_bytes(unit: Unit, opts: ReadOptions) -> bytes:
    if unit.problem is not None:
        raise _Refused(*unit.problem)
    kind, comp = input_kind(unit.member or unit.path)
    if unit.member is not None:
        zf = _archive(unit.path)
        info = zf.getinfo(unit.member)
        declared, packed = info.file_size, info.compress_size
        if comp is None and (declared > opts.max_record_bytes or (
            opts.max_ratio and declared > opts.ratio_floor and declared > packed * opts.max_ratio
        )):  # fmt: skip
            raise _Refused("too_large", _too_large("the archive member", declared, packed, opts))
        with zf.open(info) as f:
            if comp is None:
                return _inflate(f.read, packed, "the archive member", opts)
            return _decompressed(f, comp, packed, "the decompressed archive member", opts)
    with open(unit.path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        if comp is None:
            if kind not in ("jsonl", "parquet") and size > opts.max_record_bytes:  # those hold many records
                raise _Refused("too_large", _too_large("the file", size, 0, opts)
                               + " (or write it as JSONL: the limit then applies per line)")  # fmt: skip
            return raw.read()
        return _decompressed(raw, comp, size, "the decompressed file", opts)


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
    except _Refused as e:
        return Record(base, None, [Finding(e.code, str(e), base)])
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


def read_unit(unit: Unit, fmt: str | None = None, opts: ReadOptions = DEFAULT_READ) -> Iterator[Record]:
    """All records of one unit, in order."""
    data = read_bytes(unit, opts)
    if isinstance(data, Record):
        yield data
        return
    yield from parse_unit(unit, data, fmt, opts)


def _as_utf8(data: bytes) -> bytes:
    """UTF-8 bytes of a text with a byte-order mark (UTF-8, UTF-16, UTF-32); text without one
    is returned as is. Raises ``_Refused('encoding', …)`` for UTF-16/32 without a BOM (NUL bytes
    in the first characters: a JSON text in UTF-8 never has any) or a BOM that does not decode."""
    head = data[:4]
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                       (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if head.startswith(bom):
            try:
                return data.decode(codec).encode("utf-8")
            except UnicodeError as e:
                raise _Refused("encoding", f"starts with a {codec.upper()} byte-order mark but is not "
                               f"valid {codec.upper()}: {e}") from e  # fmt: skip
    if b"\x00" in head:
        order = "BE" if head[:1] == b"\x00" else "LE"
        raise _Refused("encoding", _UTF16.format(f" ({order})" if len(head) > 1 else "", order))
    return data


def _safe_one(obj: Any, source: Source, unit: Unit, index: int | None, fmt: str | None) -> list[Record]:
    """``_one``, but one record that makes a reader fail never aborts the run: too deep for
    Python's recursion, or a reader bug (``internal_error``: reported, the run goes on)."""
    try:
        out = []
        for rec in _one(obj, source, unit, index, fmt):
            if rec.trajectory is not None and (bad := _type_problem(rec.trajectory)) is not None:
                rec = Record(rec.source, None, [*rec.findings, Finding("schema", bad[1], rec.source, bad[0])])
            out.append(rec)
        return out
    except RecursionError:
        return [Record(source, None, [Finding("too_deep", "the record is nested too deeply to process", source)])]
    except Exception as e:  # reported as a located finding, never swallowed
        return [Record(source, None, [Finding("internal_error", f"the reader failed on this record "
                                              f"({type(e).__name__}: {e})", source)])]  # fmt: skip


_STR_FIELDS = ("content", "thought", "error", "call_id", "name", "raw")


def _type_problem(t: Trajectory) -> tuple[str, str] | None:
    """(pointer into the canonical trajectory, message) for the first field of a type the
    renderers cannot use (a reader let a number or an object through where text belongs), so
    such a record is a ``schema`` reject rather than a crash or a garbled prompt further down.
    Cheap (a few µs): plain attribute reads, no schema engine."""
    if not isinstance(t.id, str) or not t.id:
        return "/id", "the trajectory id must be a non-empty string"
    if not isinstance(t.instruction, str):
        return "/instruction", f"the instruction must be text, not {type(t.instruction).__name__}"
    for i, tool in enumerate(t.tools):
        params = tool.parameters
        if not isinstance(tool.name, str) or not isinstance(tool.description, str):
            return f"/tools/{i}", "a tool's name and description must be text"
        if not isinstance(params, dict):
            return f"/tools/{i}/parameters", "a tool's parameters must be a JSON Schema object"
        props = params.get("properties")
        if props is not None and not (isinstance(props, dict) and all(isinstance(v, dict) for v in props.values())):
            return f"/tools/{i}/parameters/properties", "`properties` must map names to JSON Schema objects"
    for i, turn in enumerate(t.turns):
        for v in (turn.content, turn.thought, turn.error, turn.call_id, turn.name, turn.raw):
            if v is not None and not isinstance(v, str):
                key = next(k for k in _STR_FIELDS if getattr(turn, k) is v)
                return f"/turns/{i}/{key}", f"`{key}` must be text or null, not {type(v).__name__}"
        if turn.calls:
            for j, call in enumerate(turn.calls):
                if not isinstance(call.name, str) or not isinstance(call.arguments, str):
                    return f"/turns/{i}/calls/{j}", "a call's name and arguments must be text"
    return None


def parse_unit(
    unit: Unit, data: bytes, fmt: str | None = None, opts: ReadOptions = DEFAULT_READ
) -> Iterator[Record]:
    """All records in the bytes of one unit (already read, e.g. to hash them too)."""
    base = Source(fmt or "unknown", unit.path, member=unit.member)
    kind = input_kind(unit.member or unit.path)[0]
    if kind == "parquet":
        yield from _read_parquet(unit, data, fmt)
        return
    try:
        data = _as_utf8(data)
    except _Refused as e:
        yield Record(base, None, [Finding(e.code, str(e), base)])
        return
    if kind == "jsonl":
        yield from _read_jsonl(unit, data, fmt, opts)
        return
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        code, msg = _decode_error(data, e)
        yield Record(base, None, [Finding(code, msg, base)])
        return
    dups = duplicate_keys(data) if opts.duplicate_keys else []
    if isinstance(obj, list):
        if not obj:
            yield Record(base, None, [Finding("empty_input", "the JSON list holds no record", base)])
        for i, item in enumerate(obj):
            src = Source(base.format, unit.path, index=i, member=unit.member)
            prefix = f"/{i}"
            yield from _with_dups(_safe_one(item, src, unit, i, fmt),
                                  [(p[len(prefix):], k) for p, k in dups if p == prefix or p.startswith(prefix + "/")])
    else:
        yield from _with_dups(_safe_one(obj, base, unit, None, fmt), dups)


def _with_dups(recs: list[Record], dups: list[tuple[str, str]]) -> list[Record]:
    """Repeated keys are reported on the record's first trajectory (a multi-turn chat gives several)."""
    rec = recs[0]
    for pointer, key in dups:
        rec.findings.append(Finding("duplicate_key", f"the key {key!r} appears more than once in this object; "
                                    "JSON readers keep the last one, so the earlier ones were ignored",
                                    rec.source, pointer))  # fmt: skip
    return recs


class _DupDict(dict):  # type: ignore[type-arg]
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


def _read_jsonl(unit: Unit, data: bytes, fmt: str | None, opts: ReadOptions = DEFAULT_READ) -> Iterator[Record]:
    seen = False
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        seen = True
        src = Source(fmt or "unknown", unit.path, line=lineno, member=unit.member)
        if len(line) > opts.max_record_bytes:
            yield Record(src, None, [Finding("too_large", _too_large("the line", len(line), 0, opts), src)])
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            code, msg = _decode_error(line, e, one_line=True)
            yield Record(src, None, [Finding(code, msg, src)])
            continue
        yield from _with_dups(_safe_one(obj, src, unit, lineno, fmt),
                              duplicate_keys(line) if opts.duplicate_keys else [])
    if not seen:
        src = Source(fmt or "unknown", unit.path, member=unit.member)
        yield Record(src, None, [Finding("empty_input", "the file holds no line", src)])


def _read_parquet(unit: Unit, data: bytes, fmt: str | None) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = Source(fmt or "unknown", unit.path, member=unit.member)
    try:
        table = pq.read_table(pa.BufferReader(data), columns=["trajectory"])
        texts = table.column("trajectory").to_pylist()
    except (pa.ArrowException, OSError, KeyError) as e:
        yield Record(base, None, [Finding("io_error", f"not a readable umi trajectory Parquet file: {e}", base)])
        return
    for i, text in enumerate(texts):
        src = Source(base.format, unit.path, index=i, member=unit.member)
        try:
            obj = orjson.loads(text)
        except (orjson.JSONDecodeError, TypeError) as e:
            code, msg = _decode_error(text.encode() if isinstance(text, str) else b"", e, one_line=True)
            yield Record(src, None, [Finding(code, msg, src)])
            continue
        yield from _safe_one(obj, src, unit, i, fmt)


def read_inputs(
    paths: Iterable[str | os.PathLike[str]],
    fmt: str | None = None,
    on_unit: Callable[[Unit], None] | None = None,
    opts: ReadOptions = DEFAULT_READ,
) -> Iterator[Record]:
    """Every record of every input, in a stable order; ``on_unit`` is told when a unit is done
    (progress reporting)."""
    yield from read_units(expand(paths), fmt, on_unit, opts)


def read_units(
    units: Iterable[Unit],
    fmt: str | None = None,
    on_unit: Callable[[Unit], None] | None = None,
    opts: ReadOptions = DEFAULT_READ,
) -> Iterator[Record]:
    """:func:`read_inputs` for inputs already expanded (a caller that checked the units first)."""
    for unit in units:
        yield from read_unit(unit, fmt, opts)
        if on_unit is not None:
            on_unit(unit)
