"""A unit's bytes → its records, in order: one JSON value (a list: one record per element),
JSONL (one per line; also JSONL found in a ``.json`` file), or umi's trajectory Parquet. Every
record comes out either accepted or rejected with its location, never dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath

import orjson

from umi_data.readers.detect import safe_one
from umi_data.readers.io import (
    DEFAULT_READ,
    ReadOptions,
    Record,
    Refused,
    Unit,
    as_utf8,
    decode_error,
    duplicate_keys,
    expand,
    input_kind,
    read_bytes,
    too_large,
)
from umi_data.trajectory import Source
from umi_data.trajectory.findings import Finding


def read_unit(unit: Unit, fmt: str | None = None, opts: ReadOptions = DEFAULT_READ) -> Iterator[Record]:
    """All records of one unit, in order."""
    data = read_bytes(unit, opts)
    if isinstance(data, Record):
        yield data
        return
    yield from parse_unit(unit, data, fmt, opts)


def parse_unit(
    unit: Unit, data: bytes, fmt: str | None = None, opts: ReadOptions = DEFAULT_READ
) -> Iterator[Record]:
    """All records in the bytes of one unit (already read, e.g. to hash them too)."""
    base = Source(fmt or "unknown", unit.path, member=unit.member)
    kind = input_kind(unit.member or unit.path)[0]
    if kind == "parquet":
        yield from _read_parquet(unit, data, fmt, opts)
        return
    try:
        data = as_utf8(data)
    except Refused as e:
        yield Record(base, None, [Finding(e.code, str(e), base)])
        return
    if kind == "jsonl":
        yield from _read_jsonl(unit, data, fmt, opts)
        return
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        if _looks_like_jsonl(data):
            yield from _jsonl_in_json(unit, data, fmt, opts)
            return
        code, msg = decode_error(data, e)
        yield Record(base, None, [Finding(code, msg, base)])
        return
    dups = duplicate_keys(data) if opts.duplicate_keys else []
    if isinstance(obj, list):
        if not obj:
            yield Record(base, None, [Finding("empty_input", "the JSON list holds no record", base)])
        for i, item in enumerate(obj):
            src = Source(base.format, unit.path, index=i, member=unit.member)
            prefix = f"/{i}"
            inner = [(p[len(prefix) :], k) for p, k in dups if p == prefix or p.startswith(prefix + "/")]
            yield from _with_dups(safe_one(item, src, unit, i, fmt, opts.config), inner)
    else:
        yield from _with_dups(safe_one(obj, base, unit, None, fmt, opts.config), dups)


def _looks_like_jsonl(data: bytes) -> bool:
    """A JSON file that does not parse whole but whose first line is a JSON object and is
    followed by more lines: JSONL under a ``.json`` name (BFCL publishes its data so)."""
    lines = [ln for ln in data.split(b"\n") if ln.strip()]
    if len(lines) < 2:
        return False
    try:
        return isinstance(orjson.loads(lines[0]), dict)
    except orjson.JSONDecodeError:
        return False


def _jsonl_in_json(unit: Unit, data: bytes, fmt: str | None, opts: ReadOptions) -> Iterator[Record]:
    """Read it as the JSONL it is, every record with a ``jsonl_in_json`` warning (located by line)."""
    name = PurePosixPath(unit.member).name if unit.member else Path(unit.path).name
    for rec in _read_jsonl(unit, data, fmt, opts):
        rec.findings.append(Finding("jsonl_in_json", f"{name} holds one JSON record per line (JSONL), not one JSON "
                                    "value; read line by line (name it .jsonl to say so)", rec.source))
        yield rec


def _with_dups(recs: list[Record], dups: list[tuple[str, str]]) -> list[Record]:
    """Repeated keys are reported on the record's first trajectory (a multi-turn chat gives several)."""
    rec = recs[0]
    for pointer, key in dups:
        rec.findings.append(Finding("duplicate_key", f"the key {key!r} appears more than once in this object; "
                                    "JSON readers keep the last one, so the earlier ones were ignored",
                                    rec.source, pointer))
    return recs


def _read_jsonl(unit: Unit, data: bytes, fmt: str | None, opts: ReadOptions = DEFAULT_READ) -> Iterator[Record]:
    seen = False
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        seen = True
        src = Source(fmt or "unknown", unit.path, line=lineno, member=unit.member)
        if len(line) > opts.max_record_bytes:
            yield Record(src, None, [Finding("too_large", too_large("the line", len(line), 0, opts), src)])
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            code, msg = decode_error(line, e, one_line=True)
            yield Record(src, None, [Finding(code, msg, src)])
            continue
        dups = duplicate_keys(line) if opts.duplicate_keys else []
        yield from _with_dups(safe_one(obj, src, unit, lineno, fmt, opts.config), dups)
    if not seen:
        src = Source(fmt or "unknown", unit.path, member=unit.member)
        yield Record(src, None, [Finding("empty_input", "the file holds no line", src)])


def _read_parquet(unit: Unit, data: bytes, fmt: str | None, opts: ReadOptions) -> Iterator[Record]:
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
            code, msg = decode_error(text.encode() if isinstance(text, str) else b"", e, one_line=True)
            yield Record(src, None, [Finding(code, msg, src)])
            continue
        yield from safe_one(obj, src, unit, i, fmt, opts.config)


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
