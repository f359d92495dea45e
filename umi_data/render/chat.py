"""The ``chat`` rendering: a trajectory as ONE conversation in native chat roles, per GLPFT role.

Today's models (Qwen2.5/3, Llama-3.x, …) are served with their own chat template and tool-call
syntax; training them on α-UMi's plain-text prompts teaches a format no server parses. This
module writes the same four role datasets as conversations that any chat template renders:

- ``system``: a role-specific instruction (:data:`SYSTEM`); the role's tools go in the row's
  ``tools`` (OpenAI function format, full JSON-Schema ``parameters``), never into text, so the
  model's own template lays them out;
- ``user``: the instruction (and any later user turn, e.g. ToolBench reflection prompts);
- the planner turn: an ``assistant`` message whose content is the α-UMi planner text (thought +
  ``Next: caller.`` / ``Next: conclusion.`` / ``Next: give up.``, :func:`alpha_umi.turn_value`), so the
  decision stays readable by :mod:`umi_data.render.parse`;
- the caller turn: an ``assistant`` message with empty content and structured ``tool_calls``
  (``arguments`` a JSON object; parallel calls stay in one message, in order);
- each observation: a ``tool`` message (``tool_call_id``, ``name`` of the call it answers);
- the conclusion: an ``assistant`` message holding the final answer.

A trajectory's ``history`` (the earlier requests of a multi-request chat, the earlier steps of a
ToolLLaMA ``Step N`` record) opens the conversation as context messages that are never trained:
message ``i`` is turn ``i`` of ``roles.prepare(traj).conv`` (history first) and only the turns from
``Prepared.start`` on are supervised, as only they make α-UMi examples.

Every role sees the same history (the caller sees the planner's thought as the assistant message
just before its call; the summarizer sees everything), only the system message, the tools (the
summarizer, like α-UMi's, gets none) and the per-message ``train`` flags differ. WHICH turns are
supervised is decided by the α-UMi role rules themselves (``roles.RULES``), so a chat row
supervises exactly the turns the α-UMi examples of that role target; ``global`` supervises the
planner message together with the caller/conclusion message its α-UMi target merges in.

Granularity: ``trajectory`` (default) writes one row per trajectory per role, cut after its last
supervised message, with ``train`` on all of that role's messages: a prefix-preserving chat
template makes it supervise every turn in one pass. ``step`` writes one row per α-UMi example
(same ``<trajectory>/<role>/<turn>`` id, the conversation up to that example's messages, ``train``
on them only).

Deliberate differences from α-UMi's text prompts: a call whose arguments are not a JSON object
cannot be a native tool call; it stays in the history (arguments kept as the raw string) but is
never supervised (``arguments_not_json`` warns about it). A call to a hallucinated tool stays in
the caller's history too (its tool message needs it); α-UMi drops it from the caller prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from umi_data.render.alpha_umi import turn_value
from umi_data.render.roles import RULES, Conv, Prepared, _decision
from umi_data.trajectory import Call, Tool, Trajectory, Turn

CHAT = "chat"
GRANULARITIES = ("trajectory", "step")

_HEAD = "You are the {name} of a tool-using agent that solves the user's request with the tools provided."
SYSTEM: dict[str, str] = {
    "planner": _HEAD.format(name="planner")
    + " Your turn: write the thought of the next step, then decide who acts next by ending with"
    " `Next: caller.` (a tool call is needed), `Next: conclusion.` (the request can be answered)"
    " or `Next: give up.` (it cannot be solved).",
    "caller": _HEAD.format(name="caller")
    + " Your turn: make the tool call that the planner's last thought asks for, with exact"
    " arguments, as a tool call.",
    "summarizer": _HEAD.format(name="summarizer")
    + " Your turn: write the final answer to the user's request from the whole conversation.",
    "global": "You are a tool-using agent that solves the user's request with the tools provided."
    " At each step write your thought and end with `Next: caller.`, then make the tool call;"
    " or end with `Next: conclusion.` and write the final answer; or end with `Next: give up.`.",
}


@dataclass(frozen=True, slots=True)
class ChatRow:
    """One conversation of one role: ``step``/``turn`` are set for step-level rows only."""

    id: str
    trajectory_id: str
    role: str
    step: int | None
    turn: int | None
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]

    def n_train(self) -> int:
        return sum(1 for m in self.messages if m["train"])


def openai_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    """Tools in OpenAI function format with their full parameters (ToolBench's ``Finish``
    pseudo-tool excluded, as in α-UMi's docs: the chat rendering concludes with a message)."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
        if t.name != "Finish"
    ]


def arguments_object(raw: str) -> dict[str, Any] | None:
    """The call's arguments as a JSON object, or ``None`` when they are not one."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _call_id(turn_index: int, k: int, call: Call) -> str:
    return call.id if call.id is not None else f"call_{turn_index}_{k}"


def messages_of(traj: Trajectory) -> tuple[list[dict[str, Any]], set[int]]:
    """One message per turn of the conversation, history turns first (message ``i`` is turn ``i``
    of ``roles.prepare(traj).conv``, the indexing of the α-UMi examples and of ``umi_eval`` steps),
    and the turns that cannot be supervised (a call whose arguments are not a JSON object)."""
    out: list[dict[str, Any]] = []
    unusable: set[int] = set()
    pending: list[tuple[str, str]] = []  # (call id, tool name) awaiting an observation
    for i, turn in enumerate([*traj.history, *traj.turns]):
        out.append(_message(i, turn, pending, unusable))
    return out, unusable


def _message(i: int, turn: Turn, pending: list[tuple[str, str]], unusable: set[int]) -> dict[str, Any]:
    if turn.role == "user":
        return {"role": "user", "content": turn.content or ""}
    if turn.role in ("planner", "conclusion"):
        return {"role": "assistant", "content": turn_value(turn)}
    if turn.role == "caller":
        calls = []
        pending.clear()
        for k, call in enumerate(turn.calls or []):
            args = arguments_object(call.arguments)
            if args is None:
                unusable.add(i)
            cid = _call_id(i, k, call)
            pending.append((cid, call.name))
            calls.append({"id": cid, "type": "function",
                          "function": {"name": call.name, "arguments": call.arguments if args is None else args}})
        if not calls:  # a caller turn α-UMi kept as raw text: no native form
            unusable.add(i)
            return {"role": "assistant", "content": turn_value(turn)}
        return {"role": "assistant", "content": "", "tool_calls": calls}
    # observation: answers the call with its id, else the oldest unanswered call
    match = next((p for p in pending if turn.call_id is not None and p[0] == turn.call_id), None)
    if match is None and pending:
        match = pending[0]
    if match is not None:
        pending.remove(match)
    msg: dict[str, Any] = {"role": "tool", "content": turn.content or ""}
    cid = turn.call_id or (match[0] if match else None)
    name = turn.name or (match[1] if match else None)
    if cid is not None:
        msg["tool_call_id"] = cid
    if name is not None:
        msg["name"] = name
    return msg


def units(conv: Conv, role: str, start: int = 0) -> Iterator[tuple[int, list[int]]]:
    """``(emitting turn, supervised turns)`` for each α-UMi example of ``role``, from the α-UMi
    role rules: the turn it targets, plus for ``global`` the caller/conclusion turn merged in.
    Turns before ``start`` (``Prepared.start``: the trajectory's history) emit nothing, as in
    ``roles.examples``."""
    rule = RULES[role]
    for i in range(start, len(conv)):
        if rule.emits(conv, i):
            turns = [i]
            if role == "global" and _decision(conv, i) in ("call", "conclude") and i + 1 < len(conv):
                turns.append(i + 1)
            yield i, turns


def _step(conv: Conv, role: str, i: int) -> int:
    owner = i + RULES[role].step_offset
    return owner if owner >= 0 and conv[owner]["from"] == "assistant" else i


def rows(traj: Trajectory, role: str, prepared: Prepared, granularity: str = "trajectory") -> Iterator[ChatRow]:
    """The chat rows of one role for one trajectory (none when the role has nothing to learn).
    The history turns (``traj.history``: earlier requests of a chat, earlier ToolLLaMA steps) are
    context messages, never trained: only the units ``roles.examples`` emits are supervised."""
    messages, unusable = messages_of(traj)
    if len(messages) != len(prepared.conv):
        raise ValueError(f"{traj.id}: {len(messages)} chat messages for {len(prepared.conv)} turns")
    tools = [] if role == "summarizer" else openai_tools(traj.tools)
    system = {"role": "system", "content": SYSTEM[role]}

    def row(rid: str, trained: set[int], step: int | None, turn: int | None) -> ChatRow:
        last = max(trained)
        msgs = [{**system, "train": False}]
        msgs += [{**m, "train": j in trained} for j, m in enumerate(messages[: last + 1])]
        if not msgs[-1]["train"]:  # cannot happen: ``trained`` indexes ``messages``
            raise AssertionError(f"{rid}: a chat row must end on a trained message")
        return ChatRow(rid, traj.id, role, step, turn, msgs, tools)

    collected: set[int] = set()
    for i, turns in units(prepared.conv, role, prepared.start):
        trained = {t for t in turns if t >= prepared.start and t not in unusable}
        if not trained:
            continue
        if granularity == "step":
            yield row(f"{traj.id}/{role}/{i}", trained, _step(prepared.conv, role, i), i)
        collected |= trained
    if granularity == "trajectory" and collected:
        yield row(f"{traj.id}/{role}", collected, None, None)


def row_dict(r: ChatRow, source: str) -> dict[str, Any]:
    """The Parquet row: ``messages`` and ``tools`` as JSON text (stored as Arrow JSON)."""
    return {
        "id": r.id, "trajectory_id": r.trajectory_id, "role": r.role, "step": r.step, "turn": r.turn,
        "messages": [orjson.dumps(m).decode() for m in r.messages],
        "tools": orjson.dumps(r.tools).decode(),
        "source": source,
    }


CARD_ROWS = """\
Template `chat`, granularity `{granularity}`: each row is a conversation in native chat roles.
Columns: `id` (`<trajectory>/<role>` per trajectory, `<trajectory>/<role>/<turn>` per step),
`trajectory_id`, `role`, `step` / `turn` (step rows only), `messages` (list of `{{role, content,
tool_calls?, tool_call_id?, name?, train}}`: `system` (the role's instruction), `user`,
`assistant` (planner thought ending in `Next: …`, a call with structured `tool_calls`, or the final
answer), `tool` (observations); `train` marks the messages this role learns), `tools` (OpenAI
function format, full JSON-Schema parameters; empty for the summarizer), `source`.
`messages` and `tools` are Arrow JSON: 🤗 datasets decodes them to Python objects, ready for
`tokenizer.apply_chat_template(row["messages"], tools=row["tools"])`. Train on the `train`
messages only (axolotl: `message_field_training: train`; `umitrain` does it by itself)."""


# --- inference: the same conversation for a prefix the caller chooses (umi_eval) --------------


def prompt_messages(
    traj: Trajectory, role: str, stop: int, thought: str | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(messages, tools)`` a chat model of ``role`` is prompted with before turn ``stop`` (then
    ``apply_chat_template(..., add_generation_prompt=True)``): the training conversation of that
    step without its target, so a test prompt is the training prefix. ``thought`` (the caller's
    input at test time: the planner's generated text) replaces the gold planner turn before ``stop``."""
    messages = [{"role": "system", "content": SYSTEM[role]}, *messages_of(traj)[0][:stop]]
    if thought is not None:
        if not messages or messages[-1]["role"] != "assistant" or "tool_calls" in messages[-1]:
            messages.append({"role": "assistant", "content": thought})
        else:
            messages[-1] = {"role": "assistant", "content": thought}
    return messages, [] if role == "summarizer" else openai_tools(traj.tools)


def calls_from_response(message: dict[str, Any]) -> list[Call]:
    """Canonical calls from a parsed assistant message (TRL ``parse_response`` / transformers
    ``parse_response``): arguments re-serialised as JSON text (a model's native call carries an
    object, never the raw string)."""
    out = []
    for c in message.get("tool_calls") or []:
        fn = c.get("function", c)
        args = fn.get("arguments", {})
        text = args if isinstance(args, str) else orjson.dumps(args).decode()
        out.append(Call(str(fn.get("name")), text, c.get("id")))
    return out
