"""Chat rendering vs α-UMi rendering: training tokens per epoch, per role, and CPU tiny-model speed.

    python benchmarks/bench_chat.py ../shared/data/alpha-umi-example/raw_data_stage_2.json
    python benchmarks/bench_chat.py benchmarks/corpus/3000 --name toolbench-3000 --cpu-roles none

The same input is split three ways with ``umidata split`` (α-UMi text prompts, one row per step;
``--template chat``, one row per trajectory per role; ``--template chat --granularity step``) and
every role dataset is tokenized by ``umi_train.data.tokenize_role`` with ONE tokenizer: the offline
tiny BPE (2k vocabulary, trained on all three renderings' text) carrying TRL's qwen2_5 chat template.
Reported per role and rendering: rows, tokens per epoch (what the model reads), loss tokens
(what it is trained on), and the tokenization time. With ``--cpu-roles`` it then trains one epoch
of the same tiny random model (same initial weights, packing as ``umitrain`` picks it, batch 4)
on each listed role under each rendering and records seconds per epoch and real tokens per second.
Nothing is ever cut: ``max_length`` is set above the longest sample.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from umi_train import ROLES  # noqa: E402

RENDERINGS = {
    "alpha-umi": {"template": "alpha-umi"},
    "chat-trajectory": {"template": "chat", "granularity": "trajectory"},
    "chat-step": {"template": "chat", "granularity": "step"},
}
MAX_LENGTH = 1 << 16


def split_all(inputs: list[str], work: Path) -> dict[str, Path]:
    from umi_data.split.pipeline import SplitOptions, split

    outs = {}
    for name, opts in RENDERINGS.items():
        outs[name] = work / name
        split(inputs, str(outs[name]), SplitOptions(dev_ratio=0.0, workers=2, **opts), overwrite=True)
    return outs


def shared_model(outs: dict[str, Path], work: Path) -> Path:
    """One tokenizer (trained on every rendering's text, TRL's qwen2_5 template) + one tiny model."""
    import pyarrow.parquet as pq

    from umi_train.tiny import TINY_CHAT_FAMILY, _texts, build_tiny_model, chat_texts, train_tiny_tokenizer

    def texts():
        for name, out in outs.items():
            files = sorted((out / "global").glob("train-*.parquet"))
            if name == "alpha-umi":
                yield from _texts(pq.read_table(f, columns=["prompt", "completion"]) for f in files)
            else:
                yield from chat_texts(pq.read_table(f, columns=["messages", "tools"]) for f in files)

    tok = train_tiny_tokenizer(texts(), vocab_size=2000, family=TINY_CHAT_FAMILY)
    model = build_tiny_model(tok, seed=0, max_positions=MAX_LENGTH)
    path = work / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def count(outs: dict[str, Path], model: Path, work: Path) -> dict[str, dict[str, Any]]:
    from transformers import AutoTokenizer

    from umi_train.data import tokenize_role

    tok = AutoTokenizer.from_pretrained(model)
    res: dict[str, dict[str, Any]] = {}
    for name, out in outs.items():
        for role in ROLES:
            t0 = time.perf_counter()
            _, st = tokenize_role(out, role, "train", tok, max_length=MAX_LENGTH, quiet=True)
            res.setdefault(role, {})[name] = {
                "rows": st.used, "tokens": st.tokens, "loss_tokens": st.loss_tokens,
                "dropped": st.examples - st.used, "tokenize_s": round(time.perf_counter() - t0, 2),
            }
    for r in res.values():
        base = r["alpha-umi"]["tokens"]
        for name in RENDERINGS:
            r[name]["tokens_vs_alpha_umi"] = round(r[name]["tokens"] / base, 3)
    return res


def train_epochs(outs: dict[str, Path], model: Path, work: Path, roles: list[str]) -> dict[str, dict[str, Any]]:
    from umi_train.train import TrainConfig, train_role

    res: dict[str, dict[str, Any]] = {}
    for role in roles:
        for name in ("alpha-umi", "chat-trajectory"):
            run = work / "runs" / name / role
            shutil.rmtree(run, ignore_errors=True)
            cfg = TrainConfig(data=outs[name], role=role, output_dir=run, model=str(model), epochs=1, lr=1e-3,
                              warmup_ratio=0.1, max_length=MAX_LENGTH, batch_size=4, bf16=False,
                              gradient_checkpointing=False, save_steps=10**6, logging_steps=10**6, quiet=True,
                              resume="never")
            load = os.getloadavg()[0]
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            s = train_role(cfg)
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime  # includes model load + tokenize
            res.setdefault(role, {})[name] = {
                "load_avg_1min": [round(load, 1), round(os.getloadavg()[0], 1)],  # before, after (shared machine)
                "cpu_seconds_run": round(cpu, 1),
                "cpu_tokens_per_second": round(s["tokens_seen"] / cpu, 1),
                "seconds_per_epoch": s["seconds"], "tokens_per_second": s["tokens_per_second"],
                "tokens_seen": s["tokens_seen"], "steps": s["steps"], "batching": s["batching"],
            }
            print(f"  {role:<10} {name:<16} {s['seconds']:8.1f} s/epoch  {s['tokens_per_second']:8,.0f} tok/s",
                  flush=True)
    return res


def markdown(result: dict[str, Any]) -> str:
    lines = [f"### {result['name']} ({result['trajectories']} trajectories)", "",
             "| role | α-UMi rows | α-UMi tokens | chat traj. rows | chat traj. tokens | × | chat step tokens "
             "| α-UMi loss tok. | chat traj. loss tok. |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for role, r in result["tokens"].items():
        a, c, s = r["alpha-umi"], r["chat-trajectory"], r["chat-step"]
        lines.append(f"| {role} | {a['rows']:,} | {a['tokens']:,} | {c['rows']:,} | {c['tokens']:,} "
                     f"| {c['tokens_vs_alpha_umi']:.2f} | {s['tokens']:,} | {a['loss_tokens']:,} "
                     f"| {c['loss_tokens']:,} |")
    if result.get("cpu"):
        lines += ["", "| role | α-UMi s/epoch (wall) | α-UMi CPU s | α-UMi tok/CPU-s | chat traj. s/epoch (wall) "
                  "| chat traj. CPU s | chat traj. tok/CPU-s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for role, r in result["cpu"].items():
            a, c = r["alpha-umi"], r["chat-trajectory"]
            lines.append(f"| {role} | {a['seconds_per_epoch']:.1f} | {a.get('cpu_seconds_run', 0):.1f} "
                         f"| {a.get('cpu_tokens_per_second', 0):,.0f} | {c['seconds_per_epoch']:.1f} "
                         f"| {c.get('cpu_seconds_run', 0):.1f} | {c.get('cpu_tokens_per_second', 0):,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="umidata split inputs")
    ap.add_argument("--name", default="alpha-umi-example")
    ap.add_argument("--cpu-roles", default="all", help="roles to time one CPU epoch of (comma list, all, none)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the CPU epochs")
    ap.add_argument("--work", type=Path, default=REPO / "benchmarks" / "out" / "chat")
    ap.add_argument("-o", "--out", type=Path, default=REPO / "benchmarks" / "results" / "chat.json")
    args = ap.parse_args(argv)
    work = args.work / args.name
    work.mkdir(parents=True, exist_ok=True)
    outs = split_all(args.inputs, work)
    model = shared_model(outs, work)
    manifest = json.loads((outs["chat-trajectory"] / "manifest.json").read_text())
    result: dict[str, Any] = {
        "name": args.name, "inputs": args.inputs, "trajectories": manifest["counts"]["accepted"],
        "tokenizer": "tiny byte-level BPE, 2,000 tokens, TRL qwen2_5 chat template (training variant)",
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "tokens": count(outs, model, work),
    }
    print(json.dumps(result["tokens"], indent=1))
    roles = [] if args.cpu_roles == "none" else list(ROLES) if args.cpu_roles == "all" else args.cpu_roles.split(",")
    if roles:
        import torch

        torch.set_num_threads(args.threads)  # one core: CPU time is then a fair measure on a busy machine
        result["machine"]["torch_threads"] = torch.get_num_threads()
        result["cpu"] = train_epochs(outs, model, work, roles)
    allres = json.loads(args.out.read_text()) if args.out.is_file() else {}
    allres[args.name] = result
    args.out.write_text(json.dumps(allres, indent=2) + "\n")
    md = args.out.with_suffix(".md")
    md.write_text("".join(markdown(r) + "\n" for r in allres.values()))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
