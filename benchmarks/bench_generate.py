"""Generation-throughput benchmark for ``umieval generate``: steps/s, generated tokens/s, peak memory.

    python benchmarks/bench_generate.py --glpft-run RUN --gpu        # one GPU, offline, < 5 min (0.5B trio)
    python benchmarks/bench_generate.py --glpft-run RUN --gpu --inputs out_of_domain.json
    python benchmarks/bench_generate.py --limit 12 --max-new-tokens 24 -o /tmp/g.json   # CPU dry run, tiny

``--gpu``: bfloat16 on CUDA, greedy, 96 new tokens, the first 300 steps (issue 21's setting), the
engine with continuous batching (``--batch-size`` 64 requests a model step, ``--chunk-size`` 256
steps in flight), for the trio (stage-2 models) and the single model (stage 1); then the same
first ``--baseline-steps`` steps with static batches (today's ``--batch-size 32`` padded batches)
for the speed-up. Inputs default to the run's own split (its dev trajectories, from the stage
summary); give α-UMi's test file with ``--inputs``. Nothing is downloaded (``HF_HUB_OFFLINE``).

Without ``--glpft-run`` it first builds what ``make demo`` builds (a split of α-UMi's 20-trajectory
sample and a tiny GLPFT run, CPU) and times that. Printed per run: steps, routes, seconds,
steps/s, generated tokens/s and peak memory (CUDA: ``max_memory_allocated``; CPU: the process's
peak RSS so far). Results: JSON (and a Markdown table beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network: every model is a local directory
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from umi_eval.generate.backends import Decoding  # noqa: E402
from umi_eval.generate.predict import GenerateOptions, generate  # noqa: E402


def tiny_run(sample: Path, work: Path) -> Path:
    """The demo's pipeline on the α-UMi sample: split, then tiny GLPFT (seconds per stage on CPU)."""
    from umi_data.split.pipeline import SplitOptions, split
    from umi_train.glpft import run_glpft

    split([str(sample)], str(work / "split"), SplitOptions(dev_ratio=0.2), overwrite=True)
    run_glpft(REPO / "pipelines" / "tiny-glpft.yaml", {"data": str(work / "split"), "output_dir": str(work / "glpft")},
              stage_overrides={"quiet": True}, echo=lambda _: None)
    return work / "glpft"


def run_split(run: Path) -> str | None:
    """The `umidata split` dir a GLPFT run trained on (its stage summaries record it)."""
    for summary in sorted(run.glob("stage*/*summary*.json")):
        try:
            data = json.loads(summary.read_text()).get("data")
        except (OSError, ValueError, AttributeError):
            continue
        if data and Path(data).is_dir():
            return str(data)
    return None


def peak_memory_mib(gpu: bool) -> float:
    if gpu:
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def run_mode(mode: str, models: dict[str, str], inputs: list[str], out: Path, backend: str,
             backend_options: dict[str, Any], decoding: Decoding, chunk: int, limit: int | None,
             gpu: bool) -> dict[str, Any]:
    if gpu:
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    opts = GenerateOptions(mode, models, backend, decoding, "umi", backend_options, chunk)
    s = generate(inputs, out, opts, overwrite=True, limit=limit)
    d = s.to_dict()
    return {
        "mode": mode,
        "batching": backend_options.get("batching", backend),
        "batch_size": backend_options.get("batch_size"),
        "steps": s.generated,
        "routes": d["routes"],
        "wall_seconds": round(s.seconds, 2),
        "model_seconds": round(s.model_seconds, 2),
        "steps_per_second_wall": round(s.generated / s.seconds, 3) if s.seconds else None,
        "steps_per_second_model": round(s.generated / s.model_seconds, 3) if s.model_seconds else None,
        "generated_tokens": s.completion_tokens,
        "generated_tokens_per_second": round(s.completion_tokens / s.model_seconds, 1) if s.model_seconds else None,
        "prompt_tokens": s.prompt_tokens,
        "truncated_prompts": s.truncated,
        "peak_memory_mib": peak_memory_mib(gpu),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-alpha-umi", type=Path, default=REPO.parent / "shared" / "data" / "alpha-umi-example")
    ap.add_argument("--glpft-run", type=Path, help="an existing `umitrain glpft` output dir (skips the tiny run)")
    ap.add_argument("--inputs", nargs="*", help="test steps (default: the run's split, or the sample's stage-2 file)")
    ap.add_argument("--work", type=Path, help="where the tiny run and the predictions go (default: a temporary dir)")
    ap.add_argument("-o", "--output", type=Path, default=REPO / "benchmarks" / "results" / "generate.json")
    ap.add_argument("--gpu", action="store_true", help="CUDA, bfloat16 weights, issue 21's setting")
    ap.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    ap.add_argument("--batching", choices=["continuous", "static"], help="default: continuous with --gpu, else static")
    ap.add_argument("--batch-size", type=int, help="requests per model step (default 8 on CPU, 64 with --gpu)")
    ap.add_argument("--chunk-size", type=int, help="steps in flight (default 64 on CPU, 256 with --gpu)")
    ap.add_argument("--limit", type=int, help="only the first N steps (default: all on CPU, 300 with --gpu)")
    ap.add_argument("--baseline-steps", type=int, help="steps for the static-batch baseline (batch 32 on GPU, "
                    "8 on CPU; default 64 with --gpu, 0 = none, the default on CPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for the tiny model)")
    ap.add_argument("--max-new-tokens", type=int, help="default 512 on CPU, 96 with --gpu")
    ap.add_argument("--attn-implementation", default=None, help="e.g. flash_attention_2 with --gpu")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.gpu and not torch.cuda.is_available():
        sys.exit("--gpu: no CUDA device")
    tmp = tempfile.TemporaryDirectory(prefix="bench-generate-") if args.work is None else None
    work = args.work or Path(tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    reused = args.glpft_run is None and (work / "glpft" / "glpft-summary.json").is_file()
    run = args.glpft_run or (work / "glpft" if reused else tiny_run(args.from_alpha_umi / "raw_data_stage_2.json",
                                                                     work))
    train_seconds = round(time.perf_counter() - t0, 1) if args.glpft_run is None and not reused else None
    if args.inputs:
        inputs = args.inputs
    elif args.glpft_run is not None and run_split(run):
        inputs = [run_split(run) or ""]
    else:
        inputs = [str(args.from_alpha_umi / "raw_data_stage_2.json")]
    gpu = args.gpu
    limit = args.limit if args.limit is not None else (300 if gpu else None)
    batching = args.batching or ("continuous" if gpu else "static")
    decoding = Decoding(max_new_tokens=args.max_new_tokens or (96 if gpu else 512))
    base: dict[str, Any] = {"device": "cuda" if gpu else "cpu", "dtype": "bfloat16" if gpu else "float32"}
    if args.attn_implementation:
        base["attn_implementation"] = args.attn_implementation
    if args.backend == "vllm":
        engine_opts: dict[str, Any] = {"dtype": base["dtype"]}
    else:
        engine_opts = {**base, "batching": batching, "batch_size": args.batch_size or (64 if gpu else 8)}
    chunk = args.chunk_size or (256 if gpu else 64)
    trio = {r: str(run / f"stage2-{r}" / "model") for r in ("planner", "caller", "summarizer")}
    single = {"model": str(run / "stage1-global" / "model")}
    load_before = os.getloadavg()
    results = []
    for mode, models in (("trio", trio), ("single", single)):
        results.append(run_mode(mode, models, inputs, work / f"{mode}.jsonl", args.backend, engine_opts, decoding,
                                chunk, limit, gpu))
        print(json.dumps(results[-1]), flush=True)
    baseline = args.baseline_steps if args.baseline_steps is not None else (64 if gpu else 0)
    if baseline:
        static = {**base, "batching": "static", "batch_size": 32 if gpu else 8}
        for mode, models in (("trio", trio), ("single", single)):
            results.append(run_mode(mode, models, inputs, work / f"{mode}-static.jsonl", "transformers", static,
                                    decoding, 64, baseline, gpu))
            print(json.dumps(results[-1]), flush=True)
    report = {
        "benchmark": "umieval generate throughput",
        "models": "tiny GLPFT run (pipelines/tiny-glpft.yaml)" if args.glpft_run is None else str(run),
        "inputs": [os.path.relpath(i, REPO) for i in inputs],
        "limit": limit,
        "decoding": decoding.to_dict(),
        "backend": args.backend,
        "chunk_size": chunk,
        "torch_threads": args.threads,
        "tiny_run_seconds": train_seconds,  # None: an existing run (--glpft-run, or one already in --work)
        "results": results,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if gpu else None,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    rows = ["| mode | batching | batch | steps | routes | wall s | model s | steps/s (model) | generated tokens/s "
            "| peak MiB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        routes = ", ".join(f"{k} {v}" for k, v in r["routes"].items())
        rows.append(f"| {r['mode']} | {r['batching']} | {r['batch_size']} | {r['steps']} | {routes} | "
                    f"{r['wall_seconds']} | {r['model_seconds']} | {r['steps_per_second_model']} | "
                    f"{r['generated_tokens_per_second']} | {r['peak_memory_mib']} |")
    where = f"{report['machine']['gpu']}, bfloat16" if gpu else f"CPU, {args.threads} torch thread(s)"
    md = (f"# umieval generate throughput\n\n{report['models']} on {', '.join(report['inputs'])}"
          f"{f' (first {limit} steps)' if limit else ''}; {where}; greedy, max_new_tokens {decoding.max_new_tokens}, "
          f"{chunk} steps in flight; load average {load_before[0]:.1f} before, "
          f"{report['machine']['load_average_after'][0]:.1f} after.\n\n" + "\n".join(rows) + "\n")
    args.output.with_suffix(".md").write_text(md)
    print(md)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
