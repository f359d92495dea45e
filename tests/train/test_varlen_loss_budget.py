"""The GPU-speed path on CPU: umi_varlen attention, the chunked loss, token-budget steps, OOM as exit 2."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from umi_train import UserError, varlen
from umi_train.collate import GroupCollator, TokenBudgetDataset, make_collator, packing_supported, token_groups
from umi_train.loss import chunked_lm_loss, install_chunked_loss


def _model(attn: str = "umi_varlen", kv_heads: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    varlen.register()
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=kv_heads, use_cache=False, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.set_attn_implementation(attn)
    return model


class _Tok:
    pad_token_id = 0


def _features(lengths=(40, 9, 23, 5)) -> list[dict]:
    gen = torch.Generator().manual_seed(3)
    out = []
    for n in lengths:
        ids = torch.randint(3, 300, (n,), generator=gen).tolist()
        out.append({"input_ids": ids, "labels": [-100] * (n // 2) + ids[n // 2 :]})
    return out


@pytest.mark.parametrize("cu_kwargs", [True, False])
def test_umi_varlen_flat_row_equals_each_example_alone(cu_kwargs: bool) -> None:
    """One flat row (boundaries from cu_seq_lens, or from position_ids alone) == every example alone, GQA on."""
    model = _model()
    feats = _features()
    batch = make_collator(_Tok, "flatten", flash_kwargs=cu_kwargs)(feats)
    assert ("cu_seq_lens_q" in batch) is cu_kwargs and batch["input_ids"].shape[0] == 1
    with torch.no_grad():
        packed = model(**batch)
        at, diff = 0, 0.0
        for f in feats:
            n = len(f["input_ids"])
            alone = model(input_ids=torch.tensor([f["input_ids"]]))
            diff = max(diff, (packed.logits[0, at : at + n] - alone.logits[0]).abs().max().item())
            at += n
        padded = model(**make_collator(_padder(), "pad")(feats))
    assert diff < 1e-5
    assert abs(packed.loss.item() - padded.loss.item()) < 1e-5
    ok, reason = packing_supported(model, make_collator(_Tok, "flatten", flash_kwargs=True))
    assert ok and "umi_varlen" in reason


def _padder():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1}, "<unk>")))
    tok.pad_token = "<pad>"
    return tok


def test_umi_varlen_keeps_padding_apart_like_sdpa() -> None:
    """A padded batch (2-D attention_mask, no packing) gives sdpa's logits on the real tokens."""
    feats = _features((12, 30, 7))
    batch = make_collator(_padder(), "pad")(feats)
    ours, ref = _model(), _model("sdpa")
    with torch.no_grad():
        a, b = ours(**batch), ref(**batch)
    real = batch["attention_mask"].bool()
    assert (a.logits[real] - b.logits[real]).abs().max().item() < 1e-5
    assert abs(a.loss.item() - b.loss.item()) < 1e-5


def test_probe_checks_the_varlen_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Boundaries lost in umi_varlen (one segment per row) are caught by the trainer's probe."""
    model = _model()
    monkeypatch.setattr(varlen, "_segments_from_positions", lambda pos, mask=None: [[0, pos.shape[1]]] * pos.shape[0])
    ok, reason = packing_supported(model, make_collator(_Tok, "flatten"))
    assert not ok and "attend to each other" in reason and "umi_varlen" in reason


def test_default_attention_choice() -> None:
    model = _model("sdpa")
    assert varlen.default_attention(model, None, cuda=False)[0] == "umi_varlen"
    assert varlen.default_attention(model, "sdpa", cuda=False)[0] is None  # an explicit choice is kept
    assert varlen.default_attention(_model("umi_varlen"), None, cuda=False)[0] is None


@pytest.mark.parametrize("chunk", [5, 4096])
@pytest.mark.parametrize("num_items", [None, 37])
def test_chunked_loss_equals_plain_loss_and_grads(chunk: int, num_items: int | None) -> None:
    plain = _model("sdpa")
    chunked = copy.deepcopy(plain)
    ok, why = install_chunked_loss(chunked, chunk=chunk)
    assert ok, why
    ids = torch.randint(3, 300, (2, 30), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :12] = -100
    labels[1, 20:] = -100
    n = None if num_items is None else torch.tensor(num_items)
    for m in (plain, chunked):
        m.train()
        m.zero_grad()
    a = plain(input_ids=ids, labels=labels, num_items_in_batch=n)
    b = chunked(input_ids=ids, labels=labels, num_items_in_batch=n)
    a.loss.backward()
    b.loss.backward()
    assert b.logits is None  # the point: no (batch x vocabulary) logits kept
    assert abs(a.loss.item() - b.loss.item()) < 1e-5
    pairs = zip(plain.parameters(), chunked.parameters(), strict=True)
    grad = max((p.grad - q.grad).abs().max().item() for p, q in pairs)
    assert grad < 1e-6
    with torch.no_grad():  # without labels the model's own forward runs: logits as before
        assert torch.allclose(chunked(input_ids=ids).logits, plain(input_ids=ids).logits)


def test_chunked_loss_keeps_only_label_positions() -> None:
    calls: list[int] = []

    def head(h):
        calls.append(h.shape[0])
        return h @ torch.ones(h.shape[-1], 7)

    labels = torch.full((1, 50), -100)
    labels[0, 40:] = 1
    labels[0, 0] = 1  # the first token is predicted by nothing
    loss = chunked_lm_loss(torch.randn(1, 50, 4, requires_grad=True), head, labels, chunk=4)
    assert sum(calls) == 10 and max(calls) == 4  # 11 labels, shifted: positions 39..48 predict, chunks of 4
    assert torch.isfinite(loss)


def test_chunked_loss_under_lora() -> None:
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    base = _model("sdpa")
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    ok, _ = install_chunked_loss(model)
    ids = torch.randint(3, 300, (1, 20))
    out = model(input_ids=ids, labels=ids)
    assert ok and out.logits is None
    with torch.no_grad():
        ref = base(input_ids=ids, labels=ids).loss  # LoRA B starts at 0: same function as the base model
    assert abs(out.loss.item() - ref.item()) < 1e-5


def test_token_groups_hold_every_example_once_within_the_budget() -> None:
    lengths = [300, 20, 150, 150, 90, 700, 10, 10, 280, 60]
    groups = token_groups(lengths, 320)
    flat = sorted(i for g in groups for i in g)
    assert flat == list(range(len(lengths)))
    assert [g for g in groups if sum(lengths[i] for i in g) > 320] == [[5]]  # only the oversize one, alone
    assert sum(lengths) / (len(groups) * 320) > 0.75
    assert token_groups(lengths, 320) == groups  # deterministic


def test_token_budget_dataset_collates_whole_examples() -> None:
    feats = _features((40, 9, 23, 5, 31))
    ds = TokenBudgetDataset(feats, 50, [len(f["input_ids"]) for f in feats])
    collate = GroupCollator(make_collator(_Tok, "flatten", flash_kwargs=True))
    seen = 0
    for g in range(len(ds)):
        batch = collate([ds[g]])
        assert batch["input_ids"].shape[1] <= 50
        seen += int((batch["position_ids"] == 0).sum())
    assert seen == len(feats) and len(ds) == 3
    plain = collate([{"input_ids": f["input_ids"], "labels": f["labels"], "id": "x"} for f in feats[:2]])
    assert plain["input_ids"].shape[1] == 49  # plain examples (the dev set) pass through as before


def test_token_budget_run(split_dir: Path, tmp_path: Path) -> None:
    from umi_train.train import TrainConfig, format_summary, train_role

    cfg = TrainConfig(
        data=split_dir, role="caller", output_dir=tmp_path / "run", max_steps=3, tokens_per_step=900,
        tokens_per_batch=100, save_steps=100, logging_steps=1, gradient_checkpointing=False, quiet=True,
        tiny_vocab=600,
    )
    s = train_role(cfg)
    longest = s["examples"]["train"]["longest"]
    assert 100 < longest < 900
    assert s["micro_batch_tokens"] == longest and s["grad_accum"] == -(-900 // longest)
    assert any("raised from 100" in n for n in s["notes"])
    assert s["attn_implementation"] == "umi_varlen" and s["batching"] == "flatten"
    assert s["loss_path"].startswith("chunked") and s["steps"] == 3
    assert s["global_batch_size"] is None and s["mfu"] is None and s["peak_gpu_memory_gib"] is None  # CPU
    assert 0.5 * 900 < s["tokens_per_step_seen"] <= s["grad_accum"] * longest
    text = format_summary(s)
    assert "--tokens-per-step 900" in text and "umi_varlen" in text


def test_tokens_per_batch_needs_tokens_per_step(split_dir: Path, tmp_path: Path) -> None:
    from umi_train.train import TrainConfig

    with pytest.raises(UserError, match="give --tokens-per-step"):
        TrainConfig(data=split_dir, role="caller", output_dir=tmp_path, tokens_per_batch=512)
    with pytest.raises(UserError, match="tokens >= 8"):
        TrainConfig(data=split_dir, role="caller", output_dir=tmp_path, tokens_per_step=0)


def test_out_of_memory_is_a_user_error(split_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import Trainer

    from umi_train.cli import main

    def oom(self, *a, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 18.55 GiB. GPU 0 has 139 GiB total")

    monkeypatch.setattr(Trainer, "training_step", oom)
    out = tmp_path / "run"
    args = ["train", "--data", str(split_dir), "--role", "caller", "--model", "tiny", "-o", str(out), "-q",
            "--max-steps", "2", "--tokens-per-step", "4000", "--tokens-per-batch", "2000"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "out of GPU memory (CUDA out of memory)" in line and "--tokens-per-step 4,000" in line
    assert "micro-batches of up to 2,000 tokens" in line and "longest example" in line
    assert "lower --tokens-per-batch" in line
    assert not (out / "summary.json").exists()


def test_summary_reports_gpu_figures() -> None:
    from umi_train.train import format_summary

    run = json.loads((Path(__file__).parent / "data" / "summary-gpu.json").read_text())
    text = format_summary(run)
    assert "MFU 41.2% of 989 TFLOP/s" in text and "peak GPU memory 21.4 GiB (NVIDIA H200)" in text
    assert "--tokens-per-step 32,768" in text


def _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False):
    """torch's varlen_attn contract ((T, H, D), cumulative lengths), computed with sdpa per sequence."""
    assert window_size == (-1, 0) and q.dtype == torch.bfloat16 and cu_q.dtype == torch.int32
    bounds = cu_q.tolist()
    assert max_q == max(b - a for a, b in itertools.pairwise(bounds))
    out = torch.empty_like(q)
    for a, b in itertools.pairwise(bounds):
        o = torch.nn.functional.scaled_dot_product_attention(
            q[a:b].transpose(0, 1).float(), k[a:b].transpose(0, 1).float(), v[a:b].transpose(0, 1).float(),
            is_causal=True, scale=scale, enable_gqa=enable_gqa,
        )
        out[a:b] = o.transpose(0, 1).to(q.dtype)
    return out


@pytest.mark.parametrize("mode", ["flatten", "rows"])
def test_cuda_varlen_path_flattens_rows_and_boundaries(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """The CUDA branch (PyTorch's varlen_attn), run on CPU against a reference kernel: one flat row with
    cu_seq_lens, or several packed rows whose boundaries come from position_ids; fp32 inputs cast to bf16."""
    model = _model()
    feats = _features()
    batch = make_collator(_Tok, mode, flash_kwargs=True)(feats)
    with torch.no_grad():
        want = model(**batch).logits
        monkeypatch.setattr(varlen, "_is_cuda", lambda t: True)
        calls: list[list[int]] = []

        def kernel(q, k, v, cu_q, *args, **kw):
            calls.append(cu_q.tolist())
            return _reference_varlen(q, k, v, cu_q, *args, **kw)

        monkeypatch.setattr(varlen, "_cuda_varlen", lambda: kernel)
        monkeypatch.setattr(varlen, "_autocast_dtype", lambda: torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as the Trainer's bf16: RoPE hands over fp32 q/k
            got = model(**batch).logits.float()
    lengths = [len(f["input_ids"]) for f in feats]
    assert len(calls) == 2 and calls[0][-1] == batch["input_ids"].numel()  # once per layer, every token
    assert len(calls[0]) - 1 == len(feats) + (mode == "rows")  # one sequence per example (+ a row's pad tail)
    assert sorted(b - a for a, b in itertools.pairwise(calls[0]))[-len(feats):] == sorted(lengths)
    # a kernel ignoring the boundaries differs by ~0.67 max / 0.045 mean here
    assert got.shape == want.shape and (got - want).abs().max().item() < 0.1  # bf16 matmuls
    assert (got - want).abs().mean().item() < 0.02


def test_chunked_loss_off_under_sharding(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from umi_train.train import _sharded_launch

    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert _sharded_launch(SimpleNamespace(fsdp="", deepspeed=None)) is None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert _sharded_launch(SimpleNamespace(fsdp="", deepspeed=None)) == "FSDP"


@pytest.mark.parametrize("attn", ["umi_varlen", "leaky_probe"])
def test_probe_under_mixed_precision(attn: str) -> None:
    """Under bf16 autocast (as the Trainer's bf16 runs) the probe passes umi_varlen and refuses a leak."""
    from transformers import AttentionInterface

    def leaky(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling,
                                                               enable_gqa=True)
        return out.transpose(1, 2).contiguous(), None

    AttentionInterface.register("leaky_probe", leaky)
    model = _model(attn)
    ok, reason = packing_supported(model, make_collator(_Tok, "flatten", flash_kwargs=True), autocast=torch.bfloat16)
    assert ok is (attn == "umi_varlen"), reason
