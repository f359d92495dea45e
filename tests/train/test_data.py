"""Tokenization, label masks, mask audit and the overlong policy."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from umi_train import UserError
from umi_train.data import IGNORE_INDEX, role_shards, tokenize_role


@pytest.fixture(scope="module")
def tokenizer(tiny_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


def _rows(split_dir: Path, role: str) -> dict[str, dict]:
    rows = {}
    for shard in role_shards(split_dir, role, "train"):
        for r in pq.read_table(shard).to_pylist():
            rows[r["id"]] = r
    return rows


@pytest.mark.parametrize("role", ["planner", "caller", "summarizer", "global"])
def test_only_completion_and_eos_carry_labels(split_dir: Path, tokenizer, tmp_path: Path, role: str) -> None:
    ds, stats = tokenize_role(
        split_dir, role, "train", tokenizer, max_length=4096, cache_dir=tmp_path, quiet=True
    )
    rows = _rows(split_dir, role)
    assert stats.used == len(rows) and stats.dropped_overlong == 0
    for ex in ds:
        ids, labels = ex["input_ids"], ex["labels"]
        labelled = [t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX]
        assert labelled == [lab for lab in labels if lab != IGNORE_INDEX]
        n_prompt = labels.index(next(lab for lab in labels if lab != IGNORE_INDEX))
        assert all(lab == IGNORE_INDEX for lab in labels[:n_prompt])
        row = rows[ex["id"]]
        assert tokenizer.decode(labelled) == row["completion"] + tokenizer.eos_token
        assert tokenizer.decode(ids[:n_prompt]) == row["prompt"]
        assert labelled[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1
    expected_share = stats.loss_tokens / stats.tokens
    assert 0 < expected_share < 0.5 and stats.loss_share == pytest.approx(expected_share)


def test_turn_separator_is_plain_text(tokenizer) -> None:
    ids = tokenizer("user: hi</s>assistant: ", add_special_tokens=False)["input_ids"]
    assert tokenizer.eos_token_id not in ids and tokenizer.eos_token != "</s>"
    assert {tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token, tokenizer.unk_token} >= {"<|eos|>"}
    assert tokenizer.pad_token_id is not None and tokenizer.unk_token_id is not None


def test_mask_audit_names_example_without_loss_tokens(make_split, tokenizer, tmp_path: Path) -> None:
    bad = {
        "id": "bad-empty-7",
        "trajectory_id": "tb",
        "step": 0,
        "role": "caller",
        "prompt": "You have assess to the following apis:\n[]\nThe conversation history is:\n"
        "user: x</s> assistant: ",
        "completion": "",
        "source": "fixture",
    }
    data = make_split(n_traj=4, n_dev=0, extra={"caller": [bad]})
    with pytest.raises(UserError, match=r"bad-empty-7") as err:
        tokenize_role(data, "caller", "train", tokenizer, max_length=4096, cache_dir=tmp_path, quiet=True)
    assert "no loss-bearing" in str(err.value)


def _long_rows() -> list[dict]:
    filler = "observation: " + " ".join(f"item{i} weather ok" for i in range(400)) + "</s>"
    base = {"trajectory_id": "tl", "step": 0, "role": "planner", "source": "fixture"}
    return [
        {**base, "id": "long-prompt-1", "prompt": filler + " assistant: ", "completion": "Next: caller."},
        {
            **base,
            "id": "long-prompt-2",
            "prompt": filler * 2 + " assistant: ",
            "completion": "Next: conclusion.",
        },
        {**base, "id": "long-completion", "prompt": "user: hi</s> assistant: ", "completion": filler},
    ]


def test_overlong_policies_count_and_never_cut_targets(make_split, tokenizer, tmp_path: Path) -> None:
    data = make_split(n_traj=6, n_dev=0, extra={"planner": _long_rows()})
    rows = _rows(data, "planner")
    max_len = 256
    total = {
        i: len(tokenizer(r["prompt"])["input_ids"]) + len(tokenizer(r["completion"])["input_ids"]) + 1
        for i, r in rows.items()
    }
    overlong = {i for i, n in total.items() if n > max_len}
    assert overlong == {"long-prompt-1", "long-prompt-2", "long-completion"}

    ds, stats = tokenize_role(
        data,
        "planner",
        "train",
        tokenizer,
        max_length=max_len,
        overlong="drop",
        cache_dir=tmp_path,
        quiet=True,
    )
    assert (stats.dropped_overlong, stats.trimmed, stats.used) == (3, 0, len(rows) - 3)
    assert set(stats.dropped_ids) == overlong and not overlong & set(ds["id"])

    ds, stats = tokenize_role(
        data,
        "planner",
        "train",
        tokenizer,
        max_length=max_len,
        overlong="trim-prompt",
        cache_dir=tmp_path,
        quiet=True,
    )
    assert (stats.trimmed, stats.dropped_completion_too_long, stats.dropped_overlong) == (2, 1, 0)
    assert stats.dropped_ids == ["long-completion"] and stats.used == len(rows) - 1
    by_id = {ex["id"]: ex for ex in ds}
    for i in ("long-prompt-1", "long-prompt-2"):
        ex = by_id[i]
        assert len(ex["input_ids"]) == max_len
        labelled = [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE_INDEX]
        assert tokenizer.decode(labelled) == rows[i]["completion"] + tokenizer.eos_token
    report = stats.to_dict()
    assert report["overlong_policy"] == "trim-prompt" and report["trimmed"] == 2


def test_tokenization_is_cached_on_data_and_tokenizer(split_dir: Path, tokenizer, tmp_path: Path) -> None:
    tokenize_role(split_dir, "caller", "train", tokenizer, max_length=4096, cache_dir=tmp_path, quiet=True)
    first = sorted(p.name for p in tmp_path.glob("tokenized-*.arrow"))
    _ds, _ = tokenize_role(
        split_dir, "caller", "train", tokenizer, max_length=4096, cache_dir=tmp_path, quiet=True
    )
    assert sorted(p.name for p in tmp_path.glob("tokenized-*.arrow")) == first and len(first) == 1
    tokenize_role(split_dir, "caller", "train", tokenizer, max_length=512, cache_dir=tmp_path, quiet=True)
    assert len(list(tmp_path.glob("tokenized-*.arrow"))) == 2  # a different key, a different cache entry


def test_user_errors(split_dir: Path, tokenizer, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data directory not found"):
        role_shards(tmp_path / "nope", "planner", "train")
    with pytest.raises(UserError, match="unknown role"):
        role_shards(split_dir, "critic", "train")
    with pytest.raises(UserError, match="overlong"):
        tokenize_role(split_dir, "caller", "train", tokenizer, max_length=64, overlong="cut")
    empty = tmp_path / "empty"
    (empty / "planner").mkdir(parents=True)
    with pytest.raises(UserError, match="no train shards"):
        tokenize_role(empty, "planner", "train", tokenizer, max_length=64)
    ds, stats = tokenize_role(
        split_dir, "planner", "dev", tokenizer, max_length=4096, cache_dir=tmp_path, quiet=True
    )
    assert ds is not None and stats.used == 6
