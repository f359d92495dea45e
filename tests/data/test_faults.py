"""Issue 11, faults: ``umidata split`` locks its OUTDIR, cleans what killed runs left behind,
and its worker processes never outlive it; a lost worker is a one-line error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from tests.data.conftest import EXAMPLES
from umi_data.cli.commands import main
from umi_data.output.guard import output_lock

REPO = Path(__file__).resolve().parents[2]
MINI = EXAMPLES / "toolbench-mini" / "answer"
# umidata split with every shard slowed down, so a test can act while workers are busy.
SLOW_SPLIT = """
import os, sys, time
sys.argv[0] = "umidata"
from umi_data.cli.commands import main
import umi_data.split.pipeline as p
real = p.process_shard
def process_shard(*a, **k):
    time.sleep(float(os.environ["UMI_TEST_SLOW"]))
    return real(*a, **k)
process_shard.__module__ = "umi_data.split.pipeline"
p.process_shard = process_shard
main()
"""


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_second_run_on_the_same_outdir_fails_clearly(tmp_path: Path) -> None:
    out = tmp_path / "s"
    with output_lock(out):  # what a first run holds while it works
        res = CliRunner().invoke(main, ["split", str(MINI), "-o", str(out), "--workers", "1"])
    assert res.exit_code == 2 and "another umidata run" in " ".join(res.stderr.split())
    assert not out.exists()
    res = CliRunner().invoke(main, ["split", str(MINI), "-o", str(out), "--workers", "1"])
    assert res.exit_code == 1 and (out / "manifest.json").exists()  # the lock went with its holder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_leftovers_of_dead_runs_are_cleaned_live_ones_kept(tmp_path: Path) -> None:
    dead, live = _dead_pid(), os.getppid()
    stale = [tmp_path / f".s.partial-{dead}", tmp_path / f".s.old-{dead}", tmp_path / f".o.jsonl.{dead}.x1.tmp"]
    kept = [tmp_path / f".s.partial-{live}", tmp_path / f".other.partial-{dead}"]
    for d in (*stale[:2], *kept):
        d.mkdir()
        (d / "x.parquet").write_bytes(b"half")
    stale[2].write_bytes(b"half")
    assert CliRunner().invoke(main, ["split", str(MINI), "-o", str(tmp_path / "s"), "--workers", "1"]).exit_code == 1
    assert CliRunner().invoke(main, ["convert", str(MINI), "-o", str(tmp_path / "o.jsonl")]).exit_code == 1
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)


def _start_slow_split(tmp_path: Path, out: Path, slow: float = 3.0) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "UMI_TEST_SLOW": str(slow), "CI": "true"}
    return subprocess.Popen([sys.executable, "-c", SLOW_SPLIT, "split", str(MINI), "-o", str(out), "--workers", "2",
                             "--shard-size", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _workers(pid: int, n: int = 2, timeout: float = 30) -> list[psutil.Process]:
    """The pool's worker processes, once ``n`` are running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = [c for c in psutil.Process(pid).children() if "resource_tracker" not in " ".join(c.cmdline())]
        except psutil.Error:
            kids = []
        if len(kids) >= n:
            return kids
        time.sleep(0.05)
    raise AssertionError("the workers did not start")


def _gone(procs: list[psutil.Process], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_main_process(sig: signal.Signals, tmp_path: Path) -> None:
    out = tmp_path / "s"
    p = _start_slow_split(tmp_path, out)
    workers = _workers(p.pid)
    time.sleep(0.3)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert _gone(workers), "worker processes outlived the main process"
    if sig == signal.SIGTERM:  # handled: one line, exit 143, staging removed
        assert p.returncode == 143 and "Traceback" not in err.decode() and "terminated" in err.decode()
        assert list(tmp_path.iterdir()) == []
        return
    # SIGKILL cannot clean up (the lock file stays, but its flock went with the process) ...
    assert sorted(q.name for q in tmp_path.iterdir()) == [".s.lock", f".s.partial-{p.pid}"]
    res = CliRunner().invoke(main, ["split", str(MINI), "-o", str(out), "--workers", "1"])
    assert res.exit_code == 1 and sorted(q.name for q in tmp_path.iterdir()) == ["s"]  # ... the next run does


def test_a_killed_worker_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "s"
    p = _start_slow_split(tmp_path, out)
    workers = _workers(p.pid)
    time.sleep(0.3)
    workers[0].kill()
    _, err = p.communicate(timeout=60)
    text = err.decode()
    assert p.returncode == 2, text
    assert "worker process died" in " ".join(text.split()) and "Traceback" not in text
    assert _gone(workers)
    assert list(tmp_path.iterdir()) == []


def test_two_concurrent_runs_on_one_outdir(tmp_path: Path) -> None:
    """The issue's repro: two real processes; the second fails at once, naming the first."""
    out = tmp_path / "s"
    first = _start_slow_split(tmp_path, out, slow=1.0)
    _workers(first.pid)
    second = CliRunner().invoke(main, ["split", str(MINI), "-o", str(out), "--workers", "1"])
    assert second.exit_code == 2
    assert f"another umidata run (process {first.pid})" in " ".join(second.stderr.split())
    first.communicate(timeout=120)
    assert first.returncode == 1 and (out / "manifest.json").exists()  # the first run was not disturbed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
