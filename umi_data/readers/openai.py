"""OpenAI-style chat trajectories (people's own agent logs) → canonical trajectories.

Input shape: one object per record (a JSON object, an element of a JSON list, or a JSONL line)::

    {"id": "chat-17",                                    # optional; else <file stem>/<line or index>
     "messages": [
        {"role": "system", "content": "You are a helpful agent."},
        {"role": "user", "content": "What's the weather in Oslo and in Bergen?"},
        {"role": "assistant", "content": "I'll look both up." | null,
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}},
                        {"id": "call_2", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Bergen\\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\\"temp_c\\": 4}"},
        {"role": "tool", "tool_call_id": "call_2", "content": "{\\"temp_c\\": 7}"},
        {"role": "assistant", "content": "Oslo is 4 °C and Bergen 7 °C."}],
     "tools": [{"type": "function",
                "function": {"name": "get_weather", "description": "…", "parameters": {JSON Schema}}}],
     "metadata": {…}}                                    # optional, copied into the trajectory

``content`` may be a string, ``null``, or a list of parts ``{"type": "text", "text": …}``; text
parts are joined without separator (other parts are dropped and reported). ``tools`` may also be
given as a JSON string; a tool that is not a function (``{"type": "code_interpreter"}``) is
kept in ``metadata.other_tools`` with a ``non_function_tool`` warning. The same code reads the
``openai-typed`` and ``openai-functions`` variants (their modules show their shapes).

Rules: ``readers/chat.py`` (shared by every chat format): ``system``/``developer`` →
the trajectory's ``system``; ``user`` → user turn; ``assistant`` with ``tool_calls`` → planner
(``thought`` = content, decision ``call``) + ONE caller turn with all its calls in order (call
ids kept; a ``Finish`` call → ``conclude`` + conclusion, or ``give_up``); ``assistant`` without
calls that ends a request → planner ``conclude`` + conclusion, else a plain planner turn;
``tool`` → observation. A chat that ends in calls is ``calls_only``; a multi-turn chat is one
trajectory per request (``<id>``, ``<id>#2``, …). An assistant message's ``reasoning_content``
is the planner's thought; assistant messages with ``"weight": 0`` (OpenAI fine-tuning's "not
learned") and everything up to the next assistant step are history (no examples); a tool
message's ``error`` is the observation's error (``raw``: its original text, when recovered).

Rejected (``schema`` error, with a JSON pointer into the record such as
``/messages/3/tool_calls/0/function/arguments``): ``messages`` missing or not a list, a message
that is not an object or has an unknown role, no user message, non-string call ``name`` or
``arguments``, a ``Finish`` call mixed with other calls, a ``tool`` message whose
``tool_call_id`` no earlier call issued (or that answers nothing), malformed ``tools``.
Everything else (unknown tools, arguments that are not JSON, …) is for ``checks``.
"""

from __future__ import annotations

import json
from typing import Any

from umi_data.readers.base import CHAT_ID, Episode, FormatDoc, Reader, Signature
from umi_data.readers.chat import Msg, Reject, build, parse_tools
from umi_data.trajectory import Call, Source
from umi_data.trajectory.findings import Finding

FORMAT = "openai"
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool",
          "function": "tool"}
_TEXT_KEYS = ("text", "value")


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and "messages" in obj


def _part_text(part: dict[str, Any]) -> str | None:
    return next((part[k] for k in _TEXT_KEYS if isinstance(part.get(k), str)), None)


def _content(content: Any, pointer: str, msg: Msg, source: Source, findings: list[Finding]) -> None:
    """Fill ``msg.text`` / ``thought`` / ``calls`` from a content: a string, ``None``, or typed
    parts (``text``, ``reasoning``, ``tool_call``; the text under ``text`` or ``value``)."""
    if content is None or isinstance(content, str):
        msg.text = content
        return
    if not isinstance(content, list):
        raise Reject(pointer, "`content` must be a string, null or a list of typed parts")
    texts: list[str] = []
    thoughts: list[str] = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        value = _part_text(part) if isinstance(part, dict) else None
        if kind == "text" and value is not None:
            texts.append(value)
        elif kind in ("reasoning", "thinking") and value is not None:
            thoughts.append(value)
        elif kind == "tool_call" and value is not None:
            msg.calls.extend(_part_calls(value, f"{pointer}/{k}"))
        else:
            findings.append(Finding("dropped_message", f"content part of type {kind!r} is not text, reasoning "
                                    "or a tool call; dropped", source, f"{pointer}/{k}"))
    msg.text = "".join(texts)
    if thoughts:
        msg.thought = "\n".join(thoughts)


def _arguments(args: Any, pointer: str) -> str:
    """A call's arguments as text: kept as given when a string, else JSON (as LLaMA-Factory and
    the transformers chat templates serialise them: ``json.dumps(..., ensure_ascii=False)``)."""
    if isinstance(args, str):
        return args
    if isinstance(args, dict):
        return json.dumps(args, ensure_ascii=False)
    raise Reject(pointer, "the call's `arguments` must be an object or a string")


def _part_calls(value: str, pointer: str) -> list[Call]:
    """A ``tool_call`` part: JSON text ``{"name", "arguments"}`` (or a list of them)."""
    try:
        data = json.loads(value)
    except ValueError as e:
        raise Reject(pointer, f"a tool_call part must hold JSON {{name, arguments}} ({e})") from None
    items = data if isinstance(data, list) else [data]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise Reject(pointer, "a tool_call part must hold JSON {name, arguments}")
        calls.append(Call(item["name"], _arguments(item.get("arguments", {}), f"{pointer}/value")))
    return calls


def _tool_calls(raw: Any, where: str) -> list[Call]:
    if not isinstance(raw, list):
        raise Reject(f"{where}/tool_calls", "`tool_calls` must be a list")
    calls = []
    for k, tc in enumerate(raw):
        here = f"{where}/tool_calls/{k}"
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict):
            raise Reject(here, "a tool call must be {id, type: function, function: {name, arguments}}")
        if not isinstance(fn.get("name"), str):
            raise Reject(f"{here}/function/name", "the call's `name` must be a string")
        if not isinstance(fn.get("arguments"), str):
            raise Reject(f"{here}/function/arguments", "the call's `arguments` must be a string (JSON text)")
        call_id = tc.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise Reject(f"{here}/id", "the call's `id` must be a string")
        calls.append(Call(fn["name"], fn["arguments"], call_id))
    return calls


def _function_call(fc: Any, where: str) -> Call:
    """Legacy ``function_call: {name, arguments}`` (arguments a JSON string, or an object)."""
    if not isinstance(fc, dict) or not isinstance(fc.get("name"), str):
        raise Reject(f"{where}/function_call", "`function_call` must be {name, arguments}")
    return Call(fc["name"], _arguments(fc.get("arguments", "{}"), f"{where}/function_call/arguments"))


def messages(raw: Any, source: Source, findings: list[Finding], key: str = "messages") -> list[Msg]:
    """OpenAI-family messages (plain, typed parts, legacy functions) → :class:`Msg`; ``key``
    names the field that held them, for the pointers."""
    if not isinstance(raw, list):
        raise Reject(f"/{key}", f"`{key}` must be a list of chat messages")
    out = []
    for i, m in enumerate(raw):
        where = f"/{key}/{i}"
        if not isinstance(m, dict):
            raise Reject(where, "a message must be an object")
        raw_role = m.get("role")
        role = _ROLES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise Reject(f"{where}/role", f"unknown message role {str(raw_role)[:80]!r} (expected one of "
                         f"{', '.join(_ROLES)})")
        msg = Msg(role, where)  # type: ignore[arg-type]
        _content(m.get("content"), f"{where}/content", msg, source, findings)
        if role == "assistant":
            msg.context = m.get("weight") == 0  # OpenAI fine-tuning: a message not to learn
            if isinstance(m.get("reasoning_content"), str):
                msg.thought = m["reasoning_content"]
            if m.get("tool_calls"):
                msg.calls.extend(_tool_calls(m["tool_calls"], where))
            if m.get("function_call"):
                msg.calls.append(_function_call(m["function_call"], where))
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if call_id is not None and not isinstance(call_id, str):
                raise Reject(f"{where}/tool_call_id", "`tool_call_id` must be a string")
            msg.call_id = call_id
            if isinstance(m.get("name"), str):
                msg.name = m["name"]
            if isinstance(m.get("error"), str):
                msg.error = m["error"]
            if isinstance(m.get("raw"), str):
                msg.raw = m["raw"]
        out.append(msg)
    return out


def read(obj: Any, source: Source, traj_id: str) -> list[Episode]:
    """One chat record → one trajectory per request, or the ``schema`` finding that rejects it."""
    findings: list[Finding] = []
    try:
        tools, others = parse_tools(obj.get("tools"), "/tools", source, findings)
        legacy, _ = parse_tools(obj.get("functions"), "/functions", source, findings)
        metadata = obj.get("metadata", {})
        if not isinstance(metadata, dict):
            raise Reject("/metadata", "`metadata` must be an object")
        msgs = messages(obj.get("messages"), source, findings)
    except Reject as r:
        return r.rejected(findings, source)
    metadata = dict(metadata)
    if others:
        metadata["other_tools"] = others
    return build(msgs, tools + legacy, source, traj_id, findings, metadata)


class OpenAIReader(Reader):
    """``openai`` in the registry: detection order, signature and catalog entry; the module's
    functions do the reading."""

    name = FORMAT
    rank = 100
    signature = Signature(("messages",), ("tools", "functions", "metadata"))
    doc = FormatDoc(
        "openai",
        "OpenAI chats (`messages` with `tool_calls` / `tool`, `tools` a list or a JSON string), JSON or JSONL",
        ('{"id": "c1", "messages": [{"role": "user", …}, {"role": "assistant", "content": "…", "tool_calls": [{"id": "a", "type": "function", "function": {…}}]},',  # noqa: E501
         ' {"role": "tool", "tool_call_id": "a", "content": "…"}, {"role": "assistant", "content": "…"}], "tools": [{"type": "function", "function": {…}}]}'),  # noqa: E501
        "`content` (or `reasoning_content`) → planner thought; `tool_calls` → caller (parallel calls together); `tool` → observation; a request's last assistant message → conclusion",  # noqa: E501
        CHAT_ID,
    )

    def sniff(self, obj: Any) -> bool:
        return sniff(obj)

    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        return read(obj, source, traj_id)
