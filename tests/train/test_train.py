"""End-to-end CPU runs of one role: the loss falls, checkpoints are written, a killed run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_train.cli import main
from umi_train.train import TrainConfig, read_summary, train_role

FAST = {"gradient_checkpointing": False, "quiet": True, "tiny_vocab": 600, "logging_steps": 1}


PLANNER = {"max_steps": 36, "lr": 3e-3, "warmup_ratio": 0.1, "batch_size": 4, "save_steps": 12, **FAST}


@pytest.fixture(scope="module")
def planner_run(split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cfg = TrainConfig(
        data=split_dir, role="planner", output_dir=tmp_path_factory.mktemp("run") / "planner", **PLANNER
    )
    return train_role(cfg)


def test_loss_falls_over_30_steps(planner_run: dict) -> None:
    losses = [loss for _, loss in planner_run["loss_history"]]
    assert planner_run["steps"] == 36 and len(losses) >= 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert planner_run["packing"] is True and planner_run["tokens_per_second"] > 0
    # no flash-attn: umi_varlen (sdpa per document on CPU) over one flat row per batch
    assert planner_run["batching"] == "flatten" and planner_run["attn_implementation"] == "umi_varlen"


def test_run_dir_holds_weights_tokenizer_manifest_and_reports(planner_run: dict, split_dir: Path) -> None:
    out = Path(planner_run["output_dir"])
    model_dir = Path(planner_run["model_dir"])
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "data-manifest.json",
    ):
        assert (model_dir / name).is_file(), name
    assert (out / "checkpoints" / "checkpoint-36" / "model.safetensors").is_file()
    manifest = json.loads((split_dir / "manifest.json").read_text())
    assert json.loads((out / "data-manifest.json").read_text()) == manifest
    report = json.loads((out / "data-report.json").read_text())
    assert report["train"]["used"] == 48 and 0 < report["train"]["loss_share"] < 0.5
    assert report["train"]["overlong_policy"] == "drop" and report["train"]["dropped_overlong"] == 0
    assert any("bf16 switched off" in n for n in planner_run["notes"])
    assert read_summary(out)["status"] == "done"


def test_finished_run_is_skipped(planner_run: dict, split_dir: Path) -> None:
    cfg = TrainConfig(data=split_dir, role="planner", output_dir=Path(planner_run["output_dir"]), **PLANNER)
    again = train_role(cfg)
    assert again["skipped"] is True and again["steps"] == 36


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from transformers import TrainerCallback
    from umi_train.train import TrainConfig, train_role

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 10:
                os.kill(os.getpid(), signal.SIGKILL)  # a hard kill right after the checkpoint is on disk

    train_role(TrainConfig(data=Path(sys.argv[1]), role="caller", output_dir=Path(sys.argv[2]), max_steps=20,
                           lr=3e-3, warmup_ratio=0.1, save_steps=10, gradient_checkpointing=False,
                           quiet=True, logging_steps=1, callbacks=[Kill()]))
""")


def test_killed_run_resumes_from_its_checkpoint(split_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "caller"
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(split_dir), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CI": "true"},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / "checkpoints" / "checkpoint-10" / "model.safetensors").is_file()
    assert read_summary(out) is None and not (out / "model").exists()

    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(split_dir),
            "--role",
            "caller",
            "--model",
            "tiny",
            "--epochs",
            "2",
            "--weight-decay",
            "0",
            "-o",
            str(out),
            "--max-steps",
            "20",
            "--lr",
            "3e-3",
            "--warmup-ratio",
            "0.1",
            "--save-steps",
            "10",
            "--no-gradient-checkpointing",
            "--logging-steps",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = read_summary(out)
    assert summary["resumed_from"].endswith("checkpoint-10") and summary["resumed_from_step"] == 10
    assert summary["steps"] == 20
    assert "resumed from step 10" in result.output and "loss tokens" in result.output
    steps = [s for s, _ in summary["loss_history"]]
    assert steps[-1] == 20 and 10 in steps  # history before the kill is kept from the checkpoint


def test_lora_run_saves_merged_weights_and_adapter(split_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from umi_train.train import parse_lora

    cfg = TrainConfig(
        data=split_dir,
        role="summarizer",
        output_dir=tmp_path / "lora",
        max_steps=2,
        lora=parse_lora("r=4,alpha=8,target=q_proj+v_proj"),
        save_steps=100,
        **FAST,
    )
    summary = train_role(cfg)
    assert summary["lora"]["r"] == 4
    assert (tmp_path / "lora" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "lora" / "model" / "model.safetensors").is_file()


def _err(result) -> str:
    return result.output  # click >= 8.2 mixes stderr into output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "NOPE", "--role", "planner", "--model", "tiny", "-o", "R"], "data directory not found"),
        (
            ["train", "--data", "SPLIT", "--role", "planner", "--model", "tiny", "-o", "R", "--lora", "rank"],
            "expected key=value",
        ),
        (["glpft", "NOPE.yaml"], "pipeline file not found"),
        (["glpft", "BAD.yaml"], "unknown key 'learning_rate'"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(
    args: list[str], message: str, split_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model: tiny\ndata: {split_dir}\noutput_dir: {tmp_path}\nstage1:\n  learning_rate: 1\n")
    repl = {
        "NOPE": str(tmp_path / "nope"),
        "SPLIT": str(split_dir),
        "R": str(tmp_path / "r"),
        "BAD.yaml": str(bad),
        "NOPE.yaml": str(tmp_path / "nope.yaml"),
    }
    result = CliRunner().invoke(main, [repl.get(a, a) for a in args])
    assert result.exit_code == 2
    text = _err(result).strip()
    assert message in text and len(text.splitlines()) == 1 and "Traceback" not in text


def test_two_process_ddp_run_on_cpu(split_dir: Path, tmp_path: Path) -> None:
    """DDP under torchrun (gloo on CPU): both ranks train one run, rank 0 alone writes it."""
    run = tmp_path / "ddp"
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        *("-m", "umi_train", "train", "--data", str(split_dir), "--role", "caller", "--model", "tiny"),
        *("-o", str(run), "--max-steps", "3", "--batch-size", "2", "--quiet"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_summary(run)
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 4 and summary["steps"] == 3
    assert (run / "model" / "model.safetensors").is_file()
    assert proc.stdout.count("role caller") == 1  # one summary, from rank 0


@pytest.mark.parametrize("cmd", [[], ["train"], ["glpft"], ["tiny"]])
def test_help_and_version(cmd: list[str]) -> None:
    result = CliRunner().invoke(main, [*cmd, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    assert CliRunner().invoke(main, ["--version"]).output.startswith("umitrain, version")


def test_commands_tear_down_the_process_group(tmp_path: Path) -> None:
    """A process group left to the interpreter's exit can abort a finished DDP run ("terminate
    called without an active exception"): every command closes it on its way out."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        result = CliRunner().invoke(main, ["train", "--help"])
        assert result.exit_code == 0
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
