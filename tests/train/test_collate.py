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
    rows = ds.select(range(6))
    return [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]


def _losses(model, tok, features) -> tuple[float, float, float]:
    """(packed loss, padded loss, max |logit diff| over real tokens) through the trainer's collators."""
    packed = make_collator(tok, packing=True)(features)
    padded = make_collator(tok, packing=False)(features)
    assert "attention_mask" not in packed and packed["input_ids"].shape[0] == 1
    assert padded["attention_mask"].shape[0] == len(features)
    model.train()  # the Trainer's mode (no dropout in this config, so the comparison is exact)
    with torch.no_grad():
        out_p, out_d = model(**packed), model(**padded)
    lengths = [len(f["input_ids"]) for f in features]
    real = torch.cat([out_d.logits[i, :n] for i, n in enumerate(lengths)])
    diff = (out_p.logits[0] - real).abs().max().item()
    return out_p.loss.item(), out_d.loss.item(), diff


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_and_padded_batches_give_the_same_loss(tiny_dir: Path, features, attn: str) -> None:
    model, tok = _load(tiny_dir, attn_implementation=attn)
    disable_cache(model)  # what train_role does before building the Trainer
    ok, reason = packing_supported(model)
    assert ok, reason
    packed, padded, diff = _losses(model, tok, features)
    assert abs(packed - padded) < 1e-5, (packed, padded)
    assert diff < 1e-4
    assert len({len(f["input_ids"]) for f in features}) > 1  # padding really happened


def test_default_use_cache_leaks_across_examples(tiny_dir: Path, features) -> None:
    """The trap the trainer avoids: with use_cache=True the packed mask is never built."""
    model, tok = _load(tiny_dir)
    model.config.use_cache = True
    _, _, diff = _losses(model, tok, features)
    assert diff > 1e-2  # later examples see earlier ones
    ok, reason = packing_supported(model)
    assert not ok and "use_cache=True" in reason


def test_probe_refuses_attention_that_ignores_boundaries(tiny_dir: Path) -> None:
    model, _ = _load(tiny_dir, attn_implementation="leaky_test")
    disable_cache(model)
    ok, reason = packing_supported(model)
    assert not ok and "attend to each other" in reason and "leaky_test" in reason


def test_trainer_falls_back_to_padding_and_says_so(
    split_dir: Path, tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from umi_train.train import TrainConfig, train_role

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
    assert any("falling back to dynamic padding" in r.getMessage() for r in caplog.records)
    assert summary["steps"] == 2
