"""Helpers for the agent-loop tests: a scripted stand-in model and a small tool module."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from umi_eval.generate.backends import Decoding, Generation

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data not available: {path}")
    return path

TOOLS_PY = '''
import time


def get_weather(city: str, unit: str = "C") -> dict:
    """Current weather of a city."""
    if city == "Atlantis":
        raise KeyError("no such city")
    return {"city": city, "temp": 21, "unit": unit}


def slow(seconds: float) -> str:
    """Sleeps, then answers."""
    time.sleep(seconds)
    return "done"
'''


def role_of(prompt: str) -> str:
    """The role a prompt is for, from its cue (the same cues umi_data.render.templates appends)."""
    if prompt.endswith(" caller: "):
        return "caller"
    if prompt.endswith(" conclusion: "):
        return "summarizer"
    return "planner"


class Scripted:
    """A stand-in model with fixed outputs per role, consumed in order; it records every prompt."""

    def __init__(self, name: str = "scripted", **outputs: Sequence[str]) -> None:
        self.name = name
        self.outputs = {role: list(texts) for role, texts in outputs.items()}
        self.prompts: list[tuple[str, str]] = []

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
        out = []
        for p in prompts:
            role = role_of(p)
            self.prompts.append((role, p))
            queue = self.outputs.get(role) or self.outputs.get("any") or []
            text = queue.pop(0) if len(queue) > 1 else queue[0]  # the last output repeats
            out.append(Generation(text, prompt_tokens=len(p), completion_tokens=len(text)))
        return out


def write_tools(tmp: Path) -> Path:
    path = tmp / "weather_tools.py"
    path.write_text(TOOLS_PY, encoding="utf-8")
    return path


@contextmanager
def serving(srv: socketserver.BaseServer) -> Iterator[str]:
    """Serve ``srv`` (bound to 127.0.0.1) from a daemon thread for the block; its base URL is
    ``http://127.0.0.1:PORT``. Shut down, closed and joined afterwards, whatever the block did."""
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)
