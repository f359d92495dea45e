"""Issue 11 (items 3, 6, 9, 12) and 13 on the training side: a split is verified against its
manifest, a run directory is skipped only for the very same run, incomplete checkpoints are
skipped on resume, models are found locally first and fail fast offline, tracking and CLI
conventions."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_train.cli import main
from umi_train.train import read_summary

# one short caller run (4 steps, a checkpoint every 2), tracked with TensorBoard
BASE = ["--role", "caller", "--model", "tiny", "--max-steps", "4", "--save-steps", "2", "--batch-size", "4"]
BASE += ["--no-gradient-checkpointing", "--lr", "3e-3", "-q"]


def umitrain(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result, code: int = 2) -> str:
    text = result.output.strip()
    assert result.exit_code == code, text
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    return text


@pytest.fixture(scope="module")
def run(split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("state") / "caller"
    result = umitrain("train", "--data", str(split_dir), "-o", str(out), *BASE, "--report-to", "tensorboard",
                      "--run-name", "exp1")
    assert result.exit_code == 0, result.output
    return out


# --- skip only the same run (issue 11, item 3) --------------------------------------------------


def test_identical_rerun_is_skipped(run: Path, split_dir: Path) -> None:
    before = (run / "summary.json").read_bytes()
    result = umitrain("train", "--data", str(split_dir), "-o", str(run), *BASE)
    assert result.exit_code == 0, result.output
    assert "already finished" in result.output and "same data, model and options" in result.output
    assert (run / "summary.json").read_bytes() == before


def test_changed_options_or_data_are_refused(run: Path, split_dir: Path, make_split) -> None:
    before = (run / "summary.json").read_bytes()
    text = one_line_error(umitrain("train", "--data", str(split_dir), "-o", str(run), *BASE, "--lr", "1e-3"))
    assert "finished run" in text and "lr 0.003 -> 0.001" in text and "--overwrite" in text
    other = make_split(seed=7)  # same layout, other examples
    text = one_line_error(umitrain("train", "--data", str(other), "-o", str(run), *BASE))
    assert "data (the shards' SHA-256 differs)" in text
    text = one_line_error(umitrain("train", "--data", str(split_dir), "-o", str(run), *BASE[:3], "/elsewhere",
                                   *BASE[4:]))
    assert "no such local directory" in text  # the model is checked before the run dir
    assert (run / "summary.json").read_bytes() == before  # nothing was touched


def test_overwrite_retrains_a_different_run(run: Path, split_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "caller"
    shutil.copytree(run, copy)
    result = umitrain("train", "--data", str(split_dir), "-o", str(copy), *BASE, "--max-steps", "2", "--overwrite")
    assert result.exit_code == 0, result.output
    summary = read_summary(copy)
    assert summary["steps"] == 2 and not summary.get("skipped") and summary["resumed_from"] is None
    assert not (copy / "checkpoints" / "checkpoint-4").exists()  # the old run's checkpoints are gone


# --- checkpoints cut off mid-write (issue 11, item 9) --------------------------------------------


def test_incomplete_checkpoint_is_skipped_on_resume(run: Path, split_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "caller"
    shutil.copytree(run, copy)
    # a run killed while writing checkpoint-4, before its summary and model: the Trainer writes
    # trainer_state.json last, so the checkpoint has the weights but no state
    (copy / "summary.json").unlink()
    shutil.rmtree(copy / "model")
    (copy / "checkpoints" / "checkpoint-4" / "trainer_state.json").unlink()
    result = umitrain("train", "--data", str(split_dir), "-o", str(copy), *BASE)
    assert result.exit_code == 0, result.output
    assert "checkpoint-4 is incomplete" in result.output
    summary = read_summary(copy)
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["steps"] == 4
    assert (copy / "model" / "model.safetensors").is_file() and not (copy / ".model.partial").exists()


def test_resume_refuses_an_incomplete_checkpoint_dir(run: Path, split_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint-9"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text('{"global_st')  # cut off mid-write
    text = one_line_error(umitrain("train", "--data", str(split_dir), "-o", str(tmp_path / "r"), *BASE,
                                   "--resume", str(ckpt)))
    assert "not a complete checkpoint" in text


def test_ctrl_c_exits_130_with_one_line(split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import umi_train.train as train_mod

    def interrupted(cfg, init_from=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "train_role", interrupted)
    text = one_line_error(umitrain("train", "--data", str(split_dir), "-o", str(tmp_path / "r"), *BASE), 130)
    assert text.startswith("umitrain: interrupted") and "Aborted" not in text


# --- the split is verified against manifest.json (issue 11, items 3 and 6) ---------------------


def _shard(split: Path, name: str = "train-00001-of-00002.parquet") -> Path:
    return split / "caller" / name


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("delete", "1 of 2 train shard(s) listed in manifest.json are missing (train-00001-of-00002.parquet)"),
        ("extra", "train shard(s) not listed in manifest.json: train-00002-of-00002.parquet"),
        ("flip", "train-00001-of-00002.parquet: its SHA-256 differs from manifest.json"),
        ("truncate", "train-00001-of-00002.parquet: 1,000 bytes, manifest.json says"),
        ("rows", "the train shards hold 24 rows, manifest.json says 25"),
    ],
)
def test_split_not_matching_its_manifest_is_refused(make_split, tmp_path: Path, damage: str, message: str) -> None:
    split = make_split()
    shard = _shard(split)
    if damage == "delete":
        shard.unlink()
    elif damage == "extra":
        shutil.copyfile(shard, _shard(split, "train-00002-of-00002.parquet"))
    elif damage == "flip":
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, one bit pattern changed
        shard.write_bytes(bytes(data))
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:1000])
    else:
        manifest = json.loads((split / "manifest.json").read_text())
        manifest["roles"]["caller"]["train"]["examples"] += 1
        (split / "manifest.json").write_text(json.dumps(manifest))
    text = one_line_error(umitrain("train", "--data", str(split), "-o", str(tmp_path / "r"), *BASE))
    assert message in text and "umidata split" in text
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_corrupt_shard_without_manifest_is_named(make_split, tmp_path: Path) -> None:
    split = make_split()
    (split / "manifest.json").unlink()
    shard = _shard(split)
    shard.write_bytes(shard.read_bytes()[:-200])  # footer cut off
    text = one_line_error(umitrain("train", "--data", str(split), "-o", str(tmp_path / "r"), *BASE))
    assert f"{shard}: not a readable Parquet file" in text


@pytest.mark.parametrize("model", ["tiny", "TINY_DIR"])  # read while building the tiny model / tokenizing
def test_corrupt_data_page_without_manifest_is_named(make_split, tmp_path: Path, tiny_dir: Path, model: str) -> None:
    import pyarrow.parquet as pq

    split = make_split()
    (split / "manifest.json").unlink()
    shard = _shard(split)
    pq.write_table(pq.read_table(shard), shard, compression="zstd")
    data = bytearray(shard.read_bytes())
    data[len(data) // 4 : len(data) // 2] = bytes(len(data) // 2 - len(data) // 4)  # zeroed pages, footer intact
    shard.write_bytes(bytes(data))
    args = _with_model(str(tiny_dir) if model == "TINY_DIR" else model, tmp_path, split)
    text = one_line_error(umitrain(*args))
    assert f"{shard}: not a readable Parquet file (" in text


# --- model loading: local first, fast offline (issue 13, item 2; issue 11, item 12) -------------


def test_model_errors_name_what_is_missing(split_dir: Path, tmp_path: Path, tiny_dir: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    no_tok = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_dir, no_tok)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tok / name).unlink(missing_ok=True)
    cases = [
        (str(tmp_path / "nope" / "model"), f"no such local directory ({tmp_path / 'nope'} does not exist)"),
        (str(empty), "is empty; expected a saved transformers model"),
        (str(no_tok), "has no tokenizer (tokenizer.json)"),
    ]
    for model, message in cases:
        args = ["train", "--data", str(split_dir), "-o", str(tmp_path / "r"), *BASE]
        args[args.index("--model") + 1] = model
        assert message in one_line_error(umitrain(*args))


def _with_model(model: str, tmp_path: Path, split_dir: Path) -> list[str]:
    args = ["train", "--data", str(split_dir), "-o", str(tmp_path / "r"), *BASE]
    args[args.index("--model") + 1] = model
    return args


def test_hub_id_offline_fails_fast_with_a_hint(
    split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    text = one_line_error(umitrain(*_with_model("umi-tests/no-such-model", tmp_path, split_dir)))
    assert time.monotonic() - t0 < 5  # a fail-fast bound (the hub's retries took 55 s), not a benchmark
    assert "not a local directory nor in the Hugging Face cache" in text and "HF_HUB_OFFLINE is set" in text
    assert "local model directory" in text


def test_hub_id_unreachable_hub_fails_fast(split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import umi_train.models as models

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "hub_offline", lambda: False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=models.PROBE_TIMEOUT_S: False)  # no network
    text = one_line_error(umitrain(*_with_model("umi-tests/no-such-model", tmp_path, split_dir)))
    assert "cannot be reached" in text and "HF_HUB_OFFLINE=1" in text


def test_hub_probe_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import umi_train.models as models

    def hang(*args, **kwargs):  # a name lookup that hangs, then fails
        time.sleep(3)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.monotonic()
    assert models.hub_reachable(timeout=0.5) is False
    assert time.monotonic() - t0 < 5


# --- tracking (issue 13, item 3) ---------------------------------------------------------------


def test_tensorboard_events_hold_loss_and_umi_provenance(run: Path, split_dir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = run / "runs" / "exp1"
    assert list(logdir.glob("events.out.tfevents.*"))
    texts: dict[str, str] = {}
    scalars: set[str] = set()
    for event_file in sorted(logdir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"tensors": 0})
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
        for tag in acc.Tags()["tensors"]:
            texts[tag] = b"".join(e.tensor_proto.string_val[0] for e in acc.Tensors(tag)).decode()
    assert "train/loss" in scalars
    umi = next(v for k, v in texts.items() if k.startswith("umi"))
    manifest_sha = __import__("hashlib").sha256((split_dir / "manifest.json").read_bytes()).hexdigest()
    assert manifest_sha in umi and '"umi_version"' in umi and '"role": "caller"' in umi
    summary = read_summary(run)
    assert summary["report_to"] == "tensorboard" and summary["run_name"] == "exp1"


def test_report_to_is_a_choice(split_dir: Path, tmp_path: Path) -> None:
    result = umitrain("train", "--data", str(split_dir), "-o", str(tmp_path / "r"), *BASE, "--report-to", "comet")
    assert result.exit_code == 2 and "'comet' is not one of" in result.output


# --- CLI conventions (issue 13, item 4) --------------------------------------------------------


def test_cli_conventions(split_dir: Path, tmp_path: Path) -> None:
    top = umitrain("--help").output
    assert "130" in top and "3 internal error" in top
    for cmd in ("train", "glpft"):
        text = umitrain(cmd, "--help").output
        assert "-q, --quiet" in text and "--report-to [none|tensorboard|wandb|mlflow]" in text
        assert "--run-name" in text and "--overwrite" in text
    assert "--role [global|planner|caller|summarizer]" in umitrain("train", "--help").output
    no_model = umitrain("train", "--data", str(split_dir), "--role", "caller", "-o", str(tmp_path / "r"))
    assert no_model.exit_code == 2 and "Missing option '--model'" in no_model.output
    bad_role = umitrain("train", "--data", str(split_dir), "--role", "critic", "--model", "tiny", "-o", "r")
    assert bad_role.exit_code == 2 and "'critic' is not one of 'global', 'planner', 'caller', 'summarizer'" in (
        bad_role.output
    )


# --- each thing said once, in umi's words (issue 13, item 1) -----------------------------------


def test_handled_library_warnings_are_silenced_and_notes_said_once(
    split_dir: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    import logging

    model = tmp_path / "short-model"
    shutil.copytree(tiny_dir, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["model_max_length"] = 64  # every example is longer: transformers would warn while tokenizing
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect(level=logging.DEBUG)
    hf = logging.getLogger("transformers")
    hf.addHandler(handler)
    try:
        args = _with_model(str(model), tmp_path, split_dir)
        # a checkpoint every step: rotation sorts them by mtime, all within a second
        args[args.index("--save-steps") + 1] = "1"
        result = umitrain(*args, "--max-steps", "3", "--bf16")
    finally:
        hf.removeHandler(handler)
    assert result.exit_code == 0, result.output
    said = "\n".join(records)
    assert "Token indices sequence length" not in said and "mtime may not be reliable" not in said
    assert result.output.count("bf16 switched off") == 1  # once, in the summary
    assert result.output.count("above the model's 64 tokens") == 1


# --- run identity across stops, path spellings and ranks (review fixes) -------------------------


def _stopped_before_first_checkpoint(data: Path, out: Path) -> None:
    """A run stopped (Ctrl-C) once it has built init/ and written run.json, before any checkpoint."""
    from transformers import TrainerCallback

    from umi_train.train import TrainConfig, train_role

    class Stop(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            raise KeyboardInterrupt

    cfg = TrainConfig(data=data, role="caller", output_dir=out, model="tiny", max_steps=4, batch_size=4,
                      gradient_checkpointing=False, quiet=True, callbacks=[Stop()])
    with pytest.raises(KeyboardInterrupt):
        train_role(cfg)
    assert (out / "init" / "config.json").is_file() and not list(out.glob("checkpoints/checkpoint-*"))


def test_run_stopped_before_a_checkpoint_does_not_reuse_init_built_from_other_data(
    split_dir: Path, make_split, tmp_path: Path
) -> None:
    from umi_train.data import role_shards
    from umi_train.tiny import make_tiny

    out = tmp_path / "runx"
    _stopped_before_first_checkpoint(split_dir, out)
    built_from_a = (out / "init" / "config.json").stat().st_mtime_ns
    other = make_split(seed=7)
    _stopped_before_first_checkpoint(other, out)  # other data into the same directory
    assert (out / "init" / "config.json").stat().st_mtime_ns != built_from_a  # rebuilt, not reused
    expected = tmp_path / "from-b"
    make_tiny(role_shards(other, "caller", "train"), expected, seed=42, vocab_size=2000)
    assert (out / "init" / "tokenizer.json").read_bytes() == (expected / "tokenizer.json").read_bytes()
    run_doc = json.loads((out / "run.json").read_text())
    assert run_doc["data"] == str(other)


def test_fresh_start_keeps_what_the_same_run_built_and_clears_another_runs(tmp_path: Path) -> None:
    from umi_train.runstate import decide, identity

    a = identity("digest-a", "tiny", {"lr": 1e-3})
    b = identity("digest-b", "tiny", {"lr": 1e-3})
    assert decide(tmp_path, a, finished=False, has_checkpoints=False, overwrite=False) == "clear"  # no run.json
    (tmp_path / "run.json").write_text(json.dumps({"identity": a}))
    assert decide(tmp_path, a, finished=False, has_checkpoints=False, overwrite=False) == "fresh"
    assert decide(tmp_path, b, finished=False, has_checkpoints=False, overwrite=False) == "clear"


def test_model_key_is_the_same_however_the_path_is_spelled(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from umi_train.models import model_key

    shutil.copytree(tiny_dir, tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    keys = {model_key(spelling) for spelling in ("m", "./m", "m/", str(tmp_path / "m"), "../" + tmp_path.name + "/m")}
    assert len(keys) == 1, keys
    config = tmp_path / "m" / "config.json"
    config.write_text(config.read_text() + "\n")  # the model's files changed: another starting point
    assert model_key("m") not in keys


RANK_SCRIPT = r"""
import json, os, sys, time
from pathlib import Path
import torch.distributed as dist
import umi_train.runstate as runstate
import umi_train.train as train
from umi_train import UserError

out, overwrite = Path(sys.argv[1]), sys.argv[2] == "1"
dist.init_process_group("gloo")
rank = dist.get_rank()
if rank == 0:  # the main process is slow to clear: a rank that looked for itself would see the old run
    clear = runstate.clear_run
    train.clear_run = lambda *a: (time.sleep(1.5), clear(*a))
cfg = train.TrainConfig(data=Path("data"), role="caller", output_dir=out, overwrite=overwrite)
try:
    plan = train._shared_plan(lambda: train._plan_run(cfg, {"new": 1}, {"model": "tiny"}))
    seen = {"action": plan.action, "summary": (out / "summary.json").exists(),
            "identity": json.loads((out / "run.json").read_text())["identity"]}
except UserError as exc:
    seen = {"error": str(exc)}
dist.barrier()
print("RESULT " + json.dumps(seen))
dist.destroy_process_group()
"""


def _two_ranks(out: Path, overwrite: bool) -> list[dict]:
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
            "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", RANK_SCRIPT, str(out), "1" if overwrite else "0"]
    procs = []
    for r in range(2):
        env = {**base, "RANK": str(r), "LOCAL_RANK": str(r)}
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.split("RESULT ", 1)[1]))
    return results


def test_ranks_share_the_main_process_decision(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4}')
    (out / "summary.json").write_text(json.dumps({"status": "done"}))
    (out / "run.json").write_text(json.dumps({"identity": {"old": 1}}))
    refused = _two_ranks(out, overwrite=False)  # a different finished run: refused on every rank, none hangs
    assert all("holds a finished run with different inputs" in r.get("error", "") for r in refused), refused
    both = _two_ranks(out, overwrite=True)
    # rank 1 acts on rank 0's decision, after rank 0 cleared the old run and wrote the new run.json
    assert both == [{"action": "clear", "summary": False, "identity": {"new": 1}}] * 2, both
    assert not (out / "checkpoints").exists()
