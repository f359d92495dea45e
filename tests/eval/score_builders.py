"""Builders of prediction files for the scoring tests, written out by hand in the shapes of spec
§1.2/§1.5 (the original pipeline), §1.7/§2.8 (a single model) and umi's JSONL contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEATHER, FORECAST = "get_weather_for_meteo", "get_forecast_for_meteo"
TOOLS = [{"Name": WEATHER, "function": "weather", "input": {"city": "string"}},
         {"Name": FORECAST, "function": "forecast", "input": {}}]


# -- trio strings (spec §1.2 references, §1.5 predictions: note the original's "asssitant" label)
def ref_call(name: str, args: str, thought: str = "I will call it.") -> str:
    return f"assistant: {thought} Next: caller.</s>caller: Action: {name}\nAction Input: {args}</s>"


def ref_finish(answer: str, thought: str = "I know now.") -> str:
    return f"assistant: {thought} Next: conclusion.</s>conclusion: {answer}</s>"


def ref_give_up(thought: str = "Nothing works.") -> str:
    return f"{thought} Next: give up."


def pred_call(name: str, args: str, thought: str = "Let me call.") -> str:
    return f"asssitant: {thought} Next: caller.</s>caller: Action: {name}\nAction Input: {args}"


def pred_finish(answer: str, thought: str = "Done.") -> str:
    return f"asssitant: {thought} Next: conclusion.</s>conclusion: {answer}"


def pred_give_up(thought: str = "I give up.") -> str:
    return f"{thought} Next: give up."


# -- single-model strings (spec §1.7 targets, §2.8)
def s_call(name: str, args: str, thought: str = "I will call it.") -> str:
    return f"{thought}\nAction: {name}\nAction Input: {args}"


def s_finish(answer: str, thought: str = "I know now.") -> str:
    return f"{thought}\nconclusion: {answer}"


def s_give_up(thought: str = "Nothing works.") -> str:
    return f"{thought}\nconclusion: give up."


def record(i: int, reference: str, prediction: str, tools: list[dict[str, Any]] | None = None,
           instruction: str | None = None, assistants_before: int = 0) -> dict[str, Any]:
    """One original predictions.json item: its own conversation unless ``instruction`` is shared."""
    q = instruction if instruction is not None else f"question {i}"
    history = [{"from": "user", "value": q}]
    for k in range(assistants_before):
        history += [{"from": "assistant", "value": f"step {k} Next: caller."},
                    {"from": "caller", "value": "Action: x\nAction Input: {}"},
                    {"from": "observation", "value": "{}"}]
    return {"tools": tools if tools is not None else TOOLS, "instruction": q, "history": history,
            "dispath": "user: " + q + "</s>", "reference": reference, "predictions": prediction}


def write_original(path: Path, pairs: list[tuple[str, str]], **kw: Any) -> Path:
    """A predictions.json (indent 4, as the original writes it), one conversation per step."""
    path.write_text(json.dumps([record(i, r, p, **kw) for i, (r, p) in enumerate(pairs)], indent=4), encoding="utf-8")
    return path


def write_umi(path: Path, rows: list[tuple[str, str, str]], mode: str = "trio", header: bool = True) -> Path:
    """umi's JSONL: rows of (id "<trajectory>#<step>", reference, prediction), header line first."""
    head = {"umi_predictions": 1, "mode": mode, "models": {}, "decoding": {}, "umi_version": "0.1.0"}
    lines = [head] if header else []
    for sid, ref, pred in rows:
        traj, step = sid.rsplit("#", 1)
        lines.append({"id": sid, "trajectory_id": traj, "step": int(step), "mode": mode, "tools": TOOLS,
                      "reference": ref, "prediction": pred, "route": "caller"})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


# The "mixed errors" file: ten steps whose scores are worked out by hand in test_score.py.
MIXED_TRIO = [
    (ref_call(WEATHER, '{"city": "Paris"}'), pred_call(WEATHER, '{"city": "Paris"}')),  # S1 all right
    (ref_call(WEATHER, '{"city": "Paris", "days": 3}'), pred_call(WEATHER, '{"city": "paris", "days": 3.0}')),  # S2
    (ref_call(FORECAST, "{}"), pred_call(FORECAST, "{}")),  # S3 easy, right
    (ref_call(FORECAST, "{}"), pred_call(WEATHER, "{}")),  # S4 wrong (existing) tool
    (ref_call(WEATHER, '{"city": "Rome"}'), pred_call("Finish", '{"return_type": "give_answer"}')),  # S5 hallucinated
    (ref_call(WEATHER, '{"city": "Rome"}'), pred_finish("Rome is sunny.")),  # S6 plan call -> finish
    (ref_finish("It is 21 degrees in Paris."), pred_finish("Paris is 21 degrees today.")),  # S7 spec R-L example
    (ref_finish("Done."), pred_give_up()),  # S8 plan finish -> give up
    (ref_give_up(), pred_give_up()),  # S9 right
    (ref_give_up(), pred_call("made_up_tool", "{}")),  # S10 plan give up -> call, hallucinated
]
MIXED_SINGLE = [
    (s_call(WEATHER, '{"city": "Paris"}'), s_call(WEATHER, '{"city": "Paris"}')),
    (s_call(WEATHER, '{"city": "Paris", "days": 3}'), s_call(WEATHER, '{"city": "paris", "days": 3.0}')),
    (s_call(FORECAST, "{}"), s_call(FORECAST, "{}")),
    (s_call(FORECAST, "{}"), s_call(WEATHER, "{}")),
    (s_call(WEATHER, '{"city": "Rome"}'), s_call("Finish", '{"return_type": "give_answer"}')),
    (s_call(WEATHER, '{"city": "Rome"}'), s_finish("Rome is sunny.")),
    (s_finish("It is 21 degrees in Paris."), s_finish("Paris is 21 degrees today.")),
    (s_finish("Done."), s_give_up()),
    (s_give_up(), s_give_up()),
    (s_give_up(), s_call("made_up_tool", "{}")),
]


def rouge_f(union: int, ref_words: int, hyp_words: int) -> float:
    """ROUGE-L F from hand-counted distinct words (spec §2.6 formula)."""
    r, p = union / ref_words, union / hyp_words
    return 2.0 * ((p * r) / (p + r + 1e-8))


# Spec §2.6: "Paris is 21 degrees today." vs "It is 21 degrees in Paris.": U = {is, 21, degrees}, m 6, n 5.
SPEC_RL = rouge_f(3, 6, 5)
PERFECT_RL = rouge_f(1, 1, 1)  # any identical pair: R = P = 1
