"""Packed-sequence attention from PyTorch alone: ``attn_implementation="umi_varlen"``.

Registered with transformers' ``AttentionInterface`` under a name that has no mask function, so the
model builds no attention mask at all (transformers skips mask creation for such names) and hands
this function the packed row with its document boundaries: ``cu_seq_lens_q`` / ``max_length_q``
from the flattening collator, else derived from ``position_ids`` restarting at 0.

- CUDA, bf16/fp16, ``torch.nn.attention.varlen.varlen_attn`` present (PyTorch >= 2.10): PyTorch's own
  FlashAttention varlen kernel over the flat row; cost sum(L_i^2), no mask, no host sync.
- otherwise: ``scaled_dot_product_attention`` once per document with ``is_causal=True`` (on CUDA
  it picks its flash / memory-efficient kernel; on CPU the fused flash kernel): at most L_i x L_i per
  document, never the (sum L)^2 score matrix of a packed row under sdpa/eager.

Why not ``flex_attention`` (measured, CPU, torch 2.13, transformers 5.24, tiny LLaMA, 8 examples of
282-1247 tokens, forward + backward): it derives the same document mask from packed ``position_ids``,
but it has no backward on CPU at all (``NotImplementedError``), and on a GPU it is only fast compiled,
with the block mask and the kernel compiled per distinct row length; a flat row's length changes every
step. Per-document sdpa needs no compiler: 1.1-1.6 s a step against 2.3 s for rows capped at the
longest example under sdpa and 5-6.5 s for one flat row under sdpa (its dense block-diagonal mask);
``benchmarks/bench_train.py`` keeps timing these (``results/train.json``, α-UMi sample, 10 steps:
umi_varlen 1.5x length-grouped padding, one sdpa flat row 0.19x, capped rows 0.4x). On a GPU the
per-document loop costs a kernel launch per document and layer, which ``varlen_attn`` removes.
flash-attn's ``flash_attention_2``, when installed, stays the choice on CUDA.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

log = logging.getLogger("umi_train")

NAME = "umi_varlen"


def _segments_from_positions(position_ids, attention_mask=None) -> list[list[int]]:
    """Per row, the start offsets of its documents (+ the row length): position_ids that do not
    continue the previous one by +1 start a document, and so does every change of a 2-D padding
    mask (pad tokens then only attend to pad tokens, and real tokens never see them)."""
    import torch

    pos = position_ids
    first = pos[:, :1] - 1
    new_doc = torch.diff(pos, prepend=first, dim=-1) != 1
    if attention_mask is not None and attention_mask.dim() == 2:
        m = attention_mask.to(torch.int8)
        new_doc |= torch.diff(m, prepend=1 - m[:, :1], dim=-1) != 0
    new_doc[:, 0] = True
    width = pos.shape[1]
    out = []
    for row in new_doc.tolist():
        starts = [i for i, flag in enumerate(row) if flag]
        out.append([*starts, width])
    return out


def _cuda_varlen():
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def _is_cuda(tensor) -> bool:
    return bool(tensor.is_cuda)


def _autocast_dtype():
    """The CUDA autocast dtype when autocast is on (the Trainer's bf16 mixed precision), else None."""
    import torch

    return torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None


def umi_varlen_attention(
    module,
    query,
    key,
    value,
    attention_mask,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
):
    """transformers attention interface: (B, H, L, D) in, (B, L, H, D) out, examples kept apart."""
    import torch
    import torch.nn.functional as F

    if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4:
        raise ValueError(f"{NAME} takes packed rows (position_ids) or a 2-D padding mask, not a 4-D mask")
    mask2d = attention_mask if isinstance(attention_mask, torch.Tensor) else None
    b, hq, length, d = query.shape
    hkv = key.shape[1]
    cu = kwargs.get("cu_seq_lens_q")
    max_len: Any = kwargs.get("max_length_q")  # an int (or 0-d tensor), given with cu_seq_lens_q
    dropout = dropout if module.training else 0.0
    varlen = _cuda_varlen()
    half = (torch.float16, torch.bfloat16)
    # under bf16 autocast with fp32 weights, RoPE hands q/k over in fp32 (it multiplies by fp32 cos/sin);
    # the varlen kernel takes half precision only, so cast as autocast does for sdpa
    kernel_dtype = query.dtype if query.dtype in half else None
    cuda = _is_cuda(query)
    if kernel_dtype is None and cuda:
        kernel_dtype = _autocast_dtype()
    if varlen is not None and cuda and kernel_dtype in half and dropout == 0.0 and mask2d is None:
        if cu is None or b != 1:  # derive the boundaries over all rows, as one flat sequence
            bounds = _segments_from_positions(kwargs["position_ids"].expand(b, -1))
            flat = [0]
            for r, starts in enumerate(bounds):
                flat += [r * length + s for s in starts[1:]]
            cu = torch.tensor(flat, dtype=torch.int32, device=query.device)
            max_len = max(int(x - y) for x, y in zip(flat[1:], flat[:-1], strict=True))
        q = query.transpose(1, 2).reshape(b * length, hq, d).to(kernel_dtype)
        k = key.transpose(1, 2).reshape(b * length, hkv, d).to(kernel_dtype)
        v = value.transpose(1, 2).reshape(b * length, hkv, d).to(kernel_dtype)
        cu = cu.to(device=query.device, dtype=torch.int32)
        out = varlen(q, k, v, cu, cu, int(max_len), int(max_len), scale=scaling, window_size=(-1, 0),
                     enable_gqa=hkv != hq)
        return out.reshape(b, length, hq, d), None

    if cu is not None and b == 1 and mask2d is None:
        bounds = [cu.tolist()]
    else:
        pos = kwargs.get("position_ids")
        if pos is None:
            pos = torch.arange(length, device=query.device)[None]
        bounds = _segments_from_positions(pos.expand(b, -1), mask2d)
    out = query.new_empty(b, length, hq, d)
    gqa = hkv != hq
    for r, starts in enumerate(bounds):
        for s, e in itertools.pairwise(starts):
            if e <= s:
                continue
            o = F.scaled_dot_product_attention(
                query[r : r + 1, :, s:e],
                key[r : r + 1, :, s:e],
                value[r : r + 1, :, s:e],
                is_causal=True,
                dropout_p=dropout,
                scale=scaling,
                enable_gqa=gqa,
            )
            out[r, s:e] = o[0].transpose(0, 1)
    return out, None


def register() -> str:
    """Make ``attn_implementation="umi_varlen"`` loadable (idempotent); returns the name."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, umi_varlen_attention)
    return NAME


def flash_attn_installed() -> bool:
    try:
        from transformers.utils import is_flash_attn_2_available
    except ImportError:  # pragma: no cover
        return False
    return bool(is_flash_attn_2_available())


def default_attention(model, requested: str | None, cuda: bool) -> tuple[str | None, str]:
    """Which attention a training run uses when the user named none, and why.

    An explicit ``--attn-implementation`` is kept. Otherwise a model that would run sdpa or eager
    (transformers' default) is switched to ``flash_attention_2`` on CUDA when flash-attn is installed,
    else to ``umi_varlen``: packed rows then cost sum(L_i^2) attention and no L x L mask, instead of
    the dense block-diagonal mask sdpa builds. Returns ``(switch to, why)``; ``switch to`` None keeps.
    """
    current = getattr(model.config, "_attn_implementation", None) or "eager"
    if requested:
        return None, f"attn_implementation={requested} (as asked)"
    if current.startswith("flash_attention") or current == NAME:
        return None, f"attn_implementation={current} (model default)"
    if current not in ("sdpa", "eager"):
        return None, f"attn_implementation={current} (model default; not switched)"
    if cuda and flash_attn_installed():
        return "flash_attention_2", f"attn_implementation=flash_attention_2 (flash-attn installed; replaces {current})"
    kernel = "varlen_attn" if cuda and _cuda_varlen() is not None else "sdpa per document"
    return NAME, f"attn_implementation={NAME} ({kernel}; replaces {current})"
