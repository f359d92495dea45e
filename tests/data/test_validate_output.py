"""``umidata validate``'s report: findings and summary on one stream (stdout), in order, and a
canonical record's findings located in the file that was read, not in the file its ``source``
(lineage) names — a ``umieval run`` file's source is its queries file."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from umi_data.cli.commands import main

from .conftest import EXAMPLES

PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"name": "get_weather", "description": "Current weather of a city.", "parameters": PARAMS}]


def _run_line(traj_id: str, tool: str) -> str:
    """One trajectory as ``umieval run`` writes it: canonical, its source the queries file."""
    return json.dumps({
        "format": "umi.trajectory/v1", "id": traj_id,
        "source": {"format": "umi-run", "file": "queries.jsonl", "index": None, "line": None, "member": None},
        "instruction": "Weather in Paris?", "tools": TOOLS,
        "turns": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "planner", "thought": "Ask the weather api.", "decision": "call"},
            {"role": "caller", "calls": [{"name": tool, "arguments": '{"city": "Paris"}'}]},
            {"role": "observation", "content": '{"temp": 21}'},
            {"role": "planner", "thought": "Got it.", "decision": "conclude"},
            {"role": "conclusion", "content": "21 degrees."},
        ],
        "outcome": "answered", "metadata": {},
    })


def test_findings_of_a_run_file_point_into_the_run_file(tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    runs.write_text(_run_line("q1", "get_weather") + "\n" + _run_line("q2", "get_wether") + "\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["validate", str(runs)])
    assert res.exit_code == 0, res.output  # unknown_tool is a warning
    findings = [line for line in res.stdout.splitlines() if "[unknown_tool]" in line]
    assert len(findings) == 1 and findings[0].startswith(f"{runs}:2#/turns/2/calls/0/name: warning"), findings
    assert "queries.jsonl" not in res.output
    # the same record twice: the duplicate is located at its own line too, and names the first one's
    runs.write_text(_run_line("q1", "get_weather") + "\n" + _run_line("q1", "get_weather") + "\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["validate", str(runs)])
    assert res.exit_code == 1
    dup = next(line for line in res.stdout.splitlines() if "[duplicate_id]" in line)
    assert dup.startswith(f"{runs}:2#/id:") and f"already produced by {runs}:1" in dup, dup
    # the lineage itself is kept: convert writes the original source through
    out = tmp_path / "copy.jsonl"
    runs.write_text(_run_line("q1", "get_weather") + "\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["convert", str(runs), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text(encoding="utf-8"))["source"]["file"] == "queries.jsonl"


def test_validate_prints_findings_then_summary_on_stdout() -> None:
    inputs = [str(EXAMPLES / "toolbench-mini" / "answer"), str(EXAMPLES / "openai-chats.jsonl")]
    res = CliRunner().invoke(main, ["validate", *inputs])
    assert res.exit_code == 1  # the bundled example holds deliberately broken records
    lines = res.stdout.splitlines()
    assert len(lines) > 5 and all(" [" in line for line in lines[:-1])  # every finding first …
    assert lines[-1].startswith("records read: 15 = accepted 12 + rejected 3")  # … then the summary, last
    assert res.stderr == ""
