"""Helpers for the data tests: paths to the shared reference data (skipped when absent), the
bundled examples, and small builders for constructed inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples"
TOOLBENCH = SHARED / "toolbench-example" / "answer"
STAGE1 = SHARED / "alpha-umi-example" / "raw_data_stage_1.json"
STAGE2 = SHARED / "alpha-umi-example" / "raw_data_stage_2.json"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data not available: {path}")
    return path


@pytest.fixture
def toolbench_dir() -> Path:
    return need(TOOLBENCH)


@pytest.fixture
def stage1() -> list[dict[str, Any]]:
    return json.loads(need(STAGE1).read_text(encoding="utf-8"))


@pytest.fixture
def stage2_path() -> Path:
    return need(STAGE2)


def tool(name: str, props: dict[str, Any] | None = None, required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": f"{name} tool",
            "parameters": {"type": "object", "properties": props or {}, "required": required or []}}}


def tcall(cid: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


def chat(*messages: dict[str, Any], tools: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """An OpenAI-style record; default tools: ``lookup(q: string, n: integer; required q)``."""
    if tools is None:
        tools = [tool("lookup", {"q": {"type": "string"}, "n": {"type": "integer"}}, ["q"])]
    return {"messages": list(messages), "tools": tools, **extra}


def good_chat(**extra: Any) -> dict[str, Any]:
    return chat(
        {"role": "user", "content": "find x"},
        {"role": "assistant", "content": "look it up", "tool_calls": [tcall("c1", "lookup", '{"q": "x"}')]},
        {"role": "tool", "tool_call_id": "c1", "content": "x is 1"},
        {"role": "assistant", "content": "x is 1."},
        **extra,
    )


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path
