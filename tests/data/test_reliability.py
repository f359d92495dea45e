"""Issue 11: umidata never destroys, skips or crashes on its input — one test per class of
failure found by probing it as a hostile user would (data loss, silent skips, tracebacks,
resource bounds, encodings, messages). Kills, locks and the fuzz test are in test_faults.py /
test_fuzz.py."""

from __future__ import annotations

import codecs
import errno
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from tests.data.conftest import EXAMPLES, good_chat
from umi_data.cli.commands import main
from umi_data.readers import ReadOptions, expand, read_inputs

REPO = Path(__file__).resolve().parents[2]
MINI = EXAMPLES / "toolbench-mini" / "answer"
GOOD = MINI / "G1_answer" / "101_ChatGPT_DFS_woFilter_w2.json"


def run(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def _tree(root: Path) -> Path:
    """A copy of the bundled ToolBench tree (9 files: 8 usable, 1 without a trajectory)."""
    shutil.copytree(MINI, root)
    return root


def _chat(cid: str, **extra: object) -> dict:
    """A valid OpenAI-style chat whose content differs by id (equal content is a duplicate)."""
    c = good_chat(id=cid, **extra)
    c["messages"][0]["content"] = f"find {cid}"
    return c


# --- data loss -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["same", "parent", "inside", "symlink"])
def test_split_refuses_an_outdir_that_is_holds_or_lies_in_an_input(where: str, tmp_path: Path) -> None:
    data = _tree(tmp_path / "corpus" / "answer")
    out = {"same": data, "parent": data.parent, "inside": data / "out", "symlink": tmp_path / "link"}[where]
    if where == "symlink":
        out.symlink_to(data, target_is_directory=True)
    before = sorted(p.relative_to(tmp_path) for p in data.rglob("*"))
    res = run("split", data, "-o", out, "--overwrite", "--workers", "1")
    assert res.exit_code == 2, res.output
    assert "input" in res.stderr and "Traceback" not in res.output
    assert sorted(p.relative_to(tmp_path) for p in data.rglob("*")) == before  # nothing touched


def test_split_refuses_an_outdir_holding_a_file_read_through_a_symlink(tmp_path: Path) -> None:
    store = _tree(tmp_path / "store" / "answer")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "G1_answer").symlink_to(store / "G1_answer", target_is_directory=True)
    res = run("split", corpus, "-o", tmp_path / "store", "--overwrite", "--workers", "1")
    assert res.exit_code == 2 and "symlink" in res.stderr
    assert len(list(store.rglob("*.json"))) == 9


def test_convert_never_writes_over_an_input_and_needs_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "chats.jsonl"
    src.write_bytes((EXAMPLES / "openai-chats.jsonl").read_bytes())
    original = src.read_bytes()
    for extra in ([], ["--overwrite"]):
        res = run("convert", src, "-o", src, *extra)
        assert res.exit_code == 2 and "destroy the input" in res.stderr
    # the rejects file beside the output must not be an input either
    rej_in = tmp_path / "c.rejects.jsonl"
    rej_in.write_bytes(original)
    assert run("convert", rej_in, "-o", tmp_path / "c.jsonl").exit_code == 2
    assert src.read_bytes() == original and rej_in.read_bytes() == original
    out = tmp_path / "o.jsonl"
    out.write_text("mine\n")
    res = run("convert", src, "-o", out)
    assert res.exit_code == 2 and "--overwrite" in res.stderr and out.read_text() == "mine\n"
    assert run("convert", src, "-o", out, "--overwrite").exit_code == 1
    # inside an input directory: the next run would read it back
    tree = _tree(tmp_path / "answer")
    assert run("convert", tree, "-o", tree / "t.jsonl").exit_code == 2


def test_convert_output_suffix_is_what_it_writes(tmp_path: Path) -> None:
    src = EXAMPLES / "openai-chats.jsonl"
    arr = tmp_path / "x.json"
    assert run("convert", src, "-o", arr).exit_code == 1
    items = json.loads(arr.read_text())  # a JSON array, not JSONL
    assert isinstance(items, list) and len(items) == 4
    back = run("convert", arr, "-o", tmp_path / "y.jsonl")  # and umidata reads it back
    assert back.exit_code == 0 and "records read: 4 = accepted 4 + rejected 0" in back.output
    for bad in (["-o", tmp_path / "x.txt"], ["-o", tmp_path / "a.jsonl", "--to", "alpha-umi"]):
        res = run("convert", src, *bad)
        assert res.exit_code == 2 and not Path(bad[1]).exists()


# --- silent skips --------------------------------------------------------------------------


def _units_where(paths: list[Path]) -> dict[str, list[str]]:
    """input path → the reasons / 'ok' of every record it produced."""
    got: dict[str, list[str]] = {}
    for rec in read_inputs(paths):
        key = rec.source.file + (f"!{rec.source.member}" if rec.source.member else "")
        got.setdefault(key, []).append("ok" if rec.accepted else rec.findings[0].code)
    return got


def test_unlistable_subdirectory_is_a_located_io_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "answer")
    locked = root / "G2_answer"
    real_scandir = os.scandir

    def scandir(path=".") -> object:  # as root, chmod 000 does not stop reading: simulate EACCES
        if os.fspath(path) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", str(locked))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    recs = list(read_inputs([root]))
    bad = [r for r in recs if not r.accepted and r.findings[0].code == "io_error"]
    assert len(bad) == 1 and bad[0].source.file == str(locked)
    assert "Permission denied" in bad[0].findings[0].message
    assert len(recs) == 8  # 7 files of G1 + the unreadable directory


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 directories anyway (the test above simulates it)")
def test_mode_000_subdirectory_is_reported(tmp_path: Path) -> None:
    root = _tree(tmp_path / "answer")
    (root / "G2_answer").chmod(0)
    try:
        res = run("validate", root)
        assert res.exit_code == 1 and "G2_answer: error [io_error]" in res.output
    finally:
        (root / "G2_answer").chmod(0o755)


def test_symlinked_directories_are_followed_once_and_loops_end(tmp_path: Path) -> None:
    store = _tree(tmp_path / "store")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "G1_answer").symlink_to(store / "G1_answer", target_is_directory=True)
    (corpus / "G1_answer_again").symlink_to(store / "G1_answer", target_is_directory=True)
    (store / "G1_answer" / "loop").symlink_to(corpus, target_is_directory=True)
    units = expand([corpus])
    assert len(units) == 7  # each real file once, although reachable three ways and through a loop
    res = run("validate", corpus)
    assert "records read: 7 = accepted 6 + rejected 1" in res.output  # 107_… has no trajectory


def test_every_input_shape_is_read_or_reported(tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    chat = orjson.dumps(_chat("c1"))
    (d / "UPPER.JSON").write_bytes(orjson.dumps(_chat("c2")))
    (d / "lines.ndjson").write_bytes(chat + b"\n")
    (d / "a.json.gz").write_bytes(gzip.compress(orjson.dumps(_chat("c3"))))
    (d / "b.jsonl.GZ").write_bytes(gzip.compress(orjson.dumps(_chat("c4")) + b"\n"))
    import pyarrow as pa

    (d / "c.jsonl.zst").write_bytes(pa.compress(orjson.dumps(_chat("c5")) + b"\n", "zstd", asbytes=True))
    with zipfile.ZipFile(d / "data.zip", "w", zipfile.ZIP_DEFLATED) as zf:  # a zip inside a directory
        zf.writestr("flat.json", orjson.dumps(_chat("c6")))  # a flat zip, no *_answer/
        zf.writestr("sub/more.jsonl", orjson.dumps(_chat("c7")) + b"\n")
        zf.writestr("__MACOSX/._flat.json", b"\x00\x05\x16\x07")
    (d / "notes.txt").write_text("not data")
    empty = tmp_path / "empty"
    empty.mkdir()
    only_txt = tmp_path / "texts"
    only_txt.mkdir()
    (only_txt / "readme.md").write_text("hi")
    empty_zip = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("readme.md", "hi")
    got = _units_where([d, empty, only_txt, empty_zip])
    assert sorted(r for rs in got.values() for r in rs if r == "ok") == ["ok"] * 7
    assert got[str(empty)] == ["no_input"] and got[str(only_txt)] == ["no_input"]
    assert got[str(empty_zip)] == ["no_input"]
    res = run("validate", d)
    assert res.exit_code == 0 and "records read: 7 = accepted 7" in res.output


def test_toolbench_data_zip_reads_only_answer_folders(tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/answer/G1_answer/101_x.json", GOOD.read_bytes())
        zf.writestr("data/toolenv/tools/Data/some_tool.json", b'{"tool_name": "x"}')
    assert [u.member for u in expand([archive])] == ["data/answer/G1_answer/101_x.json"]


def test_nothing_read_is_exit_2_unless_allowed(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for cmd in (["validate", empty], ["convert", empty, "-o", tmp_path / "x.jsonl"],
                ["split", empty, "-o", tmp_path / "s", "--workers", "1"]):
        res = run(*cmd)
        assert res.exit_code == 2, (cmd, res.output)
        assert "no record could be read" in res.stderr and str(empty) in res.output
        assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # nothing written
    for cmd in (["validate", empty], ["convert", empty, "-o", tmp_path / "x.jsonl"],
                ["split", empty, "-o", tmp_path / "s", "--workers", "1"]):
        assert run(*cmd, "--allow-empty").exit_code == 1  # the no_input reject is still a reject
    assert (tmp_path / "s" / "manifest.json").exists() and (tmp_path / "x.jsonl").read_text() == ""


# --- tracebacks become located rejects; the run goes on --------------------------------------


def _deep(levels: int) -> bytes:
    return b'{"messages": ' + b"[" * levels + b"]" * levels + b"}"


def test_bad_files_among_good_ones_are_located_rejects(tmp_path: Path) -> None:
    root = _tree(tmp_path / "answer")
    g1 = root / "G1_answer"
    (g1 / "900_too_deep.json").write_bytes(b"[" * 5000 + b"]" * 5000)  # past orjson's and Python's limits
    doc = json.loads(GOOD.read_text())
    doc["answer_generation"]["function"][0]["parameters"] = "@DEEP@"
    deep = '{"type": "object", "properties": {"x": ' * 400 + "{}" + "}}" * 400  # orjson parses 1024, writes 255
    (g1 / "901_deep_tool.json").write_text(json.dumps(doc).replace('"@DEEP@"', deep))
    for k, value in enumerate([7, True, "hello", {"a": 1}]):
        bad = json.loads(GOOD.read_text())
        bad["answer_generation"]["train_messages"] = value
        (g1 / f"91{k}_train_messages.json").write_text(json.dumps(bad))
    zbytes = (tmp_path / "z.zip")
    with zipfile.ZipFile(zbytes, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("G1_answer/1_a.json", GOOD.read_bytes())
    raw = bytearray(zbytes.read_bytes())
    raw[60] ^= 0xFF  # a bit flip inside the deflate stream
    (root / "flipped.zip").write_bytes(bytes(raw))
    (root / "truncated.zip").write_bytes(zbytes.read_bytes()[:-30])
    res = run("convert", root, "-o", tmp_path / "t.jsonl")
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    rejects = {Path(json.loads(line)["source"]["file"]).name: json.loads(line)
               for line in (tmp_path / "t.rejects.jsonl").read_text().splitlines()}
    assert rejects["900_too_deep.json"]["reason"] == "too_deep"
    assert rejects["901_deep_tool.json"]["reason"] == "too_deep"
    for k in range(4):
        r = rejects[f"91{k}_train_messages.json"]
        assert r["reason"] == "schema" and r["pointer"] == "/answer_generation/train_messages", r
    assert rejects["flipped.zip"]["reason"] == "io_error" and "corrupt" in rejects["flipped.zip"]["message"]
    assert rejects["truncated.zip"]["reason"] == "io_error"
    assert "truncated" in rejects["truncated.zip"]["message"] and "UTF-8" not in rejects["truncated.zip"]["message"]
    assert "accepted 8 +" in res.output  # every good file of the tree still made it


def test_a_reader_bug_on_one_record_is_a_located_reject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from umi_data.readers import openai

    real = openai.read

    def flaky(obj, source, traj_id):  # type: ignore[no-untyped-def]
        if obj.get("id") == "boom":
            raise TypeError("unexpected")
        return real(obj, source, traj_id)

    monkeypatch.setattr(openai, "read", flaky)
    src = tmp_path / "c.jsonl"
    src.write_bytes(orjson.dumps(_chat("boom")) + b"\n" + orjson.dumps(_chat("ok")) + b"\n")
    recs = list(read_inputs([src]))
    assert [r.accepted for r in recs] == [False, True]
    assert recs[0].findings[0].code == "internal_error" and recs[0].source.line == 1


# --- resource bounds -----------------------------------------------------------------------


def _zip_with_raw_member(path: Path, name: str, raw: bytes, declared: int, extra_good: bytes) -> None:
    """A zip whose member ``name`` holds the raw deflate stream ``raw`` and *declares*
    ``declared`` bytes (the CRC is never reached: the reader must stop long before the end)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("G1_answer/0_ok.json", extra_good)
    good = path.read_bytes()
    eocd = good.rindex(b"PK\x05\x06")
    cd_off = struct.unpack("<I", good[eocd + 16 : eocd + 20])[0]
    local_good, cd_good = good[:cd_off], good[cd_off:eocd]
    fname = name.encode()
    off = len(local_good)
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, 0, len(raw), declared, len(fname), 0)
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, 0, len(raw), declared,
                          len(fname), 0, 0, 0, 0, 0, off)
    body = local_good + local + fname + raw
    cd = cd_good + central + fname
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, len(cd), len(body), 0)
    path.write_bytes(body + cd + end)


def _zeros_deflate(total: int) -> bytes:
    """A raw deflate stream of ``total`` zero bytes, built from one 16 MiB block repeated."""
    block = 16 << 20
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    return chunk * (total // block) + b"\x03\x00"  # then an empty final block


@pytest.mark.parametrize("declared", ["honest", "lying"])
def test_a_2gib_zip_bomb_costs_little_memory(declared: str, tmp_path: Path) -> None:
    raw = _zeros_deflate(2 << 30)
    assert len(raw) < 4 << 20
    bomb = tmp_path / "bomb.zip"
    _zip_with_raw_member(bomb, "G1_answer/1_bomb.json", raw, (2 << 30) if declared == "honest" else 1000,
                         GOOD.read_bytes())
    # The child reports its own peak RSS at exit, as VmHWM: the high-water mark of its own address
    # space. ru_maxrss would not do: RUSAGE_CHILDREN counts any earlier child of the test worker
    # reaped meanwhile, and Linux carries the forking worker's peak (a trained model: 750 MB) across
    # exec into the child's RUSAGE_SELF.
    probe = ("import atexit, re, runpy, sys; atexit.register(lambda: sys.stderr.write('PEAK_KIB ' + "
             "re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1) + '\\n')); "
             f"sys.argv = ['umidata', 'validate', {str(bomb)!r}]; "
             "runpy.run_module('umi_data.cli.commands', run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    out = p.stdout.decode() + p.stderr.decode()
    peak_mib = int(out.rsplit("PEAK_KIB ", 1)[1].split()[0]) / 1024
    assert p.returncode == 1, out
    assert "bomb.zip!G1_answer/1_bomb.json" in out and "Traceback" not in out and "accepted 1 +" in out
    if declared == "honest":  # refused from the header, before inflating anything
        assert "[too_large]" in out and "--max-record-bytes" in out
    else:  # the header lies: inflating stops at the declared size (or at the limits)
        assert "[io_error]" in out or "[too_large]" in out
    assert peak_mib < 700, f"peak {peak_mib:.0f} MiB"  # was 6.2 GB


def test_size_limits_are_located_and_configurable(tmp_path: Path) -> None:
    src = tmp_path / "c.jsonl"
    big = orjson.dumps(_chat("big", pad="x" * 5000))
    src.write_bytes(orjson.dumps(_chat("small")) + b"\n" + big + b"\n")
    res = run("validate", src, "--max-record-bytes", "4K")
    assert res.exit_code == 1 and "c.jsonl:2: error [too_large]" in res.output and "accepted 1" in res.output
    assert run("validate", src, "--max-record-bytes", "1M").exit_code == 0
    gz = tmp_path / "g.json.gz"
    gz.write_bytes(gzip.compress(orjson.dumps(_chat("z", pad=" " * (20 << 20)))))
    recs = list(read_inputs([gz], opts=ReadOptions(max_ratio=100)))
    assert recs[0].findings[0].code == "too_large" and "--max-ratio" in recs[0].findings[0].message
    assert next(iter(read_inputs([gz], opts=ReadOptions(max_ratio=1e6)))).accepted


# --- encodings, duplicates, messages -------------------------------------------------------


def test_utf16_json_and_jsonl(tmp_path: Path) -> None:
    chats = [_chat(f"c{i}") for i in range(6)]
    text = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chats)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(text.encode("utf-16"))  # with a byte-order mark
    recs = list(read_inputs([bom]))
    assert len(recs) == 6 and all(r.accepted for r in recs)  # no bogus split on 0x0A bytes
    j = tmp_path / "bom.json"
    j.write_bytes(codecs.BOM_UTF16_BE + json.dumps(chats[0]).encode("utf-16-be"))
    assert next(iter(read_inputs([j]))).accepted
    for name, data in (("le.json", json.dumps(chats[0]).encode("utf-16-le")),
                       ("be.jsonl", text.encode("utf-16-be"))):
        (tmp_path / name).write_bytes(data)
        (rec,) = read_inputs([tmp_path / name])
        msg = rec.findings[0].message
        assert rec.findings[0].code == "encoding" and "looks like UTF-16" in msg and "iconv" in msg


def test_duplicate_keys_are_warned_with_their_pointer(tmp_path: Path) -> None:
    text = GOOD.read_text()
    dup = text.rstrip()[:-1] + ', "answer_generation": {"train_messages": []}}'
    (tmp_path / "G1_answer").mkdir()
    src = tmp_path / "G1_answer" / "1_dup.json"
    src.write_text(dup)
    res = run("validate", src)
    assert "1_dup.json: warning [duplicate_key]" in res.output and "'answer_generation'" in res.output
    assert "[no_trajectory]" in res.output  # the last value is what was read, and the warning says so
    chat = tmp_path / "c.jsonl"
    chat.write_text('{"id": "a", "id": "b", "messages": []}\n')
    assert "c.jsonl:1: warning [duplicate_key] the key 'id'" in run("validate", chat).output


def test_disk_full_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("umi_data.output.writers.os.fsync", full)
    out = tmp_path / "o.jsonl"
    res = run("convert", EXAMPLES / "openai-chats.jsonl", "-o", out)
    assert res.exit_code == 2 and "No space left on device" in res.stderr and str(out) in res.stderr
    assert list(tmp_path.iterdir()) == []

    from umi_data.split import shards

    def close(self):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shards.ShardWriter, "close", close)
    res = run("split", MINI, "-o", tmp_path / "s", "--workers", "1")
    err = "".join(res.stderr.split())  # rich wraps long lines
    assert res.exit_code == 2 and "Nospaceleftondevice" in err and "".join(str(tmp_path / "s").split()) in err
    assert list(tmp_path.iterdir()) == []


def test_internal_error_exits_3_and_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMI_CRASH_DIR", str(tmp_path / "crash"))
    monkeypatch.delenv("UMI_DEBUG", raising=False)

    def bug(*_a, **_k):  # type: ignore[no-untyped-def]
        raise ValueError("a bug")

    monkeypatch.setattr("umi_data.split.pipeline.dataset_card", bug)
    res = run("split", MINI, "-o", tmp_path / "s", "--workers", "1")
    assert res.exit_code == 3 and len(res.stderr.strip().splitlines()) == 1
    assert "internal error (ValueError: a bug)" in res.stderr and "Traceback" not in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["crash"]
    monkeypatch.setattr("umi_data.export.outputs.alpha_umi_item", bug)
    res = run("convert", MINI, "-o", tmp_path / "a.json", "--to", "alpha-umi")
    assert res.exit_code == 3 and [p.name for p in tmp_path.iterdir()] == ["crash"]
    assert len(list((tmp_path / "crash").iterdir())) == 2


def test_compressed_members_of_a_zip_are_read_like_compressed_files(tmp_path: Path) -> None:
    """A `.jsonl.gz` inside a zip is decompressed (it was parsed as raw gzip bytes: `encoding`
    reject), under the same limits; a corrupt one is a located `io_error`."""
    lines = b"".join(orjson.dumps(_chat(f"z{i}")) + b"\n" for i in range(2))
    archive = tmp_path / "z.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("chats.jsonl.gz", gzip.compress(lines))
        zf.writestr("bomb.json.gz", gzip.compress(b" " * (20 << 20)))
        zf.writestr("bad.jsonl.gz", b"not gzip at all")
    recs = list(read_inputs([archive], opts=ReadOptions(max_ratio=100)))
    by_member = {}
    for r in recs:
        by_member.setdefault(r.source.member, []).append(r)
    assert [r.accepted for r in by_member["chats.jsonl.gz"]] == [True, True]
    assert by_member["chats.jsonl.gz"][1].source.line == 2
    (bomb,) = by_member["bomb.json.gz"]
    assert bomb.findings[0].code == "too_large" and "--max-ratio" in bomb.findings[0].message
    (bad,) = by_member["bad.jsonl.gz"]
    assert bad.findings[0].code == "io_error" and "corrupt or truncated archive member" in bad.findings[0].message
