"""The readers of public tool-use sets (BFCL, xLAM, Hermes, ToolACE, τ-bench) feed ``umieval
generate`` like every other input: their trajectories become test steps whose references are the
data's own calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from umi_data.render.parse import parse_caller
from umi_eval.generate.steps import load_steps

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"


@pytest.mark.parametrize(("name", "decisions"), [
    ("bfcl/BFCL_v4_parallel_multiple.json", {"call": 2}),
    ("bfcl/BFCL_v4_irrelevance.json", {"give_up": 1}),
    ("xlam/xlam_function_calling_sample.json", {"call": 2, "give_up": 1}),
    ("hermes-function-calling.json", {"call": 3, "conclude": 3}),
    ("toolace.json", {"call": 2, "conclude": 3}),
    ("tau-bench-retail.json", {"call": 4, "conclude": 4}),
])
def test_public_formats_give_test_steps(name: str, decisions: dict[str, int]) -> None:
    steps = load_steps([str(FIXTURES / name)])
    assert dict(steps.decisions()) == decisions and not steps.issues
    for s in steps.steps:
        if s.decision == "call":  # the caller target parses back to calls of the step's own tools
            target = s.reference.split("caller: ", 1)[1].removesuffix("</s>")
            names = {t["Name"] if "Name" in t else t.get("name") for t in s.tools}
            assert all(c.name in names for c in parse_caller(target))


def test_bfcl_caller_reference_is_the_first_acceptable_answer() -> None:
    steps = load_steps([str(FIXTURES / "bfcl" / "BFCL_v4_live_simple.json")])
    [step] = steps.steps
    call = 'caller: Action: get_weather\nAction Input: {"city": "Bergen", "unit": "celsius"}</s>'
    assert step.reference.endswith(call)
    assert [i.reason for i in steps.issues] == ["no_ground_truth"]  # the question without an answer, located
