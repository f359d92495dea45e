"""Training-throughput benchmark for umi_train: batching schemes, and umitrain against TRL on GPU shapes.

    python benchmarks/bench_train.py --data OUTDIR [--tokenizer PATH] [-o benchmarks/results/train.json]
    python benchmarks/bench_train.py --from-alpha-umi ../shared/data/alpha-umi-example  # builds a split
    python benchmarks/bench_train.py --synthetic 400 --gpu --cpu-steps 0 --roles global  # see gpu_check.sh
    python benchmarks/bench_train.py --synthetic 24 --gpu --dry-run --cpu-steps 0 --roles global  # CPU rehearsal

Part 1 (tokens per epoch) needs only a tokenizer: for the same shards it counts the tokens one epoch
processes and the real (non-pad) share for (a) padding every example to --max-length, (b) dynamic
padding with random batches, (c) dynamic padding with length-grouped batches (umi's --no-packing),
(d) packing each batch into one flat row (umi's default: umi_varlen or flash-attn varlen attention)
and (e) packing each batch into rows capped at its longest example (umi under explicit sdpa / eager);
plus, per scheme, the share of the dense attention score cells (rows x width^2, what sdpa / eager
compute) that fall inside an example. Part 2 times real optimizer steps of the offline tiny model
on CPU, from the same weights over the same batches, with the trainer's own collators: (c), (d)
under sdpa (a dense block-diagonal mask), (d) under umi_varlen, (e) under sdpa.

Part 3 (--gpu) times umitrain's own training path -- ``train_role`` itself, with the model built
in process from a config (``prebuilt``) and nothing saved -- and TRL's ``SFTTrainer`` side by side,
each packed (umi: token-budget micro-batches in one flat row, umi_varlen or flash-attn, chunked
loss; TRL: BFD packing, padding-free) and unpacked (padding), on Qwen2 0.5B / 1.5B shapes with the
real 151,936 vocabulary and a Llama-2-7B shape (32,000 vocabulary; full fine-tuning with
checkpointing, and LoRA), random weights, fp32 master weights with bf16 autocast for both. It
prints tokens/s (steady state: the first --warmup-steps left out), MFU (6·N·tokens/s over the GPU's
bf16 peak, 4·N with LoRA; attention and recomputation left out, so a lower bound) and peak GPU
memory per run. An out-of-memory run is recorded as such and the benchmark goes on.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from umi_train import ROLES  # noqa: E402


def split_from_alpha_umi(src: Path, out: Path) -> Path:
    """Write α-UMi's released example files (input/target pairs) in the `umidata split` shape."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = {
        "global": "train_backbone.json",
        "planner": "train_planner.json",
        "caller": "train_caller.json",
        "summarizer": "train_summarizer.json",
    }
    for role, name in files.items():
        rows = json.loads((src / name).read_text())
        table = pa.Table.from_pylist(
            [
                {
                    "id": f"{role}-{i}",
                    "trajectory_id": f"t{i}",
                    "step": 0,
                    "role": role,
                    "prompt": r["input"],
                    "completion": r["target"],
                }
                for i, r in enumerate(rows)
            ]
        )
        (out / role).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out / role / "train-00000-of-00001.parquet")
    (out / "manifest.json").write_text(json.dumps({"source": str(src), "note": "bench conversion"}))
    return out


def synthetic_split(out: Path, n: int, seed: int = 0) -> Path:
    """A split of ``n`` examples a role with α-UMi-like lengths (prompts of ~100-1,200 words, short
    completions), made-up words: for the GPU check on a machine without the data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    for role in ROLES:
        rows = []
        for i in range(n):
            prompt = " ".join(rng.choices(words, k=int(100 * 12 ** rng.random())))
            completion = " ".join(rng.choices(words, k=rng.randint(10, 150)))
            rows.append({"id": f"{role}-{i}", "trajectory_id": f"t{i}", "step": 0, "role": role,
                         "prompt": prompt + " assistant: ", "completion": completion})
        (out / role).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), out / role / "train-00000-of-00001.parquet")
    (out / "manifest.json").write_text(json.dumps({"note": f"synthetic bench split, {n} examples a role"}))
    return out


def load_tokenizer(path: str | None, data: Path, work: Path):
    from transformers import AutoTokenizer

    if path:
        return AutoTokenizer.from_pretrained(path), path
    from umi_train.data import role_shards
    from umi_train.tiny import make_tiny

    tiny = make_tiny(role_shards(data, "global", "train"), work / "tiny")
    return AutoTokenizer.from_pretrained(tiny), "tiny (BPE 2k trained on the split)"


def batches(order: list[int], batch: int) -> list[list[int]]:
    return [order[s : s + batch] for s in range(0, len(order), batch)]


def cost(lengths: list[int], order: list[int], batch: int, mode: str) -> tuple[int, int]:
    """(tokens, dense attention score cells) one epoch computes under a batching mode.

    ``pad``: every row padded to the batch's longest; ``flatten``: one row per batch; ``rows``:
    umi's rows capped at the batch's longest (``pack_rows``). Cells are rows x width^2, what sdpa /
    eager compute (masked or not); a varlen kernel computes only sum(L^2) whatever the packing.
    """
    from umi_train.collate import pack_rows

    tokens = cells = 0
    for b in batches(order, batch):
        ls = [lengths[i] for i in b]
        if mode == "pad":
            n_rows, width = len(ls), max(ls)
        elif mode == "flatten":
            n_rows, width = 1, sum(ls)
        else:
            n_rows, width = len(pack_rows(ls, max(ls))), max(ls)
        tokens += n_rows * width
        cells += n_rows * width * width
    return tokens, cells


def token_counts(lengths: list[int], max_length: int, batch: int, seed: int = 0) -> dict[str, Any]:
    """Tokens (and dense attention cells) one epoch processes under each batching, and the real share."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    real = sum(lengths)
    useful_cells = sum(n * n for n in lengths)
    rnd = list(range(len(lengths)))
    random.Random(seed).shuffle(rnd)
    gen = torch.Generator().manual_seed(seed)
    grouped = list(LengthGroupedSampler(batch, lengths=lengths, generator=gen))
    schemes = {
        "pad_to_max_length": (len(lengths) * max_length, len(lengths) * max_length**2),
        "dynamic_padding_random": cost(lengths, rnd, batch, "pad"),
        "dynamic_padding_grouped": cost(lengths, grouped, batch, "pad"),
        "packing_flat_rows": cost(lengths, rnd, batch, "flatten"),
        "packing_capped_rows": cost(lengths, rnd, batch, "rows"),
    }
    return {
        "examples": len(lengths),
        "real_tokens": real,
        "batch_size": batch,
        **{
            k: {
                "tokens_per_epoch": t,
                "real_fraction": round(real / t, 4),
                "dense_attention_useful_fraction": round(useful_cells / c, 4),
            }
            for k, (t, c) in schemes.items()
        },
    }


def time_steps(
    model, features: list[dict], collate, batch: int, steps: int, device: str, order: list[int], dtype=None
) -> dict[str, float]:
    """Optimizer steps over fixed batches; real tokens/s (pads excluded) after one warm-up step."""
    import torch

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    groups = batches(order, batch)[: steps + 1]
    collated = [collate([features[i] for i in g]) for g in groups]
    real = processed = 0
    t0 = 0.0
    for k, (g, b) in enumerate(zip(groups, collated, strict=True)):
        if k == 1:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        b = {n: v.to(device) for n, v in b.items() if hasattr(v, "to")}
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if k >= 1:
            processed += b["input_ids"].numel()
            real += sum(len(features[i]["input_ids"]) for i in g)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {
        "steps": len(collated) - 1,
        "seconds": round(dt, 3),
        "real_tokens": real,
        "processed_tokens": processed,
        "real_tokens_per_second": round(real / dt, 1) if dt else 0.0,
    }


SCHEMES = ("packed_varlen", "packed_flat_rows", "packed_capped_rows", "padded_grouped")


def compare(
    model, tok, features, batch: int, steps: int, device: str, dtype=None, flash_kwargs: bool = False
) -> dict[str, Any]:
    """Time the same optimizer steps from the same weights under each of the trainer's batchings."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from umi_train.collate import disable_cache, make_collator, packing_mode, packing_supported

    disable_cache(model)
    lengths = [len(f["input_ids"]) for f in features]
    grouped = list(LengthGroupedSampler(batch, lengths=lengths, generator=torch.Generator().manual_seed(0)))
    rnd = list(range(len(features)))
    random.Random(0).shuffle(rnd)
    runs = {
        "packed_varlen": (make_collator(tok, "flatten", flash_kwargs=True), rnd),
        "packed_flat_rows": (make_collator(tok, "flatten", flash_kwargs=flash_kwargs), rnd),
        "packed_capped_rows": (make_collator(tok, "rows"), rnd),
        "padded_grouped": (make_collator(tok, "pad"), grouped),
    }
    out: dict[str, Any] = {"trainer_default": packing_mode(model)}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    from umi_train import varlen

    varlen.register()
    own = model.config._attn_implementation
    for name, (collate, order) in runs.items():
        model.set_attn_implementation(varlen.NAME if name == "packed_varlen" else own)
        if name != "padded_grouped":
            ok, reason = packing_supported(model, collate)
            out[f"{name}_probe"] = reason
            if not ok:
                continue
        model.load_state_dict(state)
        out[name] = time_steps(model, features, collate, batch, steps, device, order, dtype)
    base = out["padded_grouped"]["real_tokens_per_second"]
    for name in SCHEMES[:3]:
        if name in out:
            out[f"speedup_{name}_vs_padded"] = round(out[name]["real_tokens_per_second"] / max(base, 1e-9), 3)
    return out


# Model shapes built from configs in process (random weights, no downloads). Per shape: the
# transformers config class and fields, then the run: tokens per optimizer step, micro-batch budget
# (umi --tokens-per-batch; TRL packs rows of that many tokens), checkpointing, LoRA. The budgets are
# this benchmark's choices for one 141 GB H200, not measured optima.
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2-0.5b": {
        "arch": "qwen2",
        "config": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                   "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True},
        "tokens_per_step": 32768, "tokens_per_batch": 32768, "checkpointing": True, "lora": None,
    },
    "qwen2-1.5b": {
        "arch": "qwen2",
        "config": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
                   "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True},
        "tokens_per_step": 32768, "tokens_per_batch": 32768, "checkpointing": True, "lora": None,
    },
    "llama2-7b": {
        "arch": "llama",
        "config": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                   "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False},
        "tokens_per_step": 16384, "tokens_per_batch": 8192, "checkpointing": True, "lora": None,
    },
    "llama2-7b-lora": {
        "arch": "llama",
        "config": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                   "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False},
        "tokens_per_step": 16384, "tokens_per_batch": 16384, "checkpointing": True,
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target": "all-linear"},
    },
    # --dry-run: the same code paths on CPU (Qwen2 layout; a small vocabulary, since TRL computes
    # metrics over every logit, which at 151,936 takes minutes a step on two CPU cores)
    "tiny-qwen2": {
        "arch": "qwen2",
        "config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "vocab_size": 4096, "tie_word_embeddings": True},
        "tokens_per_step": 4096, "tokens_per_batch": 2048, "checkpointing": True, "lora": None,
    },
}
GPU_SHAPES = ("qwen2-0.5b", "qwen2-1.5b", "llama2-7b", "llama2-7b-lora")
RUNS = ("umi_packed", "umi_unpacked", "trl_packed", "trl_unpacked")


def build_model(shape: str, device: str):
    """A randomly initialised model of ``shape`` (seeded), fp32 master weights on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    spec = SHAPES[shape]
    cls = Qwen2Config if spec["arch"] == "qwen2" else LlamaConfig
    cfg = cls(**spec["config"], max_position_embeddings=32768, use_cache=False)
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


class StepTimer:
    """Trainer callback: wall time and tokens seen at the end of every optimizer step."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.marks: list[tuple[float, int]] = []

    def callback(self):
        from transformers import TrainerCallback

        timer = self

        class _Timer(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if timer.cuda:
                    import torch

                    torch.cuda.synchronize()
                timer.marks.append((time.perf_counter(), state.num_input_tokens_seen))

        return _Timer()

    def steady(self, warmup: int) -> tuple[float | None, int]:
        """Tokens/s over the steps after ``warmup`` (compilation, allocator growth left out)."""
        if len(self.marks) <= warmup + 1:
            warmup = 0 if len(self.marks) > 1 else -1
        if warmup < 0:
            return None, 0
        (t0, n0), (t1, n1) = self.marks[warmup], self.marks[-1]
        return (round((n1 - n0) / (t1 - t0), 1) if t1 > t0 else None), len(self.marks) - 1 - warmup


def _peak_reset(cuda: bool) -> None:
    import gc

    import torch

    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def umi_run(shape: str, packed: bool, data: Path, role: str, tok, steps: int, work: Path, cuda: bool):
    """umitrain's own path: ``train_role`` on the split, the model built in process (``prebuilt``)."""
    from umi_train.train import TrainConfig, train_role

    spec = SHAPES[shape]
    timer = StepTimer(cuda)
    cfg = TrainConfig(
        data=data, role=role, output_dir=work / f"umi-{shape}-{'packed' if packed else 'unpacked'}",
        model=f"bench:{shape}", max_steps=steps, lr=1e-5, warmup_ratio=0.0, max_length=4096,
        tokens_per_step=spec["tokens_per_step"], tokens_per_batch=spec["tokens_per_batch"], packing=packed,
        gradient_checkpointing=spec["checkpointing"], lora=spec["lora"], bf16=True, save_steps=10**9,
        logging_steps=10**9, quiet=True, resume="never", callbacks=[timer.callback()],
    )
    model = build_model(shape, "cuda" if cuda else "cpu")
    s = train_role(cfg, prebuilt=(model, tok), save=False)
    return timer, {
        "attention": s["attention"], "batching": s["batching"], "loss_path": s["loss_path"],
        "micro_batch_tokens": s["micro_batch_tokens"], "grad_accum": s["grad_accum"],
        "tokens_per_step_seen": s["tokens_per_step_seen"], "params": s["params"],
        "trainable_params": s["trainable_params"], "final_loss": s["final_loss"],
    }


def trl_run(shape: str, packed: bool, features: list[dict], tok, steps: int, work: Path, cuda: bool):
    """TRL's SFTTrainer on the same tokenized examples: BFD packing + padding-free, or padding."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    from umi_train.train import _checkpointing_args

    spec = SHAPES[shape]
    micro, per_step = spec["tokens_per_batch"], spec["tokens_per_step"]
    lengths = [len(f["input_ids"]) for f in features]
    batch = 1 if packed else max(1, round(micro / (sum(lengths) / len(lengths))))
    accum = max(1, -(-per_step // micro))
    ds = datasets.Dataset.from_dict({
        "input_ids": [f["input_ids"] for f in features],
        "completion_mask": [[int(x != -100) for x in f["labels"]] for f in features],
    })
    conf = SFTConfig(
        output_dir=str(work / f"trl-{shape}-{packed}"), max_steps=steps, learning_rate=1e-5,
        per_device_train_batch_size=batch, gradient_accumulation_steps=accum, bf16=cuda,
        **_checkpointing_args(SFTConfig, spec["checkpointing"]), save_strategy="no", report_to="none",
        logging_steps=10**9, max_length=micro if packed else max(lengths), packing=packed, packing_strategy="bfd",
        padding_free=packed, completion_only_loss=True, include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0, disable_tqdm=True, seed=0, use_cpu=not cuda,
    )
    peft_config = None
    if spec["lora"]:
        from peft import LoraConfig

        lo = spec["lora"]
        peft_config = LoraConfig(r=lo["r"], lora_alpha=lo["alpha"], lora_dropout=lo["dropout"],
                                 target_modules=lo["target"], task_type="CAUSAL_LM")
    timer = StepTimer(cuda)
    model = build_model(shape, "cuda" if cuda else "cpu")
    trainer = SFTTrainer(model=model, args=conf, train_dataset=ds, processing_class=tok, peft_config=peft_config,
                         callbacks=[timer.callback()])
    from umi_train.throughput import count_params

    n, trainable = count_params(trainer.model)
    trainer.train()
    attn = getattr(trainer.model.config, "_attn_implementation", None)
    return timer, {"attention": attn, "micro_batch_examples": None if packed else batch,
                   "micro_batch_tokens": micro if packed else None, "grad_accum": accum, "params": n,
                   "trainable_params": trainable}


def gpu_bench(
    data: Path, role: str, tok, features: list[dict], shapes: list[str], runs: list[str], steps: int,
    warmup: int, peak_override: float | None, work: Path, dry_run: bool, checkpoint=None,
) -> dict[str, Any]:
    """umitrain's training path and TRL's SFTTrainer, packed and unpacked, on each shape, one process.

    ``checkpoint(out)`` is called after every run, so a run stopped by a time limit keeps what it measured."""
    import torch

    from umi_train import UserError
    from umi_train.throughput import cuda_device, flops_per_token, mfu, peak_memory_gb

    cuda = torch.cuda.is_available() and not dry_run
    if not cuda and not dry_run:
        raise SystemExit("--gpu needs a CUDA device (or --dry-run for the CPU rehearsal)")
    name, peak = cuda_device() if cuda else ("cpu (dry run)", None)
    peak = peak_override or peak
    out: dict[str, Any] = {"device": name, "peak_tflops": peak, "steps": steps, "warmup_steps": warmup, "role": role,
                           "torch": torch.__version__, "shapes": {}}
    try:
        import flash_attn  # noqa: F401

        out["flash_attn"] = True
    except ImportError:
        out["flash_attn"] = False
    for shape in shapes:
        res: dict[str, Any] = {"config": SHAPES[shape]}
        out["shapes"][shape] = res
        for run in runs:
            _peak_reset(cuda)
            packed = run.endswith("_packed")
            t0 = time.perf_counter()
            try:
                if run.startswith("umi"):
                    timer, info = umi_run(shape, packed, data, role, tok, steps, work, cuda)
                else:
                    timer, info = trl_run(shape, packed, features, tok, steps, work, cuda)
            except (torch.OutOfMemoryError, UserError) as exc:
                msg = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                res[run] = {"error": msg, "peak_gpu_memory_gib": peak_memory_gb()}
                print(f"  {shape:<15} {run:<13} failed: {msg}", flush=True)
                if checkpoint:
                    checkpoint(out)
                continue
            tps, measured = timer.steady(warmup)
            fpt = flops_per_token(info["params"], info["trainable_params"])
            info.update({
                "tokens_per_second": tps, "timed_steps": measured, "mfu": mfu(tps, fpt, peak),
                "peak_gpu_memory_gib": peak_memory_gb(), "wall_seconds": round(time.perf_counter() - t0, 1),
            })
            res[run] = info
            if checkpoint:
                checkpoint(out)
            mem = info["peak_gpu_memory_gib"]
            print(f"  {shape:<15} {run:<13} {tps or 0:>10,.0f} tok/s  MFU "
                  f"{'n/a' if info['mfu'] is None else format(info['mfu'], '.1%'):>6}  peak "
                  f"{'n/a' if mem is None else format(mem, '.1f') + ' GiB':>9}  ({info['attention']})", flush=True)
        base = (res.get("trl_packed") or {}).get("tokens_per_second")
        ours = (res.get("umi_packed") or {}).get("tokens_per_second")
        if base and ours:
            res["umi_packed_vs_trl_packed"] = round(ours / base, 2)
    return out


def _speeds(res: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {res[k]['real_tokens_per_second']:,.0f} real tok/s"
        + (f" (MFU {res[k]['mfu']})" if res[k].get("mfu") is not None else "")
        for k in SCHEMES
        if k in res
    )


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    """Beside, then renamed into place: a benchmark killed mid-write leaves the previous file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="an `umidata split` output dir")
    ap.add_argument("--from-alpha-umi", type=Path, help="build the split from α-UMi's example JSON files")
    ap.add_argument("--tokenizer", help="tokenizer dir/name for the token counts [tiny, trained on the data]")
    ap.add_argument("--roles", nargs="+", default=list(ROLES))
    ap.add_argument("--max-length", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--cpu-steps", type=int, default=10, help="timed tiny-model steps per scheme (0: skip)")
    ap.add_argument("--synthetic", type=int, metavar="N", help="write a synthetic split of N examples a role")
    ap.add_argument(
        "--gpu", action="store_true", help="time umitrain's train_role and TRL's SFTTrainer on model shapes (CUDA)"
    )
    ap.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), help=f"[{' '.join(GPU_SHAPES)}]")
    ap.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    ap.add_argument("--gpu-steps", type=int, default=8, help="optimizer steps per run")
    ap.add_argument("--warmup-steps", type=int, default=2, help="steps left out of the tokens/s")
    ap.add_argument("--dry-run", action="store_true", help="with --gpu: the tiny-qwen2 shape on CPU (a rehearsal)")
    ap.add_argument("--peak-tflops", type=float, help="GPU bf16 dense peak for MFU [by device name]")
    ap.add_argument("-o", "--out", type=Path, default=REPO / "benchmarks" / "results" / "train.json")
    args = ap.parse_args(argv)
    if sum(x is not None for x in (args.data, args.from_alpha_umi, args.synthetic)) != 1:
        ap.error("give one of --data OUTDIR, --from-alpha-umi DIR, --synthetic N")

    import torch

    from umi_train.data import tokenize_role

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.synthetic is not None:
            data = synthetic_split(work / "split", args.synthetic)
        else:
            data = args.data or split_from_alpha_umi(args.from_alpha_umi, work / "split")
        tok, tok_name = load_tokenizer(args.tokenizer, data, work)
        result: dict[str, Any] = {
            "data": str(args.from_alpha_umi or data),
            "tokenizer": tok_name,
            "max_length": args.max_length,
            "machine": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "cpu_threads": torch.get_num_threads(),
            },
            "token_counts": {},
        }
        features_by_role = {}
        for role in args.roles:
            ds, stats = tokenize_role(
                data, role, "train", tok, max_length=args.max_length, cache_dir=work / "cache", quiet=True
            )
            features_by_role[role] = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in ds]
            counts = token_counts(
                [len(f["input_ids"]) for f in features_by_role[role]], args.max_length, args.batch_size
            )
            counts["loss_token_share"] = round(stats.loss_share, 4)
            counts["dropped_overlong"] = stats.dropped_overlong
            result["token_counts"][role] = counts
            print(
                f"{role:<11} {counts['examples']:>6} ex  real tokens {counts['real_tokens']:>9,}  "
                + "  ".join(
                    f"{k} {counts[k]['real_fraction']:.1%}"
                    for k in (
                        "pad_to_max_length",
                        "dynamic_padding_random",
                        "dynamic_padding_grouped",
                        "packing_flat_rows",
                        "packing_capped_rows",
                    )
                )
            )
        if args.cpu_steps:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from umi_train.tiny import make_tiny

            tiny_dir = (
                work / "tiny"
                if (work / "tiny").is_dir()
                else make_tiny(sorted((data / "global").glob("train-*.parquet")), work / "tiny")
            )
            ttok = AutoTokenizer.from_pretrained(tiny_dir)
            tds, _ = tokenize_role(
                data,
                "global",
                "train",
                ttok,
                max_length=args.max_length,
                cache_dir=work / "cache",
                quiet=True,
            )
            tfeat = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in tds]
            model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
            cpu = compare(model, ttok, tfeat, args.batch_size, args.cpu_steps, "cpu")
            cpu["model"] = "tiny llama (hidden 64, 2 layers), fp32"
            result["cpu_tiny"] = cpu
            print("cpu tiny: " + _speeds(cpu))
        if args.gpu:
            role = "global" if "global" in features_by_role else args.roles[0]
            shapes = args.shapes or (["tiny-qwen2"] if args.dry_run else list(GPU_SHAPES))
            print(f"gpu: {', '.join(shapes)} x {', '.join(args.runs)}, {args.gpu_steps} steps each", flush=True)
            def keep(partial: dict[str, Any]) -> None:
                _write_json(args.out, {**result, "gpu": partial})

            result["gpu"] = gpu_bench(
                data, role, tok, features_by_role[role], shapes, args.runs, args.gpu_steps, args.warmup_steps,
                args.peak_tflops, work, args.dry_run, keep,
            )
    _write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
