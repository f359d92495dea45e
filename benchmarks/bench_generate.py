"""Generation-throughput benchmark for ``umieval generate`` (steps per second, tokens per second).

    python benchmarks/bench_generate.py --from-alpha-umi ../shared/data/alpha-umi-example   # tiny run, CPU
    python benchmarks/bench_generate.py --glpft-run runs/glpft --inputs out_of_domain.json --gpu  # bf16, CUDA

Without ``--glpft-run`` it builds what ``make demo`` builds, on α-UMi's 20-trajectory sample: a
``umidata split`` (dev ratio 0.2) and a tiny GLPFT run (``pipelines/tiny-glpft.yaml``, offline random
LLaMA + BPE tokenizer, CPU), then times ``umieval generate`` (trio, and the stage-1 model as the
single-model baseline) on every step of the sample, greedy, ``max_new_tokens`` 512. The tiny model
rarely emits EOS, so most completions run to the 512-token limit: the figure is close to the worst
case per step. ``--gpu``: the same on CUDA with bfloat16 weights and a larger batch, for a real run
(e.g. three 7B checkpoints) on α-UMi's test sets. Results: JSON (and a Markdown table beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
              stage_overrides={"quiet": True}, echo=lambda _: None)  # fmt: skip
    return work / "glpft"


def run_mode(mode: str, models: dict[str, str], inputs: list[str], out: Path, backend_options: dict[str, Any],
             decoding: Decoding, chunk: int) -> dict[str, Any]:  # fmt: skip
    opts = GenerateOptions(mode, models, "transformers", decoding, "umi", backend_options, chunk)
    s = generate(inputs, out, opts, overwrite=True)
    d = s.to_dict()
    return {
        "mode": mode,
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
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-alpha-umi", type=Path, default=REPO.parent / "shared" / "data" / "alpha-umi-example")
    ap.add_argument("--glpft-run", type=Path, help="an existing `umitrain glpft` output dir (skips the tiny run)")
    ap.add_argument("--inputs", nargs="*", help="test steps (default: the sample's raw_data_stage_2.json)")
    ap.add_argument("--work", type=Path, help="where the tiny run goes (default: a temporary dir)")
    ap.add_argument("-o", "--output", type=Path, default=REPO / "benchmarks" / "results" / "generate.json")
    ap.add_argument("--gpu", action="store_true", help="CUDA, bfloat16 weights (the 7B path)")
    ap.add_argument("--batch-size", type=int, help="default 8 on CPU, 32 with --gpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for the tiny model)")
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--attn-implementation", default=None, help="e.g. flash_attention_2 with --gpu")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="bench-generate-") if args.work is None else None
    work = args.work or Path(tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    reused = args.glpft_run is None and (work / "glpft" / "glpft-summary.json").is_file()
    run = args.glpft_run or tiny_run(args.from_alpha_umi / "raw_data_stage_2.json", work)
    train_seconds = round(time.perf_counter() - t0, 1) if args.glpft_run is None and not reused else None
    inputs = args.inputs or [str(args.from_alpha_umi / "raw_data_stage_2.json")]
    if args.gpu and not torch.cuda.is_available():
        sys.exit("--gpu: no CUDA device")
    backend_options: dict[str, Any] = {
        "batch_size": args.batch_size or (32 if args.gpu else 8),
        "device": "cuda" if args.gpu else "cpu",
        "dtype": "bfloat16" if args.gpu else "float32",
    }
    if args.attn_implementation:
        backend_options["attn_implementation"] = args.attn_implementation
    decoding = Decoding(max_new_tokens=args.max_new_tokens)
    trio = {r: str(run / f"stage2-{r}" / "model") for r in ("planner", "caller", "summarizer")}
    load_before = os.getloadavg()
    results = [
        run_mode("trio", trio, inputs, work / "trio.jsonl", backend_options, decoding, 64),
        run_mode("single", {"model": str(run / "stage1-global" / "model")}, inputs, work / "single.jsonl",
                 backend_options, decoding, 64),
    ]
    report = {
        "benchmark": "umieval generate throughput",
        "models": "tiny GLPFT run (pipelines/tiny-glpft.yaml)" if args.glpft_run is None else str(run),
        "inputs": [os.path.relpath(i, REPO) for i in inputs],
        "decoding": decoding.to_dict(),
        "backend_options": backend_options,
        "torch_threads": args.threads,
        "tiny_run_seconds": train_seconds,  # None: an existing run (--glpft-run, or one already in --work)
        "results": results,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if args.gpu else None,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    rows = ["| mode | steps | routes | wall s | model s | steps/s (model) | generated tokens/s |",
            "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in results:
        routes = ", ".join(f"{k} {v}" for k, v in r["routes"].items())
        rows.append(f"| {r['mode']} | {r['steps']} | {routes} | {r['wall_seconds']} | {r['model_seconds']} | "
                    f"{r['steps_per_second_model']} | {r['generated_tokens_per_second']} |")  # fmt: skip
    where = f"{report['machine']['gpu']}" if args.gpu else f"CPU, {args.threads} torch thread(s)"
    md = (f"# umieval generate throughput\n\n{report['models']} on {', '.join(report['inputs'])}; {where}; batch "
          f"{backend_options['batch_size']}, greedy, max_new_tokens {args.max_new_tokens}; load average "
          f"{load_before[0]:.1f} before, {report['machine']['load_average_after'][0]:.1f} after.\n\n"
          + "\n".join(rows) + "\n")  # fmt: skip
    args.output.with_suffix(".md").write_text(md)
    print(md)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
