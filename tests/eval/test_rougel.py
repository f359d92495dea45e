"""umi's ROUGE-L equals the ``rouge`` 1.0.1 package's ``rouge-l`` F (spec §2.6), which it replaces
for speed and to survive long sentences."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge import Rouge

from umi_eval.score.rougel import EmptyText, rouge_l

from .score_builders import SPEC_RL

PACKAGE = Rouge()


def package_rl(hyp: str, ref: str) -> float:
    return PACKAGE.get_scores(hyp, ref)[0]["rouge-l"]["f"]


@pytest.mark.parametrize(("hyp", "ref"), [
    ("Paris is 21 degrees today.", "It is 21 degrees in Paris."),
    ("a b a b", "a b a b c"),
    ("The temperature is 3.5 degrees", "It is 3.5 degrees, in Paris"),
    ("none", "none"),
    ("  spaced   out . twice..", "spaced out. twice"),
    ("   ", "x"),  # a blank piece is a sentence with one empty word
    ("w1 w2 w6 w7 w8. w1 w3 w8 w9 w5", "w1 w2 w3 w4 w5"),  # union LCS example of the package
])
def test_equals_package_on_examples(hyp: str, ref: str) -> None:
    assert rouge_l(hyp, ref) == package_rl(hyp, ref)


def test_spec_numbers() -> None:
    assert rouge_l("Paris is 21 degrees today.", "It is 21 degrees in Paris.") == pytest.approx(SPEC_RL)
    assert rouge_l("a b a b", "a b a b c") == pytest.approx(0.8, abs=1e-7)  # R 2/3, P 1
    assert rouge_l("Same answer.", "Same answer.") == pytest.approx(0.999999995)


@pytest.mark.parametrize("text", ["", "...", ". ."[:1]])
def test_empty_side_raises_like_the_package(text: str) -> None:
    with pytest.raises(ValueError):
        package_rl(text, "x")
    with pytest.raises(EmptyText):
        rouge_l(text, "x")
    with pytest.raises(EmptyText):
        rouge_l("x", text)


_WORDS = st.sampled_from(["a", "b", "c", "the", "is", "Paris,", "21", "x"])
_SEPS = st.sampled_from([" ", " ", "  ", ". ", ".", "\n", " . "])


@st.composite
def texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(_WORDS, _SEPS), min_size=1, max_size=25))
    return "".join(w + s for w, s in parts)


@settings(max_examples=300, deadline=None)
@given(texts(), texts())
def test_equals_package_on_generated_texts(hyp: str, ref: str) -> None:
    assert rouge_l(hyp, ref) == package_rl(hyp, ref)


def test_long_sentence_where_the_package_recurses_too_deep() -> None:
    words = [f"w{i % 300}" for i in range(700)]
    hyp, ref = " ".join(words), " ".join(reversed(words))
    with pytest.raises(RecursionError):
        package_rl(hyp, ref)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        expected = package_rl(hyp, ref)
    finally:
        sys.setrecursionlimit(limit)
    assert rouge_l(hyp, ref) == expected


def test_equals_package_on_real_answers() -> None:
    """The α-UMi example's final answers (lists, numbers with dots, repeated words) against perturbed copies."""
    import json
    import random
    from pathlib import Path

    stage2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "alpha-umi-example" / "raw_data_stage_2.json"
    if not stage2.exists():
        pytest.skip(f"reference data not available: {stage2}")
    conversations = json.loads(stage2.read_text(encoding="utf-8"))
    answers = [t["value"] for c in conversations for t in c["conversations"] if t["from"] == "conclusion"]
    rng = random.Random(0)
    for answer in answers:
        words = answer.split(" ")
        shuffled = words[:]
        rng.shuffle(shuffled)
        for hyp in (" ".join(shuffled), " ".join(words[: len(words) // 2]), " ".join(reversed(words))):
            assert rouge_l(hyp, answer) == package_rl(hyp, answer)
            assert rouge_l(answer, hyp) == package_rl(answer, hyp)
