"""Issue 19, item 8: ``init/`` (the tiny model written at run start) and every model directory
are written whole or not at all, and a torn ``init/`` left by an older umi is rebuilt, not
loaded (which failed every rerun, ``--overwrite`` included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_train.cli import main
from umi_train.runstate import atomic_dir, safetensors_complete
from umi_train.tiny import tiny_complete

REPO = Path(__file__).resolve().parents[2]
BASE = ["--role", "caller", "--model", "tiny", "--max-steps", "1", "--save-steps", "100", "--batch-size", "4",
        "--no-gradient-checkpointing", "-q"]


def test_atomic_dir_is_whole_or_absent(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed while saving")
    assert [p.name for p in target.iterdir()] == ["old.txt"] and sorted(os.listdir(tmp_path)) == ["model"]
    (tmp_path / ".model.partial-999999999").mkdir()  # what a killed process (gone now) left
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert [p.name for p in target.iterdir()] == ["config.json"] and sorted(os.listdir(tmp_path)) == ["model"]


def test_kill_while_writing_init_leaves_nothing(split_dir: Path, tmp_path: Path) -> None:
    """A process killed between the weights and the tokenizer (a real SIGKILL, no cleanup)."""
    out = tmp_path / "init"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import transformers\n"
        "from umi_train.tiny import make_tiny\n"
        "def killed(self, *a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "transformers.PreTrainedTokenizerFast.save_pretrained = killed\n"
        f"make_tiny(sorted(Path({str(split_dir)!r}).joinpath('global').glob('train-*.parquet')), Path({str(out)!r}),"
        " vocab_size=300)\n"
    )
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == -9, p.stderr
    assert not out.exists()  # was: config.json + weights, no tokenizer: every rerun failed to load it
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers and all(n.startswith(".init.partial-") for n in leftovers)


def test_torn_init_from_an_older_run_is_rebuilt(split_dir: Path, tiny_dir: Path, tmp_path: Path) -> None:
    assert tiny_complete(tiny_dir) and safetensors_complete(tiny_dir / "model.safetensors")
    out = tmp_path / "run"
    init = out / "init"
    init.mkdir(parents=True)
    (init / "config.json").write_bytes((tiny_dir / "config.json").read_bytes())
    weights = (tiny_dir / "model.safetensors").read_bytes()
    (init / "model.safetensors").write_bytes(weights[: len(weights) // 2])  # cut off mid-save
    assert not tiny_complete(init)
    for extra in ([], ["--overwrite"]):
        res = CliRunner().invoke(main, ["train", "--data", str(split_dir), "-o", str(out), *BASE, *extra])
        assert res.exit_code == 0, res.output
        assert tiny_complete(init) and (out / "model" / "config.json").is_file()
        (init / "tokenizer.json").unlink()  # torn again, differently, for the --overwrite rerun
        (out / "summary.json").unlink()
