"""Semantic checks: every code, on constructed trajectories, and no error on real data."""

from __future__ import annotations

from pathlib import Path

from umi_data.readers import read_inputs
from umi_data.trajectory import Call, Source, Tool, Trajectory, Turn
from umi_data.trajectory.checks import Deduper, argument_schema, check, fingerprint
from umi_data.trajectory.findings import CODES, Finding

SRC = Source("umi", "t.jsonl", line=1)
LOOKUP = Tool("lookup", "d", {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "Integer"},
                                                                "w": {"type": "weird"}}, "required": ["q"],
                             "optional": ["n"]})


def traj(*turns: Turn, tools: list[Tool] | None = None, tid: str = "t") -> Trajectory:
    return Trajectory(tid, SRC, "q", [LOOKUP] if tools is None else tools, [Turn("user", content="q"), *turns])


def call(args: str = '{"q": "x"}', name: str = "lookup", cid: str | None = None) -> list[Turn]:
    return [Turn("planner", thought="t", decision="call"), Turn("caller", calls=[Call(name, args, cid)]),
            Turn("observation", content="r", call_id=cid)]


END = [Turn("planner", thought=None, decision="conclude"), Turn("conclusion", content="answer")]


def found(t: Trajectory) -> list[tuple[str, str]]:
    return [(f.code, f.pointer) for f in check(t)]


def test_clean() -> None:
    assert found(traj(*call(), *END)) == []
    assert found(traj(*call(), Turn("planner", thought="x", decision="give_up"))) == []


def test_argument_codes() -> None:
    assert found(traj(*call("{oops"), *END)) == [("arguments_not_json", "/turns/2/calls/0/arguments")]
    assert found(traj(*call("[1]"), *END)) == [("arguments_not_json", "/turns/2/calls/0/arguments")]
    assert found(traj(*call('{"n": 3}'), *END)) == [("arguments_missing_required", "/turns/2/calls/0/arguments")]
    assert found(traj(*call('{"q": 1, "n": "3", "w": 5}'), *END)) == [
        ("arguments_wrong_type", "/turns/2/calls/0/arguments"),
        ("arguments_wrong_type", "/turns/2/calls/0/arguments"),
    ]  # "weird" is not type-checked; "Integer" is
    assert found(traj(*call('{"q": "x", "zz": 1}'), *END)) == [("arguments_unknown_name", "/turns/2/calls/0/arguments")]
    assert found(traj(*call('{"q": "x"}', name="nope"), *END)) == [("unknown_tool", "/turns/2/calls/0/name")]


def test_hallucinated_is_a_warning() -> None:
    turns = call("{}", name="invalid_hallucination_function_name")
    turns[2] = Turn("observation", content="", error="No such function name: get_x")
    fs = check(traj(*turns, *END))
    assert [(f.code, f.severity) for f in fs] == [("unknown_tool", "warning")]
    assert "hallucinated" in fs[0].message


def test_tool_codes() -> None:
    assert found(traj(*call(), *END, tools=[])) == [("no_tools", "/tools"), ("unknown_tool", "/turns/2/calls/0/name")]
    assert ("duplicate_tool", "/tools/1") in found(traj(*call(), *END, tools=[LOOKUP, LOOKUP]))
    broken = Tool("lookup", "", {"properties": ["q"], "required": "q"})
    got = found(traj(*call('{"anything": 1}'), *END, tools=[broken]))
    assert got == [("tool_schema_invalid", "/tools/0/parameters")]
    assert argument_schema("nope") is None and argument_schema({"required": [1]}) is None
    finish_only = [Tool("Finish", "", {"type": "object"})]
    assert ("no_tools", "/tools") in found(traj(*END, tools=finish_only))


def test_sequence_codes() -> None:
    no_obs = call()[:2]
    assert found(traj(*no_obs, *END)) == [("call_without_observation", "/turns/2/calls/0")]
    assert found(traj(Turn("observation", content="r"), *END)) == [("observation_without_call", "/turns/1")]
    assert found(traj(*call(cid="a")[:2], Turn("observation", content="r", call_id="b"), *END)) == [
        ("observation_without_call", "/turns/3"), ("call_without_observation", "/turns/2/calls/0")]
    assert ("decision_without_action", "/turns/1/decision") in found(traj(Turn("planner", decision="call"), *END))
    got = found(traj(*call(), Turn("planner", decision="conclude")))
    assert got == [("decision_without_action", "/turns/4/decision"), ("no_terminal_turn", "/turns")]
    assert found(traj(*call())) == [("no_terminal_turn", "/turns")]
    assert found(traj(Turn("planner", thought="hmm", decision=None), *END)) == [("plain_assistant", "/turns/1")]
    assert found(traj(*END[:1], Turn("conclusion", content="none"))) == [("empty_final_answer", "/turns/2/content")]
    assert found(traj(*END, Turn("observation", content="late"))) == [
        ("observation_without_call", "/turns/3"), ("turns_after_conclusion", "/turns/3")]


def test_parallel_calls() -> None:
    turns = [Turn("planner", decision="call"), Turn("caller", calls=[Call("lookup", '{"q": "a"}', "1"),
             Call("lookup", '{"q": "b"}', "2")]), Turn("observation", content="b", call_id="2"),
             Turn("observation", content="a", call_id="1")]
    assert found(traj(*turns, *END)) == [("parallel_calls", "/turns/2/calls")]


def test_no_check_error_on_real_data(toolbench_dir: Path, stage2_path: Path) -> None:
    n = 0
    for rec in read_inputs([toolbench_dir, stage2_path]):
        if rec.trajectory is None:
            continue
        n += 1
        errors = [f.line() for f in check(rec.trajectory) if f.severity == "error"]
        assert errors == []
    assert n == 33


def test_deduper() -> None:
    d = Deduper()
    a = traj(*call(), *END, tid="a")
    d.add(a)
    assert d.check(traj(*call('{"q": "other"}'), *END, tid="b")) == []
    (f,) = d.check(traj(*call('{"q": "other"}'), *END, tid="a"))
    assert f.code == "duplicate_id" and f.severity == "error" and "t.jsonl:1" in f.message
    copy = traj(*call(), *END, tid="c")
    copy.source = Source("toolbench", "other.json")
    assert fingerprint(copy) == fingerprint(a)
    assert [f.code for f in d.check(copy)] == ["duplicate_trajectory"]


def test_every_code_is_documented_and_usable() -> None:
    for code in CODES.values():
        assert code.severity in ("error", "warning") and code.description.endswith(".")
        Finding(code.code, "m", SRC)
