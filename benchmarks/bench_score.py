"""How long ``umieval score`` takes on a large original-format predictions.json.

    python benchmarks/bench_score.py [--steps 20000] [--repeat 3] [-o benchmarks/results/score.json]

Builds a predictions.json of ``--steps`` steps in the original pipeline's shape (spec §1.2/§1.5)
from the α-UMi example conversations (``../shared/data/alpha-umi-example/raw_data_stage_2.json``,
read at run time, never copied), each conversation repeated with its instruction suffixed ``#k`` so
every step has its own conversation key. Predictions are a fixed, seeded mix of what a model does
(right, wrong arguments, wrong plan, another answer, a hallucinated tool) so that every metric
path runs, R-L included. Then times, best of ``--repeat``: reading + scoring without intervals,
the same with the default 1,000 bootstrap resamples (wall and CPU seconds of this process), and the
whole ``umieval score --json`` command as a subprocess (imports included, wall). The 1-minute load
average is recorded: on a shared machine, CPU seconds are the steadier figure. Results go to
``benchmarks/results/score.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from umi_eval.score.scoring import score_file  # noqa: E402

SOURCE = REPO.parent / "shared" / "data" / "alpha-umi-example" / "raw_data_stage_2.json"
MARKERS = {"caller": "Next: caller.", "conclusion": "Next: conclusion.", "give up": "Next: give up."}


def steps_of(conv: dict[str, Any], suffix: str) -> list[dict[str, Any]]:
    """The evaluation steps of one conversation (spec §1.2) with their gold references."""
    turns = conv["conversations"]
    out = []
    for i, t in enumerate(turns):
        if t["from"] != "assistant":
            continue
        kind = next((k for k, m in MARKERS.items() if m in t["value"]), None)
        if kind is None:
            continue
        nxt = turns[i + 1] if i + 1 < len(turns) else None
        if kind == "give up" or nxt is None:
            ref = t["value"]
        else:
            ref = f"assistant: {t['value']}</s>{nxt['from']}: {nxt['value']}</s>"
        history = [dict(h) for h in turns[:i]]
        history[0] = {"from": "user", "value": history[0]["value"] + suffix}
        out.append({"tools": conv["tools"], "instruction": conv["instruction"] + suffix, "history": history,
                    "reference": ref, "kind": kind, "planner": t["value"], "next": nxt})
    return out


def predict(step: dict[str, Any], rng: random.Random) -> str:
    """A prediction in the pipeline's shape (spec §1.5): mostly right, sometimes wrong in one way."""
    r = rng.random()
    names = [t["Name"] for t in step["tools"]]
    thought = step["planner"]
    if step["kind"] == "give up" or r < 0.05:
        return thought.split("Next:")[0] + "Next: give up."
    if step["kind"] == "conclusion" or r < 0.10:
        answer = step["next"]["value"] if step["kind"] == "conclusion" else "I could not find it."
        if r < 0.4:
            words = answer.split(" ")
            rng.shuffle(words)
            answer = " ".join(words)
        return f"asssitant: {thought.split('Next:')[0]}Next: conclusion.</s>conclusion: {answer}"
    caller = step["next"]["value"]
    if r < 0.25:
        caller = caller.split("\n")[0] + '\nAction Input: {"q": "other"}'
    elif r < 0.30:
        caller = "Action: made_up_tool\nAction Input: {}"
    elif r < 0.40:
        caller = f"Action: {rng.choice(names)}\nAction Input: {{}}"
    return f"asssitant: {thought}</s>caller: {caller}"


def build(n_steps: int, seed: int, out: Path) -> int:
    convs = json.loads(SOURCE.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    k = 0
    while len(records) < n_steps:
        for conv in convs:
            for step in steps_of(conv, f" #{k}"):
                step["predictions"] = predict(step, rng)
                for key in ("kind", "planner", "next"):
                    del step[key]
                records.append(step)
            k += 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records[:n_steps], indent=4), encoding="utf-8")
    return k


def best(fn: Any, repeat: int) -> tuple[float, float, Any]:
    """Best wall and best CPU seconds (this process) over ``repeat`` runs, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", type=Path, default=REPO / "benchmarks" / "results" / "score.json")
    args = ap.parse_args()
    if not SOURCE.exists():
        sys.exit(f"needs the α-UMi example data: {SOURCE}")
    path = REPO / "benchmarks" / "out" / "score" / f"predictions-{args.steps}.json"
    conversations = build(args.steps, args.seed, path)
    load = round(os.getloadavg()[0], 2)
    no_ci_s, no_ci_cpu, report = best(lambda: score_file(path, resamples=0), args.repeat)
    ci_s, ci_cpu, _ = best(lambda: score_file(path, resamples=1000), args.repeat)
    umieval = Path(sys.executable).with_name("umieval")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [str(umieval), "score", str(path), "--json"]
    cli_s, _, _ = best(lambda: subprocess.run(cmd, env=env, check=True, capture_output=True), args.repeat)
    c = report.counts
    result = {
        "steps": c["steps"], "conversations": c["bootstrap"]["conversations"], "repeated_conversations": conversations,
        "file_bytes": path.stat().st_size,
        "finish_steps_scored_with_rouge": c["rouge_l"]["denominator"],
        "score_no_bootstrap_s": round(no_ci_s, 3), "score_no_bootstrap_cpu_s": round(no_ci_cpu, 3),
        "score_bootstrap_1000_s": round(ci_s, 3), "score_bootstrap_1000_cpu_s": round(ci_cpu, 3),
        "cli_score_json_s": round(cli_s, 3),
        "steps_per_s_no_bootstrap": round(c["steps"] / no_ci_s),
        "metrics": report.metrics,
        "repeat": args.repeat, "seed": args.seed,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_1min_before": load,
                    "load_1min_after": round(os.getloadavg()[0], 2)},
        "date": time.strftime("%Y-%m-%d"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
