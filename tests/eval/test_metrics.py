"""The spec §2 parse and per-step metrics, against numbers worked out by hand from the spec."""

from __future__ import annotations

import pytest

from umi_eval.score.metrics import (
    Parsed,
    arg_f1,
    hallucinated,
    parse_single,
    parse_trio,
    score_step,
)

from .score_builders import FORECAST, SPEC_RL, WEATHER, pred_call, ref_call, ref_finish

NAMES = frozenset({WEATHER, FORECAST})


def call(args: str, action: str = WEATHER) -> Parsed:
    return Parsed("call", action=action, args=args)


# ---------------------------------------------------------------- §2.1 parse (trio)
def test_trio_parse_reads_reference_shapes() -> None:
    assert parse_trio(ref_call(WEATHER, '{"city": "Paris"}')) == call('{"city": "Paris"}')
    assert parse_trio(ref_finish("It is 21.")) == Parsed("finish", answer="It is 21.")  # </s> deleted
    assert parse_trio("No luck. Next: give up.") == Parsed("give up")


def test_trio_markers_need_no_period_and_give_up_beats_conclusion() -> None:
    assert parse_trio("asssitant: stop Next: give up").plan == "give up"
    assert parse_trio("asssitant: x Next: conclusion Next: give up.</s>conclusion: a").plan == "give up"
    # no "conclusion:" at all: the whole text is the answer
    assert parse_trio("I am done Next: conclusion") == Parsed("finish", answer="I am done Next: conclusion")


def test_trio_answer_is_after_the_last_conclusion_label() -> None:
    text = "asssitant: t Next: conclusion.</s>conclusion: first conclusion: second</s>"
    assert parse_trio(text).answer == "second"


def test_trio_call_reads_the_piece_between_first_and_second_eos() -> None:
    # the thought's "Action:" (before the first </s>) is ignored; LAST Action / Action Input win
    text = ("asssitant: Action: ignored Next: caller.</s>caller: Action: a\nAction Input: {\"x\": 1}\n"
            "Action: b\nAction Input: {\"y\": 2}</s>Action: after")
    assert parse_trio(text) == call('{"y": 2}', action="b")


def test_trio_call_defaults_and_trailing_text() -> None:
    assert parse_trio("asssitant: t</s>caller: Action: a") == call("{}", action="a")
    assert parse_trio("asssitant: t</s>caller: nothing here") == call("{}", action="none")
    got = parse_trio("asssitant: t</s>caller: Action: a\nAction Input: {}\nObservation: hi")
    assert got.args == "{}\nObservation: hi"  # stays in args → invalid JSON


def test_trio_caller_text_with_marker_flips_the_plan() -> None:
    assert parse_trio("asssitant: t Next: caller.</s>caller: Next: give up now").plan == "give up"


def test_trio_crash_cases_are_scored_and_flagged() -> None:
    # §2.1: rule 3 without </s> raises in the original; umi reads the whole text
    got = parse_trio("Action: a\nAction Input: {}")
    assert (got.plan, got.action, got.args, got.quirk) == ("call", "a", "{}", "call_without_eos")
    # §2.1: "conclusion:" never followed by a space raises in the original
    got = parse_trio("t Next: conclusion.</s>conclusion:answer</s>")
    assert (got.answer, got.quirk) == ("answer", "conclusion_without_space")


# ---------------------------------------------------------------- §2.8 parse (single model)
def test_single_parse() -> None:
    assert parse_single("t\nconclusion: give up.") == Parsed("give up")
    assert parse_single("t\nconclusion: a conclusion: b") == Parsed("finish", answer="b")
    assert parse_single("Action: ignored\nt\nAction: a\nAction Input: {}") == call("{}", action="a")
    assert parse_single("Next: give up") == call("{}", action="none")  # trio markers mean nothing here
    assert parse_single("conclusion:no space").plan == "call"


# ---------------------------------------------------------------- §2.4 Hallu.
def test_hallucination_rules() -> None:
    assert hallucinated(call("{}", action="Finish"), NAMES)
    assert not hallucinated(call("{}", action="none"), NAMES)
    assert hallucinated(call("{}", action=WEATHER.upper()), NAMES)  # case-sensitive
    assert not hallucinated(Parsed("finish", answer="x"), NAMES)


# ---------------------------------------------------------------- §2.5 Arg. F1
@pytest.mark.parametrize(("ref", "pred", "expected"), [
    # spec worked example: full 1, half 1, m 1.5, R 0.75, P 0.5 → 0.6
    ('{"city": "Paris", "units": "metric"}', '{"city": "Paris", "units": "imperial", "lang": "en"}', 0.6),
    ('{"n": 1, "b": true}', '{"n": 1.0, "b": 1}', 1.0),  # Python equality: 1 == 1.0, true == 1
    ('{"n": 5}', '{"n": "5"}', 0.5),  # "5" vs 5: half match → m .5, R .5, P .5
    ('{"a": [1, {"b": 2}]}', '{"a": [1, {"b": 2}]}', 1.0),  # deep equality
    ('{"a": 1}', '{"b": 1}', 0.0),  # no shared key: P + R = 0
    ('{"a": 1}', "{}", 0.0),
    ('{"a": 1}', "[1]", 0.0),  # non-object prediction
    ('{"a": 1}', '{"a": 1} trailing', 0.0),  # invalid JSON
])
def test_arg_f1_hard(ref: str, pred: str, expected: float) -> None:
    got = arg_f1(call(ref), call(pred))
    assert got.f1 == pytest.approx(expected)
    assert (got.easy, got.hard) == (False, True)


def test_arg_f1_easy_reference() -> None:
    assert arg_f1(call("{}"), call("{}")).f1 == 1.0
    assert arg_f1(call("{}"), call("{ }")).f1 == 1.0  # compared as decoded JSON, as the original
    for pred in ('{"a": 1}', "{oops"):
        got = arg_f1(call("{}"), call(pred))
        assert (got.f1, got.easy, got.hard) == (0.0, True, False)


def test_arg_f1_wrong_action_counts_in_both_lists_and_invalid_reference_is_dropped() -> None:
    got = arg_f1(call('{"a": 1}'), call('{"a": 1}', action=FORECAST))
    assert (got.f1, got.easy, got.hard) == (0.0, True, True)
    got = arg_f1(call("{not json"), call("{not json"))
    assert (got.f1, got.easy, got.hard, got.quirk) == (None, False, False, "reference_args_invalid_json")
    got = arg_f1(call("[1]"), call("[1]"))  # non-object reference (not {}): 0, hard
    assert (got.f1, got.hard, got.quirk) == (0.0, True, "args_not_object")


# ---------------------------------------------------------------- steps
def test_step_on_a_finish_reference_predicted_as_call_scores_none_against_the_answer() -> None:
    step = score_step(ref_finish("none"), pred_call(WEATHER, "{}"), NAMES, "trio")
    assert not step.plan_ok and step.act_em is None and step.arg is None
    assert step.rouge_l == pytest.approx(2.0 * (1.0 / (2.0 + 1e-8)))  # hypothesis "none" vs answer "none"


def test_step_rouge_spec_example_and_empty_answer() -> None:
    pred = "asssitant: t Next: conclusion.</s>conclusion: Paris is 21 degrees today."
    step = score_step(ref_finish("It is 21 degrees in Paris."), pred, NAMES, "trio")
    assert step.rouge_l == pytest.approx(SPEC_RL) and step.rouge_l == pytest.approx(0.5455, abs=1e-4)
    step = score_step(ref_finish("An answer."), "asssitant: t Next: conclusion.</s>conclusion: ...", NAMES, "trio")
    assert step.rouge_l == 0.0 and step.quirks == ["rouge_empty"]


def test_step_quirks_name_their_side() -> None:
    step = score_step(ref_call(WEATHER, "{}"), "Action: get_weather_for_meteo\nAction Input: {}", NAMES, "trio")
    assert step.quirks == ["prediction_call_without_eos"] and step.act_em and step.arg.f1 == 1.0
