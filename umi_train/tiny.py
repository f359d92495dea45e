"""An offline tiny causal LM + tokenizer, so the demo and the tests run on CPU with no model hub.

The tokenizer is a small byte-level BPE trained on the role data itself; the model is a randomly
initialised (seeded) LLaMA-shaped network. Both are saved with ``save_pretrained`` so every later
step (training, resume, stage-2 init) loads them exactly like a real checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"

# Chat families the tiny tokenizer can play: TRL's real template (trl/chat_templates/<name>.jinja)
# and the special tokens it needs, so chat data renders exactly as it would for the real model.
CHAT_FAMILIES: dict[str, dict[str, Any]] = {
    "qwen2_5": {"special": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"], "eos": "<|im_end|>", "bos": None},
    "qwen3": {"special": ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"],
              "eos": "<|im_end|>", "bos": None},
    "llama3_1": {"special": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                             "<|eom_id|>", "<|python_tag|>"], "eos": "<|eot_id|>", "bos": "<|begin_of_text|>"},
}
TINY_CHAT_FAMILY = "qwen2_5"  # what `--model tiny` uses on chat data


def chat_template_text(family: str) -> str:
    """TRL's serving template of ``family`` (its training variant is picked at tokenization)."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / f"{family}.jinja").read_text(encoding="utf-8")


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 2000, family: str | None = None):
    """Train a byte-level BPE tokenizer and wrap it as a ``PreTrainedTokenizerFast``.

    Special tokens deliberately differ from the literal ``</s>`` α-UMi uses as a turn separator
    inside prompts, so that text stays ordinary text and EOS is unambiguous. With a chat
    ``family`` (:data:`CHAT_FAMILIES`) it also knows that family's special tokens, takes its EOS
    (and BOS) and carries TRL's chat template for it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = CHAT_FAMILIES[family] if family else {"special": [], "eos": EOS, "bos": BOS}
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK, *spec["special"]],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=spec["bos"] or BOS,
        eos_token=spec["eos"],
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=4096,
        padding_side="right",
    )
    if family:
        tokenizer.chat_template = chat_template_text(family)
    return tokenizer


def build_tiny_model(
    tokenizer, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4, max_positions: int = 4096
):
    """A seeded, randomly initialised LLaMA-shaped causal LM sized to ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        use_cache=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def _texts(frames: Iterable) -> Iterator[str]:
    for table in frames:
        yield from table.column("prompt").to_pylist()
        yield from table.column("completion").to_pylist()


def chat_texts(frames: Iterable) -> Iterator[str]:
    """The text of chat rows: message contents, call arguments and tool schemas as JSON."""
    for table in frames:
        for messages, tools in zip(table.column("messages").to_pylist(), table.column("tools").to_pylist(),
                                   strict=True):
            for m in messages:
                m = json.loads(m) if isinstance(m, str) else m
                yield m.get("content") or ""
                if m.get("tool_calls"):
                    yield json.dumps(m["tool_calls"], ensure_ascii=False)
            yield tools if isinstance(tools, str) else json.dumps(tools, ensure_ascii=False)


def make_tiny(shards: list[Path], out_dir: Path, seed: int = 0, vocab_size: int = 2000,
              overwrite: bool = False) -> Path:
    """Train the tokenizer on ``shards`` (parquet), build the model, save both to ``out_dir``,
    atomically (whole or absent). Chat shards (``messages``/``tools``) get a tokenizer with TRL's
    qwen2_5 chat template. ``out_dir`` holding anything is replaced only with ``overwrite``."""
    import pyarrow.parquet as pq

    from umi_train import UserError

    empty_dir = out_dir.is_dir() and not any(out_dir.iterdir())
    if (out_dir.exists() or out_dir.is_symlink()) and not empty_dir and not overwrite:
        raise UserError(f"{out_dir} already exists and is not an empty directory; pass --overwrite to replace it, "
                        "or choose another -o")

    if shards and "messages" in pq.read_schema(shards[0]).names:
        tables = (pq.read_table(p, columns=["messages", "tools"]) for p in shards)
        tokenizer = train_tiny_tokenizer(chat_texts(tables), vocab_size=vocab_size, family=TINY_CHAT_FAMILY)
    else:
        tables = (pq.read_table(p, columns=["prompt", "completion"]) for p in shards)
        tokenizer = train_tiny_tokenizer(_texts(tables), vocab_size=vocab_size)
    model = build_tiny_model(tokenizer, seed=seed)
    from umi_train.runstate import atomic_dir

    with atomic_dir(out_dir) as tmp:  # a kill while saving leaves no torn init/ behind
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir


TINY_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors")


def tiny_complete(path: Path) -> bool:
    """Whether ``path`` holds a whole tiny model + tokenizer. An ``init/`` torn by a kill (umi
    versions that wrote it in place) has ``config.json`` but misses files or weight bytes: it is
    rebuilt instead of failing every rerun when loaded."""
    from umi_train.runstate import safetensors_complete

    return all((path / f).is_file() for f in TINY_FILES) and safetensors_complete(path / "model.safetensors")
