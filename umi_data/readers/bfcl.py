"""Berkeley Function-Calling Leaderboard (BFCL) questions joined with their ground truth.

Input shape (gorilla ``berkeley-function-call-leaderboard/bfcl_eval/data/BFCL_v4_<category>.json``:
one JSON object per line although the file is named ``.json``)::

    {"id": "parallel_3",
     "question": [[{"role": "system", "content": "…"},          # optional
                   {"role": "user", "content": "Play Taylor Swift for 20 min and Maroon 5 for 15."}]],
     "function": [{"name": "spotify.play", "description": "…",
                   "parameters": {"type": "dict", "required": ["artist", "duration"],
                                  "properties": {"artist": {"type": "string"}, "duration": {"type": "integer"},
                                                 "shuffle": {"type": "boolean", "default": false}}}}]}

and, in ``possible_answer/<the same file name>`` beside the question file (matched by ``id``)::

    {"id": "parallel_3", "ground_truth": [
        {"spotify.play": {"artist": ["Taylor Swift"], "duration": [20], "shuffle": ["", false]}},
        {"spotify.play": {"artist": ["Maroon 5"], "duration": [15], "shuffle": [false, ""]}}]}

One trajectory per question (id: the record's ``id``; ``metadata.bfcl_category`` from it): its
messages (an assistant message among them is context, the trajectory's ``history``: BFCL grades
only the next turn), then ONE assistant turn making every ground-truth call in order (``parallel`` and
``parallel_multiple`` questions: several calls in one caller turn), outcome ``calls_only``. Each
parameter takes its **first** acceptable value; ``""`` is BFCL's mark for "may be left out", so a
parameter whose first acceptable value is ``""`` is left out (a required one takes its first other
value; a required list parameter given no acceptable value at all, ``[]``, is the empty list). Values
that are dicts (or lists of dicts) of acceptable values are resolved the same way,
key by key, as BFCL's checker reads them. Tool ``parameters`` are normalised to JSON Schema
(``dict`` → ``object``, ``float`` → ``number``, ``tuple`` → ``array``, ``any`` → any value, Java's
``String``/``HashMap``/``long``…; ``readers/tool_specs.py``).

Choices, each located and never silent:

- **Irrelevance** questions (``irrelevance_*``, ``live_irrelevance_*``: no ground truth, the right
  answer is to call nothing) are kept as trajectories that make no call: the planner decides
  ``give_up`` (α-UMi's "the tools cannot solve this"), with no thought and no made-up answer text.
- A question without ground truth (no ``possible_answer/<name>`` beside it, no entry with its id,
  or a ``live_relevance`` question, which only says that *some* call is expected) is rejected:
  ``no_ground_truth``.
- **Multi-turn** and agentic questions (``involved_classes`` / ``initial_config``, several turns:
  multi-turn, memory, web search) are rejected: ``bfcl_multi_turn``. Their expected calls run one
  after another against BFCL's simulated APIs, whose results are not in the data.
- A ``possible_answer`` record read on its own (``{"id", "ground_truth"}``) is rejected:
  ``bfcl_answer_file`` (it is read with its question file).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from umi_data.readers.base import Episode, FormatDoc, Reader, Signature
from umi_data.readers.chat import Msg, build
from umi_data.readers.io import archive
from umi_data.readers.tool_specs import ToolSpecError, tools_from_list
from umi_data.trajectory import Call, Source, Tool
from umi_data.trajectory.findings import Finding

FORMAT = "bfcl"
ANSWER_DIR = "possible_answer"
_MAX_ANSWER_BYTES = 256 << 20
_GIVE_UP = '{"return_type": "give_up_and_restart"}'  # chat.build reads a Finish call like this as give_up


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and (isinstance(obj.get("question"), list)
                                      or ("ground_truth" in obj and "id" in obj and "conversations" not in obj))


def category(record_id: str) -> str:
    """``live_simple_13-3-9`` → ``live_simple``; ``parallel_0`` → ``parallel``."""
    return re.sub(r"_\d+(?:-\d+)*$", "", record_id)


@lru_cache(maxsize=32)
def _answers_file(path: str, member: str | None, stamp: tuple[int, int]) -> tuple[dict[str, Any], str | None]:
    """``({id: ground_truth}, problem)`` of one possible_answer file (a zip member when
    ``member``); ``stamp`` (size, mtime) keys the cache so an edited file is read again."""
    try:
        if member is None:
            if os.path.getsize(path) > _MAX_ANSWER_BYTES:
                return {}, f"{path} is over {_MAX_ANSWER_BYTES >> 20} MiB"
            data = Path(path).read_bytes()
        else:
            info = archive(path).getinfo(member)
            if info.file_size > _MAX_ANSWER_BYTES:
                return {}, f"{path}!{member} is over {_MAX_ANSWER_BYTES >> 20} MiB"
            data = archive(path).read(member)
    except (OSError, KeyError, ValueError) as e:
        return {}, f"cannot read it ({e})"
    answers: dict[str, Any] = {}
    bad: list[int] = []
    for lineno, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad.append(lineno)
            continue
        if isinstance(rec, dict) and isinstance(rec.get("id"), str):
            answers.setdefault(rec["id"], rec.get("ground_truth"))
        else:
            bad.append(lineno)
    problem = f"line(s) {', '.join(map(str, bad[:5]))} of it are not {{id, ground_truth}} JSON" if bad else None
    return answers, problem


def answer_path(source: Source) -> tuple[str, str | None]:
    """Where the ground truth of a question file is: ``possible_answer/<name>`` beside it."""
    if source.member is not None:
        m = PurePosixPath(source.member)
        return source.file, str(m.parent / ANSWER_DIR / m.name) if str(m.parent) != "." else f"{ANSWER_DIR}/{m.name}"
    p = Path(source.file)
    return str(p.parent / ANSWER_DIR / p.name), None


def ground_truth(source: Source, record_id: str) -> tuple[Any, str]:
    """``(ground truth, where)``; ground truth ``None`` when there is none (``where`` says why)."""
    path, member = answer_path(source)
    shown = f"{path}!{member}" if member else path
    try:
        if member is None:
            st = os.stat(path)
            stamp = (st.st_size, st.st_mtime_ns)
        else:
            info = archive(path).getinfo(member)
            stamp = (info.file_size, hash(info.date_time))
    except (OSError, KeyError):
        return None, f"there is no {shown} (BFCL keeps the expected calls in possible_answer/<same file name> " \
                     "beside the question file)"
    answers, problem = _answers_file(path, member, stamp)
    if record_id in answers:
        return answers[record_id], shown
    why = f"; {problem}" if problem else ""
    return None, f"{shown} has no entry with id {record_id!r}{why}"


def _first(options: Any, required: bool) -> tuple[bool, Any]:
    """``(present, value)``: the first acceptable value of a parameter (``""`` first: left out)."""
    if not isinstance(options, list):
        return True, _resolve(options)
    if not options:
        return False, None
    if options[0] != "":
        return True, _resolve(options[0])
    if not required:
        return False, None
    rest = [o for o in options if o != ""]
    return True, _resolve(rest[0]) if rest else ""


def _is_choices(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, list) for v in value.values())


def _resolve(value: Any) -> Any:
    """Dicts of acceptable values (and lists of them) → one value, as BFCL's dict checker reads them."""
    if _is_choices(value):
        out = {}
        for k, opts in value.items():
            present, v = _first(opts, required=False)
            if present:
                out[k] = v
        return out
    if isinstance(value, list) and value and all(_is_choices(v) for v in value):
        return [_resolve(v) for v in value]
    return value


def _type_of(spec: Any) -> Any:
    return spec.get("type") if isinstance(spec, dict) else None


def calls_of(truth: Any, tools: list[Tool], pointer: str) -> list[Call]:
    """Ground truth ``[{name: {param: [acceptable…]}}, …]`` → calls, arguments as JSON text."""
    if isinstance(truth, dict):  # one call given as {name: {param: [values]}}
        truth = [{k: v} for k, v in truth.items()]
    if not isinstance(truth, list) or not truth:
        raise ValueError(f"{pointer}: the ground truth must be a non-empty list of {{function: {{param: "
                         "[acceptable values]}}}")
    required = {t.name: set(t.parameters.get("required") or []) for t in tools if isinstance(t.parameters, dict)}
    props = {t.name: t.parameters.get("properties") or {} for t in tools if isinstance(t.parameters, dict)}
    calls = []
    for k, item in enumerate(truth):
        if not isinstance(item, dict) or len(item) != 1:
            raise ValueError(f"{pointer}/{k}: a ground-truth call must be {{function name: {{param: [values]}}}}")
        (name, params), = item.items()
        if not isinstance(params, dict):
            raise ValueError(f"{pointer}/{k}/{name}: the parameters must be an object of acceptable-value lists")
        args = {}
        for p, options in params.items():
            present, value = _first(options, p in required.get(name, set()))
            if present:
                args[p] = value
            elif options == [] and p in required.get(name, set()) and _type_of(props.get(name, {}).get(p)) == "array":
                args[p] = []  # a required list with no acceptable value listed: the empty list
        calls.append(Call(name, json.dumps(args, ensure_ascii=False)))
    return calls


def _reject(code: str, message: str, source: Source, pointer: str = "") -> list[Episode]:
    return [(None, [Finding(code, message, source, pointer)])]


def read(obj: Any, source: Source, traj_id: str) -> list[Episode]:
    rid = obj.get("id") if isinstance(obj.get("id"), str) else traj_id
    if "question" not in obj and "ground_truth" in obj:
        return _reject("bfcl_answer_file", f"a BFCL possible_answer record (id {rid!r}): it holds the expected "
                       "calls of the question with that id and is read with the question file of the same name, "
                       f"one folder up ({ANSWER_DIR}/../<name>); pass the question files", source)
    if not isinstance(obj.get("question"), list):
        return _reject("schema", "a BFCL question needs `question`: a list of turns, each a list of {role, content}",
                       source, "/question")
    turns = [t for t in obj["question"] if t]
    if "involved_classes" in obj or "initial_config" in obj or len(turns) > 1:
        classes = obj.get("involved_classes")
        what = f" on {', '.join(map(str, classes))}" if isinstance(classes, list) and classes else ""
        return _reject("bfcl_multi_turn", f"a BFCL multi-turn or agentic question ({len(turns)} turn(s){what}): its "
                       "expected calls run one after another against BFCL's simulated APIs, whose results are not "
                       "in the data, so it makes no trajectory; the single-turn categories are read", source,
                       "/question")
    if not turns or not isinstance(turns[0], list):
        return _reject("schema", "`question` must be a list of turns, each a list of {role, content}", source,
                       "/question")
    findings: list[Finding] = []
    try:
        raw_fns = obj.get("function")
        if raw_fns is None:
            raise ToolSpecError("/function", "a BFCL question needs its `function` list")
        tools = tools_from_list(raw_fns, "/function")
    except ToolSpecError as e:
        return _reject("schema", e.message, source, e.pointer)
    msgs: list[Msg] = []
    for i, m in enumerate(turns[0]):
        where = f"/question/0/{i}"
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            return _reject("schema", "a BFCL message must be {role: system|user|assistant, content: text}", source,
                           where)
        # an earlier assistant message of the question is context (BFCL grades only the next turn)
        msgs.append(Msg(role, where, text=m["content"], context=role == "assistant"))
    meta = {"bfcl_category": category(rid)}
    if "irrelevance" in meta["bfcl_category"]:
        msgs.append(Msg("assistant", "/ground_truth", calls=[Call("Finish", _GIVE_UP)]))
        return build(msgs, tools, source, traj_id, findings, meta, where="/question/0")
    if "relevance" in meta["bfcl_category"]:
        return _reject("no_ground_truth", "a BFCL relevance question: BFCL only checks that some call is made, so "
                       "there is no call to learn from it", source)
    truth, where = ground_truth(source, rid)
    if truth is None:
        return _reject("no_ground_truth", f"BFCL question {rid!r} has no ground truth: {where}", source)
    try:
        calls = calls_of(truth, tools, "/ground_truth")
    except ValueError as e:
        return _reject("schema", f"{where}: {e}", source)
    msgs.append(Msg("assistant", "/ground_truth", calls=calls))
    return build(msgs, tools, source, traj_id, findings, meta, where="/question/0")


class BfclReader(Reader):
    """``bfcl`` in the registry: detection order, signature and catalog entry; the module's
    functions do the reading."""

    name = FORMAT
    rank = 110
    signature = Signature(("question",), ("function", "ground_truth", "involved_classes", "initial_config"))
    doc = FormatDoc(
        "bfcl",
        "Berkeley Function-Calling Leaderboard questions (gorilla `bfcl_eval/data/BFCL_v4_*.json`, JSONL in a `.json` file), joined by `id` with `possible_answer/<same file name>` beside them",  # noqa: E501
        ('{"id": "parallel_0", "question": [[{"role": "user", "content": "…"}]], "function": [{"name": "f", "parameters": {"type": "dict", "properties": {…}}}]}',  # noqa: E501
         ' possible_answer: {"id": "parallel_0", "ground_truth": [{"f": {"a": [1], "b": ["", 2]}}, {"f": {"a": [3]}}]}'),  # noqa: E501
        "the question's messages; the ground-truth calls → planner (no thought) + ONE caller turn (first acceptable value of each parameter; `\"\"` first: left out); irrelevance questions → `give_up`, no call; no ground truth → `no_ground_truth`; multi-turn → `bfcl_multi_turn`",  # noqa: E501
        "the record's `id`",
    )

    def sniff(self, obj: Any) -> bool:
        return sniff(obj)

    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        return read(obj, source, traj_id)
