"""Hermes function-calling chats (NousResearch ``hermes-function-calling-v1``, ChatML text calls) → trajectories.

Input shape: a JSON list (or JSONL) of ShareGPT records whose calls and results are tagged text::

    {"id": "…",                                                     # optional
     "conversations": [
        {"from": "system", "value": "You are a function calling AI model. … <tools>
                                      [{'type': 'function', 'function': {'name': 'get_price', 'description': …,
                                        'parameters': {…}}}]
                                      </tools> For each function call return … <tool_call> … </tool_call>"},
        {"from": "human", "value": "Price of AAPL?"},
        {"from": "gpt", "value": "<tool_call>\\n{'arguments': {'symbol': 'AAPL'}, 'name': 'get_price'}\\n</tool_call>"},
        {"from": "tool",
        "value": "<tool_response>\\n{\\"name\\": \\"get_price\\", \\"content\\": {\\"usd\\": 189}}\\n</tool_response>"},
        {"from": "gpt", "value": "AAPL trades at $189.30."}],
     "category": "…", "subcategory": "…", "task": "…"}               # other keys → metadata

Tools: the ``<tools>…</tools>`` block of the system prompt (the first one that holds a list;
the prompt's prose mentions the tags empty), JSON or a Python literal (``ast.literal_eval``,
never executed), a list or one tool per line, each ``{type: function, function: {…}}`` or a bare
``{name, description, parameters}``; without ``<tools>`` tags, the JSON function objects written in
the prompt (glaive's "access to the following functions -\n{…}"); a ``tools`` field (a list, or a
string holding JSON or a Python literal) when the record has one. The system prompt without the
tool list is the trajectory's ``system`` (a ``system`` field, as LLaMA-Factory's ShareGPT has, is
read like a first ``system`` message).

Calls: each ``<tool_call>…</tool_call>`` block of a ``gpt`` message (JSON, a Python literal, or a
Python call ``f(a=1)``) is a call; several are parallel calls; the text around them is the
planner's thought. Results: each ``<tool_response>…</tool_response>`` block of a ``tool`` message
is one observation, answering the calls in order; a block ``{"name", "content"}`` gives the
tool's name and its content (JSON text when not a string). Then the shared chat rules
(``readers/chat.py``). ``from`` may also be ``user`` / ``assistant``. Rejected (``schema``): an
unknown ``from``, a ``<tool_call>`` block that cannot be read, a ``<tools>`` block that is not a
tool list.
"""

from __future__ import annotations

import json
import re
from typing import Any

from umi_data.readers.base import CHAT_ID, Episode, FormatDoc, Reader, Signature
from umi_data.readers.chat import Msg, Reject, build, conversations, from_value, parse_tools
from umi_data.readers.textcalls import CallSyntax, literal, tagged_calls
from umi_data.trajectory import Source, Tool
from umi_data.trajectory.findings import Finding

FORMAT = "hermes"
_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
          "tool": "tool"}
_TOOLS = re.compile(r"<tools>(.*?)</tools>", re.S)
_RESPONSE = re.compile(r"<tool_response>(.*?)(?:</tool_response>|\Z)", re.S)
_KNOWN = ("id", "conversations", "tools", "system")
_DECODER = json.JSONDecoder()
_SHAREGPT_TAGS = ("function_call", "observation")


def sniff(obj: Any) -> bool:
    convs = obj.get("conversations") if isinstance(obj, dict) else None
    if not isinstance(convs, list) or any(isinstance(c, dict) and c.get("from") in _SHAREGPT_TAGS for c in convs):
        return False  # LLaMA-Factory's structured calls: the sharegpt reader's
    for item in convs:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            continue
        who, value = item.get("from"), item["value"]
        if (who in ("gpt", "assistant") and "<tool_call>" in value) or (who == "tool" and "<tool_response>" in value):
            return True
        if who == "system" and _TOOLS.search(value) and _tool_block(value) is not None:
            return True
    return False


def _tool_block(text: str) -> tuple[list[Any], re.Match[str]] | None:
    """The first ``<tools>`` block holding a tool list (JSON or Python literal, a list or one
    tool per line), with its match; ``None`` when there is none."""
    for m in _TOOLS.finditer(text):
        body = m.group(1).strip()
        if not body:
            continue
        try:
            value = literal(body)
        except ValueError:
            try:
                value = [literal(line) for line in body.splitlines() if line.strip()]
            except ValueError:
                continue
        items = value if isinstance(value, list) else [value]
        if items and all(isinstance(t, dict) for t in items):
            return items, m
    return None


def tools_from_system(text: str, pointer: str, source: Source,
                      findings: list[Finding]) -> tuple[list[Tool], list[Any], str]:
    """(tools, other tools, the system text without the tool block)."""
    found = _tool_block(text)
    if found is None:
        if _TOOLS.search(text) and any(m.group(1).strip() for m in _TOOLS.finditer(text)):
            raise Reject(pointer, "the system prompt's <tools> block is not a tool list (JSON or a Python literal)")
        items, spans = _json_tools(text)
    else:
        items, spans = found[0], [found[1].span()]
    if not items:
        return [], [], text
    tools, others = parse_tools(items, pointer, source, findings)
    rest, at = [], 0
    for start, end in spans:
        rest.append(text[at:start].rstrip())
        at = end
    rest.append(text[at:].lstrip())
    return tools, others, "\n".join(r for r in rest if r).strip()


def _json_tools(text: str) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """Function specs written as JSON objects in the system text without ``<tools>`` tags (glaive's
    "access to the following functions -\n{…}\n{…}"), with their spans."""
    items: list[dict[str, Any]] = []
    spans: list[tuple[int, int]] = []
    if '"name"' not in text:
        return items, spans
    at = text.find("{")
    while at >= 0:
        try:
            value, end = _DECODER.raw_decode(text, at)
        except (ValueError, RecursionError):
            value, end = None, at + 1
        if isinstance(value, dict) and isinstance(value.get("name"), str) and (
                "parameters" in value or "description" in value or "function" in value):
            items.append(value)
            spans.append((at, end))
        at = text.find("{", max(end, at + 1))
    return items, spans


def _responses(value: str) -> list[tuple[str | None, str]]:
    """``(tool name or None, content)`` per ``<tool_response>`` block (the whole text if none)."""
    blocks = [m.group(1).strip() for m in _RESPONSE.finditer(value)] or [value]
    out = []
    for block in blocks:
        try:
            data = literal(block)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("name"), str) and "content" in data:
            content = data["content"]
            out.append((data["name"], content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)))
        else:
            out.append((None, block))
    return out


def read(obj: Any, source: Source, traj_id: str) -> list[Episode]:
    findings: list[Finding] = []
    try:
        raw_tools = obj.get("tools")
        if isinstance(raw_tools, str) and raw_tools.strip():
            try:  # a tools column written as JSON, or as a Python literal
                raw_tools = literal(raw_tools)
            except ValueError:
                raise Reject("/tools", "`tools` is a string but neither JSON nor a Python literal") from None
        tools, others = parse_tools(raw_tools, "/tools", source, findings)
        msgs: list[Msg] = []
        items = list(enumerate(conversations(obj)))
        if isinstance(obj.get("system"), str):  # a system column, as LLaMA-Factory's ShareGPT has
            items.insert(0, (-1, {"from": "system", "value": obj["system"]}))
        for i, item in items:
            where = f"/conversations/{i}" if i >= 0 else "/system"
            role, value = from_value(item, where, _ROLES)
            if role == "system":
                found, other, text = tools_from_system(value, f"{where}/value" if i >= 0 else where, source, findings)
                if not tools:
                    tools, others = found, others + other
                msgs.append(Msg("system", where, text=text))
            elif role == "assistant":
                try:
                    parsed = tagged_calls(value)
                except CallSyntax as e:
                    raise Reject(f"{where}/value", f"a <tool_call> block cannot be read: {e}") from None
                if parsed is None:
                    msgs.append(Msg("assistant", where, text=value))
                else:
                    msgs.append(Msg("assistant", where, text=parsed[0], calls=parsed[1]))
            elif role == "tool":
                msgs.extend(Msg("tool", where, text=content, name=name) for name, content in _responses(value))
            else:
                msgs.append(Msg("user", where, text=value))
    except Reject as r:
        return r.rejected(findings, source)
    metadata: dict[str, Any] = {k: v for k, v in obj.items() if k not in _KNOWN}
    if others:
        metadata["other_tools"] = others
    return build(msgs, tools, source, traj_id, findings, metadata, where="/conversations")


class HermesReader(Reader):
    """``hermes`` in the registry: detection order, signature and catalog entry; the module's
    functions do the reading."""

    name = FORMAT
    rank = 40
    tie_rank = 121
    signature = Signature(("conversations",), ("tools", "category", "subcategory", "task"))
    doc = FormatDoc(
        "hermes",
        "Hermes function-calling chats (NousResearch `hermes-function-calling-v1`): ShareGPT with ChatML text calls; tools in the system prompt's `<tools>` block (JSON or a Python literal, never executed)",  # noqa: E501
        ('{"conversations": [{"from": "system", "value": "… <tools> [{\'type\': \'function\', \'function\': {\'name\': \'f\', …}}] </tools> …"}, {"from": "human", …},',  # noqa: E501
         ' {"from": "gpt", "value": "<tool_call>\\n{\'arguments\': {…}, \'name\': \'f\'}\\n</tool_call>"}, {"from": "tool", "value": "<tool_response>\\n{\\"name\\": \\"f\\", \\"content\\": …}\\n</tool_response>"}, {"from": "gpt", …}]}'),  # noqa: E501
        "tools ← the `<tools>` block (the rest of the prompt → `system`); text around `<tool_call>` blocks → planner thought; each block → a call (several: parallel); each `<tool_response>` → observation; `gpt` ending a request → conclusion",  # noqa: E501
        CHAT_ID,
    )

    def sniff(self, obj: Any) -> bool:
        return sniff(obj)

    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        return read(obj, source, traj_id)
