"""An offline tiny causal LM + tokenizer, so the demo and the tests run on CPU with no model hub.

The tokenizer is a small byte-level BPE trained on the role data itself; the model is a randomly
initialised (seeded) LLaMA-shaped network. Both are saved with ``save_pretrained`` so every later
step (training, resume, stage-2 init) loads them exactly like a real checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

TINY_NAME = "tiny"
BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 2000):
    """Train a byte-level BPE tokenizer and wrap it as a ``PreTrainedTokenizerFast``.

    Special tokens deliberately differ from the literal ``</s>`` α-UMi uses as a turn separator
    inside prompts, so that text stays ordinary text and EOS is unambiguous.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=4096,
        padding_side="right",
    )


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


def make_tiny(shards: list[Path], out_dir: Path, seed: int = 0, vocab_size: int = 2000) -> Path:
    """Train the tokenizer on ``shards`` (parquet), build the model, save both to ``out_dir``."""
    import pyarrow.parquet as pq

    tables = (pq.read_table(p, columns=["prompt", "completion"]) for p in shards)
    tokenizer = train_tiny_tokenizer(_texts(tables), vocab_size=vocab_size)
    model = build_tiny_model(tokenizer, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
