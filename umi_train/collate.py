"""Batching: padding-free packing when the model keeps packed examples apart, else dynamic padding.

Packing uses transformers' ``DataCollatorWithFlattening``: a batch becomes one row whose
``position_ids`` restart at 0 for every example, with no ``attention_mask``. Whether the model then
keeps examples apart depends on the attention implementation *and* on how the forward is called:
with transformers 5.x, sdpa/eager only derive the block-diagonal mask from ``position_ids`` when no
2-D attention mask is passed and no KV cache exists, i.e. only with ``use_cache=False`` (the model
default ``use_cache=True`` builds a cache even in train mode, and the examples silently attend to
each other). So we never trust a name list: ``packing_supported`` runs a probe forward, the same
way the Trainer will call the model, and compares packed against one-by-one logits.
"""

from __future__ import annotations

import logging

from umi_train.data import IGNORE_INDEX

log = logging.getLogger("umi_train")


def disable_cache(model) -> None:
    """Packed batches need ``use_cache=False`` on every forward; the Trainer passes no flag, so set config."""
    for cfg in {
        id(c): c for c in (getattr(model, "config", None), _base_config(model)) if c is not None
    }.values():
        cfg.use_cache = False


def _base_config(model):
    base = getattr(model, "get_base_model", None)
    return base().config if callable(base) else None


def packing_supported(model, atol: float | None = None) -> tuple[bool, str]:
    """Probe whether ``model`` keeps flattened examples apart, exactly as the Trainer will call it.

    Runs two short random sequences once packed (flattening collator output: no attention mask,
    restarting position_ids) and once each on its own, and compares the logits. Returns
    ``(ok, reason)``; any exception during the probe counts as "not supported".
    """
    import torch
    from transformers import DataCollatorWithFlattening

    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
        if atol is None:
            atol = 1e-4 if dtype == torch.float32 else 3e-2
        vocab = model.get_input_embeddings().weight.shape[0]
        gen = torch.Generator().manual_seed(1234)
        seqs = [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in (7, 11)]
        packed = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)(
            [{"input_ids": s} for s in seqs]
        )
        if "attention_mask" in packed:
            return False, "flattening collator returned an attention_mask"
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = (
                    model(
                        input_ids=packed["input_ids"].to(device),
                        position_ids=packed["position_ids"].to(device),
                    )
                    .logits[0]
                    .float()
                )
                alone = [model(input_ids=torch.tensor([s], device=device)).logits[0].float() for s in seqs]
        finally:
            model.train(was_training)
        ref = torch.cat(alone, dim=0)
        diff = (out - ref).abs().max().item()
    except Exception as exc:  # a model that cannot even run the probe cannot pack
        return False, f"packing probe failed: {type(exc).__name__}: {exc}"
    attn = getattr(model.config, "_attn_implementation", None) or "default"
    use_cache = getattr(model.config, "use_cache", None)
    if diff > atol:
        return False, (
            f"packed examples attend to each other under attn_implementation={attn!r}, "
            f"use_cache={use_cache} (max logit diff {diff:.2e} > {atol:.0e})"
        )
    return True, f"packed == unpacked under attn_implementation={attn!r} (max logit diff {diff:.1e})"


def varlen_attention(model) -> bool:
    """True for kernels that skip the masked blocks of a packed row (FlashAttention varlen).

    sdpa / eager keep examples apart with a block-diagonal mask but still compute the whole packed
    row, i.e. O((sum L)^2) instead of sum(L^2): correct, yet slower than padding on long rows.
    """
    attn = str(getattr(model.config, "_attn_implementation", "") or "")
    return attn.startswith("flash_attention") or "flash" in attn


def make_collator(
    tokenizer, packing: bool, pad_to_multiple_of: int | None = None, flash_kwargs: bool = False
):
    """Flattening collator for packing; otherwise dynamic right-padding with labels padded by -100."""
    if packing:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(
            return_position_ids=True, separator_id=IGNORE_INDEX, return_flash_attn_kwargs=flash_kwargs
        )
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(
        tokenizer,
        padding=True,
        label_pad_token_id=IGNORE_INDEX,
        pad_to_multiple_of=pad_to_multiple_of,
        return_tensors="pt",
    )
