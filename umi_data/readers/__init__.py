"""Readers: input files → :class:`Record` (a trajectory, or the findings that reject it).

Inputs are expanded into *units* (a file, or one member of a zip archive) so that work can be
spread over processes unit by unit; each unit yields its records in order. A record is one
trajectory-sized piece of input (a ToolBench answer file, a JSON list element, a JSONL line):
every record comes out either accepted or rejected with its location, never dropped.

Format detection looks at the parsed record (``sniff``), so mixed inputs work; ``--format``
forces a reader for every record.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import orjson

from umi_data.findings import Finding
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
INPUT_SUFFIXES = (".json", ".jsonl", ".zip", ".parquet")


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
    """A file, or a member of a zip archive (``member``), read as a whole by one worker."""

    path: str
    member: str | None = None
    size: int = 0  # bytes, as listed when the input was expanded (0 when unknown)


def _is_answer_member(name: str) -> bool:
    p = PurePosixPath(name)
    return p.suffix == ".json" and p.parent.name.endswith("_answer")


def expand(paths: Iterable[str | os.PathLike[str]]) -> list[Unit]:
    """Files below directories (sorted, by suffix), zip members that are ToolBench answer
    files, and the files given. A missing path still becomes a unit so it is reported."""
    units: list[Unit] = []
    for p in map(str, paths):
        if os.path.isdir(p):
            found = sorted(
                os.path.join(root, f)
                for root, _dirs, files in os.walk(p)
                for f in files
                if f.endswith(INPUT_SUFFIXES)
            )
            units.extend(Unit(f, None, _file_size(f)) for f in found)
        elif p.endswith(".zip") and zipfile.is_zipfile(p):
            infos = _archive(p).infolist()
            units.extend(Unit(p, i.filename, i.file_size) for i in sorted(infos, key=lambda i: i.filename)
                         if _is_answer_member(i.filename))
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
    """(code, message) for bytes that failed to parse: encoding first, then JSON syntax.
    ``one_line``: the bytes are one JSONL line, whose number the source already gives."""
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
    return "json_syntax", str(err)


def _read_bytes(unit: Unit) -> bytes:
    if unit.member is None:
        with open(unit.path, "rb") as f:
            return f.read()
    return _archive(unit.path).read(unit.member)


def read_bytes(unit: Unit) -> bytes | Record:
    """The unit's bytes, or the ``io_error`` record that says why they cannot be read."""
    try:
        return _read_bytes(unit)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        base = Source("unknown", unit.path, member=unit.member)
        return Record(base, None, [Finding("io_error", f"cannot read: {e}", base)])


def read_unit(unit: Unit, fmt: str | None = None) -> Iterator[Record]:
    """All records of one unit, in order."""
    data = read_bytes(unit)
    if isinstance(data, Record):
        yield data
        return
    yield from parse_unit(unit, data, fmt)


def parse_unit(unit: Unit, data: bytes, fmt: str | None = None) -> Iterator[Record]:
    """All records in the bytes of one unit (already read, e.g. to hash them too)."""
    base = Source(fmt or "unknown", unit.path, member=unit.member)
    name = unit.member or unit.path
    if name.endswith(".parquet"):
        yield from _read_parquet(unit, data, fmt)
        return
    if name.endswith(".jsonl"):
        yield from _read_jsonl(unit, data, fmt)
        return
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        code, msg = _decode_error(data, e)
        yield Record(base, None, [Finding(code, msg, base)])
        return
    if isinstance(obj, list):
        if not obj:
            yield Record(base, None, [Finding("empty_input", "the JSON list holds no record", base)])
        for i, item in enumerate(obj):
            src = Source(base.format, unit.path, index=i, member=unit.member)
            yield from _one(item, src, unit, i, fmt)
    else:
        yield from _one(obj, base, unit, None, fmt)


def _read_jsonl(unit: Unit, data: bytes, fmt: str | None) -> Iterator[Record]:
    seen = False
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        seen = True
        src = Source(fmt or "unknown", unit.path, line=lineno, member=unit.member)
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            code, msg = _decode_error(line, e, one_line=True)
            yield Record(src, None, [Finding(code, msg, src)])
            continue
        yield from _one(obj, src, unit, lineno, fmt)
    if not seen:
        src = Source(fmt or "unknown", unit.path, member=unit.member)
        yield Record(src, None, [Finding("empty_input", "the file holds no line", src)])


def _read_parquet(unit: Unit, data: bytes, fmt: str | None) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = Source(fmt or "unknown", unit.path, member=unit.member)
    try:
        table = pq.read_table(pa.BufferReader(data), columns=["trajectory"])
    except (pa.ArrowException, OSError, KeyError) as e:
        yield Record(base, None, [Finding("io_error", f"not a umi trajectory Parquet file: {e}", base)])
        return
    for i, text in enumerate(table.column("trajectory").to_pylist()):
        src = Source(base.format, unit.path, index=i, member=unit.member)
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            yield Record(src, None, [Finding("json_syntax", str(e), src)])
            continue
        yield from _one(obj, src, unit, i, fmt)


def read_inputs(
    paths: Iterable[str | os.PathLike[str]],
    fmt: str | None = None,
    on_unit: Callable[[Unit], None] | None = None,
) -> Iterator[Record]:
    """Every record of every input, in a stable order; ``on_unit`` is told when a unit is done
    (progress reporting)."""
    for unit in expand(paths):
        yield from read_unit(unit, fmt)
        if on_unit is not None:
            on_unit(unit)
