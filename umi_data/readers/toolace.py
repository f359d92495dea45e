"""ToolACE-style chats (Team-ACE ``ToolACE``: tools listed in the system prompt, calls as Python) → trajectories.

Input shape: a JSON list (or JSONL) of::

    {"system": "You are an expert in composing functions. … Here is a list of functions in JSON format
                that you can invoke:\\n[{\\"name\\": \\"newAddress\\", \\"description\\": \\"…\\",
                \\"parameters\\": {\\"type\\": \\"dict\\", \\"properties\\": {…}, \\"required\\": […]}}]. \\n
                Should you decide to return the function call(s), put it in the format of
                [func1(params_name=params_value, params_name2=params_value2...), func2(params)] …",
     "conversations": [
        {"from": "user", "value": "Create a wallet with password s3cret."},
        {"from": "assistant", "value": "[newAddress(password=\\"s3cret\\")]"},
        {"from": "tool", "value": "[{\\"name\\": \\"newAddress\\", \\"results\\": {\\"address\\": \\"0x…\\"}}]"},
        {"from": "assistant", "value": "Your new address is 0x…."}]}

Tools: the first JSON list of ``{name, …}`` objects in the system prompt (read with a JSON
decoder from its first ``[`` on: the text around it is prose); the system prompt without it is
the trajectory's ``system``. Parameter types are kept as written (``dict``, ``float`` …).

Calls: an assistant message that is a bracketed list of Python calls, ``[f(a=1, b="x"), g()]``,
is parsed with :mod:`ast` (literal values only, never executed; names with spaces or dots are
fine); several calls are parallel calls. A message that opens like a call list but cannot be
read stays text with a ``calls_in_text`` warning. Results: a tool message holding a JSON list of
``{"name", "results"}`` (or ``"content"``) is one observation per item, answering the calls in
order; anything else is one observation. ``from`` may also be ``human`` / ``gpt`` /
``observation`` / ``function``. Then the shared chat rules (``readers/chat.py``).
"""

from __future__ import annotations

import json
from typing import Any

from umi_data.readers.base import CHAT_ID, Episode, FormatDoc, Reader, Signature
from umi_data.readers.chat import Msg, Reject, build, conversations, from_value, parse_tools
from umi_data.readers.textcalls import CallSyntax, python_calls
from umi_data.trajectory import Source, Tool
from umi_data.trajectory.findings import Finding

FORMAT = "toolace"
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "tool": "tool",
          "observation": "tool", "function": "tool"}
_KNOWN = ("id", "system", "conversations")
_DECODER = json.JSONDecoder()


def tool_list(text: str) -> tuple[list[dict[str, Any]], int, int] | None:
    """The first JSON list of ``{name, …}`` objects in ``text``, with its span."""
    at = text.find("[")
    while at >= 0:
        try:
            value, end = _DECODER.raw_decode(text, at)
        except (ValueError, RecursionError):
            value, end = None, at
        if isinstance(value, list) and value and all(isinstance(t, dict) and isinstance(t.get("name"), str)
                                                     for t in value):
            return value, at, end
        at = text.find("[", at + 1)
    return None


def sniff(obj: Any) -> bool:
    if not isinstance(obj, dict) or obj.get("tools") or not isinstance(obj.get("system"), str):
        return False
    convs = obj.get("conversations")
    if not isinstance(convs, list) or not convs:
        return False
    first = convs[0].get("from") if isinstance(convs[0], dict) else None
    if any(isinstance(c, dict) and c.get("from") == "function_call" for c in convs):
        return False  # LLaMA-Factory's structured calls: the sharegpt reader's
    return isinstance(first, str) and first in _ROLES and "[" in obj["system"] and tool_list(obj["system"]) is not None


def _results(value: str) -> list[tuple[str | None, str]]:
    """``(name, content)`` per item of a ToolACE result list, else the whole value once."""
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, list) and data and all(
            isinstance(d, dict) and isinstance(d.get("name"), str) and ("results" in d or "content" in d)
            for d in data):
        out = []
        for d in data:
            content = d["results"] if "results" in d else d["content"]
            out.append((d["name"], content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)))
        return out
    return [(None, value)]


def read(obj: Any, source: Source, traj_id: str) -> list[Episode]:
    findings: list[Finding] = []
    tools: list[Tool] = []
    others: list[Any] = []
    try:
        msgs: list[Msg] = []
        system = obj.get("system")
        if isinstance(system, str):
            found = tool_list(system)
            if found is not None:
                items, start, end = found
                tools, others = parse_tools(items, "/system", source, findings)
                after = system[end:].lstrip()
                after = after[1:].lstrip() if after.startswith(".") else after  # "[…]. \nShould you …"
                system = (system[:start].rstrip() + "\n" + after).strip()
            msgs.append(Msg("system", "/system", text=system))
        for i, item in enumerate(conversations(obj)):
            where = f"/conversations/{i}"
            role, value = from_value(item, where, _ROLES)
            if role == "assistant":
                try:
                    calls = python_calls(value)
                except CallSyntax as e:
                    calls = None
                    findings.append(Finding("calls_in_text", f"this assistant message opens like a call list but "
                                            f"cannot be read as one ({e}); kept as text", source, f"{where}/value"))
                msgs.append(Msg("assistant", where, calls=calls) if calls else Msg("assistant", where, text=value))
            elif role == "tool":
                msgs.extend(Msg("tool", where, text=content, name=name) for name, content in _results(value))
            else:
                msgs.append(Msg("user", where, text=value))
    except Reject as r:
        return r.rejected(findings, source)
    metadata: dict[str, Any] = {k: v for k, v in obj.items() if k not in _KNOWN}
    if others:
        metadata["other_tools"] = others
    return build(msgs, tools, source, traj_id, findings, metadata, where="/conversations")


class ToolAceReader(Reader):
    """``toolace`` in the registry: detection order, signature and catalog entry; the module's
    functions do the reading."""

    name = FORMAT
    rank = 50
    tie_rank = 122
    signature = Signature(("system", "conversations"))
    doc = FormatDoc(
        "toolace",
        "ToolACE-style chats (Team-ACE `ToolACE`): tools as a JSON list in the `system` text, calls as a Python call list parsed with `ast` (literal values only, never executed)",  # noqa: E501
        ('{"system": "… Here is a list of functions in JSON format that you can invoke:\\n[{\\"name\\": \\"f\\", …}]. …", "conversations": [{"from": "user", …},',  # noqa: E501
         ' {"from": "assistant", "value": "[f(a=1, b=\\"x\\"), g()]"}, {"from": "tool", "value": "[{\\"name\\": \\"f\\", \\"results\\": {…}}, …]"}, {"from": "assistant", …}]}'),  # noqa: E501
        "tools ← the system text's function list (the rest → `system`); `[f(…), g(…)]` → planner (no thought) + caller (parallel calls together); each result item → observation; other assistant text ending a request → conclusion",  # noqa: E501
        CHAT_ID,
    )

    def sniff(self, obj: Any) -> bool:
        return sniff(obj)

    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        return read(obj, source, traj_id)
