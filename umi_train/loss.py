"""A causal-LM loss that never holds a step's logits at once: chunked linear + cross-entropy.

The plain forward computes ``lm_head`` over every position and keeps the float logits for backward:
batch tokens x vocabulary, e.g. 32k tokens x 151,936 x 4 bytes = 20 GB. Here the forward stops at
the last hidden state, keeps only the positions that carry a label (completion + EOS: 10-45 % of an
α-UMi example), and computes ``lm_head`` + cross-entropy on chunks of those under
``torch.utils.checkpoint``: one chunk's logits exist at a time, in the forward and again when
backward recomputes them. Same loss as transformers' ``ForCausalLMLoss`` (sum over label tokens,
divided by the Trainer's ``num_items_in_batch`` or by their count), tested equal with equal grads.

Installed by replacing the model instance's ``forward``, so DDP / FSDP / PEFT wrappers still run
their own forward around it. Without labels (inference, the packing probe) the model's own forward
runs unchanged. Models whose logits are more than ``lm_head(hidden)`` (soft-capping, logit scale,
a custom ``loss_function``) keep the plain path.
"""

from __future__ import annotations

import types
from typing import Any

IGNORE_INDEX = -100
MAX_CHUNK_ELEMENTS = 1 << 28  # logits per chunk: 1 GiB in fp32 (~1,766 tokens at 151,936 vocabulary)


def chunk_tokens(vocab_size: int, max_elements: int = MAX_CHUNK_ELEMENTS) -> int:
    """Tokens per chunk so that one chunk's fp32 logits stay under ``max_elements`` values."""
    return max(128, min(8192, max_elements // max(1, vocab_size)))


def chunked_lm_loss(
    hidden,
    lm_head,
    labels,
    num_items_in_batch=None,
    chunk: int = 2048,
    shift_labels=None,
):
    """``ForCausalLMLoss(lm_head(hidden), labels)`` without materialising all logits.

    ``hidden`` (B, L, H), ``labels`` (B, L) with -100 where no loss. Labels are shifted as
    transformers does (token t predicts t + 1; the last position predicts nothing).
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    target = shift_labels.reshape(-1).to(hidden.device)
    flat = hidden.reshape(-1, hidden.shape[-1])
    keep = (target != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    flat, target = flat.index_select(0, keep), target.index_select(0, keep)

    def piece(h, t):
        return F.cross_entropy(lm_head(h).float(), t, reduction="sum")

    total = hidden.new_zeros((), dtype=torch.float32)
    for s in range(0, flat.shape[0], chunk):
        h, t = flat[s : s + chunk], target[s : s + chunk]
        total = total + (checkpoint(piece, h, t, use_reentrant=False) if torch.is_grad_enabled() else piece(h, t))
    if flat.shape[0] == 0:  # no label in the batch: a zero that still reaches every parameter's graph
        total = total + hidden.sum() * 0.0
    if num_items_in_batch is None:
        return total / max(1, int(target.numel()))
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def supports_chunked_loss(model) -> tuple[bool, str]:
    """Whether ``model``'s logits are exactly ``lm_head(decoder(...).last_hidden_state)``."""
    cfg = getattr(model, "config", None)
    decoder = getattr(model, "model", None)
    head = getattr(model, "lm_head", None)
    if cfg is None or decoder is None or head is None:
        return False, "no decoder + lm_head to split the forward at"
    for attr in ("final_logit_softcapping", "logit_scale", "output_multiplier_scale"):
        if getattr(cfg, attr, None) not in (None, 1, 1.0):
            return False, f"the model scales its logits ({attr})"
    name = getattr(getattr(model, "loss_function", None), "__name__", "ForCausalLMLoss")
    if name != "ForCausalLMLoss":
        return False, f"the model has its own loss ({name})"
    return True, "chunked lm_head + cross-entropy on label tokens only"


def install_chunked_loss(model, chunk: int | None = None) -> tuple[bool, str]:
    """Replace ``model.forward`` (the causal-LM class, under any PEFT wrapper) by the chunked-loss forward."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    ok, why = supports_chunked_loss(base)
    if not ok:
        return False, why
    size = chunk or chunk_tokens(int(base.config.get_text_config().vocab_size))
    original = base.forward

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, labels=None, **kwargs: Any):
        if labels is None or kwargs.get("return_dict") is False or kwargs.get("logits_to_keep"):
            return original(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, labels=labels, **kwargs
            )
        from transformers.modeling_outputs import CausalLMOutputWithPast

        num_items = kwargs.pop("num_items_in_batch", None)
        shift = kwargs.pop("shift_labels", None)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        loss = chunked_lm_loss(out.last_hidden_state, self.lm_head, labels, num_items, size, shift)
        return CausalLMOutputWithPast(loss=loss, logits=None)

    base.forward = types.MethodType(forward, base)
    base._umi_plain_forward = original
    return True, f"{why} ({size:,} tokens a chunk)"
