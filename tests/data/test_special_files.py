"""Issue 19, items 4-5: only regular files are read (a FIFO, device or socket is a located
``not_a_file`` reject, never opened, never a hang), and every read is bounded while reading
rather than by trusting ``st_size``."""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.data.conftest import good_chat
from umi_data.readers import ReadOptions, read_inputs
from umi_data.readers.bounded_io import ReadLimitExceeded, read_limited

REPO = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")


@pytest.fixture(autouse=True)
def _no_hang() -> object:
    """An in-process read that blocks on a FIFO fails the test after 30 s instead of freezing it."""
    import signal

    def hung(*_: object) -> None:
        raise TimeoutError("the read hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _umidata(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process: a hang fails the test (timeout) instead of freezing it."""
    return subprocess.run([sys.executable, "-m", "umi_data.cli.commands", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


def _hostile_dir(root: Path) -> Path:
    """A directory with one good file, a FIFO, a /dev/zero symlink, a socket, a FIFO named .zip."""
    d = root / "in"
    d.mkdir()
    (d / "good.jsonl").write_text(json.dumps(good_chat()) + "\n", encoding="utf-8")
    os.mkfifo(d / "pipe.jsonl")
    os.mkfifo(d / "pipe.zip")
    (d / "zero.json").symlink_to("/dev/zero")
    (d / "zero.jsonl.gz").symlink_to("/dev/zero")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d / "sock.json"))
    s.close()
    return d


@posix_only
def test_special_files_are_located_rejects(tmp_path: Path) -> None:
    d = _hostile_dir(tmp_path)
    recs = list(read_inputs([d], opts=ReadOptions(max_record_bytes=1 << 20)))
    bad = {Path(r.source.file).name: r.findings[0] for r in recs if not r.accepted}
    assert sum(r.accepted for r in recs) == 1
    assert set(bad) == {"pipe.jsonl", "pipe.zip", "zero.json", "zero.jsonl.gz", "sock.json"}
    assert {f.code for f in bad.values()} == {"not_a_file"}
    assert "FIFO" in bad["pipe.jsonl"].message and "character device" in bad["zero.json"].message
    assert "socket" in bad["sock.json"].message
    # given by name, not found in a directory
    (rec,) = read_inputs([d / "zero.json"])
    assert rec.findings[0].code == "not_a_file" and rec.source.file == str(d / "zero.json")


@posix_only
@pytest.mark.parametrize("command", ["validate", "split", "convert"])
def test_cli_never_hangs_on_special_files(tmp_path: Path, command: str) -> None:
    d = _hostile_dir(tmp_path)
    out = {"validate": [], "split": ["-o", tmp_path / "ds"], "convert": ["-o", tmp_path / "o.jsonl"]}[command]
    p = _umidata(command, d, d / "zero.json", *out)
    assert p.returncode == 1, p.stderr
    text = p.stdout + p.stderr
    assert "Traceback" not in text
    for name in ("pipe.jsonl", "pipe.zip", "zero.json", "sock.json"):
        assert name in text or command != "validate"
    if command == "split":
        rejects = [json.loads(x) for x in (tmp_path / "ds" / "rejects.jsonl").read_text().splitlines()]
        assert sorted(Path(r["source"]["file"]).name for r in rejects if r["reason"] == "not_a_file") == [
            "pipe.jsonl", "pipe.zip", "sock.json", "zero.json", "zero.json", "zero.jsonl.gz"]
    if command == "convert":
        rejects = (tmp_path / "o.rejects.jsonl").read_text()
        assert rejects.count('"not_a_file"') >= 6


@posix_only
def test_dataset_info_fifo_is_never_opened(tmp_path: Path) -> None:
    """A FIFO where a ShareGPT file's dataset_info.json sits, or given as --dataset-info."""
    d = tmp_path / "sg"
    d.mkdir()
    (d / "x.jsonl").write_text(json.dumps({"conversations": [{"from": "human", "value": "hi"},
                                                             {"from": "gpt", "value": "hello"}]}) + "\n")
    os.mkfifo(d / "dataset_info.json")
    p = _umidata("validate", d / "x.jsonl")
    assert p.returncode in (0, 1) and "Traceback" not in p.stderr
    p = _umidata("validate", d / "x.jsonl", "--dataset-info", d / "dataset_info.json")
    assert p.returncode == 2 and "not a regular file" in p.stderr


@posix_only
def test_a_fifo_where_the_sidecar_goes_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(good_chat()) + "\n", encoding="utf-8")
    lf = tmp_path / "lf"
    lf.mkdir()
    os.mkfifo(lf / "dataset_info.json")
    p = _umidata("convert", src, "-o", lf / "train.jsonl", "--to", "sharegpt")
    assert p.returncode == 2 and "not a regular file" in p.stderr and not (lf / "train.jsonl").exists()


def test_reads_are_bounded_while_reading_not_by_st_size(tmp_path: Path) -> None:
    """/proc files are regular with st_size 0: the old size check let any amount through."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc")
    link = tmp_path / "maps.json"
    link.symlink_to(maps)
    (rec,) = read_inputs([link], opts=ReadOptions(max_record_bytes=64))
    assert rec.findings[0].code == "too_large" and "--max-record-bytes" in rec.findings[0].message
    with pytest.raises(ReadLimitExceeded) as e:
        read_limited(io.BytesIO(b"x" * 10_000), 100)
    assert e.value.read == 101  # never more than the limit + 1 read
    assert read_limited(io.BytesIO(b"x" * 100), 100) == b"x" * 100


def test_compressed_and_zipped_reads_stay_bounded(tmp_path: Path) -> None:
    big = json.dumps(good_chat()).encode() + b" " * 5000
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(big))
    with zipfile.ZipFile(tmp_path / "b.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("m.json", big)
    opts = ReadOptions(max_record_bytes=4096)
    recs = list(read_inputs([tmp_path / "a.json.gz", tmp_path / "b.zip"], opts=opts))
    assert [r.findings[0].code for r in recs] == ["too_large", "too_large"]
