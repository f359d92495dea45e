"""umi_data.render.parse: the inverse of the role targets, and tolerant of model noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from umi_data.readers import read_inputs
from umi_data.render.alpha_umi import planner_text
from umi_data.render.parse import (
    GlobalOutput,
    ParseError,
    PlannerOutput,
    parse,
    parse_caller,
    parse_caller_clean,
    parse_global,
    parse_planner,
    parse_summarizer,
    strip_eos,
)
from umi_data.render.roles import ROLE_NAMES, examples
from umi_data.trajectory import Call, Source, Tool, Trajectory, Turn

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
STAGE2 = SHARED / "alpha-umi-example" / "raw_data_stage_2.json"
ANSWERS = SHARED / "toolbench-example" / "answer"


# --- the round trip: role target -> parse -> canonical turn ------------------------------------


def _stripped(thought: str | None) -> str | None:
    return (thought or "").strip() or None


def _pairs(calls) -> list[tuple[str, str]]:
    return [(c.name, c.arguments) for c in calls]


def check_round_trip(traj: Trajectory) -> dict[str, int]:
    """Every example of every role parses back to the canonical turn(s) it was rendered from."""
    counts = dict.fromkeys(ROLE_NAMES, 0)
    turns = traj.turns
    for role in ROLE_NAMES:
        for ex in examples(traj, role):
            counts[role] += 1
            turn = turns[ex.turn]
            where = f"{ex.id}: {ex.completion!r}"
            if role == "planner":
                out = parse_planner(ex.completion)
                assert (out.thought, out.decision) == (turn.thought, turn.decision), where
                # clean: a canonical value with a decision marker (a plain message has none)
                assert out.clean == (turn.raw is None and turn.decision is not None), where
            elif role == "caller":
                calls, clean = parse_caller_clean(ex.completion)
                assert turn.raw is None, where
                assert _pairs(calls) == _pairs(turn.calls), where
                assert clean, where
            elif role == "summarizer":
                assert parse_summarizer(ex.completion) == turn.content, where
            else:
                out = parse_global(ex.completion)
                assert out.clean, where
                assert out.decision == ex.decision == turn.decision, where
                assert out.thought == _stripped(turn.thought), where
                nxt = turns[ex.turn + 1] if ex.turn + 1 < len(turns) else None
                if out.decision == "call":
                    assert nxt is not None and nxt.role == "caller", where
                    assert _pairs(out.calls) == _pairs(nxt.calls), where
                    assert out.answer is None
                elif out.decision == "conclude":
                    assert nxt is not None and nxt.role == "conclusion", where
                    assert out.answer == nxt.content, where
                    assert out.calls is None
                else:
                    assert out.calls is None and out.answer is None
    return counts


def _trajectories(path: Path) -> list[Trajectory]:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return [r.trajectory for r in read_inputs([path]) if r.trajectory is not None]


@pytest.mark.parametrize("path", [STAGE2, ANSWERS], ids=["alpha-umi-stage-2", "toolbench-answers"])
def test_round_trip_shared_samples(path: Path) -> None:
    trajs = _trajectories(path)
    assert trajs
    totals = dict.fromkeys(ROLE_NAMES, 0)
    for traj in trajs:
        for role, n in check_round_trip(traj).items():
            totals[role] += n
    assert all(totals[r] > 0 for r in ROLE_NAMES), totals


# --- hypothesis: generated thoughts, calls and answers ----------------------------------------

FORBIDDEN = (
    "Next: caller.",
    "Next: conclusion.",
    "Next: give up.",
    "Action: ",
    "Action Input: ",
    "conclusion: ",
    "</s>",
    "invalid_hallucination_function_name",
)


def _free(text: str) -> bool:
    return not any(m in text for m in FORBIDDEN)


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).filter(_free)
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=20).filter(
    _free
)
json_args = st.dictionaries(
    st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=10)), max_size=3
).map(json.dumps)
calls = st.lists(st.builds(Call, names, st.one_of(texts, json_args)), min_size=1, max_size=3)
thoughts = st.one_of(st.none(), texts)


@st.composite
def trajectories(draw) -> Trajectory:
    turns = [Turn("user", content=draw(texts))]
    for _ in range(draw(st.integers(0, 3))):
        turns += [
            Turn("planner", thought=draw(thoughts), decision="call"),
            Turn("caller", calls=draw(calls)),
            Turn("observation", content=draw(texts)),
        ]
    if draw(st.booleans()):
        turns += [Turn("planner", thought=draw(thoughts), decision="give_up")]
    else:
        answer = draw(texts.filter(lambda a: a != "give up."))
        turns += [
            Turn("planner", thought=draw(thoughts), decision="conclude"),
            Turn("conclusion", content=answer),
        ]
    tools = [Tool("get_x", "Get x.")]
    return Trajectory("h/0", Source("canonical", "hyp.json"), turns[0].content or "", tools, turns)


@settings(max_examples=150, deadline=None)
@given(trajectories())
def test_round_trip_generated(traj: Trajectory) -> None:
    check_round_trip(traj)


@settings(max_examples=200, deadline=None)
@given(thoughts, st.sampled_from(["call", "conclude", "give_up"]))
def test_planner_inverse_of_planner_text(thought: str | None, decision: str) -> None:
    assert parse_planner(planner_text(thought, decision)) == PlannerOutput(thought, decision, True)
    noisy = parse_planner(planner_text(thought, decision) + " </s>\n")
    assert (noisy.thought, noisy.decision, noisy.clean) == (thought, decision, False)


# --- planner noise ------------------------------------------------------------------------------


def test_planner_examples_and_noise() -> None:
    assert parse_planner("I will call X.\n Next: caller.") == PlannerOutput("I will call X.", "call", True)
    assert parse_planner(" Next: give up.") == PlannerOutput(None, "give_up", True)
    assert parse_planner("Done.\n Next: conclusion.</s>") == PlannerOutput("Done.", "conclude", False)
    assert parse_planner("Done.\n Next: conclusion.  \n") == PlannerOutput("Done.", "conclude", False)
    # marker without the newline before it (non-canonical, but the decision is there)
    assert parse_planner("I will call X. Next: caller.") == PlannerOutput("I will call X.", "call", False)
    # marker not at the very end: still detected, the rest dropped
    out = parse_planner("I will call X.\n Next: caller.\nAction: X\nAction Input: {}")
    assert out == PlannerOutput("I will call X.", "call", False)
    out = parse_planner("Next: give up. I cannot do more.")
    assert out == PlannerOutput(None, "give_up", False)
    # no decision marker: a plain message, never a clean planner parse (issue 13)
    assert parse_planner("Should I try again?") == PlannerOutput("Should I try again?", None, False)
    assert parse_planner("Based the the information, I will").clean is False
    assert parse_planner("Should I try again?</s>") == PlannerOutput("Should I try again?", None, False)


# --- caller -----------------------------------------------------------------------------------


def test_caller_exact_and_json_flag() -> None:
    (c,) = parse_caller('Action: get_x\nAction Input: {\n  "a": 1\n}')
    assert (c.name, c.arguments, c.valid_json) == ("get_x", '{\n  "a": 1\n}', True)
    assert c.as_call() == Call("get_x", '{\n  "a": 1\n}')
    (c,) = parse_caller("Action: get_x\nAction Input: {'a': 1}")
    assert c.arguments == "{'a': 1}" and not c.valid_json  # never re-serialised
    cs = parse_caller('Action: a\nAction Input: {}\nAction: b\nAction Input: {"k": "v"}')
    assert [(c.name, c.arguments, c.valid_json) for c in cs] == [("a", "{}", True), ("b", '{"k": "v"}', True)]


def test_caller_noise() -> None:
    calls, clean = parse_caller_clean('Action: a\nAction Input: {"x": 1}</s>')
    assert _pairs(calls) == [("a", '{"x": 1}')] and not clean
    calls, clean = parse_caller_clean('Thought: call a.\nAction: a\nAction Input: {"x": 1}')
    assert _pairs(calls) == [("a", '{"x": 1}')] and not clean
    with pytest.raises(ParseError, match="not exactly"):
        parse_caller('Action: a\nAction Input: {"x": 1}</s>', strict=True)
    assert _pairs(parse_caller("Action: a\nAction Input: {}", strict=True)) == [("a", "{}")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I think I should call a.", "no 'Action:'"),
        ("Action: a", "without 'Action Input:'"),
        ("Action: a Action Input: {}", "one line each"),
        ("", "no 'Action:'"),
    ],
)
def test_caller_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_caller(text)


# --- summarizer and global ---------------------------------------------------------------------


def test_summarizer() -> None:
    assert parse_summarizer("The answer is 4.\n") == "The answer is 4.\n"
    assert parse_summarizer("The answer is 4.</s>") == "The answer is 4."
    assert parse_summarizer("The answer is 4. </s></s> ") == "The answer is 4."
    assert strip_eos("abc") == ("abc", False)


def test_global_shapes() -> None:
    out = parse_global('I call a.\nAction: a\nAction Input: {"x": 1}')
    assert (out.thought, out.decision, _pairs(out.calls), out.answer, out.clean) == (
        "I call a.",
        "call",
        [("a", '{"x": 1}')],
        None,
        True,
    )
    out = parse_global("\nAction: a\nAction Input: {}")
    assert (out.thought, out.decision) == (None, "call")
    assert parse_global("Done.\nconclusion: It is 4.") == GlobalOutput(
        "Done.", "conclude", None, "It is 4.", True
    )
    assert parse_global("Stuck.\nconclusion: give up.") == GlobalOutput("Stuck.", "give_up", None, None, True)
    assert parse_global("Stuck.\nconclusion: give up.</s>") == GlobalOutput("Stuck.", "give_up", clean=False)
    # a thought that mentions an action in prose, then the real call (seen in ToolBench data)
    out = parse_global("Plan.\n\nAction: Call the 'a' function.\nAction: a\nAction Input: {}")
    assert (out.thought, out.decision, _pairs(out.calls)) == (
        "Plan.\n\nAction: Call the 'a' function.",
        "call",
        [("a", "{}")],
    )
    # a planner-style output from the global model: decision known, call missing
    out = parse_global("I call a.\n Next: caller.")
    assert (out.thought, out.decision, out.calls, out.clean) == ("I call a.", "call", None, False)
    assert parse_global("Should I try again?") == GlobalOutput("Should I try again?", None)


def test_dispatch() -> None:
    assert parse("summarizer", "x</s>") == "x"
    assert isinstance(parse("global", "x"), GlobalOutput)
    with pytest.raises(ValueError, match="unknown role"):
        parse("backbone", "x")
