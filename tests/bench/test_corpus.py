"""``benchmarks/corpus.py``: N real example files under new unique ids, deterministic, reusable."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

NAME = re.compile(r"^(\d+)_ChatGPT_DFS_woFilter_w2\.json$")


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("G*_answer/*.json"))}


@pytest.mark.parametrize("identical", [True, False])
def test_n_files_unique_ids_real_content(corpus_mod, tmp_path, identical):
    sources = {g: {} for g, _ in corpus_mod.source_files()}
    for g, p in corpus_mod.source_files():
        sources[g][p.read_bytes()] = p.name
    n = 47  # not a multiple of the 15 sources
    info = corpus_mod.build_corpus(n, tmp_path / "c", identical=identical)
    tree = _tree(tmp_path / "c")
    assert len(tree) == n == info["n_files"]
    ids = []
    used = Counter()
    queries = Counter()
    for rel, data in tree.items():
        group, name = rel.split("/")
        m = NAME.match(name)
        assert m, name
        k = int(m.group(1))
        ids.append(k)
        if not identical:  # the query suffix is the one change: removing it gives the source back
            queries[json.loads(data)["answer_generation"].get("query")] += 1
            data = data.replace(corpus_mod.tag(k), b"")
        # byte-for-byte one of the real examples of the same group
        assert data in sources[group], f"{rel} is not a copy of a {group} example"
        used[(group, sources[group][data])] += 1
    assert sorted(ids) == list(range(1, n + 1))  # unique across groups
    assert info["input_bytes"] == sum(map(len, tree.values()))
    # round robin over the sources: each is used ⌊n/15⌋ or ⌈n/15⌉ times
    k = len(corpus_mod.source_files())
    assert len(used) == k
    assert set(used.values()) <= {n // k, n // k + 1}
    if not identical:  # every copy's instruction is its own
        assert max(queries.values()) == 1 and len(queries) == n


def test_distinct_copies_survive_dedup(corpus_mod, tmp_path):
    """The project's content fingerprint tells the copies apart (identical copies collide)."""
    readers = pytest.importorskip("umi_data.readers")
    checks = pytest.importorskip("umi_data.trajectory.checks")
    for identical, want in ((False, 26), (True, 13)):  # 13 of every 15 files carry one
        out = tmp_path / str(identical)
        corpus_mod.build_corpus(30, out, identical=identical)
        prints = {checks.fingerprint(r.trajectory) for r in readers.read_inputs([out]) if r.trajectory}
        assert len(prints) == want

def test_deterministic_and_seeded(corpus_mod, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        corpus_mod.build_corpus(30, tmp_path / name, seed=seed)
    a, b, c = (_tree(tmp_path / name) for name in "abc")
    assert len(a) == 30
    assert a == b
    assert a != c
    # same mix of sources, other order
    assert Counter(corpus_mod.plan(30, 3, 15)) == Counter(corpus_mod.plan(30, 4, 15))


def test_reuse_and_rebuild(corpus_mod, tmp_path):
    out = tmp_path / "c"
    corpus_mod.build_corpus(20, out)
    probe = next(out.glob("G*_answer/*.json"))
    mtime = probe.stat().st_mtime_ns
    corpus_mod.build_corpus(20, out)  # marker matches: nothing rewritten
    assert probe.stat().st_mtime_ns == mtime
    corpus_mod.build_corpus(25, out)  # other count: rebuilt, no stale files left over
    assert len(list(out.glob("G*_answer/*.json"))) == 25


def test_cli(corpus_mod, tmp_path, capsys):
    assert corpus_mod.main(["--files", "16", "-o", str(tmp_path / "c")]) == 0
    assert len(list((tmp_path / "c").glob("G*_answer/*.json"))) == 16
    assert "16 files" in capsys.readouterr().err
