"""Chat-shaped records → canonical trajectories: the one rule set every chat reader shares.

The chat readers (``openai`` and its variants, ``sharegpt``, ``toolllama``, ``hermes``, ``toolace``,
``tau-bench``) only translate their
input into a list of :class:`Msg` (system / user / assistant / tool); :func:`build` applies the
rules below, so every chat format maps to planner / caller / observation / conclusion alike.

- ``system`` → the trajectory's ``system`` (several joined with a blank line); no turn.
- ``user`` → a user turn.
- ``assistant`` with calls → a planner turn (``thought`` = reasoning and text, decision ``call``)
  + ONE caller turn with all its calls in order. A call named ``Finish`` (ToolBench's
  convention) must be the only one: it becomes a planner turn deciding ``conclude`` (+ a
  conclusion with ``final_answer``) or ``give_up`` (ToolBench's recovery rules for broken
  arguments, ``toolbench.finish_decision``).
- ``assistant`` without calls that ends a request (the next message is a user message, or there
  is none) is the answer → a planner turn (``thought`` = its reasoning, or null; decision
  ``conclude``) + a conclusion turn (its text). Any other one is a plain planner turn (decision
  null) that only enters histories.
- ``tool`` → an observation; it answers the call with its ``call_id``, else the oldest
  unanswered call. One tool message holding the results of several waiting calls (a JSON list
  of ``{"name", "content"}``, LLaMA-Factory's typed-part data) is one observation per call.

Small mismatches of published chats are mended with a warning, never a reject (:func:`_mend`):
arguments encoded twice are decoded once; in a chat that declares no tools, assistant text that
is calls in a known syntax (``readers/textcalls.py``) is read as calls, text that only opens
like calls stays text with a warning; user messages nothing answers at the chat's end (a user
simulator's ``###STOP###``) end the chat, their text in ``metadata["umi_trailing_user"]``.

Episodes (multi-turn chats): a user message that comes after an answer (or a give-up) starts a
new request. Each request becomes its own trajectory — its instruction is its first user
message, its turns run to its answer, and every earlier turn is its ``history`` (context in the
prompts, no examples). The first keeps the record's id, the k-th (k ≥ 2) is ``<id>#k``, so ids
of single-request chats never change and appending to a chat never renames earlier requests.
User messages that come while the agent is still working (ToolBench's reflection prompts, a
clarification after a tool result) stay in the current request.

``last_step`` mode (ToolLLaMA's ``Step N`` records, each a prefix of one search ending at the
step it trains): everything before the last assistant step is history. Assistant messages
marked as context (OpenAI fine-tuning's ``"weight": 0``) work alike: everything up to the first
assistant step after the last of them is history, and the record is one trajectory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from umi_data.readers.base import Episode
from umi_data.readers.textcalls import CallSyntax, calls_in_text, double_encoded, looks_like_calls
from umi_data.readers.toolbench import finish_decision
from umi_data.trajectory import Call, Source, Tool, Trajectory, Turn, derive_outcome
from umi_data.trajectory.findings import Finding
from umi_data.trajectory.param_types import is_flat, normalise_parameters

_MSG_INDEX = re.compile(r"^/[^/]+/(\d+)")


class Reject(Exception):
    """A record that cannot become a trajectory: a ``schema`` error at ``pointer``."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(message)
        self.pointer = pointer
        self.message = message

    def rejected(self, findings: list[Finding], source: Source) -> list[Episode]:
        """The record's one episode: no trajectory; the findings so far and this ``schema`` error."""
        return [(None, [*findings, Finding("schema", self.message, source, self.pointer)])]


@dataclass(slots=True)
class Msg:
    """One chat message, whatever the input spelled it like; ``pointer`` locates it."""

    role: Literal["system", "user", "assistant", "tool"]
    pointer: str
    text: str | None = None
    thought: str | None = None  # reasoning given apart from the text (typed parts, ToolLLaMA)
    calls: list[Call] = field(default_factory=list)
    call_id: str | None = None  # tool: the call it answers
    name: str | None = None  # tool: the tool that answered, when the input says
    error: str | None = None  # tool: the tool's error, when the input separates it
    raw: str | None = None  # tool: the original text when ``text`` was recovered from it
    context: bool = False  # assistant: given as context only (OpenAI ``"weight": 0``): history


def conversations(obj: dict[str, Any]) -> list[Any]:
    """The ``conversations`` list of a ShareGPT-style record (``hermes``, ``toolace``, ``toolllama``)."""
    convs = obj.get("conversations")
    if not isinstance(convs, list):
        raise Reject("/conversations", "`conversations` must be a list of {from, value}")
    return convs


def from_value(item: Any, where: str, roles: dict[str, str], unknown: str | None = None) -> tuple[str, str]:
    """``(role, value)`` of one ``{from, value}`` turn at ``where``, its ``from`` looked up in
    ``roles``; a :class:`Reject` when ``from`` is none of them (``unknown``: the reader's own words
    for that) or ``value`` is not a string."""
    tag = item.get("from") if isinstance(item, dict) else None
    role = roles.get(tag) if isinstance(tag, str) else None
    value = item.get("value") if isinstance(item, dict) else None
    if role is None:
        raise Reject(f"{where}/from", unknown or f"unknown role {tag!r} (expected one of {', '.join(roles)})")
    if not isinstance(value, str):
        raise Reject(f"{where}/value", "`value` must be a string")
    return role, value


def parse_tools(raw: Any, pointer: str, source: Source, findings: list[Finding]) -> tuple[list[Tool], list[Any]]:
    """``tools`` as a list or as a JSON string of one; each a ``{type: function, function: {…}}``
    or a bare ``{name, description, parameters}``. Other tools (``{"type": "code_interpreter"}``)
    are returned apart, with a ``non_function_tool`` warning."""
    if raw is None or raw == "":
        return [], []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as e:
            raise Reject(pointer, f"`tools` is a string but not JSON ({e})") from None
    if not isinstance(raw, list):
        raise Reject(pointer, "`tools` must be a list (or a JSON string of a list) of function specs")
    tools: list[Tool] = []
    others: list[Any] = []
    for k, t in enumerate(raw):
        here = f"{pointer}/{k}"
        fn = t.get("function", t) if isinstance(t, dict) else None
        if isinstance(t, dict) and t.get("type", "function") != "function" and "function" not in t:
            others.append(t)
            findings.append(Finding("non_function_tool", f"tool of type {t.get('type')!r} is not a function; "
                                    "kept in metadata.other_tools", source, here))
            continue
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise Reject(here, "a tool must be {type: function, function: {name, description, parameters}} "
                         "or {name, description, parameters}")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise Reject(f"{here}/parameters", "`parameters` must be a JSON Schema object")
        desc = fn.get("description")
        if is_flat(params):  # xLAM-style {"p": {"type": "str", …}}: never JSON Schema, so made one
            params = normalise_parameters(params)
        tools.append(Tool(fn["name"], desc if isinstance(desc, str) else "",
                          params if params is not None else {"type": "object", "properties": {}}))
    return tools, others


def _join(*parts: str | None) -> str | None:
    kept = [p for p in parts if p]
    return "\n".join(kept) if kept else None


TRAILING_USER = "umi_trailing_user"  # metadata: the user messages no one answered, at a chat's end


def _mend(msgs: list[Msg], tools: list[Tool], source: Source, findings: list[Finding]) -> tuple[list[Msg], list[str]]:
    """The small mismatches of published chats, each mended with a warning, never a reject:

    - call arguments encoded twice (a JSON string holding a JSON object) are decoded once;
    - a chat that declares no tools but whose assistant text is calls in a known syntax
      (``<tool_call>`` blocks, JSON ``{name, arguments}``, a Python call list): read as calls;
      text that opens like calls but cannot be read stays text, with a warning saying so;
    - user messages after the last assistant or tool message (a user simulator's ``###STOP###``
      line) end the chat: they are returned apart (kept in ``metadata``), not left as a request
      without an answer.
    """
    for msg in msgs:
        if msg.role != "assistant":
            continue
        if not msg.calls and not tools and msg.text and not msg.context:
            try:
                found = calls_in_text(msg.text)
            except CallSyntax as e:
                found = None
                findings.append(Finding("calls_in_text", f"the chat declares no tools and this assistant text opens "
                                        f"like tool calls but cannot be read as them ({e}); kept as text (an answer "
                                        "or a plain message)", source, msg.pointer))
            else:
                if found is None and looks_like_calls(msg.text):
                    findings.append(Finding("calls_in_text", "the chat declares no tools and this assistant text "
                                            "opens like tool calls in no syntax umi reads; kept as text (an answer "
                                            "or a plain message)", source, msg.pointer))
            if found is not None:
                thought, msg.calls = found
                msg.text = thought
                names = ", ".join(c.name for c in msg.calls)
                findings.append(Finding("calls_from_text", f"the chat declares no tools; this assistant text is "
                                        f"read as {len(msg.calls)} tool call(s) ({names})", source, msg.pointer))
        for k, call in enumerate(msg.calls):
            inner = double_encoded(call.arguments)
            if inner is not None:
                call.arguments = inner
                findings.append(Finding("arguments_double_encoded", f"the arguments of call {k} ({call.name!r}) are a "
                                        "JSON string holding a JSON object (encoded twice); decoded once",
                                        source, msg.pointer))
    last = max((k for k, m in enumerate(msgs) if m.role in ("assistant", "tool")), default=None)
    if last is None:
        return msgs, []
    trailing = [m for m in msgs[last + 1:] if m.role == "user"]
    for m in trailing:
        findings.append(Finding("unanswered_user", "the chat ends with this user message, which nothing answers "
                                "(e.g. a user simulator's stop line): the chat ends before it; its text is kept in "
                                f"metadata.{TRAILING_USER}", source, m.pointer))
    dropped = {id(m) for m in trailing}
    return [m for m in msgs if id(m) not in dropped], [m.text or "" for m in trailing]


def _turns(msgs: list[Msg], source: Source, findings: list[Finding]) -> tuple[list[Turn], list[int], list[str]]:
    """The turns, the message position each turn came from, and the system texts."""
    turns: list[Turn] = []
    origin: list[int] = []
    system: list[str] = []
    issued: dict[str, str] = {}  # call id -> tool name
    pending: list[Call] = []  # calls not yet answered, in order
    talking = [k for k, m in enumerate(msgs) if m.role != "system"]
    following = {talking[j]: msgs[talking[j + 1]].role for j in range(len(talking) - 1)}

    def add(k: int, *new: Turn) -> None:
        turns.extend(new)
        origin.extend([k] * len(new))

    for k, msg in enumerate(msgs):
        if msg.role == "system":
            system.append(msg.text or "")
        elif msg.role == "user":
            add(k, Turn("user", content=msg.text))
        elif msg.role == "assistant" and msg.calls:
            calls = msg.calls
            finish = [j for j, c in enumerate(calls) if c.name == "Finish"]
            if finish and len(calls) > 1:
                raise Reject(msg.pointer, "a Finish call must be the only call of its message")
            thought = _join(msg.thought, msg.text)
            if finish:
                decision, answer, recovered = finish_decision(calls[0].arguments, thought)
                if recovered:
                    findings.append(Finding("finish_recovered", "Finish arguments are not valid JSON; answer "
                                            "recovered from the text", source, msg.pointer))
                add(k, Turn("planner", thought=thought, decision=decision))  # type: ignore[arg-type]
                if decision == "conclude":
                    add(k, Turn("conclusion", content=answer))
                continue
            add(k, Turn("planner", thought=thought, decision="call"), Turn("caller", calls=calls))
            pending.extend(calls)
            issued.update({c.id: c.name for c in calls if c.id is not None})
        elif msg.role == "assistant":
            # it ends a request (the answer) when a user message came before it; an opening
            # greeting is a plain turn (history), not a request of its own without a question
            if following.get(k, "user") == "user" and any(t.role == "user" for t in turns):
                add(k, Turn("planner", thought=msg.thought, decision="conclude"), Turn("conclusion", content=msg.text))
            else:
                add(k, Turn("planner", thought=_join(msg.thought, msg.text), decision=None))
        elif (parts := _results_of(msg, pending)) is not None:  # one message answering parallel calls
            for call, content in zip(pending, parts, strict=True):
                add(k, Turn("observation", content=content, call_id=call.id, name=call.name))
            pending = []
        else:  # tool
            call_id, name = msg.call_id, msg.name
            if call_id is None:
                if not pending:
                    raise Reject(msg.pointer, "tool message answers no call (no `tool_call_id` and no call "
                                 "is waiting for a result)")
                call = pending.pop(0)
                call_id, name = call.id, name or call.name
            elif call_id not in issued:
                raise Reject(f"{msg.pointer}/tool_call_id", f"tool message answers call id {call_id!r}, "
                             "which no earlier assistant message issued")
            else:
                name = name or issued[call_id]
                pending = [c for c in pending if c.id != call_id]
            add(k, Turn("observation", content=msg.text, error=msg.error, call_id=call_id, name=name,
                        raw=msg.raw))
    return turns, origin, system


def _results_of(msg: Msg, pending: list[Call]) -> list[str] | None:
    """The results of several waiting calls given in ONE tool message, as LLaMA-Factory's
    typed-part data does: a JSON list of ``{"name", "content"}`` (``tool_call_id`` ignored), one
    per waiting call, names in the calls' order. ``None`` when the message is not that."""
    if msg.role != "tool" or msg.call_id is not None or len(pending) < 2 or not (msg.text or "").startswith("["):
        return None
    try:
        items = json.loads(msg.text or "")
    except ValueError:
        return None
    if not isinstance(items, list) or len(items) != len(pending):
        return None
    if not all(isinstance(it, dict) and it.get("name") == c.name and "content" in it
               for it, c in zip(items, pending, strict=True)):
        return None
    return [it["content"] if isinstance(it["content"], str) else json.dumps(it["content"], ensure_ascii=False)
            for it in items]


def _episode_starts(turns: list[Turn]) -> list[int]:
    """Turn indices where a request starts: 0, and each user turn after an answer or give-up."""
    starts, answered = [0], False
    for i, t in enumerate(turns):
        if t.role == "user" and answered:
            starts.append(i)
            answered = False
        elif t.role == "conclusion" or (t.role == "planner" and t.decision == "give_up"):
            answered = True
    return starts


def build(
    msgs: list[Msg],
    tools: list[Tool],
    source: Source,
    traj_id: str,
    findings: list[Finding],
    metadata: dict[str, Any] | None = None,
    mode: Literal["episodes", "last_step"] = "episodes",
    where: str = "/messages",
) -> list[Episode]:
    """Trajectories of one chat record (one per request, or one for its last step), each with
    the reader warnings that point into its messages; a ``schema`` rejection if it has none."""
    given = msgs
    msgs, trailing = _mend(msgs, tools, source, findings)
    try:
        turns, origin, system = _turns(msgs, source, findings)
    except Reject as r:
        return r.rejected(findings, source)
    if not any(t.role == "user" for t in turns):
        return [(None, [*findings, Finding("schema", "the chat has no user message (no instruction)", source,
                                           where)])]
    meta = dict(metadata or {})
    last_meta = {TRAILING_USER: trailing} if trailing else {}
    system = [text for text in system if text.strip()]
    system_text = "\n\n".join(system) if system else None
    context = [k for k, m in enumerate(msgs) if m.context]
    if context:  # history = up to the first assistant step after the last message not to learn
        mode = "last_step"
        last = next((i for i, t in enumerate(turns) if t.role == "planner" and origin[i] > context[-1]),
                    len(turns))
    else:
        last = max((i for i, t in enumerate(turns) if t.role == "planner"), default=0)
    if mode == "last_step":  # history only when there is an earlier step (not just the request)
        starts = [0, last] if any(t.role == "planner" for t in turns[:last]) else [0]
    else:
        starts = _episode_starts(turns)
    bounds = list(zip(starts, [*starts[1:], len(turns)], strict=True))
    # Reader warnings go with the request whose messages they point into.
    first_msg = [origin[s] if s < len(origin) else len(msgs) for s, _ in bounds]
    position = {msg.pointer: k for k, msg in enumerate(given)}  # trailing user messages: the last request
    per: list[list[Finding]] = [[] for _ in bounds]
    for f in findings:
        hit = _MSG_INDEX.match(f.pointer)
        pos = position.get(hit.group(0), -1) if hit else -1
        per[max((e for e, fm in enumerate(first_msg) if fm <= pos), default=0)].append(f)
    if mode == "last_step":
        user = next(t for t in turns if t.role == "user")
        cut = starts[-1]
        t = Trajectory(traj_id, source, user.content or "", tools, turns[cut:], derive_outcome(turns[cut:]),
                       {**meta, **last_meta}, turns[:cut], system_text)
        return [(t, [f for fs in per for f in fs])]
    out: list[Episode] = []
    for e, (s, end) in enumerate(bounds):
        own = turns[s:end]
        asker = next((t for t in own if t.role == "user"), None)
        m = dict(meta)
        if len(bounds) > 1:
            # umi's own reserved keys: a record's metadata may hold an "episode" of its own (RL logs)
            m["umi_episode"], m["umi_episodes"] = e + 1, len(bounds)
        if e == len(bounds) - 1:
            m.update(last_meta)
        tid = traj_id if e == 0 else f"{traj_id}#{e + 1}"
        traj = Trajectory(tid, source, (asker.content or "") if asker else "", tools, own, derive_outcome(own), m,
                          turns[:s], system_text)
        out.append((traj, per[e]))
    return out
