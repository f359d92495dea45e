"""Build a ToolBench-like answer tree of N files out of the 15 real example answer files.

    python benchmarks/corpus.py --files 3000 -o benchmarks/corpus/3000

The corpus is the one the reference figures (``../shared/docs/reference-figures.md``) were measured
on: the 15 files of ``../shared/data/toolbench-example/answer`` copied under new names, so every
byte is real ToolBench text (13 of every 15 files carry a trajectory). File ``i`` (0-based) is a
copy of source ``order[i % 15]``, where ``order`` is the sorted list of the 15 sources shuffled
with ``seed``; it keeps its source's group (``G1_answer`` …) and is named
``<k>_ChatGPT_DFS_woFilter_w2.json`` with ``k = i + 1``, unique across the whole corpus. Every
block of 15 consecutive files therefore holds each source exactly once, so a corpus of a multiple
of 15 files has exactly the reference's mix.

By default every copy is made *distinct*: the one change is that the task's query (the
trajectory's instruction) gets the suffix `` #<k>`` wherever its JSON-encoded text occurs in the
file (``answer_generation.query``, the user message of every chain, the search tree; 1–6 places).
``umidata split`` drops trajectories that repeat the instruction, tools and turns of an earlier one,
so byte-identical copies would leave 13 trajectories out of any corpus size, while the reference
kept 2,600 of 3,000 files (it does not deduplicate). Every other byte is the source's, so sizes,
text and structure are the real ones. ``identical=True`` (``--identical``) writes exact copies.

Files are plain byte copies, not hard links: each copy is its own inode with its own pages in the
page cache, so reading the corpus costs what reading that many distinct real files costs (a
hard-linked corpus would be 15 files' worth of cached pages and flatter every I/O figure).

A finished corpus holds a marker ``.corpus-marker`` (file count, seed, digest of the sources; JSON,
but not named like an input, so ``umidata`` does not read it); a later call with the same arguments
finds it and returns without rewriting anything. The sources
are read from ``../shared`` at run time (or ``--source`` / ``$UMI_TOOLBENCH_EXAMPLE``), never
copied into the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

MARKER = ".corpus-marker"  # not an input suffix (.json/.jsonl/.zip/.parquet): umidata never reads it
NAME = "{k}_ChatGPT_DFS_woFilter_w2.json"
REPO = Path(__file__).resolve().parents[1]


def default_source() -> Path:
    """``$UMI_TOOLBENCH_EXAMPLE`` or ``../shared/data/toolbench-example/answer`` next to the repo."""
    env = os.environ.get("UMI_TOOLBENCH_EXAMPLE")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "data" / "toolbench-example" / "answer"


def source_files(source: Path | None = None) -> list[tuple[str, Path]]:
    """The example answer files as sorted ``(group, path)`` pairs, e.g. ``("G1_answer", …/10_….json)``."""
    source = Path(source) if source is not None else default_source()
    files = sorted(
        (p.parent.name, p) for p in source.glob("G*_answer/*.json") if p.is_file()
    )
    if not files:
        raise FileNotFoundError(f"no G*_answer/*.json files under {source}")
    return files


def tag(k: int) -> bytes:
    """What copy ``k`` appends to its query: ASCII, nothing to escape in JSON."""
    return f" #{k}".encode()


def query_bytes(data: bytes) -> bytes | None:
    """The query of an answer file as it is encoded in the file's own bytes (``None`` if absent)."""
    try:
        q = json.loads(data).get("answer_generation", {}).get("query")
    except (ValueError, AttributeError):
        return None
    if not isinstance(q, str) or not q:
        return None
    for enc in (json.dumps(q)[1:-1].encode(), json.dumps(q, ensure_ascii=False)[1:-1].encode()):
        if enc in data:
            return enc
    return None


def _digest(sources: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in sources:
        h.update(name.encode())
        h.update(b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def plan(n_files: int, seed: int, n_sources: int) -> list[int]:
    """Source index of every output file: a seeded permutation of the sources, repeated."""
    order = list(range(n_sources))
    random.Random(seed).shuffle(order)
    return [order[i % n_sources] for i in range(n_files)]


def build_corpus(n_files: int, out_dir: str | os.PathLike, seed: int = 0,
                 source: str | os.PathLike | None = None, identical: bool = False) -> dict:
    """Write ``n_files`` copies of the example answers under ``out_dir``; return the marker dict.

    Reuses an existing corpus when its marker matches (file count, seed, sources); otherwise the
    ``G*_answer`` folders under ``out_dir`` are removed and written again.
    """
    if n_files < 1:
        raise ValueError("n_files must be >= 1")
    out = Path(out_dir)
    srcs = source_files(Path(source) if source is not None else None)
    blobs = [(f"{g}/{p.name}", p.read_bytes()) for g, p in srcs]
    want = {"n_files": n_files, "seed": seed, "identical": identical, "sources": len(srcs),
            "sources_digest": _digest(blobs)}
    queries = [None if identical else query_bytes(data) for _, data in blobs]

    marker = out / MARKER
    if marker.is_file():
        try:
            have = json.loads(marker.read_text())
        except ValueError:
            have = {}
        if all(have.get(k) == v for k, v in want.items()):
            return have

    out.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for d in out.glob("G*_answer"):
        shutil.rmtree(d)
    groups = sorted({g for g, _ in srcs})
    for g in groups:
        (out / g).mkdir()

    t0 = time.perf_counter()
    total = 0
    for i, s in enumerate(plan(n_files, seed, len(srcs))):
        group = srcs[s][0]
        data = blobs[s][1]
        if queries[s] is not None:
            data = data.replace(queries[s], queries[s] + tag(i + 1))
        with open(out / group / NAME.format(k=i + 1), "wb") as f:
            f.write(data)
        total += len(data)
    copies = "plain byte copies" + ("" if identical else ", query suffixed ' #<k>'")
    info = dict(want, input_bytes=total, groups=groups, copies=copies,
                build_s=round(time.perf_counter() - t0, 3))
    marker.write_text(json.dumps(info, indent=2) + "\n")
    return info


def corpus_files(out_dir: str | os.PathLike) -> list[Path]:
    """Every answer file of a built corpus, sorted."""
    return sorted(Path(out_dir).glob("G*_answer/*.json"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, required=True, help="number of answer files to write")
    ap.add_argument("-o", "--out", required=True, help="output folder (e.g. benchmarks/corpus/3000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--identical", action="store_true",
                    help="exact byte copies (default: each copy's query suffixed ' #<k>', so none is a duplicate)")
    ap.add_argument("--source", default=None,
                    help="example answer folder (default: ../shared/data/toolbench-example/answer)")
    args = ap.parse_args(argv)
    info = build_corpus(args.files, args.out, seed=args.seed, source=args.source, identical=args.identical)
    print(f"{args.out}: {info['n_files']} files, {info['input_bytes'] / 1e6:.1f} MB "
          f"(seed {info['seed']}, {info['sources']} sources)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
