"""Parsed record → :class:`Record`: the reader that recognises it (or the one ``--format``
forces), the id rule, ``--tools``, and the type guard on what the reader made; a record no reader
recognises is rejected with the closest format named.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from umi_data.readers.base import NO_CONFIG, ReaderConfig, Signature
from umi_data.readers.io import Record, Unit
from umi_data.readers.registry import READERS, readers, tie_order
from umi_data.trajectory import Source, Trajectory
from umi_data.trajectory.findings import Finding

# Each format's signature (``Reader.signature``), in the order equally close formats are listed.
_SHAPES: dict[str, Signature] = {
    r.name: r.signature for r in sorted(READERS.values(), key=tie_order) if r.signature is not None
}


def _shape_keys(obj: dict[str, Any]) -> set[str]:
    """The record's keys, with those one level down in ToolBench's ``answer_generation``."""
    keys = set(obj)
    inner = obj.get("answer_generation")
    return keys | set(inner) if isinstance(inner, dict) else keys


def closest_formats(obj: dict[str, Any]) -> tuple[list[str], int]:
    """The formats whose signature keys the record has most of (several when tied), and how many;
    ``([], 0)`` when it has none of any format's."""
    keys = _shape_keys(obj)
    score = {f: len(keys & {*need, *usual}) for f, (need, usual) in _SHAPES.items()}
    best = max(score.values(), default=0)
    return ([f for f, n in score.items() if n == best] if best else []), best


def _unknown(obj: Any, source: Source) -> Finding:
    """Name the closest format (by how many of its signature keys the record has) and what did
    not match."""
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        return Finding("unknown_format", f"a record must be a JSON object, not a {kind}; see `umidata formats`", source)
    if obj and all(isinstance(v, dict) and ("file_name" in v or "hf_hub_url" in v) for v in obj.values()):
        return Finding("unknown_format", "this is a LLaMA-Factory dataset_info.json (dataset descriptions, not "
                       "records): the sharegpt reader reads the tags of the files it names from it; pass the data "
                       "files, not this one", source)
    shown = ", ".join(sorted(map(str, obj))[:8]) or "none"
    head = f"no reader recognises this record (keys: {shown}); "
    tail = "; `umidata formats` shows every shape, --format forces one"
    if isinstance(obj.get("name"), str) and ("parameters" in obj or "description" in obj) and len(obj) <= 4:
        return Finding("unknown_format", head + "it looks like a tool definition (name, description, parameters), "
                       "not a record: give tool files with --tools FILE" + tail, source)
    fmts, n = closest_formats(obj)
    if not fmts:
        return Finding("unknown_format", head + "it has none of the keys any format is recognised by" + tail, source)
    whys = [READERS[fmt].mismatch(obj) for fmt in fmts]
    label = "closest format" if len(fmts) == 1 else f"closest formats, {n} key(s) each"
    return Finding("unknown_format", head + f"{label}: {'; '.join(whys)}" + tail, source)


def _one(obj: Any, source: Source, unit: Unit, index: int | None, fmt: str | None,
         config: ReaderConfig) -> list[Record]:
    """The records of one input object: one, or one per request of a multi-turn chat."""
    by_name = readers(config)
    reader = by_name.get(fmt) if fmt else next((r for r in by_name.values() if r.sniff(obj)), None)
    if reader is None:
        return [Record(source, None, [_unknown(obj, source)])]
    source.format = reader.name
    if not isinstance(obj, dict):
        return [Record(source, None, [Finding("schema", f"a {reader.name} record must be a JSON object", source)])]
    episodes = reader.read(obj, source, reader.traj_id(obj, unit.name, index))
    if config.tools:  # --tools: for records that carry no tool list of their own
        for traj, _ in episodes:
            if traj is not None and not traj.tools:
                traj.tools = config.given_tools()
    return [Record(source, traj, findings) for traj, findings in episodes]


def safe_one(obj: Any, source: Source, unit: Unit, index: int | None, fmt: str | None,
             config: ReaderConfig = NO_CONFIG) -> list[Record]:
    """The records of one parsed input object (see ``_one``); one record that makes a reader fail
    never aborts the run: too deep for Python's recursion, or a reader bug (``internal_error``:
    reported, the run goes on)."""
    try:
        out = []
        for rec in _one(obj, source, unit, index, fmt, config):
            if rec.trajectory is not None and (bad := _type_problem(rec.trajectory)) is not None:
                rec = Record(rec.source, None, [*rec.findings, Finding("schema", bad[1], rec.source, bad[0])])
            out.append(rec)
        return out
    except RecursionError:
        return [Record(source, None, [Finding("too_deep", "the record is nested too deeply to process", source)])]
    except Exception as e:  # reported as a located finding, never swallowed
        return [Record(source, None, [Finding("internal_error", f"the reader failed on this record "
                                              f"({type(e).__name__}: {e})", source)])]


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
    if t.system is not None and not isinstance(t.system, str):
        return "/system", f"the system prompt must be text, not {type(t.system).__name__}"
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


def prefixed(records: Iterable[Record], prefix: str) -> Iterator[Record]:
    """``--id-prefix``: every trajectory id starts with ``prefix`` (e.g. the system that wrote
    the answers, so the same query answered by several systems stays several trajectories)."""
    for rec in records:
        if prefix and rec.trajectory is not None:
            rec.trajectory.id = prefix + rec.trajectory.id
        yield rec
