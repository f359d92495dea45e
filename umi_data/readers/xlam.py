"""xLAM / APIGen function-calling rows (Salesforce ``xlam-function-calling-60k`` and its kin).

Input shape (a JSON list, or JSONL; ``tools`` and ``answers`` are JSON *strings* as published,
or lists)::

    {"id": 7,
     "query": "What is 5 + 3, and the weather in Oslo?",
     "tools": "[{\\"name\\": \\"add\\", \\"description\\": \\"Add two numbers.\\",
                 \\"parameters\\": {\\"a\\": {\\"type\\": \\"int\\", \\"description\\": \\"…\\"},
                                  \\"b\\": {\\"type\\": \\"int\\", \\"description\\": \\"…\\", \\"default\\": 0}}}, …]",
     "answers": "[{\\"name\\": \\"add\\", \\"arguments\\": {\\"a\\": 5, \\"b\\": 3}},
                  {\\"name\\": \\"weather\\", \\"arguments\\": {\\"city\\": \\"Oslo\\"}}]"}

One trajectory per row: ``query`` is the instruction; every answer is a call, all in ONE caller
turn in order (several answers: parallel calls), outcome ``calls_only``; ``arguments`` objects
become JSON text (``json.dumps(…, ensure_ascii=False)``). Tools: the flat parameter maps and their
Python type names (``str``, ``List[int]``, ``Optional[str]``, ``str, optional``…) become JSON Schema
(``readers/tool_specs.py``): a parameter is required unless its type says optional or it has a
``default``. ``answers: []`` (APIGen's irrelevance rows: no tool fits) → the planner decides
``give_up`` with no made-up text, as BFCL's irrelevance questions. Id: the record's ``id``
(a number too), else ``<file stem>/<index or line>``.

Rejected (``schema``, with a pointer): ``query`` not text, ``tools`` / ``answers`` not a list (or
JSON string of one), an answer without a ``name`` or whose ``arguments`` are neither an object nor
text.
"""

from __future__ import annotations

import json
from typing import Any

from umi_data.readers.base import Episode, FormatDoc, Reader, Signature
from umi_data.readers.chat import Msg, build
from umi_data.readers.tool_specs import ToolSpecError, tools_from_list
from umi_data.trajectory import Call, Source
from umi_data.trajectory.findings import Finding

FORMAT = "xlam"
_GIVE_UP = '{"return_type": "give_up_and_restart"}'  # chat.build reads a Finish call like this as give_up


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and "query" in obj and "answers" in obj


def _answers(raw: Any) -> list[Call]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except ValueError as e:
            raise ToolSpecError("/answers", f"`answers` is a string but not JSON ({e})") from None
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise ToolSpecError("/answers", "`answers` must be a list of {name, arguments} (or a JSON string of one)")
    calls = []
    for k, a in enumerate(raw):
        if not isinstance(a, dict) or not isinstance(a.get("name"), str):
            raise ToolSpecError(f"/answers/{k}", "an answer must be {name, arguments}")
        args = a.get("arguments", {})
        if isinstance(args, dict):
            args = json.dumps(args, ensure_ascii=False)
        elif not isinstance(args, str):
            raise ToolSpecError(f"/answers/{k}/arguments", "`arguments` must be an object or JSON text")
        calls.append(Call(a["name"], args))
    return calls


def read(obj: Any, source: Source, traj_id: str) -> list[Episode]:
    findings: list[Finding] = []
    rid = obj.get("id")
    if isinstance(rid, int) and not isinstance(rid, bool):
        traj_id = str(rid)
    query = obj.get("query")
    if not isinstance(query, str):
        return [(None, [Finding("schema", "`query` must be text", source, "/query")])]
    try:
        tools = tools_from_list(obj.get("tools"), "/tools")
        calls = _answers(obj.get("answers"))
    except ToolSpecError as e:
        return [(None, [Finding("schema", e.message, source, e.pointer)])]
    msgs = [Msg("user", "/query", text=query),
            Msg("assistant", "/answers", calls=calls or [Call("Finish", _GIVE_UP)])]
    return build(msgs, tools, source, traj_id, findings, {}, where="/query")


class XlamReader(Reader):
    """``xlam`` in the registry: detection order, signature and catalog entry; the module's
    functions do the reading."""

    name = FORMAT
    rank = 120
    signature = Signature(("query", "answers"), ("tools",))
    doc = FormatDoc(
        "xlam",
        "xLAM / APIGen function-calling rows (`xlam-function-calling-60k`): `tools` and `answers` JSON strings (or lists), flat parameter maps with Python types",  # noqa: E501
        ('{"id": 7, "query": "…", "tools": "[{\"name\": \"f\", \"parameters\": {\"a\": {\"type\": \"int\", \"description\": \"…\"}}}]",',  # noqa: E501
         ' "answers": "[{\"name\": \"f\", \"arguments\": {\"a\": 5}}]"}'),
        "`query` → instruction; `answers` → planner (no thought) + ONE caller turn (several: parallel); `answers: []` → `give_up`",  # noqa: E501
        "the record's `id` (a number too), else `<file stem>/<index or line>`",
    )

    def sniff(self, obj: Any) -> bool:
        return sniff(obj)

    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        return read(obj, source, traj_id)
