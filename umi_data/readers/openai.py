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
parts are joined without separator (other parts are dropped and reported).

Rules:

- ``system`` (or ``developer``) messages → ``metadata["system"]`` (several are joined with a
  blank line); they have no turn.
- ``user`` → a user turn; the first user message's content is the ``instruction``.
- ``assistant`` with ``tool_calls`` → a planner turn (``thought`` = content, decision ``call``)
  followed by ONE caller turn holding all its calls in order (parallel calls stay together;
  call ids are kept). A call named ``Finish`` (ToolBench's convention) must be the message's
  only call: it becomes a planner turn deciding ``conclude`` (+ a conclusion turn with
  ``final_answer``) or ``give_up`` (``return_type == "give_up_and_restart"``), with the same
  recovery rules for broken arguments as ToolBench (``toolbench.finish_decision``).
- ``assistant`` without ``tool_calls``: the *last* assistant message is the answer → a planner
  turn (``thought`` null, decision ``conclude``) + a conclusion turn (content); any earlier one
  is a plain planner turn (``thought`` = content, decision null).
- ``tool`` → an observation (``content``, ``call_id`` = ``tool_call_id``, ``name`` = the name of
  the call it answers). A tool message without ``tool_call_id`` answers the oldest unanswered
  call.

Rejected (``schema`` error, with a JSON pointer into the record such as
``/messages/3/tool_calls/0/function/arguments``): ``messages`` missing or not a list, a message
that is not an object or has an unknown role, no user message, non-string call ``name`` or
``arguments``, a ``Finish`` call mixed with other calls, a ``tool`` message whose
``tool_call_id`` no earlier call issued (or that answers nothing), malformed ``tools``.
Everything else (unknown tools, arguments that are not JSON, …) is for ``checks``.
"""

from __future__ import annotations

from typing import Any

from umi_data.findings import Finding
from umi_data.readers.toolbench import finish_decision
from umi_data.trajectory import Call, Source, Tool, Trajectory, Turn, derive_outcome

FORMAT = "openai"
_ROLES = ("system", "developer", "user", "assistant", "tool")


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and "messages" in obj


class _Reject(Exception):
    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(message)
        self.pointer = pointer
        self.message = message


def _text(content: Any, pointer: str, source: Source, findings: list[Finding]) -> str | None:
    """A message content as text: a string, ``None``, or the joined text parts of a list."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                findings.append(
                    Finding(
                        "dropped_message",
                        f"content part of type {kind!r} is not text; dropped",
                        source,
                        f"{pointer}/{k}",
                    )
                )
        return "".join(texts)
    raise _Reject(pointer, "`content` must be a string, null or a list of text parts")


def _tools(raw: Any) -> list[Tool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _Reject("/tools", "`tools` must be a list of {type: function, function: {…}}")
    tools = []
    for k, t in enumerate(raw):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _Reject(
                f"/tools/{k}", "a tool must be {type: function, function: {name, description, parameters}}"
            )
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise _Reject(f"/tools/{k}/function/parameters", "`parameters` must be a JSON Schema object")
        desc = fn.get("description")
        tools.append(
            Tool(
                fn["name"],
                desc if isinstance(desc, str) else "",
                params if params is not None else {"type": "object", "properties": {}},
            )
        )
    return tools


def _calls(msg: dict[str, Any], where: str) -> list[Call]:
    raw = msg["tool_calls"]
    if not isinstance(raw, list):
        raise _Reject(f"{where}/tool_calls", "`tool_calls` must be a list")
    calls = []
    for k, tc in enumerate(raw):
        here = f"{where}/tool_calls/{k}"
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict):
            raise _Reject(here, "a tool call must be {id, type: function, function: {name, arguments}}")
        if not isinstance(fn.get("name"), str):
            raise _Reject(f"{here}/function/name", "the call's `name` must be a string")
        if not isinstance(fn.get("arguments"), str):
            raise _Reject(f"{here}/function/arguments", "the call's `arguments` must be a string (JSON text)")
        call_id = tc.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise _Reject(f"{here}/id", "the call's `id` must be a string")
        calls.append(Call(fn["name"], fn["arguments"], call_id))
    return calls


def _turns(messages: list[Any], source: Source, findings: list[Finding]) -> tuple[list[Turn], list[str]]:
    last_assistant = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"),
        default=-1,
    )
    turns: list[Turn] = []
    system: list[str] = []
    issued: dict[str, str] = {}  # call id -> tool name
    pending: list[Call] = []  # calls not yet answered, in order
    for i, msg in enumerate(messages):
        where = f"/messages/{i}"
        if not isinstance(msg, dict):
            raise _Reject(where, "a message must be an object")
        role = msg.get("role")
        if role not in _ROLES:
            raise _Reject(
                f"{where}/role", f"unknown message role {role!r} (expected one of {', '.join(_ROLES)})"
            )
        content = _text(msg.get("content"), f"{where}/content", source, findings)
        if role in ("system", "developer"):
            system.append(content or "")
        elif role == "user":
            turns.append(Turn("user", content=content))
        elif role == "assistant" and msg.get("tool_calls"):
            calls = _calls(msg, where)
            finish = [k for k, c in enumerate(calls) if c.name == "Finish"]
            if finish and len(calls) > 1:
                raise _Reject(
                    f"{where}/tool_calls/{finish[0]}", "a Finish call must be the only call of its message"
                )
            if finish:
                decision, answer, recovered = finish_decision(calls[0].arguments, content)
                if recovered:
                    findings.append(
                        Finding(
                            "finish_recovered",
                            "Finish arguments are not valid JSON; answer recovered from the text",
                            source,
                            f"{where}/tool_calls/0/function/arguments",
                        )
                    )
                turns.append(Turn("planner", thought=content, decision=decision))  # type: ignore[arg-type]
                if decision == "conclude":
                    turns.append(Turn("conclusion", content=answer))
                continue
            turns.append(Turn("planner", thought=content, decision="call"))
            turns.append(Turn("caller", calls=calls))
            pending.extend(calls)
            issued.update({c.id: c.name for c in calls if c.id is not None})
        elif role == "assistant":
            if i == last_assistant:
                turns.append(Turn("planner", thought=None, decision="conclude"))
                turns.append(Turn("conclusion", content=content))
            else:
                turns.append(Turn("planner", thought=content, decision=None))
        else:  # tool
            call_id = msg.get("tool_call_id")
            if call_id is None:
                if not pending:
                    raise _Reject(where, "tool message without `tool_call_id` answers no call")
                call = pending.pop(0)
                call_id, name = call.id, call.name
            elif not isinstance(call_id, str):
                raise _Reject(f"{where}/tool_call_id", "`tool_call_id` must be a string")
            elif call_id not in issued:
                raise _Reject(
                    f"{where}/tool_call_id",
                    f"tool message answers call id {call_id!r}, which no earlier assistant message issued",
                )
            else:
                name = issued[call_id]
                pending = [c for c in pending if c.id != call_id]
            turns.append(Turn("observation", content=content, call_id=call_id, name=name))
    return turns, system


def read(obj: Any, source: Source, traj_id: str) -> tuple[Trajectory | None, list[Finding]]:
    """One chat record → a trajectory, or ``None`` with the ``schema`` finding that rejects it."""
    findings: list[Finding] = []
    try:
        messages = obj.get("messages")
        if not isinstance(messages, list):
            raise _Reject("/messages", "`messages` must be a list of chat messages")
        tools = _tools(obj.get("tools"))
        metadata = obj.get("metadata", {})
        if not isinstance(metadata, dict):
            raise _Reject("/metadata", "`metadata` must be an object")
        turns, system = _turns(messages, source, findings)
    except _Reject as r:
        return None, [*findings, Finding("schema", r.message, source, r.pointer)]
    users = [t for t in turns if t.role == "user"]
    if not users:
        return None, [
            *findings,
            Finding("schema", "the chat has no user message (no instruction)", source, "/messages"),
        ]
    metadata = dict(metadata)
    if system:
        metadata["system"] = "\n\n".join(system)
    traj = Trajectory(traj_id, source, users[0].content or "", tools, turns, derive_outcome(turns), metadata)
    return traj, findings
