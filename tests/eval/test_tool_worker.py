"""Issue 19, item 7: a ``python:`` tool runs in a worker process and cannot take ``umieval run``
down: ``sys.exit``, ``os._exit``, ``KeyboardInterrupt``, a hang or a memory hog are that call's
error observation (with a finding); the worker is restarted and the run goes on; the user's
Ctrl-C still stops the run with exit 130."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from umi_eval.agent.tools import call_tool, make_executor

from .agent_helpers import REPO, role_of, serving

HOSTILE = '''
import os
import sys
import time


def ok(x: str = "") -> str:
    """Answers."""
    return "fine " + x


def bye() -> str:
    """Exits."""
    sys.exit(5)


def die() -> str:
    """Ends its process."""
    os._exit(1)


def interrupt() -> str:
    """Pretends to be Ctrl-C."""
    raise KeyboardInterrupt


def hang() -> str:
    """Never answers."""
    while True:
        time.sleep(0.1)


def hog() -> str:
    """Asks for far more memory than allowed."""
    return str(len(bytearray(8 << 30)))
'''


def _tools(tmp: Path) -> Path:
    path = tmp / "hostile_tools.py"
    path.write_text(HOSTILE, encoding="utf-8")
    return path


def test_hostile_tools_are_call_errors_and_the_worker_restarts(tmp_path: Path) -> None:
    ex = make_executor(f"python:{_tools(tmp_path)}", timeout=3, tool_memory=1 << 30)
    by = {t.name: t for t in ex.tools}
    try:
        expected = {"bye": ("tool_error", "SystemExit: 5"), "die": ("tool_crashed", "exit code 1"),
                    "interrupt": ("tool_error", "KeyboardInterrupt"), "hang": ("timeout", "no answer within 3 s"),
                    "hog": ("tool_error", "MemoryError")}
        for name, (code, text) in expected.items():
            obs, attempts = call_tool(ex, by[name], "{}", timeout=10, retries=0)
            assert (obs.code, attempts) == (code, 1) and text in (obs.error or ""), (name, obs)
            again, _ = call_tool(ex, by["ok"], '{"x": "after"}', timeout=30)  # the next call is answered
            assert again.content == "fine after" and again.code is None, (name, again)
        assert os.getpid() == os.getpid()  # still here: no tool ended this process
    finally:
        ex.close()  # type: ignore[attr-defined]


class _Script(ThreadingHTTPServer):
    """An OpenAI-compatible completions server on 127.0.0.1: the caller calls the tool the query
    names (``use TOOL=name``), the planner concludes once an observation is in the history."""

    def __init__(self) -> None:
        self.callers = 0
        super().__init__(("127.0.0.1", 0), _ScriptHandler)


class _ScriptHandler(BaseHTTPRequestHandler):
    server: _Script

    def do_POST(self) -> None:
        prompt = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["prompt"]
        role = role_of(prompt)
        if role == "caller":
            self.server.callers += 1
            name = re.search(r"use TOOL=(\w+)", prompt).group(1)  # type: ignore[union-attr]
            text = f"Action: {name}\nAction Input: {{}}"
        elif role == "summarizer":
            text = "Done."
        else:
            text = "Done.\n Next: conclusion." if "observation: " in prompt else "Look.\n Next: caller."
        data = json.dumps({"choices": [{"text": text}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def script():
    srv = _Script()
    with serving(srv):
        yield srv


def _run_args(tmp: Path, srv: _Script, names: list[str], *extra: str) -> list[str]:
    q = tmp / "q.jsonl"
    q.write_text("".join(json.dumps({"id": n, "instruction": f"use TOOL={n}"}) + "\n" for n in names))
    return [sys.executable, "-m", "umi_eval", "run", str(q), "-o", str(tmp / "runs.jsonl"), "--tools",
            f"python:{_tools(tmp)}", "--backend", "openai", "--base-url",
            f"http://127.0.0.1:{srv.server_address[1]}/v1", "--planner", "p", "--caller", "c", "--summarizer", "s",
            "--quiet", *extra]


def test_run_goes_on_past_tools_that_exit(tmp_path: Path, script: _Script) -> None:
    args = _run_args(tmp_path, script, ["bye", "die", "interrupt", "ok"])
    p = subprocess.run(args, capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr
    runs = {r["id"]: r for r in map(json.loads, (tmp_path / "runs.jsonl").read_text().splitlines())}
    assert list(runs) == ["bye", "die", "interrupt", "ok"]
    for qid, code in (("bye", "tool_error"), ("die", "tool_crashed"), ("interrupt", "tool_error")):
        obs = next(t for t in runs[qid]["turns"] if t["role"] == "observation")
        assert obs["error"] and code in [f["code"] for f in runs[qid]["metadata"]["findings"]], runs[qid]
    obs = next(t for t in runs["ok"]["turns"] if t["role"] == "observation")
    assert obs["content"] == "fine " and not obs.get("error")


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs process groups")
def test_user_ctrl_c_still_stops_the_run(tmp_path: Path, script: _Script) -> None:
    """SIGINT to the whole process group (a terminal's Ctrl-C) while a tool hangs: exit 130."""
    args = _run_args(tmp_path, script, ["hang", "ok"], "--tool-timeout", "120")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 120
        while script.callers == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # the worker is in the hanging call by now
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 130 and "interrupted" in err, err
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10  # the worker leaves with its parent
    while time.monotonic() < deadline:
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("the tools worker outlived umieval run")
