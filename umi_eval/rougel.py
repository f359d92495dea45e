"""ROUGE-L F exactly as the ``rouge`` 1.0.1 package computes it (spec §2.6), without its limits.

The paper's R-L is ``Rouge().get_scores(hyps, refs, avg=True)["rouge-l"]["f"]`` of the PyPI package
``rouge`` 1.0.1. That package builds each LCS table as a dict and recovers the LCS by recursion, so
it takes ~3 ms per 50-word answer (12 s for the finish steps of 20k test steps) and raises
``RecursionError`` once a reference sentence and a hypothesis sentence together pass ~1,000 words
(an answer that is one long list without a period). This module computes the same value with list
tables and an iterative backtrace that makes the same choices; ``tests/eval/test_rougel.py`` checks
equality with the package on the spec's examples and on generated texts.
"""

from __future__ import annotations


class EmptyText(ValueError):
    """A text with no sentence (``""``, ``"..."``): the package raises here (spec §2.6)."""


def sentences(text: str) -> list[str]:
    """The package's sentences: pieces split on ``.``, empty pieces dropped, white space runs
    collapsed to one space (a blank piece becomes ``""`` and is kept)."""
    return [" ".join(piece.split()) for piece in text.split(".") if piece]


def _lcs_words(x: list[str], y: list[str]) -> set[str]:
    """Word set of the one LCS of ``x`` (reference sentence) and ``y`` (hypothesis sentence) that the
    package's backtrace recovers: from the end, a match takes the word and steps both; otherwise
    step back in ``x`` when the cell above is strictly larger, else step back in ``y``."""
    if not set(x).intersection(y):
        return set()
    prev = [0] * (len(y) + 1)
    table = [prev]
    for xi in x:
        cur = [0]
        for j, yj in enumerate(y, 1):
            if xi == yj:
                cur.append(prev[j - 1] + 1)
            else:
                up, left = prev[j], cur[j - 1]
                cur.append(up if up > left else left)
        table.append(cur)
        prev = cur
    words: set[str] = set()
    i, j = len(x), len(y)
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            words.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_l(hypothesis: str, reference: str) -> float:
    """Summary-level ROUGE-L F of one pair over distinct words, as ``rouge`` 1.0.1 (spec §2.6):
    ``F = 2PR / (P + R + 1e-8)`` with ``R = |U| / m``, ``P = |U| / n``. Raises :class:`EmptyText`
    where the package raises (a side without any sentence)."""
    hyp, ref = sentences(hypothesis), sentences(reference)
    if not hyp or not ref:
        raise EmptyText("hypothesis is empty" if not hyp else "reference is empty")
    hyp_words = [s.split(" ") for s in hyp]
    ref_words = [s.split(" ") for s in ref]
    m = len({w for s in ref_words for w in s})
    n = len({w for s in hyp_words for w in s})
    if hyp == ref:  # every reference sentence is its own LCS with its twin: U = all words
        union_size = m
    else:
        union: set[str] = set()
        for r in ref_words:
            for h in hyp_words:
                union |= _lcs_words(r, h)
        union_size = len(union)
    r_lcs = union_size / m
    p_lcs = union_size / n
    return 2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8))
