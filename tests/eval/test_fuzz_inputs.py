"""Issue 19's property test for umieval's inputs, as tests/data/test_fuzz.py is for umidata's:
prediction files (umi JSONL and the original JSON arrays) and query files (umi queries, ToolBench
query files), built by hypothesis from valid records with wrong types, missing keys, strange text,
NaN, deep nesting, truncation and flipped bytes. Whatever the bytes, `umieval score`, `compare`
and `run` end with exit 0, 1 or 2 — never a traceback, never 3 (a bug) — and every record `score`
reads is either scored or rejected. Derandomised, so a failure reproduces."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from umi_eval.cli.commands import main

from .agent_helpers import Scripted, write_tools
from .score_builders import MIXED_SINGLE, MIXED_TRIO, TOOLS, record

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
_json = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                     max_leaves=8)
_edges = st.sampled_from([[], {}, "", 0, -1, None, True, [None], [{}], [[]], {"Name": None}, [{"Name": 1}], 1e308])
_text = st.sampled_from([
    "", "Next: caller.", "assistant: x Next: conclusion.</s>conclusion: y</s>",
    "caller: Action: get_weather_for_meteo\nAction Input: {", "\u2028\x00é", "</s>" * 3,
]) | st.text(max_size=40)


@st.composite
def _messed(draw: st.DrawFn, good: dict[str, Any]) -> Any:
    """A valid record with some keys dropped, retyped or replaced by odd text; sometimes not an object."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_json)
    obj = dict(good)
    for key in draw(st.lists(st.sampled_from(sorted(obj)), max_size=3, unique=True)):
        op = draw(st.integers(0, 2))
        if op == 0:
            del obj[key]
        else:
            obj[key] = draw((_edges | _json) if op == 1 else _text)
    return obj


def _umi_row(i: int, ref: str, pred: str, mode: str) -> dict[str, Any]:
    return {"id": f"t{i}#0", "trajectory_id": f"t{i}", "step": 0, "mode": mode, "tools": TOOLS, "reference": ref,
            "prediction": pred}


@st.composite
def _raw_line(draw: st.DrawFn) -> bytes:
    return draw(st.sampled_from([b"NaN", b"{", b"[1, 2", b"\xff\xfe", b"", b"   ", b'{"a": Infinity}',
                                 b"[" * 3000 + b"]" * 3000, b'"\\ud800"', b"{}"]))


@st.composite
def prediction_file(draw: st.DrawFn) -> tuple[str, bytes]:
    """(suffix, bytes) of a prediction file: umi JSONL or an original JSON array, then maybe cut or
    bit-flipped."""
    pairs = MIXED_TRIO if draw(st.booleans()) else MIXED_SINGLE
    n = draw(st.integers(1, 6))
    if draw(st.booleans()):
        mode = "trio" if pairs is MIXED_TRIO else "single"
        lines: list[bytes] = []
        if draw(st.booleans()):
            lines.append(json.dumps({"umi_predictions": 1, "mode": mode, "steps_digest": draw(_text)}).encode())
        for i in range(n):
            if draw(st.integers(0, 5)) == 0:
                lines.append(draw(_raw_line()))
            else:
                row = draw(_messed(_umi_row(i, *pairs[i % len(pairs)], mode)))
                lines.append(json.dumps(row, allow_nan=True).encode())
        suffix, data = ".jsonl", b"\n".join(lines) + (b"\n" if draw(st.booleans()) else b"")
    else:
        items = [draw(_messed(record(i, *pairs[i % len(pairs)]))) for i in range(n)]
        suffix, data = ".json", json.dumps(items, allow_nan=True, indent=draw(st.sampled_from([None, 4]))).encode()
    cut = draw(st.integers(0, 3))
    if cut == 1 and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif cut == 2 and data:
        b = bytearray(data)
        b[draw(st.integers(0, len(b) - 1))] ^= 1 << draw(st.integers(0, 7))
        data = bytes(b)
    return suffix, data


@pytest.mark.slow
@FUZZ
@given(prediction_file())
def test_score_and_compare_never_crash_on_any_prediction_file(case: tuple[str, bytes]) -> None:
    suffix, data = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"p{suffix}"
        path.write_bytes(data)
        cases = Path(d) / "cases.jsonl"
        res = CliRunner().invoke(main, ["score", str(path), "--json", "--bootstrap", "20", "--cases", str(cases)])
        assert res.exit_code in (0, 1, 2), (res.exit_code, res.output[-2000:])
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        if res.exit_code == 2:
            assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1, res.stderr
            assert not cases.exists()  # nothing half-written
        else:
            counts = json.loads(res.stdout)["counts"]
            assert counts["records"] == counts["steps"] + counts["rejected"]
            listed = cases.read_bytes().splitlines()
            assert len(listed) == counts["failed_steps"] + counts["rejected"]
        res = CliRunner().invoke(main, ["compare", str(path), str(path), "--json", "--bootstrap", "10"])
        assert res.exit_code in (0, 1, 2), (res.exit_code, res.output[-2000:])
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception


@st.composite
def query_file(draw: st.DrawFn) -> tuple[str, bytes]:
    """(suffix, bytes) of a query file: umi queries (JSONL or a JSON list) or a ToolBench query file."""
    n = draw(st.integers(1, 4))
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": params}}
    kind = draw(st.integers(0, 2))
    if kind == 2:  # ToolBench G1_instruction.json
        api = {"category_name": "Weather", "tool_name": "Meteo", "api_name": "Get weather", "api_description": "x",
               "required_parameters": [{"name": "city", "type": "STRING", "description": "c", "default": ""}],
               "optional_parameters": [], "method": "GET"}
        good = {"query": "Weather in Paris?", "query_id": 1, "api_list": [api]}
        items = [draw(_messed({**good, "query_id": i})) for i in range(n)]
        suffix, data = ".json", json.dumps(items, allow_nan=True).encode()
    else:
        good = {"id": "q", "instruction": "Weather in Paris?", "tools": [tool]}
        rows = [draw(_messed({**good, "id": f"q{i}"})) for i in range(n)]
        if kind == 0:
            lines = [json.dumps(r, allow_nan=True).encode() if draw(st.integers(0, 5)) else draw(_raw_line())
                     for r in rows]
            suffix, data = ".jsonl", b"\n".join(lines) + b"\n"
        else:
            suffix, data = ".json", json.dumps(rows, allow_nan=True).encode()
    if draw(st.integers(0, 3)) == 0 and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    return suffix, data


@pytest.mark.slow
@FUZZ
@given(case=query_file())
def test_run_never_crashes_on_any_query_file(case: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    import umi_eval.cli.run

    model = Scripted(planner=["Stop.\n Next: give up."])
    monkeypatch.setattr(umi_eval.cli.run, "open_backend", lambda _kind, _name, **_kw: model)
    suffix, data = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"q{suffix}"
        path.write_bytes(data)
        out = Path(d) / "runs.jsonl"
        args = ["run", str(path), "-o", str(out), "--tools", f"python:{write_tools(Path(d))}", "--backend", "openai",
                "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "-q"]
        res = CliRunner().invoke(main, args)
        assert res.exit_code in (0, 1, 2), (res.exit_code, res.output[-2000:])
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        if res.exit_code in (0, 1):  # every query ran or is a located reject
            ran = out.read_bytes().splitlines() if out.exists() else []
            rejects = (Path(d) / "runs.rejects.jsonl")
            listed = [json.loads(x) for x in rejects.read_bytes().splitlines()] if rejects.exists() else []
            assert ran or listed
            assert all(r["source"]["file"] == str(path) and r["reason"] for r in listed)
            assert res.exit_code == (1 if listed else 0)
