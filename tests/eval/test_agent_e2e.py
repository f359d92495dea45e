"""End to end on CPU: the memorised tiny trio (``memorised`` in tests/eval/conftest.py, trained
with umitrain) replays its training trajectories exactly through ``umieval run`` with the replay
executor — the check that prompts, tokenization, EOS, routing, parsing and tool dispatch of the
loop agree with training. The trio and the single (global) model both."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main as umidata
from umi_data.readers import read_inputs
from umi_data.trajectory import Trajectory
from umi_eval.cli.commands import main as umieval

pytestmark = pytest.mark.slow


@pytest.fixture
def trio(request: pytest.FixtureRequest):
    try:
        return request.getfixturevalue("memorised")
    except pytest.FixtureLookupError:
        pytest.skip("the memorised tiny models (tests/eval/conftest.py) are not available")


def _shape(turns):
    return [(t.role, t.content, t.thought, t.decision, [(c.name, c.arguments) for c in t.calls or []])
            for t in turns]


@pytest.mark.parametrize("single", [False, True], ids=["trio", "global"])
def test_memorised_models_replay_their_trajectories(trio, tmp_path, single):
    data = str(trio.data)
    gold = {r.trajectory.id: r.trajectory for r in read_inputs([data]) if r.trajectory is not None}
    out = tmp_path / "runs.jsonl"
    models = (["--model", trio.models["global"]] if single else
              ["--planner", trio.models["planner"], "--caller", trio.models["caller"],
               "--summarizer", trio.models["summarizer"]])
    res = CliRunner().invoke(umieval, ["run", data, "-o", str(out), "--tools", f"replay:{data}", *models,
                                       "--max-new-tokens", "64", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "answered 2, gave up 1, step limit 0" in res.output
    runs = [Trajectory.from_dict(json.loads(x)) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [t.id for t in runs] == list(gold)
    for t in runs:
        assert _shape(t.turns) == _shape(gold[t.id].turns), t.id
        assert t.outcome == gold[t.id].outcome and t.metadata["findings"] == []
        assert t.metadata["tokens"]["completion"] > 0
    # the run file is training data again
    res = CliRunner().invoke(umidata, ["validate", str(out)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(umidata, ["split", str(out), "-o", str(tmp_path / "split"), "--dev-ratio", "0"])
    assert res.exit_code == 0, res.output
