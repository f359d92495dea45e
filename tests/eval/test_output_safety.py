"""Issue 19, items 1, 2, 6, 11: every file `umieval generate` / `run` (and `umidata convert`) write
goes through one output-safety rule before anything is opened — never an input (symlinks and hard
links resolved), never an existing sidecar replaced unasked, never two outputs one file — and one
writer per output (a second run on the same -o exits 2 at once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main as umidata
from umi_eval.agent.loop import Models, RunError, run
from umi_eval.agent.queries import read_queries
from umi_eval.cli.commands import main as umieval
from umi_eval.generate.predict import GenerateError, GenerateOptions, generate

from .agent_helpers import Scripted, write_tools
from .conftest import TRAJECTORIES
from .oracle import Oracle

DEAD = "http://127.0.0.1:9/v1"  # nothing is contacted: every refusal comes before a model is used
TRIO = {"planner": "p", "caller": "c", "summarizer": "s"}


def _stage2(path: Path) -> Path:
    path.write_text(json.dumps(TRAJECTORIES), encoding="utf-8")
    return path


def _queries(path: Path, n: int = 2) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "instruction": f"Weather {i}?"}) + "\n" for i in range(n)))
    return path


def _gen_args(inp: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", str(inp), "-o", str(out), "--backend", "openai", "--base-url", DEAD, "--model", "m",
            "--format", "alpha-umi", "-q", *extra]


def _run_args(tmp: Path, inp: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(inp), "-o", str(out), "--tools", f"python:{write_tools(tmp)}", "--backend", "openai",
            "--base-url", DEAD, "--model", "m", "-q", *extra]


def _invoke(args: list[str]):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(umieval, args)


def _scripted_generate(inp: Path, out: Path, **kw) -> object:  # type: ignore[no-untyped-def]
    models = {r: Oracle({}, r) for r in TRIO}
    return generate([str(inp)], out, GenerateOptions("trio", TRIO), open_backend_fn=lambda r, _m: models[r], **kw)


def _scripted_run(qfile: Path, out: Path, tmp: Path, **kw) -> object:  # type: ignore[no-untyped-def]
    from umi_eval.agent.tools import make_executor

    model = Scripted(planner=["Stop.\n Next: give up."])
    return run(read_queries([str(qfile)]), Models(model, model, model), make_executor(f"python:{write_tools(tmp)}"),
               out, inputs=[str(qfile)], **kw)


# --- item 1: the rejects sidecar is never an input ------------------------------------------------


def test_generate_refuses_a_sidecar_that_is_the_input(tmp_path: Path) -> None:
    inp = _stage2(tmp_path / "p.rejects.jsonl")
    before = inp.read_bytes()
    res = _invoke(_gen_args(inp, tmp_path / "p.jsonl"))
    assert res.exit_code == 2, res.output
    assert "p.rejects.jsonl is the input" in res.output
    assert inp.read_bytes() == before and not (tmp_path / "p.jsonl").exists()


def test_run_refuses_a_sidecar_that_is_the_input(tmp_path: Path) -> None:
    inp = _queries(tmp_path / "rq.rejects.jsonl")
    before = inp.read_bytes()
    res = _invoke(_run_args(tmp_path, inp, tmp_path / "rq.jsonl"))
    assert res.exit_code == 2, res.output
    assert "rq.rejects.jsonl is the input" in res.output
    assert inp.read_bytes() == before and not (tmp_path / "rq.jsonl").exists()


# --- item 2: run writes only where it may ----------------------------------------------------------


def test_run_refuses_its_own_input_as_output(tmp_path: Path) -> None:
    q = _queries(tmp_path / "qn.jsonl")
    before = q.read_bytes()
    res = _invoke(_run_args(tmp_path, q, q))
    assert res.exit_code == 2 and "is the input" in res.output
    assert q.read_bytes() == before


def test_run_refuses_a_hard_link_to_its_input(tmp_path: Path) -> None:
    q = _queries(tmp_path / "qn.jsonl")
    link = tmp_path / "runs.jsonl"
    os.link(q, link)
    before = q.read_bytes()
    res = _invoke(_run_args(tmp_path, q, link))
    assert res.exit_code == 2 and "hard link" in res.output
    assert q.read_bytes() == before


def test_generate_refuses_a_symlink_to_its_input(tmp_path: Path) -> None:
    inp = _stage2(tmp_path / "d.json")
    (tmp_path / "p.jsonl").symlink_to(inp)
    before = inp.read_bytes()
    assert _invoke(_gen_args(inp, tmp_path / "p.jsonl")).exit_code == 2
    assert inp.read_bytes() == before


@pytest.mark.parametrize("content", [b'{"a": 1}\nthe last line, no newline', b"just one line, no newline",
                                     b'{"format":"umi.trajectory/v1","id":"q0"}\nnot a run line'])
def test_run_leaves_a_foreign_file_untouched(tmp_path: Path, content: bytes) -> None:
    q = _queries(tmp_path / "q.jsonl")
    out = tmp_path / "notes.jsonl"
    out.write_bytes(content)
    with pytest.raises(RunError, match="not touching it"):
        _scripted_run(q, out, tmp_path)
    assert out.read_bytes() == content


def test_run_still_cuts_a_torn_run_line_and_resumes(tmp_path: Path) -> None:
    q = _queries(tmp_path / "q.jsonl")
    out = tmp_path / "runs.jsonl"
    assert _scripted_run(q, out, tmp_path).ran == 2  # type: ignore[attr-defined]
    whole = out.read_bytes()
    first, second = whole.splitlines(keepends=True)
    out.write_bytes(first + second[:37])  # killed in the middle of the second line
    s = _scripted_run(q, out, tmp_path)
    assert (s.ran, s.resumed) == (1, 1)  # type: ignore[attr-defined]
    assert [json.loads(x)["id"] for x in out.read_bytes().splitlines()] == ["q0", "q1"]


# --- item 11: an existing sidecar is replaced only when resumed or under --overwrite ---------------


def test_generate_keeps_an_existing_sidecar_without_overwrite(tmp_path: Path) -> None:
    inp = _stage2(tmp_path / "d.json")
    out, side = tmp_path / "p.jsonl", tmp_path / "p.rejects.jsonl"
    side.write_text("my notes\n")
    with pytest.raises(GenerateError, match=r"p\.rejects\.jsonl already exists; pass --overwrite"):
        _scripted_generate(inp, out)
    assert side.read_text() == "my notes\n" and not out.exists()
    assert _invoke(_gen_args(inp, out)).exit_code == 2  # the CLI too, before any model is contacted
    _scripted_generate(inp, out, overwrite=True)
    assert side.read_text() == "" and out.exists()
    _scripted_generate(inp, out)  # a resumed file's sidecar is its own: rewritten without --overwrite


def test_run_keeps_an_existing_sidecar_without_overwrite(tmp_path: Path) -> None:
    q = _queries(tmp_path / "q.jsonl")
    out, side = tmp_path / "runs.jsonl", tmp_path / "runs.rejects.jsonl"
    side.write_text("my notes\n")
    with pytest.raises(RunError, match="already exists; pass --overwrite"):
        _scripted_run(q, out, tmp_path)
    assert side.read_text() == "my notes\n" and not out.exists()
    s = _scripted_run(q, out, tmp_path, overwrite=True)
    assert s.ran == 2 and not side.exists()  # type: ignore[attr-defined]  # no rejects: the old list is gone
    s = _scripted_run(q, out, tmp_path, overwrite=True)  # --overwrite starts the run file over
    assert (s.ran, s.resumed) == (2, 0)  # type: ignore[attr-defined]
    assert len(out.read_bytes().splitlines()) == 2


def test_convert_keeps_an_existing_sidecar_without_overwrite(tmp_path: Path) -> None:
    inp = _stage2(tmp_path / "d.json")
    side = tmp_path / "t.rejects.jsonl"
    side.write_text("my notes\n")
    res = CliRunner().invoke(umidata, ["convert", str(inp), "-o", str(tmp_path / "t.jsonl")])
    assert res.exit_code == 2 and "t.rejects.jsonl already exists" in res.output
    assert side.read_text() == "my notes\n" and not (tmp_path / "t.jsonl").exists()
    res = CliRunner().invoke(umidata, ["convert", str(inp), "-o", str(tmp_path / "t.jsonl"), "--overwrite"])
    assert res.exit_code == 0 and side.read_text() == ""


def test_outputs_of_one_command_never_collide(tmp_path: Path) -> None:
    inp = _stage2(tmp_path / "d.json")
    (tmp_path / "p.rejects.jsonl").symlink_to(tmp_path / "p.jsonl")  # the sidecar would be the output
    with pytest.raises(GenerateError, match="are the same file"):
        _scripted_generate(inp, tmp_path / "p.jsonl", overwrite=True)


# --- item 6: one writer per output --------------------------------------------------------------------


_HOLD = textwrap.dedent("""
    import sys, time
    from umi_data.output.guard import output_lock
    with output_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


@pytest.fixture
def held(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Another process holding the lock of tmp_path/out.jsonl, as a running generate or run does."""
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield out, proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_second_generate_on_one_output_exits_2(tmp_path: Path, held) -> None:  # type: ignore[no-untyped-def]
    out, pid = held
    inp = _stage2(tmp_path / "d.json")
    res = _invoke(_gen_args(inp, out))
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"another umieval run (process {pid}) is writing" in lines[0]
    assert not out.exists()


def test_a_second_run_on_one_output_exits_2(tmp_path: Path, held) -> None:  # type: ignore[no-untyped-def]
    out, pid = held
    q = _queries(tmp_path / "q.jsonl")
    res = _invoke(_run_args(tmp_path, q, out))
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"another umieval run (process {pid}) is writing" in lines[0]
    assert not out.exists()
