"""Issue 11's fuzz test: thousands of mutated inputs (truncations, byte flips, insertions, type
swaps, deleted and repeated keys, deep nesting, other encodings, compression) built from the
bundled examples and the shared samples, mixed with good records, through validate, convert and
split in-process. For every run: no exception, records read = accepted + rejected (the same
count for all three commands), no ``internal_error`` (a reader bug), and every good record of
the mix still accepted. Seeded, so a failure reproduces; ~3,000 inputs in well under a minute."""

from __future__ import annotations

import codecs
import gzip
import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.data.conftest import EXAMPLES, SHARED
from umi_data.export.convert import convert, validate
from umi_data.split.pipeline import SplitOptions, split

RUNS = 12
PER_RUN = 250


def _samples() -> list[tuple[str, bytes]]:
    """(suffix, bytes) of good single records: ToolBench answer files, OpenAI chat lines, α-UMi
    stage-2 items (each its own one-element list)."""
    out = [(".json", p.read_bytes()) for p in sorted((EXAMPLES / "toolbench-mini").rglob("*.json"))]
    out += [(".jsonl", line + b"\n") for line in (EXAMPLES / "openai-chats.jsonl").read_bytes().splitlines()]
    shared_tb = sorted((SHARED / "toolbench-example" / "answer").rglob("*.json"))[:4]
    out += [(".json", p.read_bytes()) for p in shared_tb]
    stage2 = SHARED / "alpha-umi-example" / "raw_data_stage_2.json"
    if stage2.exists():
        out += [(".json", orjson.dumps([item])) for item in orjson.loads(stage2.read_bytes())[:5]]
    return out


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            found += _paths(v, (*prefix, i))
    return found


def _set(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return obj


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")  # Python's json: integers of any size


_SWAPS: list[Any] = [None, True, False, 0, -1, 2**70, 1.5, "", "hello", [], [1, "x"], {}, {"a": None}]


def _structural(rng: random.Random, data: bytes) -> bytes:
    """A JSON-level mutation: swap a value's type, delete a key, repeat a key, nest deeply."""
    line = data.endswith(b"\n")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:  # a sample that is broken already: cut it instead
        return data[: rng.randrange(len(data))]
    path = rng.choice(_paths(obj))
    kind = rng.randrange(4)
    if kind == 0:
        obj = _set(obj, path, rng.choice(_SWAPS))
    elif kind == 1 and path:
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        del parent[path[-1]]
    elif kind == 2:
        depth = rng.choice([50, 300, 900, 1100, 3000])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a": ', b"}")])
        text = _dumps(_set(obj, path, "@@DEEP@@"))
        return text.replace(b'"@@DEEP@@"', opener * depth + b"1" + closer * depth, 1) + (b"\n" if line else b"")
    else:
        text = _dumps(obj)
        return text[:-1] + b', "answer_generation": {"train_messages": 3}, "id": 7}' + (b"\n" if line else b"")
    return _dumps(obj) + (b"\n" if line else b"")


def _mutate(rng: random.Random, suffix: str, data: bytes) -> tuple[str, bytes]:
    kind = rng.randrange(9)
    if kind == 0:  # truncation
        return suffix, data[: rng.randrange(len(data))]
    if kind == 1:  # byte flips
        b = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return suffix, bytes(b)
    if kind == 2:  # insertions of arbitrary bytes
        at = rng.randrange(len(data))
        return suffix, data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[at:]
    if kind in (3, 4, 5):
        return suffix, _structural(rng, data)
    if kind == 6:  # encodings
        text = data.decode("utf-8")
        enc = rng.choice(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig", "latin-1", "cp1252"])
        try:
            return suffix, (codecs.BOM_UTF16_LE if enc == "utf-16-le" and rng.random() < 0.5 else b"") + text.encode(
                enc, errors="replace")
        except UnicodeError:
            return suffix, text.encode("utf-8")
    if kind == 7:  # compressed, sometimes cut short
        z = gzip.compress(data)
        return suffix + ".gz", z if rng.random() < 0.6 else z[: rng.randrange(len(z))]
    return suffix, rng.choice([b"", b"   \n", b"\n\n", b"null", b"[]", b"{}", b"\xff\xfe", b"[1, 2"])


def _good_run(good: Path, tmp: Path) -> set[str]:
    rejects: list[Any] = []
    summary, _ = validate([good], on_checked=lambda c: rejects.append(c) if c.rejected else None)
    assert summary.accepted > 10 and not rejects
    ids: set[str] = set()
    convert([good], tmp / "good.jsonl")
    for line in (tmp / "good.jsonl").read_bytes().splitlines():
        ids.add(orjson.loads(line)["id"])
    return ids


@pytest.mark.slow
def test_fuzz_validate_convert_split(tmp_path: Path) -> None:
    samples = _samples()
    good = tmp_path / "a_good"  # sorted first: a mutant that equals a good record is the later duplicate
    good.mkdir()
    for i, (suffix, data) in enumerate(samples):
        (good / f"G{i}_answer").mkdir()
        (good / f"G{i}_answer" / f"{i}_good{suffix}").write_bytes(data)
    for p in sorted(good.rglob("*.*")):  # keep the samples that are good on their own
        if validate([p])[0].rejected:
            p.unlink()
    good_ids = _good_run(good, tmp_path)
    rng = random.Random(20261125)
    total = 0
    for run in range(RUNS):
        mix = tmp_path / f"b_mutants{run}"
        mix.mkdir()
        for k in range(PER_RUN):
            suffix, data = rng.choice(samples)
            suffix, data = _mutate(rng, suffix, data)
            group = mix / f"G{k % 7}_answer"
            group.mkdir(exist_ok=True)
            (group / f"{k}_m{suffix}").write_bytes(data)
            total += 1
        inputs = [good, mix]
        checked: list[Any] = []
        v, _ = validate(inputs, on_checked=checked.append, keep_findings=False)
        assert v.records == v.accepted + v.rejected
        assert not [c.reason.line() for c in checked if c.reason is not None and c.reason.code == "internal_error"]
        c = convert(inputs, tmp_path / f"c{run}.jsonl")
        assert (c.records, c.accepted, c.rejected) == (v.records, v.accepted, v.rejected)
        rows = (tmp_path / f"c{run}.jsonl").read_bytes().splitlines()
        assert len(rows) == c.accepted
        assert len((tmp_path / f"c{run}.rejects.jsonl").read_bytes().splitlines()) == c.rejected
        assert good_ids <= {orjson.loads(r)["id"] for r in rows}
        s = split([str(p) for p in inputs], str(tmp_path / f"s{run}"), SplitOptions(workers=1, dev_ratio=0.1))
        assert s.records == v.records and s.records == s.accepted + s.rejected
        manifest = json.loads((tmp_path / f"s{run}" / "manifest.json").read_text())
        assert manifest["counts"]["records"] == s.records
        assert "internal_error" not in s.rejected_by_reason
        assert s.accepted >= len(good_ids)
    assert total >= 3000
