"""What the libraries print on their own stays out of umitrain's output: `datasets` logs "JAX version
… available." (INFO) while it imports, when jax is installed; transformers draws a "Writing model
shards" bar when `umitrain tiny` saves, under CI=true too. A stand-in jax (an empty package with
its metadata) is enough for `datasets` to log the line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import write_split

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    fake = tmp_path / "site"
    for pkg in ("jax", "jaxlib"):
        (fake / pkg).mkdir(parents=True, exist_ok=True)
        (fake / pkg / "__init__.py").write_text("", encoding="utf-8")
    dist = fake / "jax-0.11.2.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jax\nVersion: 0.11.2\n", encoding="utf-8")
    path = os.pathsep.join([str(REPO), str(fake), os.environ.get("PYTHONPATH", "")])
    env = {k: v for k, v in os.environ.items() if k != "DATASETS_VERBOSITY"}
    return {**env, "PYTHONPATH": path, **extra}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def test_umitrain_logging_keeps_info_but_not_the_jax_line(tmp_path: Path) -> None:
    code = ("import logging; from umi_train.cli import _setup_logging; _setup_logging(False); import datasets; "
            "logging.getLogger('umi_train').info('still on'); print(datasets.config.JAX_AVAILABLE)")
    proc = _run(["-c", code], _env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "True"  # the stand-in is seen: datasets did reach its JAX line
    assert "umitrain: still on" in proc.stderr and "JAX" not in proc.stderr, proc.stderr
    # a user who asks datasets for its INFO lines still gets them
    proc = _run(["-c", code], _env(tmp_path, DATASETS_VERBOSITY="info"))
    assert "JAX version 0.11.2 available." in proc.stderr, proc.stderr


def test_umitrain_tiny_under_ci_prints_one_line(tmp_path: Path) -> None:
    split = write_split(tmp_path / "split", n_traj=4, n_dev=1)
    out = tmp_path / "tiny"
    proc = _run(["-m", "umi_train.cli", "tiny", "--data", str(split), "-o", str(out), "--vocab-size", "300"],
                _env(tmp_path, CI="true"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == f"tiny model + tokenizer saved to {out} (use it with --model {out})\n"
    assert proc.stderr == "", proc.stderr  # no "Writing model shards" bar, no "JAX version … available."
    assert (out / "model.safetensors").is_file()
