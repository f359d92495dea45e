"""`umieval generate` with scripted backends: composition, single mode, resume, refusals, CLI codes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.eval.conftest import STAGE2, TRAJECTORIES, need
from umi_eval.backends import Decoding, Generation
from umi_eval.cli import main
from umi_eval.generate import GenerateError, GenerateOptions, generate
from umi_eval.steps import Prompts, load_steps

TRIO_MODELS = {"planner": "p", "caller": "c", "summarizer": "s"}


class Oracle:
    """A scripted model that answers each gold prompt with the gold completion (and counts calls)."""

    def __init__(self, answers: dict[str, str], name: str = "oracle") -> None:
        self.answers, self.name, self.prompts = answers, name, []

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
        self.prompts.extend(prompts)
        return [Generation(self.answers.get(p, "???"), len(p), 1) for p in prompts]


def oracles(path: Path, style: str = "umi") -> dict[str, Oracle]:
    answers: dict[str, dict[str, str]] = {"planner": {}, "caller": {}, "summarizer": {}, "model": {}}
    pr = Prompts(style)
    for s in load_steps([path]).steps:
        t = s.gold_thought
        answers["planner"][pr.planner(s)] = t
        answers["model"][pr.single(s)] = s.reference_single
        nxt = s.prepared.conv[s.step + 1]["value"] if s.decision != "give_up" else None
        if s.decision == "call":
            answers["caller"][pr.caller(s, t)] = nxt
        elif s.decision == "conclude":
            answers["summarizer"][pr.summarizer(s, t)] = nxt
    return {role: Oracle(a, role) for role, a in answers.items()}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("style", ["umi", "original"])
def test_gold_outputs_compose_into_the_references(tmp_path: Path, style: str) -> None:
    data = need(STAGE2)
    models = oracles(data, style)
    out = tmp_path / "pred.jsonl"
    opts = GenerateOptions("trio", TRIO_MODELS, prompts=style, chunk_size=16)
    summary = generate([str(data)], out, opts, open_backend_fn=lambda role, _m: models[role])
    lines = rows(out)
    assert lines[0]["umi_predictions"] == 1 and lines[0]["prompts"] == style and lines[0]["mode"] == "trio"
    preds = lines[1:]
    assert len(preds) == summary.generated == 79 and summary.routes == {"caller": 59, "conclusion": 14, "give_up": 6}
    assert [p["id"] for p in preds] == [s.id for s in load_steps([data]).steps]  # step order
    for p in preds:
        # the original's prediction is the reference less its closing </s> (give-ups have none)
        assert p["prediction"] == (p["reference"] if p["route"] == "give_up" else p["reference"][: -len("</s>")])
        assert p["tools"] and all(set(t) == {"Name", "function", "input"} for t in p["tools"])
    assert len(models["planner"].prompts) == 79 and len(models["caller"].prompts) == 59
    assert len(models["summarizer"].prompts) == 14
    assert Path(summary.rejects or "").read_text() == ""


def test_single_mode_predicts_the_global_targets(tmp_path: Path) -> None:
    data = need(STAGE2)
    models = oracles(data)
    out = tmp_path / "single.jsonl"
    generate([str(data)], out, GenerateOptions("single", {"model": "m"}), open_backend_fn=lambda r, _m: models[r])
    preds = rows(out)[1:]
    assert len(preds) == 79 and all(p["mode"] == "single" and p["prediction"] == p["reference"] for p in preds)


def test_routing_uses_postprocessed_planner_text(tmp_path: Path) -> None:
    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    scripted = {
        "planner": Oracle({}, "planner"),  # every planner answer: "???" (no marker → caller)
        "caller": Oracle({}, "caller"),
        "summarizer": Oracle({}, "summarizer"),
    }
    out = tmp_path / "p.jsonl"
    generate([str(data)], out, GenerateOptions("trio", TRIO_MODELS), open_backend_fn=lambda r, _m: scripted[r])
    preds = rows(out)[1:]
    assert {p["route"] for p in preds} == {"caller"}
    assert preds[0]["prediction"] == "assistant: ???Next: caller.</s>caller: ???"
    # the caller saw the thought with the appended marker, as the original
    assert all("???Next: caller." in p for p in scripted["caller"].prompts)


def test_resume_skips_done_steps_and_gives_the_same_file(tmp_path: Path) -> None:
    data = need(STAGE2)
    models = oracles(data)
    fn = lambda role, _m: models[role]  # noqa: E731
    once, twice = tmp_path / "once.jsonl", tmp_path / "twice.jsonl"
    opts = GenerateOptions("trio", TRIO_MODELS, chunk_size=10)
    generate([str(data)], once, opts, open_backend_fn=fn)
    first = generate([str(data)], twice, opts, limit=25, open_backend_fn=fn)
    assert first.generated == 25
    with open(twice, "ab") as f:
        f.write(b'{"id": "torn')  # a crash in the middle of a line
    n_before = len(models["planner"].prompts)
    second = generate([str(data)], twice, opts, open_backend_fn=fn)
    assert (second.done_before, second.generated) == (25, 54)
    assert len(models["planner"].prompts) - n_before == 54  # done steps were not generated again
    assert twice.read_bytes() == once.read_bytes()


def test_refuses_other_settings_and_foreign_files(tmp_path: Path) -> None:
    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    models = oracles(data)
    fn = lambda role, _m: models[role]  # noqa: E731
    out = tmp_path / "p.jsonl"
    generate([str(data)], out, GenerateOptions("trio", TRIO_MODELS), open_backend_fn=fn)
    before = out.read_bytes()
    for other in (
        GenerateOptions("trio", {**TRIO_MODELS, "caller": "other"}),
        GenerateOptions("trio", TRIO_MODELS, decoding=Decoding(temperature=0.7)),
        GenerateOptions("trio", TRIO_MODELS, prompts="original"),
    ):
        with pytest.raises(GenerateError, match="other settings"):
            generate([str(data)], out, other, open_backend_fn=fn)
    assert out.read_bytes() == before
    again = generate([str(data)], out, GenerateOptions("trio", {**TRIO_MODELS, "caller": "other"}),
                     overwrite=True, open_backend_fn=fn)  # fmt: skip
    assert again.generated == 5
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text('{"a": 1}\n')
    with pytest.raises(GenerateError, match="not a umieval prediction file"):
        generate([str(data)], foreign, GenerateOptions("trio", TRIO_MODELS), open_backend_fn=fn)
    assert foreign.read_text() == '{"a": 1}\n'


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    runner = CliRunner()
    cases = [
        [str(tmp_path / "missing.json"), "-o", str(tmp_path / "o.jsonl"), "--model", "m"],
        [str(data), "-o", str(tmp_path / "o.jsonl"), "--planner", "p"],  # no caller / summarizer
        [str(data), "-o", str(tmp_path / "o.jsonl"), "--model", "m", "--planner", "p"],
        [str(data), "-o", str(tmp_path / "o.jsonl"), "--glpft-run", str(tmp_path)],  # not a run
        [str(data), "-o", str(tmp_path / "o.jsonl"), "--model", str(tmp_path / "nope")],  # no checkpoint
        [str(data), "-o", str(tmp_path / "o.jsonl"), "--model", "m", "--backend", "openai"],  # no --base-url
    ]
    for args in cases:
        res = runner.invoke(main, ["generate", *args])
        assert res.exit_code == 2, (args, res.output)
        assert "error:" in res.output and "Traceback" not in res.output
    assert not list(tmp_path.glob("o.*"))  # nothing written when a model cannot be opened
