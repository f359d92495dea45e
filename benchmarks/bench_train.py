"""Training-throughput benchmark for umi_train: pad-to-max vs dynamic padding vs umi's packing.

    python benchmarks/bench_train.py --data OUTDIR [--tokenizer PATH] [-o benchmarks/results/train.json]
    python benchmarks/bench_train.py --from-alpha-umi ../shared/data/alpha-umi-example  # builds a split
    python benchmarks/bench_train.py --data OUTDIR --gpu      # + ~0.5B Qwen2-like model, bf16, on CUDA

Part 1 (tokens per epoch) needs only a tokenizer: for the same shards it counts the tokens one epoch
processes and the real (non-pad) share for (a) padding every example to --max-length, (b) dynamic
padding with random batches, (c) dynamic padding with length-grouped batches (umi's fallback),
(d) packing each batch into one flat row (umi's default under FlashAttention's varlen kernel) and
(e) packing each batch into rows capped at its longest example (umi's default under sdpa / eager);
plus, per scheme, the share of the dense attention score cells (rows x width^2, what sdpa / eager
compute) that fall inside an example. Part 2 times real optimizer steps of the offline tiny model
on CPU, from the same weights over the same batches, under (c), (d) and (e) with the trainer's own
collators. Part 3 (--gpu) does the same for a randomly initialised ~0.5B Qwen2-shaped model in bf16
(flash_attention_2 when installed, else sdpa) and reports model-FLOPs utilisation (6·N·tokens/s
over the GPU's peak; attention FLOPs left out, so MFU is a lower bound).
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


SCHEMES = ("packed_flat_rows", "packed_capped_rows", "padded_grouped")


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
        "packed_flat_rows": (make_collator(tok, "flatten", flash_kwargs=flash_kwargs), rnd),
        "packed_capped_rows": (make_collator(tok, "rows"), rnd),
        "padded_grouped": (make_collator(tok, "pad"), grouped),
    }
    out: dict[str, Any] = {"trainer_default": packing_mode(model)}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, (collate, order) in runs.items():
        if name != "padded_grouped":
            ok, reason = packing_supported(model, collate)
            out[f"{name}_probe"] = reason
            if not ok:
                continue
        model.load_state_dict(state)
        out[name] = time_steps(model, features, collate, batch, steps, device, order, dtype)
    base = out["padded_grouped"]["real_tokens_per_second"]
    for name in SCHEMES[:2]:
        if name in out:
            out[f"speedup_{name}_vs_padded"] = round(out[name]["real_tokens_per_second"] / max(base, 1e-9), 3)
    return out


PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def gpu_bench(tok, features, batch: int, steps: int, peak: float | None) -> dict[str, Any]:
    import torch
    from transformers import Qwen2Config

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    name = torch.cuda.get_device_name(0)
    peak = peak or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    cfg = Qwen2Config(
        vocab_size=max(151936, len(tok)),
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        use_cache=False,
    )
    from transformers import AutoModelForCausalLM
    from transformers.utils import is_flash_attn_2_available

    impl = "flash_attention_2" if is_flash_attn_2_available() else "sdpa"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=impl, dtype=torch.bfloat16).to("cuda")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    n_params = sum(p.numel() for p in model.parameters())
    flash = impl.startswith("flash")
    res = compare(model, tok, features, batch, steps, "cuda", flash_kwargs=flash)
    res.update(
        {
            "attn_implementation": impl,
            "device": name,
            "params": n_params,
            "dtype": "bfloat16",
            "peak_tflops": peak,
            "gradient_checkpointing": True,
        }
    )
    for k in (k for k in SCHEMES if k in res):
        tps = res[k]["real_tokens_per_second"]
        res[k]["model_tflops"] = round(6 * n_params * tps / 1e12, 2)
        res[k]["mfu"] = round(6 * n_params * tps / (peak * 1e12), 4) if peak else None
    return res


def _speeds(res: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {res[k]['real_tokens_per_second']:,.0f} real tok/s"
        + (f" (MFU {res[k]['mfu']})" if res[k].get("mfu") is not None else "")
        for k in SCHEMES
        if k in res
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="an `umidata split` output dir")
    ap.add_argument("--from-alpha-umi", type=Path, help="build the split from α-UMi's example JSON files")
    ap.add_argument("--tokenizer", help="tokenizer dir/name for the token counts [tiny, trained on the data]")
    ap.add_argument("--roles", nargs="+", default=list(ROLES))
    ap.add_argument("--max-length", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--cpu-steps", type=int, default=10, help="timed tiny-model steps per scheme (0: skip)")
    ap.add_argument("--gpu", action="store_true", help="also time a ~0.5B Qwen2-like model in bf16 on CUDA")
    ap.add_argument("--gpu-steps", type=int, default=20)
    ap.add_argument("--peak-tflops", type=float, help="GPU bf16 dense peak for MFU [by device name]")
    ap.add_argument("-o", "--out", type=Path, default=REPO / "benchmarks" / "results" / "train.json")
    args = ap.parse_args(argv)
    if not args.data and not args.from_alpha_umi:
        ap.error("give --data OUTDIR or --from-alpha-umi DIR")

    import torch

    from umi_train.data import tokenize_role

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
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
        features = features_by_role["global" if "global" in features_by_role else args.roles[0]]
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
            g = gpu_bench(tok, features, args.batch_size, args.gpu_steps, args.peak_tflops)
            result["gpu"] = g
            print(f"gpu {g['device']} ({g['attn_implementation']}): " + _speeds(g))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
