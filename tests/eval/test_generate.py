"""`umieval generate` with scripted backends: composition, single mode, resume, refusals, CLI codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_eval.cli.commands import main
from umi_eval.generate.backends import Decoding
from umi_eval.generate.predict import GenerateError, GenerateOptions, generate
from umi_eval.generate.steps import load_steps

from .conftest import STAGE2, TRAJECTORIES, need
from .oracle import Oracle, oracles

TRIO_MODELS = {"planner": "p", "caller": "c", "summarizer": "s"}


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
                     overwrite=True, open_backend_fn=fn)
    assert again.generated == 5
    with pytest.raises(GenerateError, match="is the input"):
        generate([str(data)], data, GenerateOptions("trio", TRIO_MODELS), overwrite=True, open_backend_fn=fn)
    assert json.loads(data.read_text()) == TRAJECTORIES
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


def test_cli_ctrl_c_keeps_finished_chunks_and_a_crash_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the planner works on later steps: the file keeps whole lines, in step order, of
    the steps finished before it; the rerun resumes into the same bytes as an uninterrupted run.
    (Which steps finished first depends on the engine's overlap, so the test does not fix how many.)"""
    import umi_eval.generate.predict as gen

    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    models = oracles(data)
    late = [p for p in models["planner"].answers if "Tell me a secret" in p]  # the last trajectory's steps
    assert late

    class Interrupting(Oracle):
        def generate(self, prompts, decoding):  # type: ignore[no-untyped-def]
            if any(p in late for p in prompts):
                raise KeyboardInterrupt
            return super().generate(prompts, decoding)

    def fake_open(kind: str, model: str, **_: object) -> Oracle:
        role = {"p": "planner", "c": "caller", "s": "summarizer"}[model]
        return Interrupting(models[role].answers) if role == "planner" else models[role]

    monkeypatch.setattr(gen, "open_backend", fake_open)
    whole = tmp_path / "whole.jsonl"
    generate([str(data)], whole, GenerateOptions("trio", TRIO_MODELS), open_backend_fn=lambda r, _m: models[r])
    out = tmp_path / "p.jsonl"
    args = ["generate", str(data), "-o", str(out), "--planner", "p", "--caller", "c", "--summarizer", "s",
            "--chunk-size", "2", "--quiet"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 130 and "rerun" in res.output
    kept = out.read_bytes()
    done = len(kept.splitlines()) - 1
    assert kept.endswith(b"\n") and done < 5
    assert kept.splitlines()[1:] == whole.read_bytes().splitlines()[1 : 1 + done]  # a prefix, whole lines
    monkeypatch.setattr(gen, "open_backend", lambda kind, model, **_: models[{"p": "planner", "c": "caller",
                                                                              "s": "summarizer"}[model]])
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["done_before"] == done
    assert out.read_bytes().splitlines()[1:] == whole.read_bytes().splitlines()[1:]

    def broken_open(kind: str, model: str, **_: object) -> Oracle:
        raise RuntimeError("a bug")

    monkeypatch.setattr(gen, "open_backend", broken_open)
    res = CliRunner().invoke(main, [*args, "--overwrite"])
    assert res.exit_code == 3 and "internal error" in res.output
    assert len(out.read_text().splitlines()) == 1 + 5  # --overwrite never got to truncate the file


def test_resume_refuses_other_steps_or_another_template(tmp_path: Path) -> None:
    """The header holds a digest of the steps and the template: a rerun on a changed input file of
    the same name (another reference, another tool description) or with another --template is
    refused instead of keeping the old lines; --overwrite starts over."""
    from umi_data.render.templates import ALPHA_UMI

    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    models = oracles(data)
    fn = lambda role, _m: models[role]  # noqa: E731
    out = tmp_path / "p.jsonl"
    opts = GenerateOptions("trio", TRIO_MODELS)
    generate([str(data)], out, opts, limit=2, open_backend_fn=fn)
    header = rows(out)[0]
    assert header["template"] == "alpha-umi" and header["steps_digest"].startswith("sha256:")
    before = out.read_bytes()
    changed_ref = json.loads(json.dumps(TRAJECTORIES))
    changed_ref[0]["conversations"][5]["value"] = "It is 22 degrees in Paris."  # another reference
    changed_doc = json.loads(json.dumps(TRAJECTORIES))
    changed_doc[0]["tools"][0]["function"] = "Weather."  # same references, other prompts
    for changed in (changed_ref, changed_doc):
        data.write_text(json.dumps(changed))
        with pytest.raises(GenerateError, match=r"other settings.*steps_digest"):
            generate([str(data)], out, opts, open_backend_fn=fn)
        assert out.read_bytes() == before
    data.write_text(json.dumps(TRAJECTORIES))
    tmpl = tmp_path / "t.json"  # the built-in name, one character of another prompt
    tmpl.write_text(json.dumps({"name": "alpha-umi", "prompts": {**ALPHA_UMI.prompts, "planner": "x {history}"},
                                "cues": ALPHA_UMI.cues}))
    with pytest.raises(GenerateError, match=r"template: file 'alpha-umi' vs now 'alpha-umi \(sha256:"):
        generate([str(data)], out, opts, template=str(tmpl), open_backend_fn=fn)
    assert out.read_bytes() == before
    again = generate([str(data)], out, opts, template=str(tmpl), overwrite=True, open_backend_fn=fn)
    assert again.done_before == 0 and again.generated == 5
    resumed = generate([str(data)], out, opts, template=str(tmpl), open_backend_fn=fn)  # the same file content
    assert resumed.done_before == 5 and resumed.generated == 0


def test_resume_compares_the_dtype_a_backend_resolved(tmp_path: Path) -> None:
    """dtype 'auto' is recorded as what the backend made of it: a resume where it resolves to
    another dtype (another machine) is refused."""

    class Typed(Oracle):
        def __init__(self, base: Oracle, dtype: str) -> None:
            super().__init__(base.answers, base.name)
            self.dtype, self.device = dtype, "cpu"

    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    models = oracles(data)
    out = tmp_path / "p.jsonl"
    opts = GenerateOptions("trio", TRIO_MODELS, backend_options={"dtype": "auto"})
    generate([str(data)], out, opts, limit=2, open_backend_fn=lambda r, _m: Typed(models[r], "float32"))
    header = rows(out)[0]
    assert header["backend_options"] == {"dtype": "auto"}
    assert header["resolved"]["planner"] == {"dtype": "float32", "device": "cpu"}
    with pytest.raises(GenerateError, match="resolved dtype"):
        generate([str(data)], out, opts, open_backend_fn=lambda r, _m: Typed(models[r], "bfloat16"))
    done = generate([str(data)], out, opts, open_backend_fn=lambda r, _m: Typed(models[r], "float32"))
    assert (done.done_before, done.generated) == (2, 3)
