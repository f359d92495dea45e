"""GLPFT: stage 1 on `global`, then planner / caller / summarizer each initialised from stage 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from umi_train import UserError
from umi_train.glpft import load_pipeline, run_glpft
from umi_train.train import weights_digest

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


def test_tiny_pipeline_runs_both_stages_from_stage1_weights(split_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "glpft"
    sets = ("common.max_steps=6", "stage2.common.max_steps=3", "common.save_steps=3", "common.tiny_vocab=600")
    result = run_glpft(
        PIPELINES / "tiny-glpft.yaml",
        {"data": str(split_dir), "output_dir": str(out)},
        sets,
        {"quiet": True},
        echo=lambda _: None,
    )
    stages = result["stages"]
    assert [s["role"] for s in stages] == ["global", "planner", "caller", "summarizer"]
    stage1_model = out / "stage1-global" / "model"
    stage1_digest = weights_digest(AutoModelForCausalLM.from_pretrained(stage1_model))
    assert stages[0]["init_from"] == "tiny" and stages[0]["init_digest"] != stage1_digest  # stage 1 trained
    for s in stages[1:]:
        assert s["init_from"] == str(stage1_model)
        assert s["init_digest"] == stage1_digest  # each role starts from exactly the stage-1 weights
        assert s["steps"] == 3 and Path(s["model_dir"], "model.safetensors").is_file()
    assert stages[0]["lr"] == 3e-3 and stages[1]["weight_decay"] == 0.01
    assert stages[3]["epochs"] == 2 and stages[3]["warmup_ratio"] == 0.4
    assert (out / "glpft-summary.json").is_file()

    again = run_glpft(
        PIPELINES / "tiny-glpft.yaml",
        {"data": str(split_dir), "output_dir": str(out)},
        sets,
        {"quiet": True},
        echo=lambda _: None,
    )
    assert all(s.get("skipped") for s in again["stages"])
    # a changed stage-2 option: stage 1 and the planner are still skipped, the caller is refused
    with pytest.raises(UserError, match=r"stage2-caller holds a finished run with different inputs \(lr "):
        run_glpft(
            PIPELINES / "tiny-glpft.yaml",
            {"data": str(split_dir), "output_dir": str(out)},
            (*sets, "stage2.caller.lr=1e-4"),
            {"quiet": True},
            echo=lambda _: None,
        )


def test_toolbench_pipeline_is_the_published_recipe() -> None:
    _model, _, _, stages = load_pipeline(PIPELINES / "toolbench-glpft.yaml")
    by_role = dict(stages)
    assert [r for r, _ in stages] == ["global", "planner", "caller", "summarizer"]
    g = by_role["global"]
    assert (g["epochs"], g["lr"], g["warmup_ratio"], g["scheduler"]) == (2, 5e-5, 0.4, "cosine")
    for role in ("planner", "caller"):
        o = by_role[role]
        assert (o["epochs"], o["lr"], o["warmup_ratio"], o["weight_decay"]) == (1, 1e-5, 0.2, 0.01)
    s = by_role["summarizer"]
    assert (s["epochs"], s["lr"], s["warmup_ratio"], s["weight_decay"]) == (2, 1e-5, 0.4, 0.01)
    for o in by_role.values():
        assert o["bf16"] and o["gradient_checkpointing"] and o["max_length"] == 4096 and o["packing"]


def test_overrides_and_bad_keys(tmp_path: Path) -> None:
    _, _, out, stages = load_pipeline(
        PIPELINES / "toolbench-glpft.yaml",
        {"output_dir": str(tmp_path)},
        ("stage2.caller.lr=2e-5", "lora={r: 8}"),
    )
    by_role = dict(stages)
    assert out == tmp_path and by_role["caller"]["lr"] == 2e-5 and by_role["planner"]["lr"] == 1e-5
    assert by_role["global"]["lora"]["r"] == 8
    bad = tmp_path / "bad.yaml"
    for text, msg in [
        ("model: x\ndata: d\noutput_dir: o\nstage2:\n  critic: {}\n", "unknown key 'critic'"),
        ("model: x\ndata: d\noutput_dir: o\ncommon:\n  lr_peak: 1\n", "unknown key 'lr_peak'"),
        ("model: x\ndata: d\n", "missing 'output_dir'"),
        ("model: [x\n", "not valid YAML"),
    ]:
        bad.write_text(text)
        with pytest.raises(UserError, match=msg):
            load_pipeline(bad)
