"""The α-UMi conversation format ("stage 2"), both ways.

An α-UMi conversation is a list of ``{"from": ..., "value": ...}`` items with ``from`` in
``user / assistant / caller / observation / conclusion``; tools are cut-down "docs"
``{"Name", "function", "input"}``. Each canonical turn maps to exactly one item, so the mapping
is lossless both ways (``raw`` fields keep spellings that the canonical fields cannot express).
The rules are those of ``docs/alpha-umi-format.md`` §1–2.
"""

from __future__ import annotations

import json
import re
from typing import Any

from umi_data.trajectory import Call, Tool, Turn

# How a planner decision is spelled at the end of an assistant value.
MARKERS: dict[str, str] = {
    "call": " Next: caller.",
    "conclude": " Next: conclusion.",
    "give_up": " Next: give up.",
}
_MARKER_TO_DECISION = {v: k for k, v in MARKERS.items()}
_CALL_RE = re.compile(r"Action: (?P<name>[^\n]*)\nAction Input: (?P<args>.*?)(?=\nAction: |\Z)", re.S)

TURN_TO_FROM = {
    "user": "user",
    "planner": "assistant",
    "caller": "caller",
    "observation": "observation",
    "conclusion": "conclusion",
}
FROM_TO_TURN = {v: k for k, v in TURN_TO_FROM.items()}


# --- tools -------------------------------------------------------------------------------


def _type_text(spec: dict[str, Any]) -> str:
    t = spec.get("type", "any")
    return t if isinstance(t, str) else json.dumps(t)


def tool_doc(tool: Tool) -> dict[str, Any]:
    """The α-UMi tool doc: last 64 characters of the name, first 256 of the description, and
    per parameter ``"<type>, <last 256 characters of its description>"`` (or ``"<type>"``).
    A parameter without ``type`` (allowed by JSON Schema, absent from ToolBench) renders ``any``."""
    props = (tool.parameters or {}).get("properties") or {}
    inputs: dict[str, str] = {}
    for name, spec in props.items():
        spec = spec if isinstance(spec, dict) else {}
        if "description" in spec:
            inputs[name] = f"{_type_text(spec)}, {str(spec['description'])[-256:]}"
        else:
            inputs[name] = _type_text(spec)
    return {"Name": tool.name[-64:], "function": tool.description[:256], "input": inputs}


def tool_from_doc(doc: dict[str, Any]) -> Tool:
    """Inverse of :func:`tool_doc` for data that only has docs (α-UMi files): the docs are
    already cut, so ``tool_doc(tool_from_doc(d)) == d``."""
    props: dict[str, Any] = {}
    for name, text in (doc.get("input") or {}).items():
        type_, sep, desc = str(text).partition(", ")
        props[name] = {"type": type_, "description": desc} if sep else {"type": type_}
    return Tool(doc["Name"], doc.get("function", ""), {"type": "object", "properties": props})


def tool_docs(tools: list[Tool]) -> list[dict[str, Any]]:
    """Docs for every tool except ``Finish`` (ToolBench's terminal pseudo-tool)."""
    return [tool_doc(t) for t in tools if t.name != "Finish"]


# --- turns <-> conversation items -----------------------------------------------------------


def call_text(calls: list[Call]) -> str:
    """``Action: <name>\\nAction Input: <arguments>``; parallel calls follow one another."""
    return "\n".join(f"Action: {c.name}\nAction Input: {c.arguments}" for c in calls)


def parse_calls(text: str) -> list[Call] | None:
    """Inverse of :func:`call_text`; ``None`` when the text is not in that form."""
    calls = [Call(m["name"], m["args"]) for m in _CALL_RE.finditer(text)]
    if not calls or call_text(calls) != text:
        return None
    return calls


def planner_text(thought: str | None, decision: str | None) -> str:
    """The assistant value: ``<thought>\\n Next: <decision>.``; a plain message is the thought."""
    if decision is None:
        return thought or ""
    span = "" if thought is None else thought + "\n"
    return span + MARKERS[decision]


def parse_planner(value: str) -> tuple[str | None, str | None, bool]:
    """``(thought, decision, canonical)``: ``canonical`` is false when re-rendering the parsed
    thought and decision would not give back ``value`` exactly."""
    for marker, decision in _MARKER_TO_DECISION.items():
        if value.endswith(marker):
            span = value[: -len(marker)]
            if span == "":
                return None, decision, True
            if span.endswith("\n"):
                return span[:-1], decision, True
            return span, decision, False
    return value, None, True


def turn_value(turn: Turn) -> str:
    """The α-UMi ``value`` of one canonical turn."""
    if turn.role in ("planner", "caller") and turn.raw is not None:
        return turn.raw
    if turn.role == "planner":
        return planner_text(turn.thought, turn.decision)
    if turn.role == "caller":
        return call_text(turn.calls or [])
    return turn.content or ""


def turn_from_item(item_from: str, value: str) -> Turn:
    """The canonical turn of one α-UMi item (``from`` already checked)."""
    role = FROM_TO_TURN[item_from]
    if role == "planner":
        thought, decision, canonical = parse_planner(value)
        return Turn("planner", thought=thought, decision=decision, raw=None if canonical else value)  # type: ignore[arg-type]
    if role == "caller":
        calls = parse_calls(value)
        return Turn("caller", calls=calls or [], raw=None if calls is not None else value)
    return Turn(role, content=value)  # type: ignore[arg-type]


def conversation(turns: list[Turn]) -> list[dict[str, str]]:
    return [{"from": TURN_TO_FROM[t.role], "value": turn_value(t)} for t in turns]
