"""Batching: padding-free packing when the model keeps packed examples apart, else dynamic padding.

Packed batches carry no ``attention_mask``; ``position_ids`` restart at 0 for every example, and the
model derives a block-diagonal mask (sdpa / eager) or varlen boundaries (FlashAttention) from them.
Two packings, picked by the attention kernel (``packing_mode``):

- ``flatten`` (transformers' ``DataCollatorWithFlattening``): the whole batch in one row, zero pad
  tokens. Right for varlen kernels, which skip the masked blocks.
- ``rows`` (``PackedRowsCollator``): rows no longer than the batch's longest example. sdpa / eager
  compute a packed row's whole score matrix, so one flat row of B examples costs ~B times the
  attention of padding (measured on CPU: 3x slower than padding); capped rows cost at most what
  padding that batch would, with a fraction of its pad tokens.

Whether the model keeps examples apart depends on the attention implementation *and* on how the
forward is called: with transformers 5.x, sdpa/eager only derive the packed mask from
``position_ids`` when no 2-D attention mask is passed and no KV cache exists, i.e. only with
``use_cache=False`` (the model default ``use_cache=True`` builds a cache even in train mode, and
the examples silently attend to each other). So we never trust a name list: ``packing_supported``
runs the collator the Trainer will use through the model and compares against one-by-one logits.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from typing import Any, Literal

from umi_train.data import IGNORE_INDEX

log = logging.getLogger("umi_train")


def disable_cache(model) -> None:
    """Packed batches need ``use_cache=False`` on every forward; the Trainer passes no flag, so set config."""
    for cfg in {id(c): c for c in (getattr(model, "config", None), _base_config(model)) if c is not None}.values():
        cfg.use_cache = False


def _base_config(model):
    base = getattr(model, "get_base_model", None)
    return base().config if callable(base) else None


def packing_supported(model, collate=None, atol: float | None = None, autocast=None) -> tuple[bool, str]:
    """Probe whether ``model`` keeps the examples of a packed batch apart, as the Trainer will call it.

    Collates three short random sequences with ``collate`` (default: the flattening collator), runs
    the batch without its labels, and compares every example's logits with a forward of that example
    alone. Returns ``(ok, reason)``; any exception during the probe counts as "not supported".
    ``autocast`` (the run's mixed-precision dtype) runs both under ``torch.autocast``, as the Trainer
    will, so the probe takes the same kernel (``umi_varlen`` uses PyTorch's varlen kernel only in half
    precision); the difference is then measured relative to the logits' scale (atol 3e-2).
    """
    import contextlib

    import torch

    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
        if atol is None:
            atol = 1e-4 if dtype == torch.float32 and autocast is None else 3e-2
        if collate is None:
            collate = make_collator(None, "flatten")
        vocab = model.get_input_embeddings().weight.shape[0]
        gen = torch.Generator().manual_seed(1234)
        # 9, 5, 3 tokens: packed rows of at most 9 put 5 + 3 (and one pad) in the second row
        seqs = [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in (9, 5, 3)]
        batch = collate([{"input_ids": s, "labels": s} for s in seqs])
        if "attention_mask" in batch:
            return False, "the packing collator returned an attention_mask"
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items() if k != "labels"}
        was_training = model.training
        model.eval()
        try:
            mixed = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
            with torch.no_grad(), mixed:
                out = model(**inputs).logits.float()
                alone = {tuple(s): model(input_ids=torch.tensor([s], device=device)).logits[0].float() for s in seqs}
        finally:
            model.train(was_training)
        diff, seen = 0.0, 0
        rows = zip(batch["input_ids"].tolist(), batch["position_ids"].tolist(), strict=True)
        for r, (ids, pos) in enumerate(rows):
            starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
            for a, b in itertools.pairwise(starts):
                ref = alone.get(tuple(ids[a:b]))
                if ref is not None:
                    diff = max(diff, (out[r, a:b] - ref).abs().max().item())
                    seen += 1
        if seen != len(seqs):
            return False, f"packing probe found {seen} of {len(seqs)} examples in the collated batch"
        if autocast is not None:  # half-precision kernels: relative to the logits' size
            diff /= max(1.0, max(v.abs().max().item() for v in alone.values()))
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
    """True for kernels that skip the masked blocks of a packed row (FlashAttention varlen, umi_varlen).

    sdpa / eager keep examples apart with a block-diagonal mask but still compute the whole packed
    row, i.e. O((sum L)^2) instead of sum(L^2): correct, yet slower than padding on long rows.
    """
    from umi_train.varlen import NAME

    attn = str(getattr(model.config, "_attn_implementation", "") or "")
    return attn.startswith("flash_attention") or "flash" in attn or attn == NAME


def pack_rows(lengths: list[int], cap: int) -> list[list[int]]:
    """First-fit decreasing: indices of ``lengths`` grouped into rows of at most ``cap`` tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([])
            room.append(cap)
            slot = len(rows) - 1
        rows[slot].append(i)
        room[slot] -= lengths[i]
    return rows


class PackedRowsCollator:
    """Pack a batch's examples into as few rows as fit the batch's longest example (dense attention).

    sdpa / eager compute a packed row's whole (row length)^2 score matrix, masked block-diagonally,
    so flattening a batch of B examples into one row costs about B times the attention of padding.
    Capping each row at the batch's longest example keeps the per-row cost at what padding that
    batch would cost, while the rows hold several short examples each instead of pad tokens: never
    more tokens or attention cells than dynamic padding of the same batch, and bounded mask memory.

    Rows are filled first-fit by decreasing length, position_ids restart at 0 for every example, and
    a row shorter than the longest is right-padded with one more "example" of pad tokens (its own
    position_ids from 0, labels -100) so the packed-sequence mask keeps it apart. No attention_mask
    is returned: transformers only derives the packed mask from position_ids when there is none.
    The first label of every example is -100, as in ``DataCollatorWithFlattening``.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        import torch

        lengths = [len(f["input_ids"]) for f in features]
        cap = max(lengths)
        rows = pack_rows(lengths, cap)
        width = cap
        if self.pad_to_multiple_of:
            width = -(-cap // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        pos = torch.zeros((len(rows), width), dtype=torch.long)
        for r, members in enumerate(rows):
            at = 0
            for i in members:
                n = lengths[i]
                ids[r, at : at + n] = torch.as_tensor(features[i]["input_ids"])
                if "labels" in features[i]:
                    labels[r, at + 1 : at + n] = torch.as_tensor(features[i]["labels"][1:])
                pos[r, at : at + n] = torch.arange(n)
                at += n
            pos[r, at:] = torch.arange(width - at)
        return {"input_ids": ids, "labels": labels, "position_ids": pos}


Batching = Literal["flatten", "rows", "pad"]


def packing_mode(model) -> Batching:
    """The packing a model's attention does best: one flat row for varlen kernels, capped rows otherwise."""
    return "flatten" if varlen_attention(model) else "rows"


def make_collator(tokenizer, batching: Batching, pad_to_multiple_of: int | None = None, flash_kwargs: bool = False):
    """The Trainer's collator for one batching mode.

    ``flatten``: the whole batch as one row (``DataCollatorWithFlattening``; with ``flash_kwargs`` it
    also returns the cu_seqlens FlashAttention's varlen kernel takes). ``rows``: ``PackedRowsCollator``.
    ``pad``: dynamic right-padding, labels padded with -100.
    """
    if batching == "rows":
        return PackedRowsCollator(tokenizer.pad_token_id, pad_to_multiple_of)
    if batching == "flatten":
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(
            return_position_ids=True, separator_id=IGNORE_INDEX, return_flash_attn_kwargs=flash_kwargs
        )
    if batching != "pad":
        raise ValueError(f"unknown batching mode {batching!r}")
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(
        tokenizer,
        padding=True,
        label_pad_token_id=IGNORE_INDEX,
        pad_to_multiple_of=pad_to_multiple_of,
        return_tensors="pt",
    )


def token_groups(lengths: list[int], budget: int) -> list[list[int]]:
    """Best-fit decreasing: indices of ``lengths`` in groups of at most ``budget`` tokens, no example cut.

    Each example goes, longest first, into the fullest group it still fits (a sorted list of free
    room, ``bisect``: O(n log n)-ish, seconds for ToolBench's ~180k examples a role). An example
    longer than ``budget`` gets a group of its own (the caller raises the budget to the longest
    example first, so this does not happen in training). Deterministic: ties by index.
    """
    import bisect

    groups: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, group index), sorted
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        n = lengths[i]
        at = bisect.bisect_left(free, (n, -1))
        if at < len(free):
            room, g = free.pop(at)
        else:
            room, g = budget, len(groups)
            groups.append([])
        groups[g].append(i)
        if room - n > 0:
            bisect.insort(free, (room - n, g))
    return groups


class TokenBudgetDataset:
    """A map-style dataset of micro-batches: item ``g`` is the list of examples of group ``g``.

    The Trainer runs it with ``per_device_train_batch_size=1`` and its own (seeded, resumable,
    distributed) sampler shuffles the groups; ``GroupCollator`` hands the examples to the usual
    collator. So a step is a fixed token budget whatever the examples' lengths.
    """

    def __init__(self, dataset, budget: int, lengths: list[int] | None = None) -> None:
        self.dataset = dataset
        self.lengths = list(lengths if lengths is not None else dataset["length"])
        self.budget = budget
        self.groups = token_groups(self.lengths, budget)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, g: int) -> dict:
        if hasattr(self.dataset, "column_names"):  # a datasets.Dataset: one read for the whole group
            rows = self.dataset[self.groups[g]]
            pairs: Iterable[tuple[Any, Any]] = zip(rows["input_ids"], rows["labels"], strict=True)
        else:
            pairs = ((self.dataset[i]["input_ids"], self.dataset[i]["labels"]) for i in self.groups[g])
        return {"examples": [{"input_ids": ids, "labels": lab} for ids, lab in pairs]}

    def fill(self) -> float:
        """Share of the groups' token budget holding real tokens."""
        return sum(self.lengths) / (len(self.groups) * self.budget) if self.groups else 0.0


class GroupCollator:
    """Collate micro-batch groups (``TokenBudgetDataset`` items) or plain examples with ``inner``."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, features: list[dict]) -> dict:
        flat = [ex for f in features for ex in f["examples"]] if features and "examples" in features[0] else features
        return self.inner([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in flat])
