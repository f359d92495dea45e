"""Whole prediction files scored as the original metric script would, with the spec's numbers worked
out by hand; shape detection; crash-case counts; bootstrap; paired comparison."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from umi_eval.score.metrics import METRICS
from umi_eval.score.predictions import SINGLE, TRIO, UMI, ShapeError, read_predictions
from umi_eval.score.scoring import StepMismatch, compare, score_file, score_records

from .score_builders import (
    FORECAST,
    MIXED_SINGLE,
    MIXED_TRIO,
    PERFECT_RL,
    SPEC_RL,
    WEATHER,
    pred_call,
    pred_finish,
    pred_give_up,
    ref_call,
    ref_finish,
    ref_give_up,
    write_original,
    write_umi,
)

# Hand-worked scores of the ten MIXED steps (see score_builders):
#   Plan ACC: S1-S5, S7, S9 right → 7/10. Act. EM over S1-S6: S1, S2, S3 → 3/6. Hallu: S5, S10 → 2/10.
#   Arg. F1 list: S1 1, S2 0.75 (city half, days 3 == 3.0 full: m 1.5, R .75, P .75), S3 1, S4-S6 0 → 2.75/6.
#   easy (S3, and the wrong actions S4-S6) → 1/4; hard (S1, S2, and S4-S6) → 1.75/5.
#   R-L over S7, S8: the spec's 0.5455 and 0 ("none" vs "Done.") → mean.
MIXED_EXPECTED = {
    "plan_acc": 0.7, "act_em": 0.5, "hallu": 0.2, "arg_f1": 2.75 / 6, "arg_f1_easy": 0.25,
    "arg_f1_hard": 0.35, "rouge_l": SPEC_RL / 2,
}


def assert_metrics(got: dict[str, float], expected: dict[str, float]) -> None:
    assert set(got) == set(METRICS)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


def test_spec_toy_file(tmp_path: Path) -> None:
    """Spec §2.7's 5-example toy file: Plan ACC 0.8, Act. EM 2/3, Arg. F1 0.2 (f1=[0.6,0,0],
    hard=[0.6,0], easy=[0,0]), Hallu 0.2, R-L 0.5455."""
    pairs = [
        (ref_call(WEATHER, '{"city": "Paris", "units": "metric"}'),
         pred_call(WEATHER, '{"city": "Paris", "units": "imperial", "lang": "en"}')),
        (ref_call(WEATHER, '{"city": "Paris"}'), pred_call("get_wether", '{"city": "Paris"}')),
        (ref_finish("It is 21 degrees in Paris."), pred_finish("Paris is 21 degrees today.")),
        (ref_give_up(), pred_call(FORECAST, "{}")),
        (ref_call(FORECAST, "{}"), pred_call(FORECAST, '{"days": ')),
    ]
    report = score_file(write_original(tmp_path / "predictions.json", pairs), resamples=0)
    assert_metrics(report.metrics, {"plan_acc": 0.8, "act_em": 2 / 3, "arg_f1": 0.2, "arg_f1_hard": 0.3,
                                    "arg_f1_easy": 0.0, "hallu": 0.2, "rouge_l": SPEC_RL})
    c = report.counts
    assert (c["arg_f1"]["denominator"], c["arg_f1_hard"]["denominator"], c["arg_f1_easy"]["denominator"]) == (3, 2, 2)
    assert c["hallucinated_tools"] == [["get_wether", 1]]
    assert c["confusion"]["give up"]["call"] == 1 and c["shape"] == TRIO


def test_perfect_file(tmp_path: Path) -> None:
    pairs = [(r, r.replace("assistant: ", "asssitant: ", 1).removesuffix("</s>")) for r, _ in MIXED_TRIO]
    report = score_file(write_original(tmp_path / "p.json", pairs), resamples=0)
    assert_metrics(report.metrics, {m: 1.0 for m in METRICS if m not in ("hallu", "rouge_l")}
                   | {"hallu": 0.0, "rouge_l": PERFECT_RL})
    assert report.counts["failed_steps"] == 0 and report.cases == []


def test_all_give_up_file(tmp_path: Path) -> None:
    """Like the spec's OOD check: Plan ACC = give-up share; only a reference answer "none" scores R-L."""
    refs = [r for r, _ in MIXED_TRIO] + [ref_finish("none")]
    report = score_file(write_original(tmp_path / "g.json", [(r, pred_give_up()) for r in refs]), resamples=0)
    assert_metrics(report.metrics, {"plan_acc": 2 / 11, "act_em": 0.0, "hallu": 0.0, "arg_f1": 0.0,
                                    "arg_f1_easy": 0.0, "arg_f1_hard": 0.0, "rouge_l": PERFECT_RL / 3})


def test_mixed_errors_trio_and_single_give_the_same_numbers(tmp_path: Path) -> None:
    trio = score_file(write_original(tmp_path / "trio.json", MIXED_TRIO), resamples=0)
    single = score_file(write_original(tmp_path / "single.json", MIXED_SINGLE), resamples=0)
    assert trio.counts["shape"] == TRIO and single.counts["shape"] == SINGLE
    assert_metrics(trio.metrics, MIXED_EXPECTED)
    assert_metrics(single.metrics, MIXED_EXPECTED)
    assert trio.counts["wrong_tools"] == [[WEATHER, 1]]
    assert trio.counts["hallucinated_tools"] == [["Finish", 1], ["made_up_tool", 1]]
    assert trio.counts["confusion"] == {
        "call": {"call": 5, "finish": 1, "give up": 0},
        "finish": {"call": 0, "finish": 1, "give up": 1},
        "give up": {"call": 1, "finish": 0, "give up": 1},
    }


def test_umi_jsonl_header_grouping_and_mode(tmp_path: Path) -> None:
    rows = [(f"t{i // 4}#{i % 4}", r, p) for i, (r, p) in enumerate(MIXED_TRIO)]
    loaded = read_predictions(write_umi(tmp_path / "u.jsonl", rows))
    assert loaded.shape == UMI and loaded.items == 10 and loaded.rejects == []
    report = score_records(loaded.records, resamples=50)
    assert_metrics(report.metrics, MIXED_EXPECTED)
    assert report.counts["bootstrap"]["conversations"] == 3  # t0, t1, t2
    single = score_file(write_umi(tmp_path / "s.jsonl", [(f"t{i}#0", r, p) for i, (r, p) in enumerate(MIXED_SINGLE)],
                                  mode="single", header=False), resamples=0)
    assert_metrics(single.metrics, MIXED_EXPECTED)


def test_crash_cases_are_scored_and_counted(tmp_path: Path) -> None:
    pairs = [
        (ref_call(WEATHER, "{}"), "Action: get_weather_for_meteo\nAction Input: {}"),  # no </s>: scored as a call
        (ref_finish("An answer."), "asssitant: t Next: conclusion.</s>conclusion:An answer."),  # no space
        (ref_finish("An answer."), "asssitant: t Next: conclusion.</s>conclusion: "),  # empty answer
        (ref_call(WEATHER, '{"city": "Paris"}'), pred_call(WEATHER, '["Paris"]')),  # non-object JSON
        (ref_call(WEATHER, "{oops"), pred_call(WEATHER, "{}")),  # reference args invalid: dropped
    ]
    report = score_file(write_original(tmp_path / "c.json", pairs), resamples=0)
    assert report.counts["quirks"] == {
        "prediction_call_without_eos": 1, "prediction_conclusion_without_space": 1, "rouge_empty": 1,
        "args_not_object": 1, "reference_args_invalid_json": 1,
    }
    assert report.counts["arg_f1"] == {"numerator": 1.0, "denominator": 2}  # S1 1, S4 0; S5 dropped
    # S2: answer "An answer." equals the reference; S3: empty answer scores 0
    assert report.metrics["rouge_l"] == pytest.approx(PERFECT_RL / 2)
    assert report.counts["empty_subsets"] == []
    reasons = {c["id"]: c["reasons"] for c in report.cases}
    assert any("rouge_empty" in r for r in reasons.values())


def test_empty_subsets_score_zero_and_are_listed(tmp_path: Path) -> None:
    """The original divides by zero on an empty easy or hard list (and R-L's empty list is 0)."""
    report = score_file(write_original(tmp_path / "e.json", [(ref_give_up(), pred_give_up())]), resamples=100)
    assert report.metrics == dict.fromkeys(METRICS, 0.0) | {"plan_acc": 1.0}
    assert report.counts["empty_subsets"] == ["act_em", "arg_f1", "arg_f1_easy", "arg_f1_hard", "rouge_l"]
    assert report.ci["rouge_l"] == [0.0, 0.0]


def test_unscorable_records_are_rejected_counted_and_listed(tmp_path: Path) -> None:
    path = write_original(tmp_path / "r.json", MIXED_TRIO[:2])
    items = json.loads(path.read_text())
    items[1]["predictions"] = None
    items.append("not an object")
    path.write_text(json.dumps(items))
    report = score_file(path, resamples=0)
    assert report.counts["steps"] == 1 and report.counts["records"] == 3
    assert report.counts["rejected_by_reason"] == {"not_a_string": 1, "not_an_object": 1}
    assert [r.where() for r in report.rejects] == [f"{path}[1]", f"{path}[2]"]


@pytest.mark.parametrize(("content", "needle"), [
    ("[]", "0 records"),
    ("", "empty file"),
    ("not json", "not JSON"),
    ('[{"tools": [], "reference": "x", "prediction": "y"}]',
     "closest shape: alpha-umi predictions.json (missing key 'predictions'"),
    ('{"id": "a#0", "mode": "trio", "tools": [], "reference": "x", "predictions": "y"}\n',
     "alpha-umi predictions.json, whose keys"),
    ('{"id": "a#0", "tools": [], "reference": "x", "prediction": "y"}\n', "closest shape: umi (missing key 'mode'"),
    ('{\n "a": 1\n}\n', "one JSON object"),
    ('{"umi_predictions": 1}\n', "only a header"),
])
def test_unknown_shapes_name_the_closest_and_the_key(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(ShapeError, match=None) as e:
        read_predictions(path)
    assert needle in str(e.value)


def test_bootstrap_is_deterministic_and_contains_the_estimate(tmp_path: Path) -> None:
    path = write_original(tmp_path / "m.json", MIXED_TRIO * 3)
    a, b = score_file(path, resamples=300, seed=7), score_file(path, resamples=300, seed=7)
    assert a.ci == b.ci
    assert score_file(path, resamples=300, seed=8).ci != a.ci
    for m in METRICS:
        lo, hi = a.ci[m]
        assert lo <= a.metrics[m] <= hi, m
        assert lo < hi, m  # 30 steps with varied outcomes: a real interval
    assert a.counts["bootstrap"] == {"resamples": 300, "seed": 7, "conversations": 30}


def test_bootstrap_groups_steps_of_a_conversation(tmp_path: Path) -> None:
    """All steps in one conversation: every resample draws that conversation, so the CI is a point."""
    base = json.loads(write_original(tmp_path / "a.json", MIXED_TRIO).read_text())
    items = [dict(r, instruction="same", history=[{"from": "user", "value": "same"}] +
                  [{"from": "assistant", "value": "x"}] * i) for i, r in enumerate(base)]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(items))
    report = score_file(path, resamples=100)
    assert report.counts["bootstrap"]["conversations"] == 1
    assert all(report.ci[m] == [pytest.approx(report.metrics[m])] * 2 for m in METRICS)


def test_compare_pairs_steps_whatever_their_order(tmp_path: Path) -> None:
    perfect = [(r, r.replace("assistant: ", "asssitant: ", 1).removesuffix("</s>")) for r, _ in MIXED_TRIO]
    a = write_original(tmp_path / "a.json", MIXED_TRIO * 2)
    b_items = json.loads(write_original(tmp_path / "b.json", perfect * 2).read_text())
    random.Random(0).shuffle(b_items)  # the original writes routed groups in their own order
    b = tmp_path / "b.json"
    b.write_text(json.dumps(b_items))
    result = compare(a, b, resamples=300, seed=1)
    assert result["steps"] == 20
    for m in METRICS:
        r = result["metrics"][m]
        expected = (0.0 if m == "hallu" else PERFECT_RL if m == "rouge_l" else 1.0) - MIXED_EXPECTED[m]
        assert r["diff"] == pytest.approx(expected, abs=1e-9), m
        assert r["ci"][0] <= r["diff"] <= r["ci"][1], m
    same = compare(a, a, resamples=100)
    assert all(same["metrics"][m]["ci"] == [0.0, 0.0] for m in METRICS)


def test_compare_trio_against_single_model(tmp_path: Path) -> None:
    trio = write_original(tmp_path / "trio.json", MIXED_TRIO)
    single = write_original(tmp_path / "single.json", MIXED_SINGLE)
    result = compare(trio, single, resamples=50)
    assert all(result["metrics"][m]["diff"] == pytest.approx(0.0) for m in METRICS)


def test_steps_of_two_conversations_with_one_instruction_pair_up_in_any_order(tmp_path: Path) -> None:
    """OOD has two conversations with the same query: their steps are named by their references too."""
    pairs = [(ref_call(WEATHER, '{"city": "Paris"}'), pred_call(WEATHER, "{}")),
             (ref_give_up(), pred_give_up())]
    a = write_original(tmp_path / "a.json", pairs, instruction="same query")
    b = write_original(tmp_path / "b.json", pairs[::-1], instruction="same query")
    ids = [r["id"] for r in read_predictions(a).records]
    assert len(set(ids)) == 2 and sorted(ids) == sorted(r["id"] for r in read_predictions(b).records)
    assert compare(a, b, resamples=20)["metrics"]["plan_acc"]["diff"] == 0.0


def test_compare_refuses_different_steps(tmp_path: Path) -> None:
    a = write_original(tmp_path / "a.json", MIXED_TRIO)
    b = write_original(tmp_path / "b.json", MIXED_TRIO[:-1])
    with pytest.raises(StepMismatch, match="1 step\\(s\\) only in A"):
        compare(a, b, resamples=10)
    u = write_umi(tmp_path / "u.jsonl", [(f"t{i}#0", r, p) for i, (r, p) in enumerate(MIXED_TRIO)])
    with pytest.raises(StepMismatch, match="same kind"):
        compare(a, u, resamples=10)


def test_umi_lines_that_cannot_be_scored_are_rejected_with_their_line(tmp_path: Path) -> None:
    path = write_umi(tmp_path / "u.jsonl", [("t#0", *MIXED_TRIO[0]), ("t#1", *MIXED_TRIO[1]), ("t#0", *MIXED_TRIO[2])])
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"trio"', '"duo"')
    path.write_text("\n".join([*lines, "{broken", "[1]"]) + "\n")
    report = score_file(path, resamples=0)
    assert report.counts["steps"] == 1 and report.counts["records"] == 5
    assert [(r.source.line, r.reason) for r in report.rejects] == [
        (3, "unknown_mode"), (4, "duplicate_id"), (5, "invalid_json"), (6, "not_an_object")]


def test_score_records_rejects_bad_records_handed_in_directly() -> None:
    good = {"id": "t#0", "mode": "single", "tools": [], "reference": "a\nconclusion: x", "prediction": "b"}
    report = score_records([good, {**good, "id": "t#1", "prediction": None}, "nonsense"])
    assert report.counts["steps"] == 1
    assert [(r.where(), r.reason) for r in report.rejects] == [("record 1", "not_a_string"),
                                                               ("record 2", "not_an_object")]


def test_original_files_naming_the_reference_target_are_read(tmp_path: Path) -> None:
    """The original single-model file may carry the step file's ``target`` instead of ``reference``:
    it is detected as that shape and scores as with ``reference``."""
    path = write_original(tmp_path / "single.json", MIXED_SINGLE)
    items = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps([{("target" if k == "reference" else k): v for k, v in o.items()} for o in items]))
    report = score_file(path, resamples=0)
    assert report.counts["shape"] == SINGLE
    assert_metrics(report.metrics, MIXED_EXPECTED)
    loaded = read_predictions(path)
    assert loaded.rejects == [] and [r["reference"] for r in loaded.records] == [o["reference"] for o in items]
