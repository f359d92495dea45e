"""ROUGE-L F exactly as the ``rouge`` 1.0.1 package computes it (spec §2.6), without its limits.

The paper's R-L is ``Rouge().get_scores(hyps, refs, avg=True)["rouge-l"]["f"]`` of the PyPI package
``rouge`` 1.0.1. That package builds each LCS table as a dict and recovers the LCS by recursion, so
it takes ~3 ms per 50-word answer (12 s for the finish steps of 20k test steps) and raises
``RecursionError`` once a reference sentence and a hypothesis sentence together pass ~1,000 words
(an answer that is one long list without a period). This module computes the same value with a
bit-parallel table and an iterative backtrace that makes the same choices; ``tests/eval/test_rougel.py`` checks
equality with the package on the spec's examples and on generated texts.
"""

from __future__ import annotations


class EmptyText(ValueError):
    """A text with no sentence (``""``, ``"..."``): the package raises here (spec §2.6)."""


def sentences(text: str) -> list[str]:
    """The package's sentences: pieces split on ``.``, empty pieces dropped, white space runs
    collapsed to one space (a blank piece becomes ``""`` and is kept)."""
    return [" ".join(piece.split()) for piece in text.split(".") if piece]


def _positions(y: list[str]) -> dict[str, int]:
    """Per word, the bit mask of its positions in ``y``."""
    positions: dict[str, int] = {}
    for j, word in enumerate(y):
        positions[word] = positions.get(word, 0) | (1 << j)
    return positions


def _lcs_words(x: list[str], y: list[str], positions: dict[str, int]) -> set[str]:
    """Word set of the one LCS of ``x`` (reference sentence) and ``y`` (hypothesis sentence) that the
    package's backtrace recovers: from the end, a match takes the word and steps both; otherwise
    step back in ``x`` when the cell above is strictly larger, else step back in ``y``.

    The DP table is kept as one bit vector per row (Hyyrö's bit-parallel LCS): bit ``j`` of row
    ``i`` is 0 where ``T[i][j+1] = T[i][j] + 1``, so ``T[i][j]`` = ``j`` minus the ones among the
    low ``j`` bits. That is the same table as the package's, built with one big-integer step per
    reference word instead of one Python step per cell. ``positions`` is ``_positions(y)``."""
    full = (1 << len(y)) - 1
    rows = [full]
    v = full
    for word in x:
        u = v & positions.get(word, 0)
        v = ((v + u) | (v - u)) & full
        rows.append(v)
    words: set[str] = set()
    i, j = len(x), len(y)
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            words.add(x[i - 1])
            i, j = i - 1, j - 1
            continue
        low = (1 << (j - 1)) - 1
        up = j - (rows[i - 1] & (low | (1 << (j - 1)))).bit_count()  # T[i-1][j]
        left = (j - 1) - (rows[i] & low).bit_count()  # T[i][j-1]
        if up > left:
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
        hyps = [(h, set(h), _positions(h)) for h in hyp_words]
        union: set[str] = set()
        for r in ref_words:
            r_set = set(r)
            for h, h_set, positions in hyps:
                common = r_set & h_set
                if common and not common <= union:  # an LCS only holds common words: else nothing new
                    union |= _lcs_words(r, h, positions)
        union_size = len(union)
    r_lcs = union_size / m
    p_lcs = union_size / n
    return 2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8))
