"""Issue 19, item 10: ``TOOLBENCH_KEY`` goes only to hosts the user named for it, never over plain
HTTP to another machine unless allowed, and a redirect to another host is not followed (an error
observation, with a finding). Every server here listens on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from umi_data.trajectory import Tool
from umi_eval.agent.tools import HttpExecutor, ToolSpecError, call_tool, make_executor
from umi_eval.cli.commands import main as umieval

from .agent_helpers import serving


class _Server(ThreadingHTTPServer):
    def __init__(self, redirect_to: str = "") -> None:
        self.bodies: list[dict] = []
        self.hits = 0
        self.redirect_to = redirect_to
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/virtual"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        self.server.hits += 1
        if self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps({"error": "", "response": "from the other host"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def log_message(self, *args: object) -> None:
        pass


def _serve(srv: _Server) -> Iterator[_Server]:
    with serving(srv):
        yield srv


@pytest.fixture
def other() -> Iterator[_Server]:
    yield from _serve(_Server())


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from _serve(_Server())


def test_key_goes_only_to_named_hosts(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLBENCH_KEY", "k-secret")
    port = server.server_address[1]
    for hosts, sent in (((), ""), (("localhost",), ""), (("127.0.0.1:1",), ""), (("example.org",), ""),
                        (("127.0.0.1",), "k-secret"), ((f"127.0.0.1:{port}",), "k-secret")):
        ex = make_executor(server.url, key_hosts=hosts)
        assert isinstance(ex, HttpExecutor) and ex.key_withheld == (not sent)
        call_tool(ex, Tool("a_for_b"), "{}")
        assert server.bodies[-1]["toolbench_key"] == sent, hosts


def test_key_never_over_plain_http_to_another_machine(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TOOLBENCH_KEY", "k-secret")
    with pytest.raises(ToolSpecError, match="plain HTTP"):
        make_executor("http://tools.example.org/virtual", key_hosts=["tools.example.org"])
    assert make_executor("https://tools.example.org/virtual", key_hosts=["tools.example.org"]).key == "k-secret"
    allowed = make_executor("http://tools.example.org/v", key_hosts=["tools.example.org"], plain_http_key=True)
    assert allowed.key == "k-secret"
    assert make_executor("http://tools.example.org/virtual").key == ""  # not named: nothing to protect
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "a", "instruction": "x"}\n')
    res = CliRunner().invoke(umieval, ["run", str(q), "--model", "m", "-o", str(tmp_path / "o.jsonl"), "--tools",
                                       "http://tools.example.org/virtual", "--tool-key-host", "tools.example.org"])
    assert res.exit_code == 2 and "plain HTTP" in res.output and "--tool-key-over-http" in res.output


def test_redirect_to_another_host_is_not_followed(other: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLBENCH_KEY", "k-secret")
    srv = _Server(redirect_to=other.url)
    for s in _serve(srv):
        ex = make_executor(s.url, key_hosts=["127.0.0.1"])
        obs, attempts = call_tool(ex, Tool("a_for_b"), "{}", retries=1, backoff=0)
        assert obs.code == "redirected" and attempts == 1 and other.url in (obs.error or "")
        assert "from the other host" not in obs.content and other.hits == 0
