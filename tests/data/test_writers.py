"""The one JSON-list writer and the one atomic-file writer (umi_data/output/writers.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from umi_data.output import writers
from umi_data.output.writers import write_atomic, write_json_list
from umi_train.runstate import write_json_atomic

ITEMS: list[Any] = [{"b": 1, "a": [1, 2, {"x": "é"}]}, [], "s", None, {"nested": {"deep": [{"k": 0.5}]}}]


@pytest.mark.parametrize("items", [ITEMS, ITEMS[:1], []])
def test_indented_json_list_is_json_dump_byte_for_byte(tmp_path: Path, items: list[Any]) -> None:
    """``indent=2`` is the α-UMi stage-2 layout: what ``json.dump(items, f, indent=2)`` writes."""
    path = tmp_path / "l.json"
    assert write_json_list(path, iter(items), indent=2) == len(items)
    assert path.read_text(encoding="utf-8") == json.dumps(items, indent=2)


@pytest.mark.parametrize("items", [ITEMS, ITEMS[:1], []])
def test_compact_json_list_is_one_item_a_line(tmp_path: Path, items: list[Any]) -> None:
    """Compact: one orjson item a line (values or already serialised bytes alike), final newline."""
    for given in (items, [orjson.dumps(i) for i in items]):
        path = tmp_path / "l.json"
        assert write_json_list(path, given) == len(items)
        lines = [orjson.dumps(i) for i in items]
        assert path.read_bytes() == (b"[\n" + b",\n".join(lines) + b"\n]\n" if items else b"[]\n")
        assert json.loads(path.read_bytes()) == items


def test_atomic_writes_fsync_the_file_then_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's bytes before the rename, the directory (the rename itself) after it."""
    synced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        synced.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(writers.os, "fsync", fsync)
    monkeypatch.setattr(writers.os, "replace", replace)
    write_atomic(tmp_path / "sub" / "f.txt", "é\n")
    assert synced == ["file", "rename", "dir"]
    assert (tmp_path / "sub" / "f.txt").read_bytes() == "é\n".encode()
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["f.txt"]  # no temporary file left


def test_a_directory_that_cannot_be_fsynced_is_left_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(22, "Invalid argument")  # EINVAL: some filesystems cannot fsync a directory
        real_fsync(fd)

    monkeypatch.setattr(writers.os, "fsync", fsync)
    write_atomic(tmp_path / "f.bin", b"x")
    assert (tmp_path / "f.bin").read_bytes() == b"x"


def test_run_files_are_written_through_the_one_atomic_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """umi_train's JSON keeps its layout (indent 2, no final newline) and gets the same guarantees."""
    seen: list[Path] = []
    real = writers.atomic_path

    def spy(path: Any) -> Any:
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(writers, "atomic_path", spy)
    write_json_atomic(tmp_path / "run.json", {"b": [1], "a": "é"})
    assert seen == [tmp_path / "run.json"]
    assert (tmp_path / "run.json").read_text() == json.dumps({"b": [1], "a": "é"}, indent=2)


def test_appender_writes_whole_lines_and_starts_over_when_asked(tmp_path: Path) -> None:
    """umieval's growing files (run, predictions, judge cache) share one appender."""
    path = tmp_path / "sub" / "p.jsonl"
    app = writers.JsonlAppender(path)
    app.write({"a": 1})
    app.write_rows([b'{"b":2}', {"c": 3}])
    app.write_rows([])
    app.close()
    app.write({"dropped": True})  # after close (Ctrl-C): nothing more is written
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n{"c":3}\n'
    again = writers.JsonlAppender(path)
    again.write({"d": 4})
    again.close()
    assert path.read_bytes().endswith(b'{"d":4}\n')
    fresh = writers.JsonlAppender(path, truncate=True)
    fresh.write({"e": 5})
    fresh.close()
    assert path.read_bytes() == b'{"e":5}\n'
