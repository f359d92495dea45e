"""ToolBench's ToolLLaMA training conversations (``preprocess_toolllama_data.py``) → trajectories.

Input shape (``toolllama_G123_dfs_train.json`` and its per-group parts): a JSON list of::

    {"id": "Step 4: Can you …?",
     "conversations": [
        {"from": "system", "value": "You are AutoGPT, … Specifically, you have access to the
                                     following APIs: [{'name': 'tool_for_x', 'description': …,
                                     'parameters': {…}}, …, {'name': 'Finish', …}]"},
        {"from": "user", "value": "\\nCan you …?\\nBegin!\\n"},
        {"from": "assistant", "value": "\\nThought: …\\nAction: tool_for_x\\nAction Input: {…}"},
        {"from": "function", "value": "{\\"error\\": \\"\\", \\"response\\": \\"…\\"}"},
        {"from": "assistant", "value": "\\nThought: \\nAction: Finish\\nAction Input: {\\"return_type\\": …}"}]}

Tools are recovered from the system prompt's function list (a Python literal, read with
``ast.literal_eval``: data is never executed); the text before it is the trajectory's ``system``. The
first user message, without ToolBench's ``Begin!`` wrapper, is the instruction. ``Thought:`` →
the planner's thought (empty → none); ``Action`` / ``Action Input`` → the caller's call
(arguments kept verbatim); ``Action: Finish`` → ``conclude`` + conclusion (``final_answer``)
or ``give_up``; ``function`` → observation (ToolBench's rule: its ``response``, ``error``
apart); later ``user`` messages (reflection prompts) stay user turns.

Each record is one step of a search (ToolBench writes one record per assistant message, each
holding the whole conversation before it), so only its **last** assistant step makes training
examples: everything before it is the trajectory's ``history``. Every step is learned once.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from umi_data.readers.base import Episode, FormatDoc, Reader, Signature
from umi_data.readers.chat import Msg, Reject, build, conversations, from_value
from umi_data.readers.toolbench import _observation
from umi_data.trajectory import Call, Source, Tool
from umi_data.trajectory.findings import Finding

FORMAT = "toolllama"
API_LIST = "Specifically, you have access to the following APIs: "
_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "function": "tool"}
_REACT = re.compile(r"\A\s*(?:Thought:(?P<thought>.*?))?\nAction:[ ]?(?P<name>[^\n]*)\nAction Input:[ ]?(?P<args>.*)\Z",
                    re.S)


def sniff(obj: Any) -> bool:
    convs = obj.get("conversations") if isinstance(obj, dict) else None
    if not isinstance(convs, list):
        return False
    for item in convs:
        if not isinstance(item, dict):
            continue
        who, value = item.get("from"), item.get("value")
        if who == "function" or (who == "system" and isinstance(value, str) and API_LIST in value):
            return True
        if who == "assistant" and isinstance(value, str) and _REACT.match(value):
            return True
    return False


def tools_from_system(text: str, pointer: str) -> tuple[list[Tool], str]:
    """The function list ToolBench appends to the system prompt, and the text before it."""
    at = text.find(API_LIST)
    if at < 0:
        raise Reject(pointer, f"the system prompt has no function list (`{API_LIST.strip()} [...]`)")
    try:
        specs = ast.literal_eval(text[at + len(API_LIST):].strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        kind = type(e).__name__
        raise Reject(pointer, f"the system prompt's function list is not a Python/JSON literal ({kind})") from None
    if not isinstance(specs, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in specs):
        raise Reject(pointer, "the system prompt's function list must be a list of {name, description, parameters}")
    tools = [Tool(s["name"], str(s.get("description") or ""),
                  s["parameters"] if isinstance(s.get("parameters"), dict) else {}) for s in specs]
    return tools, text[:at].rstrip()


def query_of(text: str) -> str:
    """``"\\n<query>\\nBegin!\\n"`` → ``<query>``."""
    text = text.strip()
    return text[: -len("Begin!")].rstrip() if text.endswith("Begin!") else text


def read(obj: Any, source: Source, traj_id: str) -> list[Episode]:
    findings: list[Finding] = []
    tools: list[Tool] = []
    try:
        msgs: list[Msg] = []
        for i, item in enumerate(conversations(obj)):
            where = f"/conversations/{i}"
            role, value = from_value(item, where, _ROLES, "`from` must be one of system, user, assistant, function")
            if role == "system":
                tools, system = tools_from_system(value, f"{where}/value")
                msgs.append(Msg("system", where, text=system))
            elif role == "user":
                first = not any(m.role == "user" for m in msgs)
                msgs.append(Msg("user", where, text=query_of(value) if first else value))
            elif role == "assistant":
                m = _REACT.match(value)
                if m is None:
                    msgs.append(Msg("assistant", where, text=value.strip()))
                else:
                    thought = (m["thought"] or "").strip() or None
                    msgs.append(Msg("assistant", where, thought=thought, calls=[Call(m["name"].strip(), m["args"])]))
            else:
                response, error, recovered = _observation(value)
                if recovered:
                    findings.append(Finding("observation_recovered", "tool response is not valid JSON; text after "
                                            "\"response\": kept", source, f"{where}/value"))
                msgs.append(Msg("tool", where, text=response, error=error, raw=value if recovered else None))
    except Reject as r:
        return r.rejected(findings, source)
    return build(msgs, tools, source, traj_id, findings, {}, mode="last_step", where="/conversations")


class ToolLlamaReader(Reader):
    """``toolllama`` in the registry: detection order, signature and catalog entry; the module's
    functions do the reading."""

    name = FORMAT
    rank = 30
    signature = Signature(("conversations",))
    doc = FormatDoc(
        "toolllama",
        "ToolBench's ToolLLaMA training conversations (`toolllama_G123_dfs_train.json`): one record per step of a search",  # noqa: E501
        ('{"id": "Step 4: …", "conversations": [{"from": "system", "value": "… following APIs: [{\'name\': \'f\', …}]"}, {"from": "user", …},',  # noqa: E501
         ' {"from": "assistant", "value": "\\nThought: …\\nAction: f\\nAction Input: {…}"}, {"from": "function", "value": "{\\"error\\": \\"\\", \\"response\\": …}"}, …]}'),  # noqa: E501
        "tools ← the system prompt's function list; `Thought:` → planner; `Action`/`Action Input` → caller (`Finish` → conclusion or give-up); `function` → observation; only the last step makes examples (the steps before it are history)",  # noqa: E501
        "the record's `id`",
    )

    def sniff(self, obj: Any) -> bool:
        return sniff(obj)

    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        return read(obj, source, traj_id)
