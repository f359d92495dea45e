"""Issue 22: inputs and outputs by URL through fsspec. ``file://`` inputs read like the paths they
name; a ``split`` OUTDIR on a filesystem without rename (here fsspec's ``memory://``) is staged
locally and published with ``manifest.json`` last; local paths are unchanged."""

from __future__ import annotations

from pathlib import Path

import fsspec
import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main

from .conftest import EXAMPLES


def run(*args: str | Path):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture
def mem() -> fsspec.AbstractFileSystem:
    fs = fsspec.filesystem("memory")
    yield fs
    if fs.exists("/umi-test"):
        fs.rm("/umi-test", recursive=True)


def _ids(root: Path, role: str = "planner") -> list[str]:
    return [i for f in sorted((root / role).glob("*.parquet")) for i in pq.read_table(f).column("id").to_pylist()]


def test_file_url_inputs_read_like_their_paths(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("split", EXAMPLES, "-o", a, "--workers", "1", "-q").exit_code == 1
    assert run("split", EXAMPLES.as_uri(), "-o", b, "--workers", "2", "--shard-size", "2", "-q").exit_code == 1
    ma, mb = (orjson.loads((d / "manifest.json").read_bytes()) for d in (a, b))
    ia, ib = ma["inputs"][0], mb["inputs"][0]
    assert ma["counts"] == mb["counts"] and (ia["files"], ia["bytes"]) == (ib["files"], ib["bytes"])
    assert mb["inputs"][0]["path"] == EXAMPLES.as_uri()
    assert _ids(a) == _ids(b)
    rej = [orjson.loads(x) for x in (b / "rejects.jsonl").read_bytes().splitlines()]
    assert rej and all(r["source"]["file"].startswith("file://") for r in rej)  # located by URL


def test_split_to_an_object_store_publishes_manifest_last(tmp_path: Path, mem: fsspec.AbstractFileSystem,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "local"
    assert run("split", EXAMPLES, "-o", local, "--workers", "1", "-q").exit_code == 1
    url = "memory://umi-test/split"
    res = run("split", EXAMPLES, "-o", url, "--workers", "1", "-q")
    assert res.exit_code == 1, res.output
    names = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert sorted(mem.find("/umi-test/split")) == [f"/umi-test/split/{n}" for n in names]
    for n in names:
        if n != "README.md":  # the card names OUTDIR as given
            assert mem.cat_file(f"/umi-test/split/{n}") == (local / n).read_bytes(), n
    assert url in mem.cat_file("/umi-test/split/README.md").decode()
    # no --overwrite: refused; with it: replaced, and what was there before is gone
    mem.pipe_file("/umi-test/split/stale.txt", b"old")
    res = run("split", EXAMPLES, "-o", url, "-q")
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    # an upload that fails half-way leaves no manifest: the copy is seen to be incomplete
    real, calls = mem.put_file, []

    def flaky(lpath, rpath, *a, **k):  # type: ignore[no-untyped-def]
        calls.append(rpath)
        if len(calls) == 3:
            raise OSError(5, "network down")
        return real(lpath, rpath, *a, **k)

    monkeypatch.setattr(type(mem), "put_file", lambda self, *a, **k: flaky(*a, **k))
    res = run("split", EXAMPLES, "-o", url, "--overwrite", "-q")
    assert res.exit_code == 2 and "network down" in res.stderr and "no manifest.json" in " ".join(res.stderr.split())
    assert not mem.exists("/umi-test/split/manifest.json") and not mem.exists("/umi-test/split/stale.txt")
    monkeypatch.undo()
    assert run("split", EXAMPLES, "-o", url, "--overwrite", "-q").exit_code == 1
    assert mem.cat_file("/umi-test/split/manifest.json") == (local / "manifest.json").read_bytes()


def test_an_outdir_url_inside_an_input_url_is_refused(mem: fsspec.AbstractFileSystem) -> None:
    mem.pipe_file("/umi-test/in/a.jsonl", (EXAMPLES / "openai-chats.jsonl").read_bytes())
    res = run("split", "memory://umi-test/in", "-o", "memory://umi-test/in/out", "-q")
    assert res.exit_code == 2 and "inside the input" in res.stderr
    assert not mem.exists("/umi-test/in/out")


def test_convert_and_validate_read_from_a_url(tmp_path: Path, mem: fsspec.AbstractFileSystem) -> None:
    mem.pipe_file("/umi-test/in/c.jsonl", (EXAMPLES / "openai-chats.jsonl").read_bytes())
    out_url, out_path = tmp_path / "u.jsonl", tmp_path / "p.jsonl"
    assert run("convert", "memory://umi-test/in", "-o", out_url).exit_code == 1
    assert run("convert", EXAMPLES / "openai-chats.jsonl", "-o", out_path).exit_code == 1
    via_url, via_path = ([orjson.loads(x) for x in f.read_bytes().splitlines()] for f in (out_url, out_path))
    assert via_url and [t["source"]["file"] for t in via_url] == ["memory:///umi-test/in/c.jsonl"] * len(via_url)
    for t in via_url + via_path:
        del t["source"]["file"]
    assert via_url == via_path
    res = run("validate", "memory://umi-test/nothing-here")
    assert res.exit_code == 2 and "no such input" in res.stderr


def test_convert_to_an_object_store_uploads_the_output_last(tmp_path: Path, mem: fsspec.AbstractFileSystem) -> None:
    local = tmp_path / "c.jsonl"
    assert run("convert", EXAMPLES, "-o", local).exit_code == 1
    res = run("convert", EXAMPLES, "-o", "memory://umi-test/out/c.jsonl")
    assert res.exit_code == 1 and "memory://umi-test/out/c.rejects.jsonl" in res.stderr
    assert mem.cat_file("/umi-test/out/c.jsonl") == local.read_bytes()
    assert mem.cat_file("/umi-test/out/c.rejects.jsonl") == (tmp_path / "c.rejects.jsonl").read_bytes()
    res = run("convert", EXAMPLES, "-o", "memory://umi-test/out/c.jsonl")
    assert res.exit_code == 2 and "--overwrite" in res.stderr


def test_a_file_url_input_is_guarded_like_its_path(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes((EXAMPLES / "openai-chats.jsonl").read_bytes())
    res = run("convert", src.as_uri(), "-o", src, "--overwrite")
    assert res.exit_code == 2 and src.read_bytes() == (EXAMPLES / "openai-chats.jsonl").read_bytes()


def test_a_scheme_without_its_package_is_one_line_exit_2(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed")
    for cmd in (["validate", "s3://bucket/x"], ["split", "s3://bucket/x", "-o", tmp_path / "s"]):
        res = run(*cmd)
        assert res.exit_code == 2 and "s3fs" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
