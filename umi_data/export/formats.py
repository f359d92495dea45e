"""Canonical trajectories → other projects' training formats (``umidata convert --to …``).

- ``openai``: chats with ``messages`` + ``tools`` (``{"type": "function", "function": …}``),
  one per line (a JSON list when the output ends in ``.json``). A planner's thought before an
  answer is ``reasoning_content``; a give-up is ToolBench's ``Finish`` call with
  ``give_up_and_restart``; an observation's separate ``error`` (and ``raw`` text) are kept; history
  turns that are not earlier requests of the same chat (ToolLLaMA steps) are assistant messages
  with ``"weight": 0`` (OpenAI fine-tuning's "do not learn this message"); the record's system
  prompt is its ``system`` message, and the user lines no one answered at the chat's end
  (``metadata.umi_trailing_user``) close it again.
- ``sharegpt``: LLaMA-Factory's ShareGPT (``conversations`` with human / function_call /
  observation / gpt, ``system``, ``tools`` as a JSON string), a JSON list (JSONL for ``.jsonl``),
  plus its entry in a ``dataset_info.json`` beside it (merged into an existing one), and an ``id``
  (LLaMA-Factory ignores it), the record's system prompt in ``system``. ShareGPT has no place for
  trailing user lines (a conversation ends on the assistant side), a thought, a tool error, call ids,
  metadata or a history mark that is not an earlier request: those are not kept.

A multi-turn chat read as several trajectories (one per request) is written back whole, once,
under the id of its first request, so reading the export gives the same trajectories. A chat is
written whole only when every request of it was accepted; otherwise it is written *cut* before
its first rejected request (not at all when that is its first request): a rejected request never
reaches an export, and no id is written twice. ``umidata convert`` rejects the accepted requests
that come after a rejected one of their chat (the reason names the rejected request, under its
code), so "accepted" counts exactly the requests written (:func:`cut_chats`). The same holds for
``--to alpha-umi`` (one conversation per chat). Reading an export back gives the same canonical
trajectories (ids, instruction, tools, history, turns, outcome, metadata) except for what the
format cannot carry, listed above.

umi's request markers (``metadata["umi_episode"]``/``["umi_episodes"]``, reserved keys set by the
chat readers on the requests of a multi-request chat, so a record's own ``episode`` metadata is
never taken for them) are also checked for consistency (``1 ≤ k ≤ n``, ``n ≥ 2``, the id ending in
``#<k>`` from request 2 on) before an export folds requests into one chat.

ShareGPT conversations always alternate as LLaMA-Factory requires (human / observation at odd
positions, gpt / function_call at even ones, ending on the assistant side; otherwise it skips
the example): the observations answering parallel calls are ONE observation whose value is a
JSON list of ``{"name", "content"}`` (the shape the sharegpt reader splits again), parallel calls
ONE function_call whose value is a JSON list. What still would not alternate is repaired, each
with a ``dropped_message`` warning in the convert summary (an error under ``--strict``): a plain
assistant message (no decision) next to another assistant-side turn, a conversation's leading
assistant turns and trailing human-side turns, and a human-side turn after another one are
dropped (two user messages in a row are joined with a blank line); other same-side neighbours
are merged (function_calls into one list, observations into one list).

``dataset_info.json`` (ShareGPT): the entry describing the output file (by ``file_name``) is
replaced; otherwise a new entry is added under the file's stem (``train.v1`` for
``train.v1.json``), or its full name when the stem names another file's entry. Exporting never
replaces an entry that describes another file: when neither key is free it is a usage error,
found before anything is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from umi_cli.errors import UsageError
from umi_data.output.writers import write_atomic, write_json_list, write_jsonl
from umi_data.readers.chat import TRAILING_USER
from umi_data.trajectory import Call, Trajectory, Turn, record_id

if TYPE_CHECKING:
    from umi_data.export.convert import Checked

ExportTarget = Literal["openai", "sharegpt"]


class ExportError(UsageError):
    """A usage problem found before anything is written (exit code 2)."""


_EPISODE_KEYS = ("umi_episode", "umi_episodes")
GIVE_UP_ARGS = '{"return_type": "give_up_and_restart"}'


def episode_of(t: Trajectory) -> tuple[int, int] | None:
    """``(k, n)`` when ``t`` is request k of a chat of n requests by umi's markers (see the module
    docstring); ``None`` for a trajectory that is its whole record (whatever its metadata says)."""
    k, n = t.metadata.get("umi_episode"), t.metadata.get("umi_episodes")
    if type(k) is not int or type(n) is not int or not 1 <= k <= n or n < 2:
        return None
    if k > 1 and not (t.id.endswith(f"#{k}") and t.history):
        return None
    return k, n


def whole_chats(trajectories: Iterable[Trajectory]) -> Iterator[tuple[str, Trajectory]]:
    """``(id, trajectory)`` with the requests of one chat folded into its last one (whose
    history holds the others) and the id of its first request. A chat whose requests do not all
    come is cut before the first missing one: a request whose earlier request is missing is
    left out (with the rest of its chat), so no id is written twice."""
    pending: Trajectory | None = None
    for t in trajectories:
        if pending is not None and _continues(pending, t):
            pending = t
            continue
        if pending is not None:
            yield record_id(pending), pending
            pending = None
        ep = episode_of(t)
        if ep is None or ep[0] == 1:
            pending = t
    if pending is not None:
        yield record_id(pending), pending


def _continues(prev: Trajectory, t: Trajectory) -> bool:
    ep, prev_ep = episode_of(t), episode_of(prev)
    return (
        ep is not None
        and prev_ep is not None
        and ep == (prev_ep[0] + 1, prev_ep[1])
        and prev.source == t.source
        and record_id(prev) == record_id(t)
        and len(t.history) == len(prev.history) + len(prev.turns)
    )


def _metadata(t: Trajectory) -> dict[str, Any]:
    hidden = ("other_tools", TRAILING_USER, *(_EPISODE_KEYS if episode_of(t) is not None else ()))
    return {k: v for k, v in t.metadata.items() if k not in hidden}


def cut_chats(checked: Iterable[Checked], to: str, strict: bool = False) -> Iterator[Checked]:
    """``convert --to openai|sharegpt|alpha-umi``: the checked records, with every accepted request
    that follows a rejected request of its chat rejected too (the export writes the chat cut
    before it; the reason keeps the earlier rejection's code and names it), and for ShareGPT the
    repairs that keep its roles alternating as ``dropped_message`` warnings (errors under
    ``strict``). So the summary's accepted count is what the export writes."""
    from umi_data.trajectory.findings import Finding

    cut: tuple[Any, str, Finding] | None = None  # (chat, id of its first rejected request, reason)
    for c in checked:
        t = c.record.trajectory
        ep = episode_of(t) if t is not None else None
        if t is not None and not c.rejected and to == "sharegpt":
            notes = [Finding("dropped_message", f"ShareGPT export: {msg}", c.record.source, ptr)
                     for ptr, msg in sharegpt_repairs(t)]
            c.findings.extend(notes)
            if strict and notes:
                c.reason = notes[0]
        if t is not None and ep is not None:
            chat = (t.source, record_id(t))
            if cut is not None and cut[0] == chat and ep[0] > 1:
                if not c.rejected:
                    first = cut[2]
                    c.reason = Finding(first.code, f"request {cut[1]} of this chat was rejected ({first.code}: "
                                       f"{first.message}); the export writes the chat only up to it, so this later "
                                       "request is left out", c.record.source)
                    c.findings.append(c.reason)
            elif c.rejected and c.reason is not None:
                cut = (chat, t.id, c.reason)
        yield c


def _canonical_json(arguments: str) -> Any:
    """Arguments as a JSON value when writing them back with ``json.dumps(…, ensure_ascii=False)``
    gives the same text (so a re-read is exact); else the text itself."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return value if isinstance(value, dict) and json.dumps(value, ensure_ascii=False) == arguments else arguments


# --- OpenAI ------------------------------------------------------------------------------------


def _openai_calls(calls: list[Call]) -> list[dict[str, Any]]:
    out = []
    for c in calls:
        d: dict[str, Any] = {"id": c.id} if c.id is not None else {}
        d.update({"type": "function", "function": {"name": c.name, "arguments": c.arguments}})
        out.append(d)
    return out


def _openai_messages(turns: list[Turn], context: bool) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    weight = {"weight": 0} if context else {}
    i = 0
    while i < len(turns):
        t = turns[i]
        nxt = turns[i + 1] if i + 1 < len(turns) else None
        if t.role == "user":
            msgs.append({"role": "user", "content": t.content})
        elif t.role == "planner" and t.decision == "call" and nxt is not None and nxt.role == "caller":
            msgs.append({"role": "assistant", "content": t.thought, "tool_calls": _openai_calls(nxt.calls or []),
                         **weight})
            i += 1
        elif t.role == "planner" and t.decision == "conclude" and nxt is not None and nxt.role == "conclusion":
            m: dict[str, Any] = {"role": "assistant", "content": nxt.content}
            if t.thought is not None:
                m["reasoning_content"] = t.thought
            msgs.append({**m, **weight})
            i += 1
        elif t.role == "planner" and t.decision == "give_up":
            finish = [{"type": "function", "function": {"name": "Finish", "arguments": GIVE_UP_ARGS}}]
            msgs.append({"role": "assistant", "content": t.thought, "tool_calls": finish, **weight})
        elif t.role == "planner":
            msgs.append({"role": "assistant", "content": t.thought, **weight})
        elif t.role == "observation":
            m = {"role": "tool"}
            if t.call_id is not None:
                m["tool_call_id"] = t.call_id
            if t.name is not None:
                m["name"] = t.name
            m["content"] = t.content
            if t.error is not None:
                m["error"] = t.error
            if t.raw is not None:
                m["raw"] = t.raw
            msgs.append(m)
        elif t.role == "caller":  # a caller without its planner (α-UMi raw data)
            msgs.append({"role": "assistant", "content": None, "tool_calls": _openai_calls(t.calls or []), **weight})
        else:  # a conclusion without its planner
            msgs.append({"role": "assistant", "content": t.content, **weight})
        i += 1
    return msgs


def openai_chat(chat_id: str, t: Trajectory) -> dict[str, Any]:
    """One trajectory (its history first) as an OpenAI chat record."""
    episodes = episode_of(t) is not None  # a chat's earlier requests: history by the episode rule
    msgs: list[dict[str, Any]] = []
    if t.system is not None:
        msgs.append({"role": "system", "content": t.system})
    msgs += _openai_messages(t.history, context=not episodes) + _openai_messages(t.turns, context=False)
    msgs += [{"role": "user", "content": text} for text in t.metadata.get(TRAILING_USER) or []
             if isinstance(text, str)]  # the chat's unanswered last user lines, where they were
    tools: list[Any] = [{"type": "function", "function": tool.to_dict()} for tool in t.tools]
    tools += t.metadata.get("other_tools") or []
    rec: dict[str, Any] = {"id": chat_id, "messages": msgs, "tools": tools}
    meta = _metadata(t)
    if meta:
        rec["metadata"] = meta
    return rec


# --- ShareGPT (LLaMA-Factory) ------------------------------------------------------------------


def _function_call(calls: list[Call]) -> str:
    items = [{"name": c.name, "arguments": _canonical_json(c.arguments)} for c in calls]
    return json.dumps(items[0] if len(items) == 1 else items, ensure_ascii=False)


@dataclass(slots=True, eq=False)
class _Msg:
    """A ShareGPT message being built: ``value`` is calls (function_call), ``(name, content)``
    pairs (observation) or text; ``plain``: a planner's message that decides nothing."""

    tag: str
    value: Any
    at: int  # index of its turn in history + turns
    plain: bool = False

    @property
    def human_side(self) -> bool:
        return self.tag in ("human", "observation")


def _sharegpt_messages(turns: list[Turn]) -> list[_Msg]:
    msgs: list[_Msg] = []
    for i, turn in enumerate(turns):
        if turn.role == "user":
            msgs.append(_Msg("human", turn.content or "", i))
        elif turn.role == "caller":
            msgs.append(_Msg("function_call", list(turn.calls or []), i))
        elif turn.role == "observation":
            msgs.append(_Msg("observation", [(turn.name, turn.content or "")], i))
        elif turn.role == "conclusion":
            msgs.append(_Msg("gpt", turn.content or "", i))
        elif turn.decision == "give_up":
            msgs.append(_Msg("function_call", [Call("Finish", GIVE_UP_ARGS)], i))
        elif turn.decision is None:
            msgs.append(_Msg("gpt", turn.thought or "", i, plain=True))
    return msgs


def _alternate(msgs: list[_Msg]) -> tuple[list[_Msg], list[tuple[int, str]]]:
    """The messages made to alternate human-side / assistant-side, starting on the human side
    and ending on the assistant side (LLaMA-Factory's rule), and what was repaired: ``(turn
    index, message)``. Observations in a row become one (a parallel call's results: no repair)."""
    out: list[_Msg] = []
    notes: list[tuple[int, str]] = []
    merged: list[_Msg] = []  # observations holding several results
    for m in msgs:
        last = out[-1] if out else None
        if last is None and not m.human_side:
            notes.append((m.at, f"a {m.tag} message before the first human message is dropped"))
        elif last is None or last.human_side != m.human_side:
            out.append(_Msg(m.tag, list(m.value) if isinstance(m.value, list) else m.value, m.at, m.plain))
        elif last.tag == m.tag == "observation":
            last.value.extend(m.value)
            if not any(x is last for x in merged):
                merged.append(last)
        elif last.tag == m.tag == "function_call":
            last.value.extend(m.value)
            notes.append((m.at, "a function_call right after another one is merged into it (parallel calls)"))
        elif last.tag == m.tag == "human":
            last.value = f"{last.value}\n\n{m.value}"
            notes.append((m.at, "a human message right after another one is joined to it"))
        elif not m.human_side and (last.plain or (last.tag == "function_call" and m.tag == "gpt" and not m.plain)):
            notes.append((last.at, f"a {last.tag} message right before a {m.tag} message is dropped"))
            out[-1] = _Msg(m.tag, list(m.value) if isinstance(m.value, list) else m.value, m.at, m.plain)
        else:
            notes.append((m.at, f"a {m.tag} message right after a {last.tag} message is dropped"))
    while out and out[-1].human_side:
        dropped = out.pop()
        notes.append((dropped.at, f"a trailing {dropped.tag} message (no assistant message after it) is dropped"))
    for m in merged:  # reads back as one observation per call only when it answers the calls before it
        k = next((j for j, x in enumerate(out) if x is m), None)
        if k is None:
            continue
        calls = out[k - 1].value if k and out[k - 1].tag == "function_call" else []
        names = [n for n, _ in m.value]
        if len(calls) != len(names) or any(n not in (None, c.name) for n, c in zip(names, calls, strict=True)):
            notes.append((m.at, "observations in a row that do not answer the calls before them are merged into one"))
    notes.sort(key=lambda n: n[0])
    return out, notes


def _sharegpt_value(m: _Msg, prev: _Msg | None) -> str:
    if m.tag == "function_call":
        return _function_call(m.value)
    if m.tag != "observation":
        return m.value
    if len(m.value) == 1:
        return m.value[0][1]
    calls = prev.value if prev is not None and prev.tag == "function_call" else []
    names = [n if n is not None else (calls[j].name if j < len(calls) else "") for j, (n, _) in enumerate(m.value)]
    return json.dumps([{"name": n, "content": c} for n, (_, c) in zip(names, m.value, strict=True)],
                      ensure_ascii=False)


def sharegpt_repairs(t: Trajectory) -> list[tuple[str, str]]:
    """``(pointer, message)`` for each repair the ShareGPT export makes in ``t``'s own turns (its
    history too when that is not earlier requests of its chat) to keep the roles alternating."""
    own = len(t.history) if episode_of(t) is not None else 0
    _, notes = _alternate(_sharegpt_messages(t.history + t.turns))
    return [(f"/history/{i}" if i < len(t.history) else f"/turns/{i - len(t.history)}", msg)
            for i, msg in notes if i >= own]


def sharegpt_record(chat_id: str, t: Trajectory) -> dict[str, Any]:
    """One trajectory (its history first) as a LLaMA-Factory ShareGPT record (roles alternating,
    see the module docstring)."""
    msgs, _ = _alternate(_sharegpt_messages(t.history + t.turns))
    conv = [{"from": m.tag, "value": _sharegpt_value(m, msgs[k - 1] if k else None)} for k, m in enumerate(msgs)]
    rec: dict[str, Any] = {"id": chat_id, "conversations": conv}
    if t.system is not None:
        rec["system"] = t.system
    rec["tools"] = json.dumps([tool.to_dict() for tool in t.tools] + (t.metadata.get("other_tools") or []),
                              ensure_ascii=False)
    return rec


def dataset_info_entry(out: Path) -> dict[str, Any]:
    return {"file_name": out.name, "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}


def dataset_info_path(out: str | os.PathLike[str]) -> Path:
    """Where ``--to sharegpt`` writes its ``dataset_info.json`` sidecar: beside ``out``. It is an
    output of the same command, so it must never be ``out`` itself (checked before writing)."""
    return Path(out).parent / "dataset_info.json"


def _dataset_info_beside(out: Path) -> tuple[dict[str, Any], str]:
    """The ``dataset_info.json`` beside ``out`` (empty when there is none) and the key of
    ``out``'s entry in it; checked before anything is written, so a file that cannot be merged
    into (or whose keys for ``out`` all describe other files) leaves no half-done export."""
    path = dataset_info_path(out)
    info: Any = {}
    if path.exists():
        from umi_data.readers.bounded_io import read_regular

        try:  # a regular file only (a FIFO there would hang the export), read with a bound
            info = json.loads(read_regular(path, 64 << 20).decode("utf-8"))
        except (OSError, ValueError) as e:
            raise ExportError(f"{path}: cannot add this dataset's entry ({e}); not touching it") from None
        if not isinstance(info, dict):
            raise ExportError(f"{path} is not a JSON object of dataset descriptions; not touching it")
    key = next((k for k, e in info.items() if isinstance(e, dict) and e.get("file_name") == out.name), None)
    if key is None:
        free = [k for k in (out.stem, out.name)
                if k not in info or (isinstance(info[k], dict) and info[k].get("file_name") == out.name)]
        if not free:
            raise ExportError(f"{path}: the entries {out.stem!r} and {out.name!r} describe other files; not "
                              f"replacing them (name the output differently)")
        key = free[0]
    return info, key


def _write_dataset_info(out: Path, info: dict[str, Any], key: str) -> Path:
    """Add (or replace) this file's entry in ``dataset_info.json`` beside it, atomically."""
    path = dataset_info_path(out)
    info[key] = dataset_info_entry(out)
    write_atomic(path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return path


def write_export(out: str | os.PathLike[str], to: ExportTarget, trajectories: Iterable[Trajectory]) -> int:
    """Write ``trajectories`` as ``to`` records (JSONL, or a JSON list for ``.json``); the
    number of records written (a multi-request chat is one)."""
    out = os.fspath(out)
    info, key = _dataset_info_beside(Path(out)) if to == "sharegpt" else ({}, "")
    chats = whole_chats(trajectories)
    if to == "openai":
        rows: Iterator[Any] = (openai_chat(cid, t) for cid, t in chats)
    else:
        rows = (sharegpt_record(cid, t) for cid, t in chats)
    n = write_json_list(out, rows) if out.endswith(".json") else write_jsonl(out, rows)
    if to == "sharegpt":
        _write_dataset_info(Path(out), info, key)
    return n
