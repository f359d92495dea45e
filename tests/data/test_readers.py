"""Readers: every input shape, real data, and constructed bad input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from umi_data.readers import expand, read_inputs
from umi_data.readers import openai as openai_reader
from umi_data.trajectory import Source

from .conftest import EXAMPLES, chat, good_chat, tcall, write_jsonl


def _codes(records):
    return [[f.code for f in r.findings if f.severity == "error"] for r in records]


def test_toolbench_tree_real(toolbench_dir: Path) -> None:
    recs = list(read_inputs([toolbench_dir]))
    assert len(recs) == 15
    assert sum(r.accepted for r in recs) == 13
    rejected = [r for r in recs if not r.accepted]
    assert all(r.findings[0].code == "no_trajectory" for r in rejected)
    ids = [r.trajectory.id for r in recs if r.trajectory]
    assert len(set(ids)) == 13 and "G1_answer/10_ChatGPT_DFS_woFilter_w2" in ids


def test_toolbench_single_file_and_zip(toolbench_dir: Path, tmp_path: Path) -> None:
    one = sorted(toolbench_dir.glob("G1_answer/*.json"))[0]
    (rec,) = read_inputs([one])
    assert rec.accepted and rec.source.format == "toolbench"
    archive = tmp_path / "toolbench.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(toolbench_dir.glob("G*_answer/*.json")):
            zf.write(f, f"data/answer/{f.parent.name}/{f.name}")
        zf.writestr("data/README.txt", "not an answer file")
    recs = list(read_inputs([archive]))
    assert len(recs) == 15 and sum(r.accepted for r in recs) == 13
    assert recs[0].source.member.startswith("data/answer/G1_answer/")
    assert "toolbench.zip!data/answer/G1_answer/" in recs[0].source.where()


def test_alpha_umi_stage2(stage2_path: Path) -> None:
    recs = list(read_inputs([stage2_path]))
    assert len(recs) == 20 and all(r.accepted for r in recs)
    assert recs[3].source.index == 3 and recs[3].source.format == "alpha-umi"


def test_examples_tree() -> None:
    recs = list(read_inputs([EXAMPLES / "toolbench-mini"]))
    assert len(recs) == 9 and sum(r.accepted for r in recs) == 8


def test_openai_jsonl_examples() -> None:
    recs = list(read_inputs([EXAMPLES / "openai-chats.jsonl"]))
    assert [r.accepted for r in recs] == [True, True, True, False, False, True]
    assert recs[3].source.line == 4 and recs[3].findings[0].code == "json_syntax"
    assert recs[4].findings[-1].pointer == "/messages/1/tool_call_id"
    par = recs[1].trajectory
    caller = next(t for t in par.turns if t.role == "caller")
    assert [c.id for c in caller.calls] == ["call_b1", "call_b2", "call_b3", "call_b4"]
    obs = [t for t in par.turns if t.role == "observation"]
    assert [(o.call_id, o.name) for o in obs][2] == ("call_b4", "get_weather")
    assert par.turns[-1].content == "Tokyo: 22:40, clear, 12 °C. São Paulo: 10:40, sunny, 27 °C."
    assert recs[0].trajectory.system == "You are a concise travel assistant."
    assert recs[0].trajectory.metadata["model"] == "gpt-4o-mini"
    assert recs[2].trajectory.outcome == "gave_up"


def test_openai_rules() -> None:
    src = Source("openai", "x.json")
    ((traj, findings),) = openai_reader.read(good_chat(), src, "t")
    assert findings == []
    roles = [(t.role, t.decision if t.role == "planner" else None) for t in traj.turns]
    assert roles == [("user", None), ("planner", "call"), ("caller", None), ("observation", None),
                     ("planner", "conclude"), ("conclusion", None)]
    assert traj.instruction == "find x" and traj.outcome == "answered"
    assert traj.turns[3].name == "lookup" and traj.turns[3].call_id == "c1"
    # Finish convention, broken arguments recovered like ToolBench
    broken = '{"return_type": "give_answer", "final_answer": "42"'
    rec = chat({"role": "user", "content": "q"},
               {"role": "assistant", "content": "done", "tool_calls": [tcall("f", "Finish", broken)]})
    ((traj, findings),) = openai_reader.read(rec, src, "t")
    assert traj.turns[-1].content == "42" and [f.code for f in findings] == ["finish_recovered"]
    # tool message without id answers the oldest pending call
    rec = chat({"role": "user", "content": "q"},
               {"role": "assistant", "content": None, "tool_calls": [tcall("a", "lookup", "{}")]},
               {"role": "tool", "content": "r"}, {"role": "assistant", "content": "ok"})
    ((traj, _),) = openai_reader.read(rec, src, "t")
    assert traj.turns[3].call_id == "a"


def test_openai_schema_errors() -> None:
    src = Source("openai", "x.json")
    cases = {
        "/messages": {"messages": "nope"},
        "/messages/0/role": chat({"role": "robot", "content": "x"}),
        "/messages/1/tool_calls/0/function/arguments": chat(
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "a", "type": "function", "function": {"name": "lookup", "arguments": {"q": 1}}}]}),
        "/tools/0": chat({"role": "user", "content": "q"}, tools=[{"type": "function"}]),
        "/messages/0/content": chat({"role": "user", "content": 5}),
        "/messages/1": chat({"role": "user", "content": "q"}, {"role": "tool", "content": "r"}),
    }
    for pointer, rec in cases.items():
        ((traj, findings),) = openai_reader.read(rec, src, "t")
        assert traj is None, pointer
        assert findings[-1].code == "schema" and findings[-1].pointer == pointer
    ((traj, findings),) = openai_reader.read(chat({"role": "system", "content": "s"}), src, "t")
    assert traj is None and findings[0].pointer == "/messages"


def test_canonical_jsonl_and_parquet(tmp_path: Path) -> None:
    recs = [r for r in read_inputs([EXAMPLES / "openai-chats.jsonl"]) if r.accepted]
    dicts = [r.trajectory.to_dict() for r in recs]
    jl = write_jsonl(tmp_path / "c.jsonl", dicts)
    back = list(read_inputs([jl]))
    assert [r.trajectory.to_dict() for r in back] == dicts
    assert all(r.source.format == "umi" for r in back)
    pq.write_table(pa.table({"id": [d["id"] for d in dicts], "trajectory": [json.dumps(d) for d in dicts]}),
                   tmp_path / "c.parquet")
    back = list(read_inputs([tmp_path / "c.parquet"]))
    assert [r.trajectory.to_dict() for r in back] == dicts
    bad = dict(dicts[0], outcome="won")
    (rec,) = read_inputs([write_jsonl(tmp_path / "bad.jsonl", [bad])])
    assert not rec.accepted and rec.findings[0].code == "schema" and rec.findings[0].pointer == "/outcome"


def test_bad_inputs(tmp_path: Path) -> None:
    good = json.dumps(good_chat())
    (tmp_path / "trunc.json").write_text(good[: len(good) // 2])
    (tmp_path / "latin1.json").write_bytes('{"messages": "caf\xe9"}'.encode("latin-1"))
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "empty_list.json").write_text("[]")
    (tmp_path / "scalar.json").write_text("[1]")
    (tmp_path / "unknown.json").write_text('{"hello": 1}')
    rows = [good, good.replace("find x", "find y"), "{oops", good.replace("x", "z")]
    lines = write_jsonl(tmp_path / "lines.jsonl", rows)
    results = {p.name: list(read_inputs([p])) for p in sorted(tmp_path.iterdir())}
    assert _codes(results["trunc.json"]) == [["json_syntax"]]
    assert _codes(results["latin1.json"]) == [["encoding"]]
    assert "byte 0xe9 (line 1, column 18)" in results["latin1.json"][0].findings[0].message
    assert "(line 1, column" in results["trunc.json"][0].findings[0].message
    assert _codes(results["empty.json"]) == [["empty_input"]]
    assert _codes(results["empty_list.json"]) == [["empty_input"]]
    assert _codes(results["unknown.json"]) == [["unknown_format"]]
    assert _codes(results["scalar.json"]) == [["unknown_format"]]
    recs = results[lines.name]
    assert [r.accepted for r in recs] == [True, True, False, True]
    assert recs[2].source.line == 3 and recs[2].findings[0].code == "json_syntax"
    assert recs[2].findings[0].message.endswith("(column 2)")  # the line number is in the source


def test_unreadable_members(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ok.jsonl").write_text(json.dumps(good_chat()) + "\n")
    (tree / "gone.json").symlink_to(tmp_path / "missing.json")  # broken symlink: cannot be opened
    (tree / "dir.json").mkdir()  # a directory named like a file is not expanded as a file
    units = expand([tree])
    assert [Path(u.path).name for u in units] == ["gone.json", "ok.jsonl"]
    recs = list(read_inputs([tree]))
    assert [r.accepted for r in recs] == [False, True]
    assert recs[0].findings[0].code == "io_error"
    (rec,) = read_inputs([tmp_path / "nowhere.json"])
    assert rec.findings[0].code == "io_error"
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"PK\x03\x04 not really a zip")
    (rec,) = read_inputs([bad_zip])
    assert not rec.accepted
