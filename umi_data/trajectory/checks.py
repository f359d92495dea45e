"""Semantic checks over an accepted :class:`Trajectory` → findings.

Readers reject what cannot become a trajectory; these checks describe what an accepted one
*says*. Every finding points into the canonical record (``/turns/4/calls/0/arguments``), so
``umidata convert``'s output can be opened at the reported place. Most findings are warnings:
real ToolBench and α-UMi data contain hallucinated tool names, arguments of the wrong type,
plain assistant messages and turns after a conclusion (``docs/alpha-umi-format.md`` §5). The
semantic errors are ``no_terminal_turn`` (nothing to learn an ending from; a trajectory that
ends in tool calls, outcome ``calls_only``, is fine), ``empty_instruction`` and
``empty_completion`` (an example would be trained on an empty request or target).

``check(trajectory)`` runs every per-record check; :class:`Deduper` is the cross-record one
(``duplicate_id`` / ``duplicate_trajectory``), owned by the pipeline that sees every record.

Argument checks validate the decoded arguments with ``jsonschema`` against a *normalised* copy
of the tool's ``parameters``: only the top-level ``properties`` (their ``type``), ``required``
and ``additionalProperties`` are used, type names are lower-cased and common aliases mapped
(``str``, ``int``, ``float``, ``bool``, ``dict``, ``list``; Python annotations such as ``List[int]`` or
``Optional[str]`` and Java names via ``trajectory/param_types.py``), and a parameter whose type name is
unknown (or ``any``) is not type-checked. ToolBench's extra keys (``optional``, ``example_value``) are ignored.
A ``parameters`` that is not usable at all gives ``tool_schema_invalid`` and calls to that tool
are only checked for being a JSON object.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from umi_data.trajectory import Source, Trajectory, Turn, ends_in_calls
from umi_data.trajectory.findings import Finding
from umi_data.trajectory.param_types import json_type

FINISH = "Finish"
HALLUCINATED = "invalid_hallucination_function_name"
_HALLUCINATION_HINTS = (HALLUCINATED, "No such function name")

_TYPES = {
    "string": "string", "str": "string", "text": "string",
    "number": "number", "float": "number", "double": "number", "decimal": "number",
    "integer": "integer", "int": "integer", "long": "integer",
    "boolean": "boolean", "bool": "boolean",
    "object": "object", "dict": "object", "map": "object",
    "array": "array", "list": "array",
    "null": "null",
}


# --- argument schemas -----------------------------------------------------------------------


def _norm_type(t: Any) -> str | list[str] | None:
    """A JSON-Schema type from a tool's (possibly odd) type; ``None`` when it cannot be used."""
    if isinstance(t, str):
        known = _TYPES.get(t.strip().lower())
        return known if known is not None else json_type(t)  # List[int], Optional[str], HashMap …
    if isinstance(t, list):
        names = [_norm_type(x) for x in t]
        if names and all(isinstance(n, str) for n in names):
            return sorted(set(names))  # type: ignore[arg-type]
    return None


def _usable(parameters: Any) -> bool:
    if not isinstance(parameters, dict):
        return False
    props = parameters.get("properties", {})
    required = parameters.get("required", [])
    return (
        isinstance(props, dict)
        and all(isinstance(v, dict) for v in props.values())
        and isinstance(required, list)
        and all(isinstance(r, str) for r in required)
    )


def argument_schema(parameters: Any) -> dict[str, Any] | None:
    """The normalised schema calls are validated against; ``None`` when ``parameters`` is not
    usable (not an object, ``properties`` not an object of objects, ``required`` not a list of
    strings)."""
    if not _usable(parameters):
        return None
    props = parameters.get("properties", {})
    required = parameters.get("required", [])
    norm_props = {}
    for name, spec in props.items():
        t = _norm_type(spec.get("type"))
        norm_props[name] = {"type": t} if t is not None else {}
    schema: dict[str, Any] = {"type": "object", "properties": norm_props, "required": required}
    if parameters.get("additionalProperties", False) is False:  # undeclared names are unknown
        schema["additionalProperties"] = False
    return schema


@lru_cache(maxsize=4096)
def _validator(schema_json: bytes) -> Draft202012Validator:
    """Validators are costly to build and ToolBench reuses the same tools across thousands of
    trajectories: build each distinct schema once per process."""
    return Draft202012Validator(orjson.loads(schema_json))


@dataclass
class _ToolIndex:
    names: set[str]
    parameters: dict[str, Any] = field(default_factory=dict)  # usable parameter schemas, by tool name

    def validator(self, name: str) -> Draft202012Validator | None:
        """Normalised lazily: most tools offered to a trajectory are never called."""
        params = self.parameters.get(name)
        if params is None:
            return None
        schema = argument_schema(params)
        return _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)) if schema is not None else None


def _tool_index(traj: Trajectory, src: Source, out: list[Finding]) -> _ToolIndex:
    names: dict[str, int] = {}
    index = _ToolIndex(set())
    for k, tool in enumerate(traj.tools):
        if tool.name in names:
            out.append(
                Finding(
                    "duplicate_tool",
                    f"tool {tool.name!r} is declared again (first at /tools/"
                    f"{names[tool.name]}); the α-UMi prompt cannot tell them apart",
                    src,
                    f"/tools/{k}",
                )
            )
            continue
        names[tool.name] = k
        index.names.add(tool.name)
        if tool.name == FINISH:
            continue
        if _usable(tool.parameters):
            index.parameters[tool.name] = tool.parameters
        else:
            out.append(
                Finding(
                    "tool_schema_invalid",
                    f"parameters of {tool.name!r} are not a usable JSON Schema "
                    "object (properties/required malformed); its calls are not type-checked",
                    src,
                    f"/tools/{k}/parameters",
                )
            )
    if not index.names - {FINISH}:
        out.append(Finding("no_tools", "the trajectory offers no tool (besides Finish)", src, "/tools"))
    return index


def _hallucinated(turns: list[Turn], i: int, name: str) -> bool:
    """ToolBench marks a call to an unknown name by renaming it and answering with an error."""
    if HALLUCINATED in name:
        return True
    nxt = turns[i + 1] if i + 1 < len(turns) else None
    text = (
        (nxt.content or "") + (nxt.error or "") + (nxt.raw or "") if nxt and nxt.role == "observation" else ""
    )
    return any(h in text for h in _HALLUCINATION_HINTS)


def _check_call(
    index: _ToolIndex, turns: list[Turn], i: int, j: int, src: Source, out: list[Finding]
) -> None:
    call = (turns[i].calls or [])[j]
    where = f"/turns/{i}/calls/{j}"
    if call.name == FINISH:
        return
    known = call.name in index.names
    if not known:
        note = " (ToolBench marked it as a hallucinated call)" if _hallucinated(turns, i, call.name) else ""
        out.append(
            Finding(
                "unknown_tool",
                f"call to {call.name!r}, which is not in the tool list{note}",
                src,
                f"{where}/name",
            )
        )
    try:
        args = json.loads(call.arguments)
    except ValueError as e:
        out.append(
            Finding("arguments_not_json", f"arguments are not valid JSON ({e})", src, f"{where}/arguments")
        )
        return
    if not isinstance(args, dict):
        out.append(
            Finding(
                "arguments_not_json",
                f"arguments are a JSON {type(args).__name__}, not an object",
                src,
                f"{where}/arguments",
            )
        )
        return
    validator = index.validator(call.name) if known else None
    if validator is None:
        return
    for err in sorted(validator.iter_errors(args), key=lambda e: (list(e.absolute_path), e.validator)):
        if err.validator == "required":
            out.append(
                Finding(
                    "arguments_missing_required", f"{call.name!r}: {err.message}", src, f"{where}/arguments"
                )
            )
        elif err.validator == "additionalProperties":
            extra = sorted(set(args) - set(validator.schema["properties"]))
            out.append(
                Finding(
                    "arguments_unknown_name",
                    f"{call.name!r} declares no parameter {', '.join(map(repr, extra))}",
                    src,
                    f"{where}/arguments",
                )
            )
        elif err.validator == "type" and err.absolute_path:
            param = err.absolute_path[0]
            out.append(
                Finding(
                    "arguments_wrong_type",
                    f"{call.name!r}: parameter {param!r} should be "
                    f"{err.validator_value}, got {json.dumps(err.instance)[:80]}",
                    src,
                    f"{where}/arguments",
                )
            )


# --- the sequence of turns --------------------------------------------------------------


def _check_pairing(turns: list[Turn], src: Source, out: list[Finding]) -> None:
    """Every call is answered by an observation before the next step; every observation
    answers a call (by ``call_id`` when it has one, else the oldest unanswered call). The final
    calls of a trajectory that ends in calls (``calls_only``) have no result by design."""
    pending: list[tuple[int, int, str | None]] = []  # (turn, call, id)
    final_calls = len(turns) - 1 if ends_in_calls(turns) else -1

    def flush() -> None:
        for ti, cj, _ in pending:
            ptr = f"/turns/{ti}/calls/{cj}" if turns[ti].calls else f"/turns/{ti}"
            out.append(Finding("call_without_observation", "this call gets no observation", src, ptr))
        pending.clear()

    for i, turn in enumerate(turns):
        if turn.role == "caller":
            flush()
            if i == final_calls:
                continue
            if turn.calls:
                pending.extend((i, j, c.id) for j, c in enumerate(turn.calls))
            else:  # unparsed caller text (kept in ``raw``): one opaque call
                pending.append((i, 0, None))
        elif turn.role == "observation":
            match = None
            if turn.call_id is not None:
                match = next((p for p in pending if p[2] == turn.call_id), None)
            elif pending:
                match = pending[0]
            if match is None:
                out.append(
                    Finding(
                        "observation_without_call",
                        "this observation answers no pending call"
                        + (f" (call_id {turn.call_id!r})" if turn.call_id else ""),
                        src,
                        f"/turns/{i}",
                    )
                )
            else:
                pending.remove(match)
        elif turn.role != "user":
            flush()
    flush()


def _check_decisions(turns: list[Turn], src: Source, out: list[Finding]) -> None:
    terminal = ends_in_calls(turns)
    for i, turn in enumerate(turns):
        nxt = turns[i + 1].role if i + 1 < len(turns) else None
        if turn.role == "planner":
            if turn.decision is None:
                out.append(
                    Finding(
                        "plain_assistant",
                        "assistant turn without a decision (no `Next: …`); it "
                        "makes no example and only enters histories",
                        src,
                        f"/turns/{i}",
                    )
                )
            elif turn.decision == "call" and nxt != "caller":
                out.append(
                    Finding(
                        "decision_without_action",
                        f"planner decided `call` but the next turn is {nxt or 'missing'}, not a caller",
                        src,
                        f"/turns/{i}/decision",
                    )
                )
            elif turn.decision == "conclude":
                if nxt == "conclusion":
                    terminal = True
                else:
                    out.append(
                        Finding(
                            "decision_without_action",
                            f"planner decided `conclude` but the next "
                            f"turn is {nxt or 'missing'}, not a conclusion",
                            src,
                            f"/turns/{i}/decision",
                        )
                    )
            elif turn.decision == "give_up":
                terminal = True
        elif turn.role == "conclusion":
            content = (turn.content or "").strip()
            if not content:
                out.append(
                    Finding(
                        "empty_completion",
                        f"the final answer is {json.dumps(turn.content)}: a summarizer example "
                        "would be trained on an empty target",
                        src,
                        f"/turns/{i}/content",
                    )
                )
            elif content.lower() == "none":
                out.append(
                    Finding(
                        "empty_final_answer",
                        f"the final answer is {json.dumps(turn.content)}",
                        src,
                        f"/turns/{i}/content",
                    )
                )
            if nxt is not None:
                out.append(
                    Finding(
                        "turns_after_conclusion",
                        f"{len(turns) - i - 1} turn(s) follow this conclusion",
                        src,
                        f"/turns/{i + 1}",
                    )
                )
        elif turn.role == "caller" and not turn.calls and not (turn.raw or "").strip():
            out.append(
                Finding("empty_completion", "caller turn without any call: a caller example would be "
                        "trained on an empty target", src, f"/turns/{i}/calls")
            )
        elif turn.role == "caller" and turn.calls and len(turn.calls) > 1:
            out.append(
                Finding(
                    "parallel_calls",
                    f"{len(turn.calls)} calls in one caller turn; α-UMi "
                    "checkpoints were trained on one call per turn",
                    src,
                    f"/turns/{i}/calls",
                )
            )
    if not terminal:
        out.append(
            Finding(
                "no_terminal_turn",
                "the trajectory neither concludes (a `conclude` decision "
                "followed by a conclusion) nor gives up, nor ends in tool calls",
                src,
                "/turns",
            )
        )


CHECKS: tuple[Callable[[Trajectory, Source, list[Finding]], None], ...] = (
    lambda t, s, out: _check_pairing(t.turns, s, out),
    lambda t, s, out: _check_decisions(t.turns, s, out),
)


def _check_instruction(traj: Trajectory, src: Source, out: list[Finding]) -> None:
    if not traj.instruction.strip():
        out.append(Finding("empty_instruction", f"the request is {json.dumps(traj.instruction)}: "
                           "every example would be conditioned on nothing", src, "/instruction"))


def check(traj: Trajectory, where: Source | None = None) -> list[Finding]:
    """Every per-record semantic finding of one trajectory, in turn order per check, located at
    ``where`` (the record as read; default the trajectory's own source). They differ for a
    canonical record, whose ``source`` is its lineage (a run's names its queries file): the
    findings must point into the file that was read."""
    src = where or traj.source
    out: list[Finding] = []
    _check_instruction(traj, src, out)
    index = _tool_index(traj, src, out)
    for i, turn in enumerate(traj.turns):
        if turn.role == "caller":
            for j in range(len(turn.calls or [])):
                _check_call(index, traj.turns, i, j, src, out)
    for fn in CHECKS:
        fn(traj, src, out)
    return out


# --- across records -----------------------------------------------------------------------


def fingerprint(traj: Trajectory) -> str:
    """Content hash of what a model would learn from: instruction, tools, history and turns (not
    the id, source or metadata), so the same trajectory read from two files or formats collides."""
    d = traj.to_dict()
    keys = ("instruction", "tools", "history", "turns")  # history only when present: old hashes hold
    payload = orjson.dumps({k: d[k] for k in keys if k in d}, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


class Deduper:
    """Remembers accepted trajectories by id and content fingerprint; ``check`` says whether a
    new one repeats an earlier one (the earlier stays, the later is rejected), ``add`` records
    it. The ``*_key`` forms take (id, fingerprint, source) so a pipeline can dedupe in its main
    process while the trajectories themselves stay in the workers. Memory: two small entries
    per accepted trajectory."""

    def __init__(self) -> None:
        self._ids: dict[str, Source] = {}
        self._content: dict[str, tuple[str, Source]] = {}

    def check(self, traj: Trajectory, where: Source | None = None) -> list[Finding]:
        return self.check_key(traj.id, fingerprint(traj), where or traj.source)

    def add(self, traj: Trajectory, where: Source | None = None) -> None:
        self.add_key(traj.id, fingerprint(traj), where or traj.source)

    def check_key(self, traj_id: str, content: str, source: Source) -> list[Finding]:
        out = []
        first = self._ids.get(traj_id)
        if first is not None:
            msg = f"id {traj_id!r} was already produced by {first.where()}"
            out.append(Finding("duplicate_id", msg, source, "/id"))
        earlier = self._content.get(content)
        if earlier is not None:
            out.append(Finding("duplicate_trajectory",
                               f"same instruction, tools and turns as {earlier[0]!r} ({earlier[1].where()})", source))
        return out

    def add_key(self, traj_id: str, content: str, source: Source) -> None:
        self._ids.setdefault(traj_id, source)
        self._content.setdefault(content, (traj_id, source))
