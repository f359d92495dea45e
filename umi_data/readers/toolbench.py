"""ToolBench answer files → canonical trajectories.

Input shape (one file per query, e.g. ``data/answer/G1_answer/10_ChatGPT_DFS_woFilter_w2.json``)::

    {"answer_generation": {
        "query": "Can you …?",
        "function": [{"name": "…_for_tool", "description": "…", "parameters": {JSON Schema}}, …,
                     {"name": "Finish", …}],
        "valid_data": true, "finish_type": "give_answer", "query_count": 7, …,
        "train_messages": [[…], …, [                      # the last list is the whole chain
            {"role": "system", "content": "You are AutoGPT, …"},
            {"role": "user", "content": "\\n<query>\\nBegin!\\n"},
            {"role": "assistant", "content": "thought" | null,
             "function_call": {"name": "tool", "arguments": "{\\"a\\": 1}"}},
            {"role": "function", "name": "tool", "content": "{\\"error\\": \\"\\", \\"response\\": \\"…\\"}"},
            {"role": "assistant", "content": …, "function_call": {"name": "Finish",
             "arguments": "{\\"return_type\\": \\"give_answer\\", \\"final_answer\\": \\"…\\"}"}}]]},
     "tree": …, "win": …, …}

Message rules (``docs/alpha-umi-format.md`` §1): the chain after its system and first user
message; a ``Finish`` call becomes a planner turn deciding ``conclude`` (+ a conclusion turn)
or ``give_up``; any other call a planner turn deciding ``call`` + a caller turn; a ``function``
message an observation. An assistant message without a call has no α-UMi counterpart: it is
kept in ``metadata["dropped_messages"]`` and reported.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from umi_data.trajectory import Call, Source, Tool, Trajectory, Turn, derive_outcome
from umi_data.trajectory.findings import Finding

FORMAT = "toolbench"
_METADATA_KEYS = ("finish_type", "query_count", "total_tokens", "valid_data")


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and "answer_generation" in obj


def finish_decision(arguments: Any, content: str | None) -> tuple[str, str | None, bool]:
    """``(decision, final_answer, recovered)`` of a ``Finish`` call, with the original
    scripts' recovery rules for arguments that are not valid JSON."""
    try:
        args = arguments if isinstance(arguments, dict) else _loads(arguments)
        if args["return_type"] == "give_up_and_restart":
            return "give_up", None, False
        return "conclude", args.get("final_answer", "none"), False
    except (ValueError, TypeError, KeyError):
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        if "give_up_and_restart" in text:
            return "give_up", None, True
        key = '"final_answer": '
        if key in text:
            answer = text[text.index(key) + len(key) :].strip().strip("}").strip('"')
            return "conclude", answer, True
        return "conclude", content if content is not None else "none", True


def _loads(text: str) -> Any:
    """orjson for speed; the standard library for what orjson refuses but Python accepts (NaN,
    integers over 64 bits), so decoding stays what the original scripts' ``json.loads`` did."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _observation(content: Any) -> tuple[str, str | None, bool]:
    """``(response, error, recovered)``: the ``response`` field of the JSON content, else the
    raw text after ``"response":``, else empty."""
    text = content if isinstance(content, str) else json.dumps(content)
    try:
        obj = _loads(text)
        response = obj["response"]
        error = obj.get("error")
        return (response if isinstance(response, str) else json.dumps(response)), error or None, False
    except (ValueError, TypeError, KeyError, AttributeError):
        key = '"response":'
        return (text[text.index(key) + len(key) :] if key in text else ""), None, True


class _BadShape(Exception):
    """A message whose shape no rule applies to: the record is a ``schema`` reject."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(message)
        self.pointer, self.message = pointer, message


def turns_from_chain(
    query: str, chain: list[dict[str, Any]], source: Source, pointer: str = ""
) -> tuple[list[Turn], list[Finding], list[dict[str, Any]]]:
    """Apply the message rules to one ToolBench chain (system + user + steps).

    Returns the turns, warnings, and the messages that have no α-UMi counterpart."""
    turns: list[Turn] = [Turn("user", content=query)]
    findings: list[Finding] = []
    dropped: list[dict[str, Any]] = []
    for i, msg in enumerate(chain[2:], start=2):
        where = f"{pointer}/{i}"
        role = msg.get("role")
        content = msg.get("content")
        if role == "assistant":
            fc = msg.get("function_call")
            if fc and not isinstance(fc, dict):
                raise _BadShape(where + "/function_call", "`function_call` must be an object with `name` and "
                                "`arguments`")
            if not fc:
                dropped.append({"index": i, "message": msg})
                findings.append(Finding("dropped_message", "assistant message without a function call "
                                        "has no α-UMi turn; kept in metadata.dropped_messages", source, where))
                continue
            name, arguments = fc.get("name"), fc.get("arguments", "")
            if name == "Finish":
                decision, answer, recovered = finish_decision(arguments, content)
                if recovered:
                    findings.append(Finding("finish_recovered", "Finish arguments are not valid JSON; "
                                            "answer recovered from the text", source, where + "/function_call"))
                turns.append(Turn("planner", thought=content, decision=decision))  # type: ignore[arg-type]
                if decision == "conclude":
                    turns.append(Turn("conclusion", content=answer))
            else:
                args = arguments if isinstance(arguments, str) else json.dumps(arguments)
                turns.append(Turn("planner", thought=content, decision="call"))
                turns.append(Turn("caller", calls=[Call(str(name), args)]))
        elif role == "user":
            turns.append(Turn("user", content=content))
        elif role == "function":
            response, error, recovered = _observation(content)
            if recovered:
                findings.append(Finding("observation_recovered", "tool response is not valid JSON; "
                                        "text after \"response\": kept", source, where + "/content"))
            turns.append(Turn("observation", content=response, error=error, name=msg.get("name"),
                              raw=content if recovered else None))
        else:
            dropped.append({"index": i, "message": msg})
            findings.append(Finding("dropped_message", f"message role {role!r} has no α-UMi turn", source, where))
    return turns, findings, dropped


def read(obj: Any, source: Source, traj_id: str) -> tuple[Trajectory | None, list[Finding]]:
    """One answer file → a trajectory, or ``None`` with the error findings that explain why."""
    gen = obj.get("answer_generation")
    if not isinstance(gen, dict):
        return None, [Finding("schema", "`answer_generation` is not an object", source, "/answer_generation")]
    messages = gen.get("train_messages")
    if messages is None or messages == []:
        return None, [Finding("no_trajectory", f"no `train_messages` (valid_data={gen.get('valid_data')}, "
                              f"finish_type={gen.get('finish_type')}): nothing to train on",
                              source, "/answer_generation")]
    problems = []
    if not isinstance(gen.get("query"), str):
        problems.append(("/answer_generation/query", "`query` must be a string"))
    if not isinstance(gen.get("function"), list):
        problems.append(("/answer_generation/function", "`function` must be a list of function specs"))
    if not isinstance(messages, list):
        problems.append(("/answer_generation/train_messages", "`train_messages` must be a list of message "
                         f"chains, not {type(messages).__name__ if messages is not None else 'null'}"))
    elif not isinstance(messages[-1], list) or not all(isinstance(m, dict) for m in messages[-1]):
        ptr = f"/answer_generation/train_messages/{len(messages) - 1}"
        problems.append((ptr, "the last chain must be a list of messages"))
    if problems:
        return None, [Finding("schema", msg, source, ptr) for ptr, msg in problems]
    tools = []
    for k, f in enumerate(gen["function"]):
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            return None, [Finding("schema", "function spec without a string `name`", source,
                                  f"/answer_generation/function/{k}")]
        tools.append(Tool(f["name"], str(f.get("description") or ""), f.get("parameters") or {}))
    pointer = f"/answer_generation/train_messages/{len(messages) - 1}"
    try:
        turns, findings, dropped = turns_from_chain(gen["query"], messages[-1], source, pointer)
    except _BadShape as e:
        return None, [Finding("schema", e.message, source, e.pointer)]
    metadata: dict[str, Any] = {k: gen[k] for k in _METADATA_KEYS if k in gen}
    if dropped:
        metadata["dropped_messages"] = dropped
    traj = Trajectory(traj_id, source, gen["query"], tools, turns, derive_outcome(turns), metadata)
    return traj, findings
