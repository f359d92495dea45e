"""Packing keeps examples apart (same loss as padding), and is refused where attention would leak."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from umi_train.collate import disable_cache, make_collator, packing_supported
from umi_train.data import tokenize_role


def _leaky_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Causal attention that ignores the mask: packed examples would see each other."""
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


@pytest.fixture(scope="module", autouse=True)
def _register_leaky() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register("leaky_test", _leaky_attention)


def _load(tiny_dir: Path, **kw):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32, **kw)
    return model, AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def features(tiny_dir: Path, split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    _, tok = _load(tiny_dir)
    ds, _ = tokenize_role(
        split_dir,
        "global",
        "train",
        tok,
        max_length=4096,
        cache_dir=tmp_path_factory.mktemp("cache"),
        quiet=True,
    )
    # the longest example whole, and the ends (completion included) of five others cut to varied
    # lengths: padding has work to do, and packed rows hold several examples each
    by_len = sorted(range(len(ds)), key=lambda i: (len(ds[i]["input_ids"]), i))
    rows = [ds[i] for i in [by_len[-1], *by_len[:5]]]
    keep = [None, 130, 90, 60, 35, 20]
    feats = [
        {"input_ids": r["input_ids"][-k if k else 0 :], "labels": r["labels"][-k if k else 0 :]}
        for r, k in zip(rows, keep, strict=True)
    ]
    assert all(any(x != -100 for x in f["labels"]) for f in feats)
    return feats


def _losses(model, tok, features, mode: str = "flatten") -> tuple[float, float, float]:
    """(packed loss, padded loss, max |logit diff| over real tokens) through the trainer's collators."""
    packed = make_collator(tok, mode)(features)
    padded = make_collator(tok, "pad")(features)
    assert "attention_mask" not in packed
    assert padded["attention_mask"].shape[0] == len(features)
    model.train()  # the Trainer's mode (no dropout in this config, so the comparison is exact)
    with torch.no_grad():
        out_p, out_d = model(**packed), model(**padded)
    lengths = [len(f["input_ids"]) for f in features]
    diff = 0.0
    for i, f in enumerate(features):  # find each example in the packed rows by its tokens
        row, at = _locate(packed, f["input_ids"])
        got = out_p.logits[row, at : at + lengths[i]]
        diff = max(diff, (got - out_d.logits[i, : lengths[i]]).abs().max().item())
    return out_p.loss.item(), out_d.loss.item(), diff


def _locate(batch: dict, ids: list[int]) -> tuple[int, int]:
    """(row, offset) of the example whose position_ids start at 0 and whose tokens are ``ids``."""
    hits = []
    for r, (row, pos) in enumerate(zip(batch["input_ids"].tolist(), batch["position_ids"].tolist(), strict=True)):
        hits += [(r, a) for a, p in enumerate(pos) if p == 0 and row[a : a + len(ids)] == ids]
    assert len(hits) == 1, hits
    return hits[0]


@pytest.mark.parametrize("mode", ["flatten", "rows"])
@pytest.mark.parametrize("attn", ["sdpa", "eager", "umi_varlen"])
def test_packed_and_padded_batches_give_the_same_loss(tiny_dir: Path, features, attn: str, mode: str) -> None:
    from umi_train import varlen

    varlen.register()
    model, tok = _load(tiny_dir, attn_implementation=attn)
    disable_cache(model)  # what train_role does before building the Trainer
    ok, reason = packing_supported(model, make_collator(tok, mode))
    assert ok, reason
    packed, padded, diff = _losses(model, tok, features, mode)
    assert abs(packed - padded) < 1e-5, (packed, padded)
    assert diff < 1e-4
    assert len({len(f["input_ids"]) for f in features}) > 1  # padding really happened


def test_packed_rows_hold_every_example_once_within_the_longest(tiny_dir: Path, features) -> None:
    _, tok = _load(tiny_dir)
    batch = make_collator(tok, "rows")(features)
    flat = make_collator(tok, "flatten")(features)
    lengths = [len(f["input_ids"]) for f in features]
    rows, width = batch["input_ids"].shape
    assert width == max(lengths) and rows < len(features)  # several examples share a row
    assert rows * width < len(features) * max(lengths)  # fewer tokens than padding the batch
    for f in features:
        r, at = _locate(batch, f["input_ids"])
        n = len(f["input_ids"])
        assert batch["labels"][r, at].item() == -100  # never predict an example from its neighbour
        assert batch["labels"][r, at + 1 : at + n].tolist() == f["labels"][1:]
        assert batch["position_ids"][r, at : at + n].tolist() == list(range(n))
    # everything else is a pad segment: pad tokens, no labels, position_ids restarting at 0
    real = sum(lengths)
    assert int((batch["labels"] != -100).sum()) == int((flat["labels"] != -100).sum())
    assert int((batch["input_ids"] != tok.pad_token_id).sum()) == real
    again = make_collator(tok, "rows")(features)
    assert all(torch.equal(batch[k], again[k]) for k in batch)


def test_default_use_cache_leaks_across_examples(tiny_dir: Path, features) -> None:
    """The trap the trainer avoids: with use_cache=True the packed mask is never built."""
    model, tok = _load(tiny_dir)
    model.config.use_cache = True
    _, _, diff = _losses(model, tok, features)
    assert diff > 1e-2  # later examples see earlier ones
    ok, reason = packing_supported(model)
    assert not ok and "use_cache=True" in reason


@pytest.mark.parametrize("mode", ["flatten", "rows"])
def test_probe_refuses_attention_that_ignores_boundaries(tiny_dir: Path, mode: str) -> None:
    model, tok = _load(tiny_dir, attn_implementation="leaky_test")
    disable_cache(model)
    ok, reason = packing_supported(model, make_collator(tok, mode))
    assert not ok and "attend to each other" in reason and "leaky_test" in reason


def test_trainer_falls_back_to_padding_and_says_so(
    split_dir: Path, tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from umi_train.train import TrainConfig, format_summary, train_role

    cfg = TrainConfig(
        data=split_dir,
        role="caller",
        output_dir=tmp_path / "run",
        model=str(tiny_dir),
        attn_implementation="leaky_test",
        max_steps=2,
        save_steps=100,
        logging_steps=1,
        gradient_checkpointing=False,
        quiet=True,
    )
    with caplog.at_level(logging.WARNING, logger="umi_train"):
        summary = train_role(cfg)
    assert summary["packing"] is False and "attend to each other" in summary["packing_reason"]
    # said once, in the summary's batching line (issue 13: no separate warning repeating it)
    assert "dynamic padding, length-grouped: packed examples attend to each other" in format_summary(summary)
    assert not any("dynamic padding" in r.getMessage() for r in caplog.records)
    assert summary["steps"] == 2
