"""The shared exit-code policy (umi_cli.errors): crashes exit 3 with one line and a traceback
file, usage and I/O errors 2 naming the path, Ctrl-C 130 without a traceback."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from umi_cli.errors import GuardedGroup, UsageError

REPO = Path(__file__).resolve().parents[2]


class _Mine(Exception):
    pass


@click.group(cls=GuardedGroup, prog="demo", usage_errors=(_Mine,))
def demo() -> None:
    """A group like umidata's, umitrain's or umieval's."""


@demo.command()
@click.argument("what")
def boom(what: str) -> None:
    if what == "bug":
        raise ValueError("unexpected shape\nsecond line")
    if what == "usage":
        raise UsageError("pass --overwrite")
    if what == "mine":
        raise _Mine("the group's own usage error")
    if what == "disk":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/x.parquet")
    if what == "ctrl-c":
        raise KeyboardInterrupt
    sys.exit(1)


def _run(*args: str, tmp_path: Path) -> click.testing.Result:
    return CliRunner().invoke(demo, list(args), env={"UMI_CRASH_DIR": str(tmp_path), "UMI_DEBUG": ""})


def test_internal_error_exits_3_with_one_line_and_a_traceback_file(tmp_path: Path) -> None:
    r = _run("boom", "bug", tmp_path=tmp_path)
    assert r.exit_code == 3
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error (ValueError: unexpected shape)" in lines[0]
    assert "Traceback" not in r.stderr
    (report,) = tmp_path.glob("demo-crash-*.txt")
    assert str(report) in lines[0]
    text = report.read_text()
    assert "Traceback" in text and "ValueError: unexpected shape" in text and "def boom" not in lines[0]


@pytest.mark.parametrize(("what", "code", "text"), [
    ("usage", 2, "demo boom: error: pass --overwrite"),
    ("mine", 2, "demo boom: error: the group's own usage error"),
    ("disk", 2, "demo boom: I/O error: No space left on device: /out/x.parquet"),
    ("ctrl-c", 130, "demo: interrupted"),
    ("fine", 1, ""),
])
def test_exit_codes(what: str, code: int, text: str, tmp_path: Path) -> None:
    r = _run("boom", what, tmp_path=tmp_path)
    assert r.exit_code == code
    assert r.stderr.strip() == text
    assert not list(tmp_path.glob("*crash*"))


def test_click_usage_error_keeps_code_2(tmp_path: Path) -> None:
    r = _run("boom", tmp_path=tmp_path)
    assert r.exit_code == 2 and "Missing argument" in r.stderr


def _past_startup(pid: int, deadline: float) -> None:
    """Wait until the process has loaded orjson, i.e. runs umidata's own code (the interpreter's
    start-up before it, site and .pth files, is outside what a program can handle)."""
    while time.monotonic() < deadline:
        try:
            if "orjson" in Path(f"/proc/{pid}/maps").read_text():
                return
        except OSError:
            return
        time.sleep(0.005)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see when start-up is over")
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3, 1.5])
def test_ctrl_c_at_any_moment_exits_130_with_one_line(delay: float, tmp_path: Path) -> None:
    """SIGINT during the imports (pyarrow, rich: the first half second) and during the run
    (every shard of this split sleeps 3 s, so the run is still going)."""
    from tests.data.test_faults import SLOW_SPLIT

    env = {**os.environ, "PYTHONPATH": str(REPO), "CI": "true", "UMI_TEST_SLOW": "3"}
    p = subprocess.Popen(
        [sys.executable, "-c", SLOW_SPLIT, "split", str(REPO / "examples" / "toolbench-mini" / "answer"),
         "-o", str(tmp_path / "out"), "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    _past_startup(p.pid, time.monotonic() + 10)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err.decode()
    assert "Traceback" not in err.decode()
    assert re.fullmatch(r"\s*(umidata: )?interrupted[^\n]*\s*", err.decode()), err.decode()
    assert list(tmp_path.iterdir()) == []
