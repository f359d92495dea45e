"""Check ``umieval score`` against the original α-UMi metric scripts, metric by metric.

    python benchmarks/check_original.py --original PATH/TO/Multi-LLM-Agent [--seeds 1 2 3 4 5]

Needs a checkout of X-PLUG/Multi-LLM-Agent (never copied here): its metric scripts
``GLPFT/inference_utils/toolbench/evaluate-multi_agent.py`` and ``evaluate-backbone.py`` and its test
set ``GLPFT/dataset/toolbench/test/out_of_domain.json`` (or ``--test-file``). For each seed it builds
the test steps (spec §1.2 for the trio, §1.7 for a single model), writes predictions.json files
whose predictions are seeded perturbations of the references (right, wrong or missing plan marker,
wrong / hallucinated / upper-cased tool, several Action lines, changed, dropped, extra, retyped or
non-object arguments, trailing text, shuffled / cut / other answers, a caller text that flips the
plan), runs the original script on each file and ``umi_eval.score.scoring.score_file``, and compares the
seven numbers. ``evaluate-backbone.py`` reads an option it never defines (spec §2.8); it is run with
that option set to its intended value ``all``. Results: ``benchmarks/results/original-check.json``;
exits 1 when any metric differs by 1e-6 or more.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from umi_eval.score.scoring import score_file  # noqa: E402

SCRIPTS = {"trio": "GLPFT/inference_utils/toolbench/evaluate-multi_agent.py",
           "single": "GLPFT/inference_utils/toolbench/evaluate-backbone.py"}
TEST_FILE = "GLPFT/dataset/toolbench/test/out_of_domain.json"
KEYS = {"plan_em": "plan_acc", "action_em": "act_em", "hallu_rate": "hallu", "f1": "arg_f1",
        "easy_f1": "arg_f1_easy", "hard_f1": "arg_f1_hard", "rouge": "rouge_l"}
MARKERS = {"caller": "Next: caller.", "conclusion": "Next: conclusion.", "give up": "Next: give up."}
# Runs an original script with argparse patched to define the option evaluate-backbone.py forgot.
RUNNER = """
import argparse, runpy, sys
parse = argparse.ArgumentParser.parse_args
def parse_args(self, *a, **k):
    ns = parse(self, *a, **k)
    ns.agent_mode = getattr(ns, "agent_mode", "all")
    return ns
argparse.ArgumentParser.parse_args = parse_args
script = sys.argv[1]
sys.argv = [script] + sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def steps(conversations: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Every marked assistant turn (spec §1.2) with its reference: §1.2 strings (trio) or §1.7 targets."""
    out = []
    for conv in conversations:
        turns = conv["conversations"]
        for i, turn in enumerate(turns):
            kind = next((k for k, m in MARKERS.items() if m in turn["value"]), None)
            if turn["from"] != "assistant" or kind is None:
                continue
            nxt = turns[i + 1] if i + 1 < len(turns) else None
            if mode == "trio":
                ref = turn["value"] if kind == "give up" else \
                    f"assistant: {turn['value']}</s>{nxt['from']}: {nxt['value']}</s>"
            else:
                thought = turn["value"].replace(MARKERS[kind], "").strip()
                if kind == "give up":
                    tail = "conclusion: give up."
                else:
                    tail = nxt["value"] if kind == "caller" else "conclusion: " + nxt["value"]
                ref = f"{thought}\n{tail}"
            out.append({"tools": conv["tools"], "instruction": conv["instruction"], "history": turns[:i],
                        "reference": ref, "kind": kind, "next": nxt})
    return out


def perturb_args(args: str, rng: random.Random) -> str:
    r = rng.random()
    try:
        value = json.loads(args)
    except ValueError:
        return args
    if r < 0.3:
        return args
    if r < 0.4:
        return args + "\nObservation: done"
    if r < 0.5:
        return rng.choice(["[1, 2]", '"text"', "3", "{}"])
    if not isinstance(value, dict):
        return args
    value = dict(value)
    for k in list(value):
        x = rng.random()
        if x < 0.3:
            value[k] = "changed"
        elif x < 0.4:
            del value[k]
        elif x < 0.5 and isinstance(value[k], str) and value[k].isdigit():
            value[k] = int(value[k])
    if rng.random() < 0.3:
        value["extra"] = 1
    return json.dumps(value)


def perturb_answer(answer: str, rng: random.Random) -> str:
    r = rng.random()
    words = answer.split(" ")
    if r < 0.3:
        return answer
    if r < 0.5:
        rng.shuffle(words)
        return " ".join(words)
    if r < 0.6:
        return "none"
    if r < 0.7:
        return " ".join(words[: max(1, len(words) // 2)]) + "."
    if r < 0.75:
        return "I will not Next: give up here"  # flips the plan (spec §2.1)
    return "The answer is " + " ".join(rng.sample(words, min(len(words), 8)))


def predict(step: dict[str, Any], mode: str, rng: random.Random) -> str:
    names = [t["Name"] for t in step["tools"]]
    plan = step["kind"] if rng.random() < 0.7 else rng.choice(["caller", "conclusion", "give up", "no period"])
    if step["kind"] == "caller":
        first, _, rest = step["next"]["value"].partition("\nAction Input: ")
        name, args = first.removeprefix("Action: "), rest or "{}"
    else:
        name, args = rng.choice(names), "{}"
    x = rng.random()
    name = rng.choice(names) if x < 0.1 else "Finish" if x < 0.15 else name.upper() if x < 0.2 else name
    caller = f"Action: {name}\nAction Input: {perturb_args(args, rng)}"
    if rng.random() < 0.05:
        caller = f"I will call {name}"
    elif rng.random() < 0.05:
        caller = f"Action: other\nAction Input: {{}}\n{caller}"
    answer = perturb_answer(step["next"]["value"] if step["kind"] == "conclusion" else "Some answer. It works.", rng)
    thought = "Thinking about it."
    if mode == "single":
        return {"give up": f"{thought}\nconclusion: give up.", "conclusion": f"{thought}\nconclusion: {answer}"}.get(
            plan, f"{thought}\n{caller}")
    if plan == "give up":
        return f"{thought} Next: give up."
    if plan == "conclusion":
        return f"asssitant: {thought} Next: conclusion.</s>conclusion: {answer}"
    if plan == "no period":  # routed to the caller by the pipeline, parsed as finish by the evaluator
        return f"asssitant: {thought} Next: conclusion Next: caller.</s>caller: {caller}"
    return f"asssitant: {thought} Next: caller.</s>caller: {caller}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--original", type=Path, required=True, help="checkout of X-PLUG/Multi-LLM-Agent")
    ap.add_argument("--test-file", type=Path, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("-o", "--output", type=Path, default=REPO / "benchmarks" / "results" / "original-check.json")
    args = ap.parse_args()
    conversations = json.loads((args.test_file or args.original / TEST_FILE).read_text(encoding="utf-8"))
    work = REPO / "benchmarks" / "out" / "original-check"
    work.mkdir(parents=True, exist_ok=True)
    runs, worst = [], 0.0
    for mode in ("trio", "single"):
        base = steps(conversations, mode)
        for seed in args.seeds:
            rng = random.Random(seed)
            items = [{k: v for k, v in s.items() if k not in ("kind", "next")} | {"predictions": predict(s, mode, rng)}
                     for s in base]
            rng.shuffle(items)
            path = work / f"{mode}-{seed}" / "predictions.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(items, indent=4), encoding="utf-8")
            metrics_path = path.with_name("metrics.json")
            cmd = [sys.executable, "-c", RUNNER, str(args.original / SCRIPTS[mode]),
                   "--input_path", str(path), "--output_path", str(metrics_path)]
            subprocess.run(cmd, check=True, capture_output=True)
            original = json.loads(metrics_path.read_text())
            report = score_file(path, resamples=0)
            diffs = {ours: abs(original[theirs] - report.metrics[ours]) for theirs, ours in KEYS.items()}
            worst = max(worst, *diffs.values())
            runs.append({"mode": mode, "seed": seed, "steps": report.counts["steps"], "shape": report.counts["shape"],
                         "original": {KEYS[k]: original[k] for k in KEYS}, "umi": report.metrics,
                         "max_abs_diff": max(diffs.values()), "quirks": report.counts["quirks"]})
            print(f"{mode:6s} seed {seed}: {report.counts['steps']} steps, max |diff| {max(diffs.values()):.2e}")
    result = {"test_file": str(args.test_file or TEST_FILE), "max_abs_diff": worst, "runs": runs}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    sys.exit(0 if worst < 1e-6 else 1)


if __name__ == "__main__":
    main()
