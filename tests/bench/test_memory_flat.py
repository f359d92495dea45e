"""Peak memory of ``umidata split`` must not grow with the corpus (it streams; the reference does not).

Two corpora of real ToolBench text (60 and 600 answer files, 5.6 and 56 MB), each split with
``--workers 1 --shard-size 20`` in a subprocess; the larger one's peak RSS must stay under 1.25× the
smaller's plus 30 MB. A split that held the parsed corpus would need hundreds of MB more on the
larger one.

Why a fixed ``--shard-size``: each (role, split, shard) Parquet writer buffers up to 16 MB of text
before it flushes a row group, so with the default shard size (≥ 500 files) peak memory rightly
grows with the corpus until those buffers fill (about 150 MB at 60 files, 220 MB at 600), then
stays put. Small fixed shards take that designed bound out, leaving what must not grow: everything
else the split keeps per trajectory.
Skipped only when ``umidata --help`` lists no ``split`` command (or the example answers are absent).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SMALL, LARGE = 60, 600
FACTOR, SLACK_MB = 1.25, 30.0
SHARD = 20  # input files per shard, for both corpora

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def umidata(bench_mod) -> str:
    exe = Path(sys.executable).parent / "umidata"
    if not exe.exists():
        pytest.skip(f"no umidata next to {sys.executable}")
    if not bench_mod.has_split(str(exe)):
        pytest.skip("`umidata --help` lists no `split` command yet")
    return str(exe)


def _split(bench_mod, corpus_mod, umidata: str, n: int, root: Path) -> dict:
    corpus = root / f"corpus-{n}"
    out = root / f"out-{n}"
    corpus_mod.build_corpus(n, corpus)
    bench_mod.read_all(corpus_mod.corpus_files(corpus))  # same warm page cache for both sizes
    cmd = [umidata, "split", str(corpus), "-o", str(out), "--overwrite", "--quiet", "--workers", "1",
           "--shard-size", str(SHARD)]
    r = bench_mod.run_measured(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert bench_mod.split_ok(r["rc"], out), r["stderr"].decode(errors="replace")[-3000:]
    assert list(out.glob("*/train-*.parquet")), "no train shard written"
    return r


def test_peak_rss_flat_in_corpus_size(bench_mod, corpus_mod, umidata, tmp_path):
    small = _split(bench_mod, corpus_mod, umidata, SMALL, tmp_path)
    large = _split(bench_mod, corpus_mod, umidata, LARGE, tmp_path)
    for key in ("peak_rss_max_process_mb", "peak_rss_tree_mb"):
        limit = FACTOR * small[key] + SLACK_MB
        assert large[key] < limit, (
            f"{key}: {LARGE} files peak at {large[key]:.0f} MB, {SMALL} files at {small[key]:.0f} MB "
            f"(limit {limit:.0f} MB): memory grows with the corpus"
        )
