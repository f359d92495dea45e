"""umidata convert / validate / codes: outputs, rejects, schemas, exit codes, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from umi_data import __version__
from umi_data.cli.commands import findings_markdown, main
from umi_data.output import writers
from umi_data.trajectory.schema import validator

from .conftest import EXAMPLES, REPO, good_chat, write_jsonl


def run(*args: str):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def _valid(rows: list[dict]) -> None:
    v = validator("trajectory")
    for row in rows:
        errors = [e.message for e in v.iter_errors(row)]
        assert errors == [], row["id"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_convert_toolbench(toolbench_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    res = run("convert", toolbench_dir, "-o", out)
    assert res.exit_code == 1  # two rejects
    rows = _jsonl(out)
    assert len(rows) == 13
    _valid(rows)
    rejects = _jsonl(tmp_path / "t.rejects.jsonl")
    assert [r["reason"] for r in rejects] == ["no_trajectory", "no_trajectory"]
    assert set(rejects[0]) == {"source", "reason", "message", "pointer", "findings"}
    assert "records read: 15 = accepted 13 + rejected 2" in res.output
    first = out.read_bytes()
    assert run("convert", toolbench_dir, "-o", out).exit_code == 2  # never replaced without --overwrite
    assert run("convert", toolbench_dir, "-o", out, "--overwrite").exit_code == 1
    assert out.read_bytes() == first  # deterministic


def test_convert_stage2_and_parquet(stage2_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    assert run("convert", stage2_path, "-o", out).exit_code == 0
    rows = _jsonl(out)
    assert len(rows) == 20
    _valid(rows)
    assert (tmp_path / "s.rejects.jsonl").read_text() == ""
    pq_out = tmp_path / "s.parquet"
    assert run("convert", stage2_path, "-o", pq_out, "--quiet").exit_code == 0
    table = pq.read_table(pq_out)
    assert table.column_names == ["id", "source_format", "outcome", "trajectory"]
    assert [json.loads(t) for t in table.column("trajectory").to_pylist()] == rows
    assert set(table.column("outcome").to_pylist()) == {"answered", "gave_up"}


def test_convert_examples_and_duplicates(tmp_path: Path) -> None:
    chats = EXAMPLES / "openai-chats.jsonl"
    out = tmp_path / "o.jsonl"
    res = run("convert", chats, chats, "-o", out)
    assert res.exit_code == 1
    assert len(_jsonl(out)) == 4
    rejects = _jsonl(tmp_path / "o.rejects.jsonl")
    dup, bad = ["duplicate_id"], ["json_syntax", "schema"]
    assert [r["reason"] for r in rejects] == bad + dup * 3 + bad + dup
    assert "openai-chats.jsonl:1" in rejects[2]["message"] and rejects[2]["pointer"] == "/id"
    # same content, different id -> duplicate_trajectory
    dup = write_jsonl(tmp_path / "d.jsonl", [good_chat(id="a"), good_chat(id="b")])
    run("convert", dup, "-o", out, "--overwrite")
    assert [r["reason"] for r in _jsonl(tmp_path / "o.rejects.jsonl")] == ["duplicate_trajectory"]
    ex = run("convert", EXAMPLES / "toolbench-mini", "-o", tmp_path / "ex.jsonl")
    assert ex.exit_code == 1 and len(_jsonl(tmp_path / "ex.jsonl")) == 8
    _valid(_jsonl(tmp_path / "ex.jsonl"))


def test_strict(tmp_path: Path) -> None:
    src = EXAMPLES / "openai-chats.jsonl"
    assert run("convert", src, "-o", tmp_path / "s.jsonl", "--strict").exit_code == 1
    assert len(_jsonl(tmp_path / "s.jsonl")) == 1  # only the warning-free chat survives
    clean = write_jsonl(tmp_path / "clean.jsonl", [good_chat()])
    assert run("validate", clean, "--strict").exit_code == 0
    assert run("convert", clean, "-o", tmp_path / "c.jsonl").exit_code == 0


def test_validate_lines_and_json(tmp_path: Path) -> None:
    res = run("validate", EXAMPLES / "openai-chats.jsonl")
    assert res.exit_code == 1
    assert "openai-chats.jsonl:5#/messages/1/tool_call_id: error [schema]" in res.output
    assert "openai-chats.jsonl:2#/turns/2/calls: warning [parallel_calls]" in res.output
    res = run("validate", "--json", EXAMPLES / "openai-chats.jsonl", EXAMPLES / "toolbench-mini")
    report = json.loads(res.stdout)
    assert list(validator("findings-report").iter_errors(report)) == []
    assert (report["records"], report["accepted"], report["rejected"]) == (15, 12, 3)
    assert report["counts_by_code"]["no_trajectory"] == 1
    quiet = run("validate", "--quiet", EXAMPLES / "toolbench-mini")
    assert quiet.exit_code == 1 and quiet.output == ""


def test_exit_code_2(tmp_path: Path) -> None:
    assert run("validate", tmp_path / "missing.json").exit_code == 2
    assert run("convert", tmp_path / "missing.json", "-o", tmp_path / "x.jsonl").exit_code == 2
    assert run("convert", EXAMPLES / "openai-chats.jsonl", "-o", tmp_path).exit_code == 2  # a directory
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = run("convert", EXAMPLES / "openai-chats.jsonl", "-o", blocker / "x.jsonl")
    assert res.exit_code == 2 and "cannot write" in res.output
    assert run("convert", EXAMPLES / "openai-chats.jsonl").exit_code == 2  # -o missing
    assert run("validate", "--format", "nope", tmp_path).exit_code == 2
    assert run("nonsense").exit_code == 2


def test_atomic_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "o.json"
    out.write_text("previous\n")

    def boom(traj):
        raise KeyboardInterrupt

    monkeypatch.setattr("umi_data.export.convert.alpha_umi_item", boom)
    res = run("convert", EXAMPLES / "openai-chats.jsonl", "-o", out, "--to", "alpha-umi", "--overwrite")
    assert res.exit_code == 130 and "interrupted" in res.output  # Ctrl-C: exit 130, one line
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json"]
    assert writers.rejects_path("a/b.parquet") == Path("a/b.rejects.jsonl")


def test_codes_version_help() -> None:
    res = run("codes")
    assert res.exit_code == 0 and "no_terminal_turn" in res.output and "tool_schema_invalid" in res.output
    assert __version__ in run("--version").output
    for cmd in ([], ["convert"], ["validate"], ["codes"]):
        assert run(*cmd, "--help").exit_code == 0


def test_findings_doc_is_current() -> None:
    doc = REPO / "docs" / "findings.md"
    assert doc.read_text(encoding="utf-8") == findings_markdown(), "run: umidata codes --markdown > docs/findings.md"
    assert run("codes", "--markdown").output == findings_markdown()


def test_jsonl_keeps_key_order(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [good_chat(id="k")])
    run("convert", src, "-o", tmp_path / "o.jsonl")
    row = orjson.loads((tmp_path / "o.jsonl").read_bytes())
    assert list(row) == ["format", "id", "source", "instruction", "tools", "turns", "outcome", "metadata"]
