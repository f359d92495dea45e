"""The OpenAI-compatible completions backend against a small server on 127.0.0.1 (started here)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_eval.cli.commands import main
from umi_eval.generate.backends import Decoding, OpenAIBackend

from .agent_helpers import serving
from .conftest import TRAJECTORIES
from .oracle import oracles

MAX_REQUESTS = 200  # the server refuses more: a retry loop gone wrong fails fast instead of hanging


@contextmanager
def server(answer, fail_first: int = 0) -> Iterator[tuple[str, list[dict]]]:
    """Serve ``POST /v1/completions`` with ``answer(body) -> (status, text)``; the first
    ``fail_first`` requests get HTTP 503. Yields the base URL and the request bodies seen."""
    seen: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                seen.append({"path": self.path, **body})
                n = len(seen)
            if n > MAX_REQUESTS:
                status, payload = 429, {"error": "too many requests in this test"}
            elif n <= fail_first:
                status, payload = 503, {"error": "warming up"}
            else:
                status, text = answer(body)
                payload = {"choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": len(text)}}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield f"{url}/v1", seen


def test_generate_through_a_completions_server(tmp_path: Path) -> None:
    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    gold = oracles(data)
    by_model = {"p": gold["planner"].answers, "c": gold["caller"].answers, "s": gold["summarizer"].answers}

    def answer(body: dict) -> tuple[int, str]:
        return 200, by_model[body["model"]].get(body["prompt"], "???")

    out = tmp_path / "pred.jsonl"
    with server(answer, fail_first=1) as (url, seen):
        res = CliRunner().invoke(main, ["generate", str(data), "-o", str(out), "--backend", "openai",
                                        "--base-url", url, "--planner", "p", "--caller", "c", "--summarizer", "s",
                                        "--concurrency", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    preds = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert len(preds) == 5
    for p in preds:
        assert p["prediction"] == (p["reference"] if p["route"] == "give_up" else p["reference"][:-4])
        assert p["prompt_tokens"] > 0 and "errors" not in p
    assert len(seen) == 1 + 5 + 2 + 2  # one 503 retried, then planner ×5, caller ×2, summarizer ×2
    assert all(b["path"] == "/v1/completions" and b["temperature"] == 0.0 and b["max_tokens"] == 512 for b in seen)


def test_client_errors_are_not_retried_and_are_reported(tmp_path: Path) -> None:
    def answer(body: dict) -> tuple[int, str]:
        return (400, "") if "long" in body["prompt"] else (200, "ok")

    with server(answer) as (url, seen):
        backend = OpenAIBackend(url, "m", retries=3, backoff=0.01)
        got = backend.generate(["short", "too long"], Decoding(temperature=0.7, top_k=50))
    assert got[0].text == "ok" and got[0].error is None
    assert got[1].text == "" and got[1].error is not None and got[1].error.startswith("HTTP 400")
    assert len(seen) == 2  # the 400 was not retried
    assert seen[0]["temperature"] == 0.7 and seen[0]["top_k"] == 50 and seen[0]["seed"] == 42


def test_an_unreachable_server_is_retried_then_reported() -> None:
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m", retries=1, backoff=0.01, timeout=2)
    got = backend.generate(["x"], Decoding())
    assert got[0].error and "URLError" in got[0].error


def test_steps_that_failed_are_generated_again_on_resume(tmp_path: Path) -> None:
    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    gold = oracles(data)
    by_model = {"p": gold["planner"].answers, "c": gold["caller"].answers, "s": gold["summarizer"].answers}
    broken = {"on": True}

    def answer(body: dict) -> tuple[int, str]:
        if broken["on"] and body["model"] == "c":
            return 400, ""
        return 200, by_model[body["model"]].get(body["prompt"], "???")

    out = tmp_path / "pred.jsonl"
    args = ["generate", str(data), "-o", str(out), "--backend", "openai", "--planner", "p", "--caller", "c",
            "--summarizer", "s", "--quiet"]
    with server(answer) as (url, _seen):
        first = CliRunner().invoke(main, [*args, "--base-url", url])
        assert first.exit_code == 1  # two caller steps failed: counted, exit 1
        rows = [json.loads(line) for line in out.read_text().splitlines()[1:]]
        assert sum(bool(r.get("errors")) for r in rows) == 2
        broken["on"] = False
        second = CliRunner().invoke(main, [*args, "--base-url", url, "--json"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.output)["generated"] == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert len(rows) == 5 and not any(r.get("errors") for r in rows)


def test_a_malformed_reply_is_a_step_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """`{"choices": ["x"]}` (a string where an object belongs) or a cut-off body is reported on the
    step, retried, and never aborts the run (it raised AttributeError)."""
    import http.client

    replies = iter([{"choices": ["x"]}, http.client.IncompleteRead(b"{"), {"choices": ["y"]}])

    def post(self: OpenAIBackend, body: dict) -> dict:
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    monkeypatch.setattr(OpenAIBackend, "_post", post)
    (got,) = OpenAIBackend("http://127.0.0.1:9/v1", "m", retries=2, backoff=0.0).generate(["p"], Decoding())
    assert got.text == "" and got.error is not None and got.error.startswith("malformed response")


def test_top_k_0_means_off_in_the_transformers_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--top-k 0` ("off") must reach generate as 0: None let transformers fill in its default 50."""
    from umi_eval.generate.backends import TransformersBackend
    from umi_train.tiny import build_tiny_model, train_tiny_tokenizer

    tok = train_tiny_tokenizer(["hello world"] * 20, vocab_size=300)
    build_tiny_model(tok, hidden=16, layers=1, heads=2).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    backend = TransformersBackend(str(tmp_path), device="cpu")
    seen: list = []

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs["generation_config"])
        raise RuntimeError("stop here")

    monkeypatch.setattr(backend.model, "generate", spy)
    with pytest.raises(RuntimeError, match="stop here"):
        backend.generate(["hello"], Decoding(temperature=1.0, top_k=0, max_new_tokens=2))
    assert seen[0].do_sample and seen[0].top_k == 0
