"""Role datasets: load `umidata split` shards, tokenize, build label masks, audit them.

Two row shapes, told apart by their columns: α-UMi rows (``prompt``/``completion``) and chat
rows (``messages``/``tools``, ``umidata split --template chat``), which ``umi_train.chat`` renders
with the model's own chat template and labels by message. For α-UMi rows the model input is
exactly ``prompt + completion + EOS``. Prompt and completion are tokenized
separately and their ids concatenated, so the label boundary is exact (no offset mapping guesswork);
only the completion tokens and EOS carry labels.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from umi_train import ROLES, UserError

IGNORE_INDEX = -100
REQUIRED_COLUMNS = ("id", "prompt", "completion")
OVERLONG_POLICIES = ("drop", "trim-prompt")
SPLITS = ("train", "dev")


def role_shards(data_dir: Path, role: str, split: str) -> list[Path]:
    """Shard files ``<data_dir>/<role>/<split>-*.parquet`` in order; [] when the split is absent."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    if not data_dir.is_dir():
        raise UserError(f"data directory not found: {data_dir}")
    return sorted((data_dir / role).glob(f"{split}-*.parquet"))


def load_role(data_dir: Path, role: str, split: str = "train"):
    """Load one role/split as a ``datasets.Dataset`` (only the columns we use), or None if empty."""
    import datasets
    import pyarrow.parquet as pq

    shards = role_shards(data_dir, role, split)
    if not shards:
        if split == "train":
            raise UserError(
                f"no train shards for role {role!r} under {data_dir / role} (expected train-*.parquet)"
            )
        return None
    from umi_train.chat import CHAT_COLUMNS

    columns = CHAT_COLUMNS if "messages" in pq.read_schema(shards[0]).names else REQUIRED_COLUMNS
    for shard in shards:
        names = pq.read_schema(shard).names
        missing = [c for c in columns if c not in names]
        if missing:
            raise UserError(f"{shard}: missing column(s) {', '.join(missing)}")
    # Memory-mapped Arrow (datasets' cache), not an in-memory table: a ToolBench-sized role is
    # gigabytes of prompt text.
    ds = datasets.load_dataset(
        "parquet", data_files=[str(s) for s in shards], split="train", columns=list(columns)
    )
    if ds.num_rows == 0:
        if split == "train":
            raise UserError(f"role {role!r} has an empty train split under {data_dir / role}")
        return None
    return ds


@dataclass
class TokenStats:
    """What happened to one role/split during tokenization; saved in RUNDIR and printed."""

    role: str
    split: str
    examples: int = 0
    used: int = 0
    trimmed: int = 0
    dropped_overlong: int = 0
    dropped_completion_too_long: int = 0
    tokens: int = 0
    loss_tokens: int = 0
    max_length: int = 0
    longest: int = 0  # the longest example kept, in tokens
    overlong_policy: str = "drop"
    chat_template: str | None = None  # chat rows: which template rendered them, and how labels were found
    dropped_ids: list[str] = field(default_factory=list)

    @property
    def loss_share(self) -> float:
        return self.loss_tokens / self.tokens if self.tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dropped_ids"] = d["dropped_ids"][:50]
        d["loss_share"] = round(self.loss_share, 6)
        return d


def _encode(batch: dict[str, list], tokenizer, max_length: int, overlong: str) -> dict[str, list]:
    """Batched map: prompt ids (+BOS if the tokenizer adds one) + completion ids + EOS; overlong policy."""
    prompts = tokenizer(batch["prompt"], add_special_tokens=True)["input_ids"]
    completions = tokenizer(batch["completion"], add_special_tokens=False)["input_ids"]
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    out: dict[str, list] = {"input_ids": [], "labels": [], "length": [], "n_completion": [], "status": []}
    for p, c in zip(prompts, completions, strict=True):
        n_completion = len(c)
        target = [*c, eos]
        status = "ok"
        if len(p) + len(target) > max_length:
            head = p[:1] if (bos is not None and p[:1] == [bos]) else []
            room = max_length - len(target) - len(head)
            if overlong == "drop":
                status = "dropped_overlong"
            elif room < 0:
                status = "dropped_completion_too_long"
            else:
                p = head + (p[len(p) - room :] if room > 0 else [])
                status = "trimmed"
        if status.startswith("dropped"):
            ids, labels = [], []
        else:
            ids = p + target
            labels = [IGNORE_INDEX] * len(p) + target
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["length"].append(len(ids))
        out["n_completion"].append(n_completion)
        out["status"].append(status)
    return out


def tokenizer_key(tokenizer) -> str:
    """Stable hash of a fast tokenizer's full definition (vocab, merges, normalisers, specials)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    text += json.dumps([tokenizer.bos_token_id, tokenizer.eos_token_id])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _data_key(data_dir: Path, role: str, split: str) -> str:
    h = hashlib.sha256()
    for shard in role_shards(data_dir, role, split):
        st = shard.stat()
        h.update(f"{shard.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


@dataclass
class _Rendering:
    """How one row shape becomes token ids: the batched map, its arguments, the columns it consumes,
    what else keys the cache, and whether each example's EOS carries a label beside its completion."""

    encode: Any
    fn_kwargs: dict[str, Any]
    columns: list[str]
    template_key: str = ""
    eos_in_loss: bool = True


def _alpha_umi_rendering(tokenizer, max_length: int, overlong: str) -> _Rendering:
    """α-UMi rows: ``prompt + completion + EOS`` (:func:`_encode`), overlong prompts dropped or trimmed."""
    return _Rendering(_encode, {"tokenizer": tokenizer, "max_length": max_length, "overlong": overlong},
                      ["prompt", "completion"])


def _chat_rendering(tokenizer, max_length: int, overlong: str, stats: TokenStats) -> _Rendering:
    """Chat rows: the model's own chat template (:mod:`umi_train.chat`); an overlong conversation is
    only ever dropped. Records which template rendered them in ``stats``."""
    from umi_train import chat

    if overlong != "drop":
        raise UserError(f"--overlong {overlong} cuts prompts; chat conversations are only ever dropped (use drop)")
    p = chat.plan(tokenizer)
    stats.chat_template = p.origin
    return _Rendering(chat.encode_batch, {"tokenizer": tokenizer, "p": p, "max_length": max_length},
                      ["messages", "tools"], p.key(), eos_in_loss=False)


def tokenize_role(
    data_dir: Path,
    role: str,
    split: str,
    tokenizer,
    *,
    max_length: int,
    overlong: str = "drop",
    cache_dir: Path | None = None,
    num_proc: int | None = None,
    quiet: bool = False,
):
    """Tokenize one role/split, audit the masks and apply the overlong policy.

    Returns ``(dataset, TokenStats)``; ``dataset`` is None when the split is absent. The tokenized
    table is cached under ``cache_dir`` keyed on the shard files, the tokenizer, max length and
    policy, so a resumed run or a re-run skips this step.
    """
    import datasets

    if overlong not in OVERLONG_POLICIES:
        raise UserError(
            f"unknown overlong policy {overlong!r}: expected one of {', '.join(OVERLONG_POLICIES)}"
        )
    ds = load_role(data_dir, role, split)
    stats = TokenStats(role=role, split=split, max_length=max_length, overlong_policy=overlong)
    if ds is None:
        return None, stats
    if quiet:
        datasets.disable_progress_bars()
    if "messages" in ds.column_names:
        rendering = _chat_rendering(tokenizer, max_length, overlong, stats)
    else:
        rendering = _alpha_umi_rendering(tokenizer, max_length, overlong)
    tokenized = _tokenize(ds, rendering, data_dir, role, split, tokenizer, max_length, overlong, cache_dir, num_proc)
    audit_masks(tokenized, role)
    return _keep(tokenized, stats, rendering), stats


def _tokenize(ds, rendering: _Rendering, data_dir: Path, role: str, split: str, tokenizer, max_length: int,
              overlong: str, cache_dir: Path | None, num_proc: int | None):
    """The batched map over ``ds``, cached under ``cache_dir`` by shard files, tokenizer, max length,
    policy and template; several processes for a large role unless ``num_proc`` says otherwise."""
    kwargs: dict[str, Any] = {}
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(
            f"{_data_key(data_dir, role, split)}|{tokenizer_key(tokenizer)}|{max_length}|{overlong}|"
            f"{rendering.template_key}".encode()
        ).hexdigest()[:20]
        kwargs["cache_file_name"] = str(cache_dir / f"tokenized-{role}-{split}-{key}.arrow")
    if num_proc is None:
        num_proc = min(4, os.cpu_count() or 1) if len(ds) >= 5000 else None
    return ds.map(
        rendering.encode,
        batched=True,
        batch_size=256,
        remove_columns=rendering.columns,
        fn_kwargs=rendering.fn_kwargs,
        num_proc=num_proc,
        desc=f"tokenize {role}/{split}",
        load_from_cache_file=True,
        **kwargs,
    )


def _keep(tokenized, stats: TokenStats, rendering: _Rendering):
    """Count what the overlong policy did into ``stats`` and return the examples it kept (without
    the bookkeeping columns); none kept is a usage error."""
    role, split = stats.role, stats.split
    status = tokenized["status"]
    stats.examples = len(tokenized)
    stats.trimmed = status.count("trimmed")
    stats.dropped_overlong = status.count("dropped_overlong")
    stats.dropped_completion_too_long = status.count("dropped_completion_too_long")
    ids = tokenized["id"]
    stats.dropped_ids = [i for i, s in zip(ids, status, strict=True) if s.startswith("dropped")][:50]
    kept = tokenized.filter(
        lambda s: not s.startswith("dropped"),
        input_columns=["status"],
        desc=f"overlong policy {role}/{split}",
    )
    stats.used = len(kept)
    lengths = kept["length"]
    stats.tokens = sum(lengths)
    stats.longest = max(lengths, default=0)
    # chat: the labelled tokens themselves; α-UMi: completion tokens + EOS
    stats.loss_tokens = sum(n + (1 if rendering.eos_in_loss else 0) for n in kept["n_completion"])
    if stats.used == 0:
        raise UserError(
            f"role {role!r} ({split}): every example is longer than --max-length {stats.max_length} "
            f"under --overlong {stats.overlong_policy}; nothing left to train on"
        )
    return kept.remove_columns(["n_completion", "status"])


def audit_masks(tokenized, role: str) -> None:
    """Refuse examples whose completion tokenizes to nothing: they would train only on EOS, silently."""
    empty = tokenized.filter(lambda n: n == 0, input_columns=["n_completion"], desc=f"mask audit {role}")
    if len(empty):
        ids = empty["id"]
        shown = ", ".join(ids[:5]) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")
        raise UserError(
            f"mask audit: {len(ids)} {role} example(s) have no loss-bearing completion token: {shown}"
        )
