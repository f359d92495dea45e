"""Issue 17: one reject shape, every code in one table. Each reason or finding code that umidata,
umitrain or umieval writes is declared in ``umi_data.trajectory.findings.CODES`` (and so in
docs/findings.md): statically, by reading every place the code base makes one, and at run time,
where an undeclared code raises."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from umi_data.trajectory import Source
from umi_data.trajectory.findings import CODES, Finding, Reject, declared

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("umi_cli", "umi_data", "umi_train", "umi_eval")
ROW = ["source", "reason", "message", "pointer", "findings"]  # every rejects file line starts so

# Where a code is made: callee name (the last dotted part) → (position, keyword) of the code.
EMITTERS = {
    "Finding": (0, "code"),
    "Reject": (1, "reason"),
    "declared": (0, "code"),
    "issue": (0, "reason"),  # umieval generate's steps that are not evaluated
    "find": (0, "code"),  # the agent loop's findings (only as ``st.find``/``self.st.find``: str.find is not one)
    "failed": (0, "code"),  # a failed tool call's observation code, which the loop reports as a finding
    "Observation": (1, "code"),
    "_reject": (2, "reason"),  # umieval score's unscorable records
}
DICT_KEYS = ("reason", "code")  # a literal {"reason": "x"} / {"code": "x"} is a reject or a finding too


def _strings(node: ast.AST) -> list[tuple[str, int]]:
    """The string constants of an expression (``"x" if a else None`` gives ``x``), f-strings aside."""
    return [(n.value, n.lineno) for n in ast.walk(node)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value]


def _callee(call: ast.Call) -> str:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        if f.attr == "find":  # the loop's _State.find, never str.find
            owner = f.value
            return "find" if isinstance(owner, ast.Attribute | ast.Name) and ast.unparse(owner).endswith("st") else ""
        return f.attr
    return ""


def _other_rejects(tree: ast.Module) -> set[str]:
    """``{"Reject"}`` in a module where the name is the readers' internal exception
    (``umi_data.readers.chat.Reject(pointer, message)``), not :class:`findings.Reject`."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Reject" and node.bases:
            return {"Reject"}
        if isinstance(node, ast.ImportFrom) and node.module == "umi_data.readers.chat" \
                and any(a.name == "Reject" for a in node.names):
            return {"Reject"}
    return set()


def _problem_tuples(fn: ast.FunctionDef) -> list[ast.Tuple]:
    """``(reason, message)`` pairs (``findings.Problem``): returned by a function whose return type
    names ``Problem`` (umieval score's record checks, the agent loop's per-query error), or assigned
    to a variable ``problem``."""
    pairs: list[ast.Tuple] = []
    names = [n.id for n in ast.walk(fn.returns) if isinstance(n, ast.Name)] if fn.returns is not None else []
    returns = "Problem" in names
    for node in ast.walk(fn):
        if returns and isinstance(node, ast.Return) and node.value is not None:
            pairs += [t for t in ast.walk(node.value) if isinstance(t, ast.Tuple)]
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "problem" for t in node.targets):
            pairs += [node.value] if isinstance(node.value, ast.Tuple) else []
    return [t for t in pairs if len(t.elts) == 2 and isinstance(t.elts[0], ast.Constant)
            and isinstance(t.elts[0].value, str)]


def emitted_codes() -> dict[str, list[str]]:
    """Every code literal in the packages, with where it is (``path:line``)."""
    found: dict[str, list[str]] = {}

    def add(code: str, path: Path, line: int) -> None:
        found.setdefault(code, []).append(f"{path.relative_to(REPO)}:{line}")

    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            skip = _other_rejects(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and _callee(node) in EMITTERS and _callee(node) not in skip:
                    pos, kw = EMITTERS[_callee(node)]
                    starred = any(isinstance(a, ast.Starred) for a in node.args[: pos + 1])  # `*problem`: a Problem
                    arg = node.args[pos] if len(node.args) > pos and not starred else None
                    arg = next((k.value for k in node.keywords if k.arg == kw), arg)
                    for code, line in _strings(arg) if arg is not None else []:
                        add(code, path, line)
                elif isinstance(node, ast.Dict):
                    for k, v in zip(node.keys, node.values, strict=True):
                        if isinstance(k, ast.Constant) and k.value in DICT_KEYS and isinstance(v, ast.Constant) \
                                and isinstance(v.value, str) and v.value:
                            add(v.value, path, v.lineno)
                elif isinstance(node, ast.FunctionDef):
                    for t in _problem_tuples(node):
                        if t.elts[0].value:  # type: ignore[attr-defined]  # ("", "") is "no problem"
                            add(t.elts[0].value, path, t.lineno)  # type: ignore[attr-defined]
    return found


def test_every_code_the_packages_emit_is_declared() -> None:
    found = emitted_codes()
    # the scan reaches every kind of emitter (a scan that finds nothing would pass vacuously)
    assert {"json_syntax", "duplicate_id", "no_marker", "bad_tools", "invalid_json", "model_error", "planner_no_marker",
            "arguments_schema", "redirected", "no_record", "duplicate_query"} <= set(found)
    undeclared = {c: w for c, w in found.items() if c not in CODES}
    assert not undeclared, f"declare these codes in umi_data/trajectory/findings.py: {undeclared}"


def test_the_loop_tool_and_score_codes_are_in_the_table() -> None:
    from umi_eval.agent import loop

    assert set(loop._TOOL_ERRORS) <= set(CODES)
    for code in ("unknown_tool", "caller_unparsable", "arguments_not_json", "arguments_schema", "planner_empty",
                 "prompt_truncated", "no_decision", "empty_answer", "timeout", "tool_crashed"):
        assert code in CODES, code


def test_an_undeclared_code_raises_where_it_is_made() -> None:
    from umi_eval.agent.loop import _State

    src = Source("umi", "x.jsonl", line=1)
    for make in (lambda: declared("no_such_code"), lambda: Reject(src, "no_such_code", "m"),
                 lambda: Finding("no_such_code", "m", src), lambda: _State().find("no_such_code", 0, "m")):
        with pytest.raises(ValueError, match="undeclared finding code 'no_such_code'"):
            make()


def test_a_reject_is_one_row_shape() -> None:
    src = Source("toolbench", "a.json", index=2)
    f = Finding("schema", "`tools` must be a list", src, "/tools")
    r = Reject.of(f, [f], src, trajectory_id=None, turn=None)
    assert list(r.to_dict()) == [*ROW, "trajectory_id", "turn"]
    assert r.to_dict()["findings"] == [f.to_dict()] and r.to_dict()["source"] == src.to_dict()
    assert (r.reason, r.pointer, r.where()) == ("schema", "/tools", "a.json[2]#/tools")
    assert list(Reject(src, "duplicate_query", "second answer").to_dict()) == ROW
