"""bench_train.py --gpu --dry-run: the GPU benchmark's own code paths, rehearsed on CPU with a tiny shape."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_gpu_bench_dry_run_times_train_role_and_trl(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_train

    out = tmp_path / "train-gpu.json"
    argv = ["--synthetic", "8", "--roles", "global", "--cpu-steps", "0", "--gpu", "--dry-run",
            "--runs", "umi_packed", "trl_packed", "--gpu-steps", "2", "--warmup-steps", "1", "-o", str(out)]
    assert bench_train.main(argv) == 0
    res = json.loads(out.read_text())["gpu"]["shapes"]["tiny-qwen2"]
    umi, trl = res["umi_packed"], res["trl_packed"]
    # umitrain's own path ran: its summary's choices came back (varlen attention, token budget, chunked loss)
    assert "umi_varlen" in umi["attention"] and umi["batching"] == "flatten"
    assert umi["loss_path"].startswith("chunked") and umi["micro_batch_tokens"] >= 2048
    for run in (umi, trl):
        assert run["tokens_per_second"] > 0 and run["timed_steps"] == 1
        assert run["mfu"] is None and run["peak_gpu_memory_gib"] is None  # CPU: no peak figures
    assert umi["params"] == trl["params"]  # the same shape on both sides
