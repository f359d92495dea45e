"""Canonical trajectories → other projects' training formats (``umidata convert --to …``).

- ``openai``: chats with ``messages`` + ``tools`` (``{"type": "function", "function": …}``),
  one per line (a JSON list when the output ends in ``.json``). A planner's thought before an
  answer is ``reasoning_content``; a give-up is ToolBench's ``Finish`` call with
  ``give_up_and_restart``; an observation's separate ``error`` (and ``raw`` text) are kept; history
  turns that are not earlier requests of the same chat (ToolLLaMA steps) are assistant messages
  with ``"weight": 0`` (OpenAI fine-tuning's "do not learn this message").
- ``sharegpt``: LLaMA-Factory's ShareGPT (``conversations`` with human / function_call /
  observation / gpt, ``system``, ``tools`` as a JSON string), a JSON list (JSONL for ``.jsonl``),
  plus its entry in a ``dataset_info.json`` beside it (merged into an existing one), and an ``id``
  (LLaMA-Factory ignores it). ShareGPT has no place for a thought, a tool error, call ids,
  metadata or a history mark that is not an earlier request: those are not kept.

A multi-turn chat read as several trajectories (one per request) is written back whole, once,
under the id of its first request, so reading the export gives the same trajectories. Reading
an export back gives the same canonical trajectories (ids, instruction, tools, history, turns,
outcome, metadata) except for what the format cannot carry, listed above.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import orjson

from umi_data.trajectory import Call, Trajectory, Turn, record_id
from umi_data.writers import atomic_path, write_jsonl

ExportTarget = Literal["openai", "sharegpt"]


class ExportError(Exception):
    """A usage problem found before anything is written (exit code 2)."""
_EPISODE_KEYS = ("episode", "episodes")
GIVE_UP_ARGS = '{"return_type": "give_up_and_restart"}'


def whole_chats(trajectories: Iterable[Trajectory]) -> Iterator[tuple[str, Trajectory]]:
    """``(id, trajectory)`` with the requests of one chat folded into its last one (whose
    history holds the others) and the id of its first request."""
    pending: Trajectory | None = None
    for t in trajectories:
        if pending is not None and _continues(pending, t):
            pending = t
            continue
        if pending is not None:
            yield record_id(pending), pending
        pending = t
    if pending is not None:
        yield record_id(pending), pending


def _continues(prev: Trajectory, t: Trajectory) -> bool:
    return (
        prev.source == t.source
        and t.metadata.get("episode") == (prev.metadata.get("episode") or 0) + 1
        and len(t.history) == len(prev.history) + len(prev.turns)
    )


def _metadata(t: Trajectory) -> dict[str, Any]:
    return {k: v for k, v in t.metadata.items() if k not in ("system", "other_tools", *_EPISODE_KEYS)}


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
    episodes = "episodes" in t.metadata  # a chat's earlier requests: history by the episode rule
    msgs: list[dict[str, Any]] = []
    if isinstance(t.metadata.get("system"), str):
        msgs.append({"role": "system", "content": t.metadata["system"]})
    msgs += _openai_messages(t.history, context=not episodes) + _openai_messages(t.turns, context=False)
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


def sharegpt_record(chat_id: str, t: Trajectory) -> dict[str, Any]:
    """One trajectory (its history first) as a LLaMA-Factory ShareGPT record."""
    conv: list[dict[str, str]] = []
    for turn in t.history + t.turns:
        if turn.role == "user":
            conv.append({"from": "human", "value": turn.content or ""})
        elif turn.role == "caller":
            conv.append({"from": "function_call", "value": _function_call(turn.calls or [])})
        elif turn.role == "observation":
            conv.append({"from": "observation", "value": turn.content or ""})
        elif turn.role == "conclusion":
            conv.append({"from": "gpt", "value": turn.content or ""})
        elif turn.decision == "give_up":
            conv.append({"from": "function_call", "value": _function_call([Call("Finish", GIVE_UP_ARGS)])})
        elif turn.decision is None:
            conv.append({"from": "gpt", "value": turn.thought or ""})
    rec: dict[str, Any] = {"id": chat_id, "conversations": conv}
    if isinstance(t.metadata.get("system"), str):
        rec["system"] = t.metadata["system"]
    rec["tools"] = json.dumps([tool.to_dict() for tool in t.tools] + (t.metadata.get("other_tools") or []),
                              ensure_ascii=False)
    return rec


def dataset_info_entry(out: Path) -> dict[str, Any]:
    return {"file_name": out.name, "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}


def _dataset_info_beside(out: Path) -> dict[str, Any]:
    """The ``dataset_info.json`` beside ``out`` (empty when there is none); checked before
    anything is written, so a file that cannot be merged into leaves no half-done export."""
    path = out.parent / "dataset_info.json"
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: cannot add this dataset's entry ({e}); not touching it") from None
    if not isinstance(info, dict):
        raise ExportError(f"{path} is not a JSON object of dataset descriptions; not touching it")
    return info


def _write_dataset_info(out: Path, info: dict[str, Any]) -> Path:
    """Add (or replace) this file's entry in ``dataset_info.json`` beside it, atomically."""
    path = out.parent / "dataset_info.json"
    info[out.name.split(".")[0]] = dataset_info_entry(out)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _write_list(path: str, items: Iterable[Any]) -> int:
    """A JSON list, one item per line (orjson: compact, UTF-8, deterministic)."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(b"[")
        for item in items:
            f.write((b",\n" if n else b"\n") + orjson.dumps(item))
            n += 1
        f.write(b"\n]\n" if n else b"]\n")
    return n


def write_export(out: str | os.PathLike[str], to: ExportTarget, trajectories: Iterable[Trajectory]) -> int:
    """Write ``trajectories`` as ``to`` records (JSONL, or a JSON list for ``.json``); the
    number of records written (a multi-request chat is one)."""
    out = os.fspath(out)
    info = _dataset_info_beside(Path(out)) if to == "sharegpt" else {}
    chats = whole_chats(trajectories)
    if to == "openai":
        rows: Iterator[Any] = (openai_chat(cid, t) for cid, t in chats)
    else:
        rows = (sharegpt_record(cid, t) for cid, t in chats)
    n = _write_list(out, rows) if out.endswith(".json") else write_jsonl(out, rows)
    if to == "sharegpt":
        _write_dataset_info(Path(out), info)
    return n
