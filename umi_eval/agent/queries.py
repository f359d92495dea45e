"""Queries for ``umieval run``: what the agent is asked, with the tools it may use.

Accepted inputs (detected per record):

- JSONL (or a JSON list) of ``{"id", "instruction", "tools"}`` — ``tools`` OpenAI-style
  (``{"type": "function", "function": {name, description, parameters}}``) or
  ``{name, description, parameters}``; optional ``routes`` ``{tool name: {category, tool_name,
  api_name}}`` for an ``http:`` tool server. ``tools`` may be omitted when the executor brings
  its own (``python:MODULE``).
- ToolBench query files (``data/test_instruction/G1_instruction.json``: a list of ``{query,
  query_id, api_list}``); tools are built the way ToolBench's environment builds them
  (``rapidapi.py``: standardised ``<api>_for_<tool>`` names, cut to 64 characters, the
  ``This is the subfunction for tool …`` description the training data has, required and
  optional parameters). The id is ``<file stem>/<query_id>``.
- Any trajectory input ``umidata`` reads (ToolBench answers, canonical runs …): the trajectory's
  id, instruction and tools — how a recorded test set is rerun with ``replay:``.

Every record becomes a :class:`Query` or a :class:`~umi_data.trajectory.findings.Reject` (the one reject
shape: source, ``reason`` code, message, pointer, findings).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from umi_data.readers import Record, Unit, expand, parse_unit, read_bytes
from umi_data.trajectory import Source, Tool
from umi_data.trajectory.findings import Reject


@dataclass(slots=True)
class Query:
    id: str
    instruction: str
    tools: list[Tool] | None  # None: the executor's own tools
    source: Source
    routes: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        """What the query asks, as a short hash of its instruction and tools (``null`` for the
        executor's own): a resumed run checks that an id already in the run file was run for this
        query, not for one that had the id before (an id from a line number moves when lines are
        inserted)."""
        tools = None if self.tools is None else [t.to_dict() for t in self.tools]
        data = orjson.dumps([self.instruction, tools], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        return hashlib.sha256(data).hexdigest()[:16]


# --- ToolBench's name standardisation (toolbench/utils.py) ------------------------------------------

_NON_WORD = re.compile("[^\\u4e00-\\u9fa5^a-z^A-Z^0-9^_]")
_RENAMED = {"from", "class", "return", "false", "true", "id", "and"}
_TYPES = {"NUMBER": "integer", "STRING": "string", "BOOLEAN": "boolean"}


def standardize(name: str) -> str:
    s = re.sub(r"(_)\1+", "_", _NON_WORD.sub("_", name)).lower().strip("_")
    return "get_" + s if s[:1].isdigit() else s


def _param_name(name: str) -> str:
    s = standardize(name)
    return "is_" + s if s in _RENAMED else s


def toolbench_tool(api: dict[str, Any]) -> tuple[Tool, dict[str, str]]:
    """One ``api_list`` entry → the tool the model sees and its server route."""
    tool_name = standardize(str(api.get("tool_name", "")))
    api_name = _param_name(str(api.get("api_name", "")))
    name = f"{api_name}_for_{tool_name}"[-64:]
    desc = f'This is the subfunction for tool "{tool_name}", you can use this tool.'
    raw_desc = str(api.get("api_description") or "").strip()
    if raw_desc:
        desc += f'The description of this function is: "{raw_desc.replace(str(api.get("api_name")), name)[:256]}"'
    props: dict[str, Any] = {}
    required: list[str] = []
    optional: list[str] = []
    for key, bucket in (("required_parameters", required), ("optional_parameters", optional)):
        for p in api.get(key) or []:
            pname = _param_name(str(p.get("name", "")))
            spec: dict[str, Any] = {"type": _TYPES.get(p.get("type"), "string"),
                                    "description": str(p.get("description") or "")[:256]}
            if str(p.get("default", "")) != "":
                spec["example_value"] = p["default"]
            props[pname] = spec
            bucket.append(pname)
    params = {"type": "object", "properties": props, "required": required, "optional": optional}
    route = {"category": str(api.get("category_name", "")), "tool_name": tool_name, "api_name": api_name}
    return Tool(name, desc, params), route


def _tools(value: Any) -> list[Tool]:
    tools = []
    for spec in value:
        if isinstance(spec, dict) and spec.get("type") == "function" and isinstance(spec.get("function"), dict):
            spec = spec["function"]
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ValueError("every tool needs a string `name`")
        tools.append(Tool(spec["name"], str(spec.get("description") or ""), spec.get("parameters") or {}))
    return tools


# Keys that mark a trajectory (umi, α-UMi, OpenAI, ToolBench answer) rather than a bare query.
_TRAJECTORY_KEYS = ("format", "conversations", "messages", "answer_generation")


def _from_object(obj: Any, source: Source, stem: str, index: int | None) -> Query | Reject | None:
    """A query from a JSON object; ``None`` when it is not a query shape (try the readers)."""
    if not isinstance(obj, dict):
        return Reject(source, "schema", "a query must be a JSON object")
    if any(k in obj for k in _TRAJECTORY_KEYS):
        return None
    if "api_list" in obj and "query" in obj:  # ToolBench query file entry
        source.format = "toolbench-query"
        if not isinstance(obj["query"], str) or not isinstance(obj["api_list"], list):
            return Reject(source, "schema", "`query` must be a string and `api_list` a list")
        built = [toolbench_tool(a) for a in obj["api_list"] if isinstance(a, dict)]
        qid = obj.get("query_id", index)
        return Query(f"{stem}/{qid}", obj["query"], [t for t, _ in built], source, {t.name: r for t, r in built})
    if "instruction" in obj:
        source.format = "query"
        if not isinstance(obj["instruction"], str):
            return Reject(source, "schema", "`instruction` must be a string")
        qid = obj.get("id")
        if not isinstance(qid, (str, int)) or qid == "":
            qid = f"{stem}/{index}"
        try:
            tools = _tools(obj["tools"]) if "tools" in obj else None
        except (TypeError, ValueError) as e:
            return Reject(source, "schema", f"`tools`: {e}")
        routes: dict[str, Any] = obj["routes"] if isinstance(obj.get("routes"), dict) else {}
        return Query(str(qid), obj["instruction"], tools, source, routes)
    return None


def _from_record(rec: Record) -> Query | Reject:
    if rec.trajectory is None:
        return Reject.of(rec.findings[0], rec.findings, rec.source)
    t = rec.trajectory
    return Query(t.id, t.instruction, [x for x in t.tools if x.name != "Finish"], rec.source)


def _units(unit: Unit, data: bytes) -> Iterator[tuple[Source, Any, int | None] | Reject]:
    """Parsed JSON values of a query file, or the reject for a file/line that is not JSON."""
    name = unit.member or unit.path
    if name.endswith(".jsonl"):
        for lineno, line in enumerate(data.split(b"\n"), start=1):
            if line.strip():
                src = Source("unknown", unit.path, line=lineno, member=unit.member)
                try:
                    yield src, orjson.loads(line), lineno
                except orjson.JSONDecodeError as e:
                    yield Reject(src, "json_syntax", str(e))
        return
    src = Source("unknown", unit.path, member=unit.member)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        yield Reject(src, "json_syntax", str(e))
        return
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield Source("unknown", unit.path, index=i, member=unit.member), item, i
    else:
        yield src, obj, None


def read_queries(paths: list[str]) -> Iterator[Query | Reject]:
    """Every query of every input, in input order."""
    for unit in expand(paths):
        data = read_bytes(unit)
        if isinstance(data, Record):
            yield _from_record(data)
            continue
        stem = Path(unit.member or unit.path).stem
        if (unit.member or unit.path).endswith(".parquet"):
            yield from map(_from_record, parse_unit(unit, data))
            continue
        fallback = False
        items = list(_units(unit, data))
        out: list[Query | Reject] = []
        for item in items:
            if isinstance(item, Reject):
                out.append(item)
                continue
            src, obj, index = item
            q = _from_object(obj, src, stem, index)
            if q is None:
                fallback = True
                break
            out.append(q)
        if fallback:  # trajectories: let umidata's readers do it, ids and findings included
            yield from map(_from_record, parse_unit(unit, data))
        else:
            if not items:
                yield Reject(Source("unknown", unit.path, member=unit.member), "empty_input", "no query in the file")
            yield from out
