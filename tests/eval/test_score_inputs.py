"""Issue 19, items 4, 5, 9, 11 for `umieval score` / `compare`: only regular files are read (a FIFO,
device, socket, directory or symlink loop is one line and exit 2, never a hang or click's usage
block), the input is streamed with bounded records and flat memory, a header plus unreadable lines
is named as such, and `compare` refuses files on other references or other steps."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from umi_eval.cli.commands import main
from umi_eval.score import predictions
from umi_eval.score.predictions import ShapeError, read_predictions
from umi_eval.score.scoring import StepMismatch, compare, score_file

from .score_builders import MIXED_SINGLE, MIXED_TRIO, TOOLS, write_original, write_umi

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


def _one_line_error(code: int, out: str, err: str, needle: str) -> None:
    assert code == 2, (code, out, err)
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert needle in err and "Usage:" not in err and "Traceback" not in err, err


# --- item 4: only regular files are read, never a hang -------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A FIFO nobody writes to. If a reader opened it, a helper opens its write end after 10 s so a
    regression fails (the reader sees an empty file) instead of hanging the suite."""
    path = tmp_path / "preds.jsonl"
    os.mkfifo(path)
    done = threading.Event()

    def unblock() -> None:
        if not done.wait(10):
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()
    yield path
    done.set()


def test_score_refuses_a_fifo_without_opening_it(fifo: Path) -> None:
    t = time.monotonic()
    _one_line_error(*run("score", str(fifo)), "is a FIFO (named pipe), not a regular file")
    assert time.monotonic() - t < 5


def test_compare_refuses_a_fifo(fifo: Path, tmp_path: Path) -> None:
    good = write_umi(tmp_path / "u.jsonl", [("t#0", *MIXED_TRIO[0])])
    _one_line_error(*run("compare", str(good), str(fifo)), "is a FIFO")


_SCORE_CAPPED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a regression fails here, not the machine
from umi_eval.cli.commands import main
main(["score", sys.argv[1]])
"""


def test_score_refuses_a_device_behind_a_symlink(tmp_path: Path) -> None:
    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")  # endless: a reader that trusted st_size (0) would never stop
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", _SCORE_CAPPED, str(zero)], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    _one_line_error(res.returncode, res.stdout, res.stderr, "is a character device")


def test_score_refuses_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        _one_line_error(*run("score", str(path)), "is a socket")


# --- item 11: a directory, a symlink loop, a header plus unreadable lines -------------------------


def test_score_names_a_directory_in_one_line(tmp_path: Path) -> None:
    _one_line_error(*run("score", str(tmp_path)), "is a directory, not a prediction file")


def test_score_names_a_symlink_loop_in_one_line(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.symlink_to(b)
    b.symlink_to(a)
    code, out, err = run("score", str(a))
    _one_line_error(code, out, err, "a symlink loop")
    assert "does not exist" not in err


def test_score_says_a_header_is_followed_by_lines_that_are_not_json(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"umi_predictions": 1}\nNaN\nNaN\n')
    code, out, err = run("score", str(path))
    _one_line_error(code, out, err, "a header line and 2 line(s) that are not JSON (line 2:")
    assert "only a header" not in err
    path.write_text('{"umi_predictions": 1}\n')
    assert "only a header line" in run("score", str(path))[2]


# --- item 5: bounded records, streamed reads ----------------------------------------------------------


def test_a_jsonl_line_over_the_bound_is_a_located_reject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_umi(tmp_path / "u.jsonl", [(f"t{i}#0", r, p) for i, (r, p) in enumerate(MIXED_TRIO[:3])])
    lines = path.read_text().splitlines()
    lines.insert(2, json.dumps({"id": "big#0", "pad": "x" * 5000}))
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(predictions, "MAX_RECORD_BYTES", 4096)
    report = score_file(path, resamples=0)
    assert report.counts["steps"] == 3
    assert [(r.where(), r.reason) for r in report.rejects] == [(f"{path}:3", "too_large")]


def test_a_json_array_item_over_the_bound_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_original(tmp_path / "p.json", MIXED_TRIO[:2])
    items = json.loads(path.read_text())
    items[1]["pad"] = "x" * 5000
    path.write_text(json.dumps(items))
    monkeypatch.setattr(predictions, "MAX_RECORD_BYTES", 4096)
    with pytest.raises(ShapeError, match=r"p\.json: the item of the JSON array at character \d+ is longer than 4,096"):
        read_predictions(path)


@pytest.mark.parametrize("chunk", [2, 7, 4096])
def test_json_arrays_read_item_by_item_are_read_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        chunk: int) -> None:
    """Whatever the window (one byte at a time included), the streamed items are orjson's items."""
    path = write_original(tmp_path / "p.json", MIXED_TRIO + MIXED_SINGLE)
    items = json.loads(path.read_text())
    items[0]["n"] = [12345678901234, -0.5e-7, "é\u2028\"\\", None, True, {"": []}]
    path.write_text(" \n" + json.dumps(items, indent=1, ensure_ascii=False) + "\n\n")
    monkeypatch.setattr(predictions, "_CHUNK", chunk)
    with predictions.open_regular(str(path)) as f:
        assert list(predictions._array_items(f, str(path))) == orjson.loads(path.read_bytes())


@pytest.mark.parametrize(("text", "needle"), [
    ('[{"a": 1}', "unexpected end"), ('[{"a": 1}] x', "extra data"), ('[{"a": NaN}]', "not valid JSON"),
    ('[{"a": "\\ud800"}]', "not valid JSON"), ('[{"a": 1} {"b": 2}]', "expected ','"), ("[" * 5000, "not valid JSON"),
])
def test_broken_json_arrays_are_one_shape_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(ShapeError, match="not valid JSON") as e:
        read_predictions(path)
    assert needle in str(e.value)


_PEAK = """
import sys
from umi_eval.score.scoring import score_file
report = score_file(sys.argv[1], resamples=0)
assert report.counts["steps"] == int(sys.argv[2]), report.counts
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""


def _peak_kib(path: Path, steps: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", _PEAK, str(path), str(steps)], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return int(res.stdout.strip())


def _big_tools(k: int) -> list[dict]:
    return [*TOOLS, *({"Name": f"pad_{i}", "function": "p" * 1000, "input": {}} for i in range(k))]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("shape", ["umi", "original"])
def test_score_memory_is_flat_in_the_file_size(tmp_path: Path, shape: str) -> None:
    """The same steps with 50 KB of tools each: 60 steps (3 MB) and 600 (30 MB). Holding the file
    (bytes, lines, parsed records) costs ~3x its size: 80+ MB more for the larger file."""
    tools = _big_tools(50)
    peaks = []
    for n in (60, 600):
        rows = [(f"t{i}#0", *MIXED_TRIO[i % len(MIXED_TRIO)]) for i in range(n)]
        path = tmp_path / f"p{n}.{'jsonl' if shape == 'umi' else 'json'}"
        if shape == "umi":
            write_umi(path, rows)
            lines = [json.loads(x) for x in path.read_text().splitlines()]
            path.write_text("".join(json.dumps({**x, "tools": tools} if "id" in x else x) + "\n" for x in lines))
        else:
            write_original(path, [(r, p) for _, r, p in rows])
            items = json.loads(path.read_text())
            for i, x in enumerate(items):
                x["tools"], x["instruction"] = tools, f"query {i}"
            path.write_text(json.dumps(items))
        assert path.stat().st_size > n * 50_000
        peaks.append(_peak_kib(path, n))
    small, large = peaks
    assert large < small + 20 * 1024, f"peak {small} KiB for 3 MB, {large} KiB for 30 MB: memory grows with the file"


# --- item 9: compare refuses other references or other steps --------------------------------------


def test_compare_refuses_the_same_predictions_against_edited_references(tmp_path: Path) -> None:
    rows = [(f"t{i}#0", r, p) for i, (r, p) in enumerate(MIXED_TRIO)]
    a = write_umi(tmp_path / "a.jsonl", rows)
    edited = [(sid, p.replace("asssitant: ", "assistant: ", 1) + "</s>" if i == 3 else r, p)
              for i, (sid, r, p) in enumerate(rows)]
    assert edited[3][1] != rows[3][1]
    b = write_umi(tmp_path / "b.jsonl", edited)
    with pytest.raises(StepMismatch, match=r"step 't3#0' has another reference in B \(.*b\.jsonl:5\)"):
        compare(a, b, resamples=10)
    code, out, err = run("compare", str(a), str(b))
    _one_line_error(code, out, err, "step 't3#0' has another reference")
    orig_a = write_original(tmp_path / "a.json", MIXED_TRIO)
    items = json.loads(orig_a.read_text())
    items[4]["reference"] = MIXED_TRIO[7][0]
    orig_b = tmp_path / "b.json"
    orig_b.write_text(json.dumps(items))
    with pytest.raises(StepMismatch, match="has another reference in B"):
        compare(orig_a, orig_b, resamples=10)


def test_compare_refuses_another_steps_digest(tmp_path: Path) -> None:
    rows = [(f"t{i}#0", r, p) for i, (r, p) in enumerate(MIXED_TRIO)]
    a, b = write_umi(tmp_path / "a.jsonl", rows), write_umi(tmp_path / "b.jsonl", rows)
    for path, digest in ((a, "sha256:" + "a" * 64), (b, "sha256:" + "b" * 64)):
        lines = path.read_text().splitlines()
        lines[0] = json.dumps({**json.loads(lines[0]), "steps_digest": digest})
        path.write_text("\n".join(lines) + "\n")
    with pytest.raises(StepMismatch, match="generated on other steps"):
        compare(a, b, resamples=10)
    b.write_text(a.read_text())
    assert compare(a, b, resamples=10)["steps"] == len(rows)  # the same digest: compared


def test_compare_still_pairs_a_trio_with_a_single_model_on_the_same_steps(tmp_path: Path) -> None:
    trio = write_umi(tmp_path / "t.jsonl", [(f"t{i}#0", r, p) for i, (r, p) in enumerate(MIXED_TRIO)])
    single = write_umi(tmp_path / "s.jsonl", [(f"t{i}#0", r, p) for i, (r, p) in enumerate(MIXED_SINGLE)],
                       mode="single")
    assert compare(trio, single, resamples=10)["steps"] == len(MIXED_TRIO)
