"""The α-UMi step metrics, exactly as the original metric scripts compute them (spec §2).

One parse per system (§2.1 for the planner/caller/summarizer pipeline, §2.8 for a single model)
turns a reference or prediction string into :class:`Parsed` (plan, action, args, answer); one small
function per metric scores one step; :func:`score_step` puts them together into a
:class:`StepScore` that says, per metric, whether the step is in its denominator and what it adds.
Aggregation (micro-averages, bootstrap) is :mod:`umi_eval.score.scoring`'s.

This parse is deliberately not :mod:`umi_data.render.parse` (the tolerant inverse of umi's templates): the
paper's numbers come from these substring rules, quirks included (a missing period still counts as a
marker, the LAST ``Action:`` wins, a caller text that says ``Next: give up`` flips the plan).

Where the original script crashes, umi scores what the spec says was meant and records a *quirk*
code on the step, so every such case is counted (:data:`QUIRKS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from umi_eval.score.rougel import EmptyText, rouge_l

EOS = "</s>"
Plan = Literal["call", "finish", "give up"]
PLANS: tuple[Plan, ...] = ("call", "finish", "give up")
Mode = Literal["trio", "single"]

# Cases where the original script raises (or would compare something meaningless), and what umi does.
QUIRKS: dict[str, str] = {
    "call_without_eos": "§2.1 rule 3 on a text without '</s>' (the original raises IndexError): the whole text is "
                        "read as the caller piece",
    "conclusion_without_space": "§2.1 rule 2: 'conclusion:' present but never followed by a space (the original "
                                "raises ValueError): the answer is the text after the last 'conclusion:'",
    "rouge_empty": "§2.6: the answer or the reference answer has no sentence ('' or only dots; the rouge package "
                   "raises): the step scores R-L 0",
    "reference_args_invalid_json": "§2.5 step 2: reference args are not valid JSON: the step is dropped from Arg. F1 "
                                   "(as the original does)",
    "args_not_object": "§2.5: matched action but the reference or predicted args are JSON that is not an object: "
                       "Arg. F1 0 (as the original, via its except clause)",
    "reference_call_without_action": "§2.1: a reference call without 'Action:' parses as action 'none', which a "
                                     "non-call prediction then matches in Act. EM (as the original)",
}


@dataclass(frozen=True, slots=True)
class Parsed:
    """One string parsed by §2.1 / §2.8. ``action``/``args`` are set for ``call``, ``answer`` for
    ``finish``; ``quirk`` names a case where the original parse crashes."""

    plan: Plan
    action: str | None = None
    args: str | None = None
    answer: str | None = None
    quirk: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"plan": self.plan, "action": self.action, "args": self.args, "answer": self.answer}


def _action_and_args(piece: str) -> tuple[str, str]:
    """§2.1 rule 3 on the caller piece: args after the LAST ``Action Input:`` (stripped; ``{}`` if
    absent); action after the LAST ``Action:``, cut at its first ``Action Input:`` (``none`` if absent)."""
    i = piece.rfind("Action Input:")
    args = piece[i + len("Action Input:"):].strip() if i >= 0 else "{}"
    j = piece.rfind("Action:")
    if j < 0:
        return "none", args
    action = piece[j + len("Action:"):].strip()
    k = action.find("Action Input:")
    if k >= 0:
        action = action[:k].strip()
    return action, args


def parse_trio(text: str) -> Parsed:
    """§2.1: the pipeline's reference/prediction (``assistant: …</s>caller: …`` or ``…conclusion: …``
    or a bare give-up thought). Markers are substring tests without the period."""
    if "Next: give up" in text:
        return Parsed("give up")
    if "Next: conclusion" in text:
        quirk = None
        if "conclusion:" in text:
            i = text.rfind("conclusion: ")
            if i >= 0:
                answer = text[i + len("conclusion: "):]
            else:
                quirk = "conclusion_without_space"
                answer = text[text.rfind("conclusion:") + len("conclusion:"):]
        else:
            answer = text
        return Parsed("finish", answer=answer.replace(EOS, ""), quirk=quirk)
    pieces = text.split(EOS)
    if len(pieces) > 1:
        piece, quirk = pieces[1], None
    else:
        piece, quirk = text, "call_without_eos"
    action, args = _action_and_args(piece)
    return Parsed("call", action=action, args=args, quirk=quirk)


def parse_single(text: str) -> Parsed:
    """§2.8: a single model's text (``thought⏎Action: …`` / ``thought⏎conclusion: …``): give-up if it
    contains ``conclusion: give up``, finish if ``conclusion: ``, else a call read from the whole text."""
    if "conclusion: give up" in text:
        return Parsed("give up")
    if "conclusion: " in text:
        return Parsed("finish", answer=text[text.rfind("conclusion: ") + len("conclusion: "):])
    action, args = _action_and_args(text)
    return Parsed("call", action=action, args=args)


def parse(text: str, mode: Mode) -> Parsed:
    """The parse of ``mode``: ``trio`` (§2.1) or ``single`` (§2.8)."""
    return parse_trio(text) if mode == "trio" else parse_single(text)


def plan_correct(ref: Parsed, pred: Parsed) -> bool:
    """§2.2 Plan ACC: the plan labels are equal (every step counts)."""
    return ref.plan == pred.plan


def predicted_action(pred: Parsed) -> str:
    """§2.3: the parsed action of a call prediction, ``none`` for any other plan."""
    return pred.action if pred.plan == "call" and pred.action is not None else "none"


def action_match(ref: Parsed, pred: Parsed) -> bool:
    """§2.3 Act. EM on a reference call: exact, case-sensitive equality of the action names."""
    return predicted_action(pred) == ref.action


def hallucinated(pred: Parsed, tool_names: frozenset[str]) -> bool:
    """§2.4 Hallu. (over ALL steps): a call prediction whose action is not ``none`` and is no
    ``Name`` of the step's tools (so ``Action: Finish`` counts)."""
    return pred.plan == "call" and pred.action not in (None, "none") and pred.action not in tool_names


@dataclass(frozen=True, slots=True)
class ArgScore:
    """§2.5 for one reference-call step: ``f1`` is None when the step is dropped (reference args not
    JSON); ``easy``/``hard`` say which of those lists the value also goes to (a wrong action goes to
    both, as in the original)."""

    f1: float | None
    easy: bool
    hard: bool
    quirk: str | None = None


def _args_f1(ref_args: dict[str, Any], pred_args: dict[str, Any]) -> float:
    """§2.5 step 4 on a non-empty reference object: full/half key matches, F1 (0 when P + R = 0)."""
    full = sum(1 for k, v in ref_args.items() if k in pred_args and pred_args[k] == v)
    half = sum(1 for k, v in ref_args.items() if k in pred_args and pred_args[k] != v)
    matched = full + 0.5 * half
    recall = matched / len(ref_args)
    precision = matched / len(pred_args) if pred_args else 0.0
    return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)


def arg_f1(ref: Parsed, pred: Parsed) -> ArgScore:
    """§2.5 Arg. F1 of a reference-call step: 0 to all three lists on a wrong action; dropped when
    the reference args are not JSON; 0 when the predicted args are not JSON (or either side is not
    an object); ``{}`` reference: 1 iff the prediction decodes to ``{}``; else key-level F1."""
    if not action_match(ref, pred):
        return ArgScore(0.0, easy=True, hard=True)
    try:
        ref_args = json.loads(ref.args or "")
    except (ValueError, RecursionError):
        return ArgScore(None, easy=False, hard=False, quirk="reference_args_invalid_json")
    is_easy = ref_args == {}
    # a non-call prediction's args are "{}" in the original (reachable only when both actions are "none")
    pred_text = pred.args if pred.plan == "call" and pred.args is not None else "{}"
    try:
        pred_args = json.loads(pred_text)
    except (ValueError, RecursionError):
        return ArgScore(0.0, easy=is_easy, hard=not is_easy)
    if is_easy:
        return ArgScore(1.0 if pred_args == {} else 0.0, easy=True, hard=False)
    if not isinstance(ref_args, dict) or not isinstance(pred_args, dict):
        return ArgScore(0.0, easy=False, hard=True, quirk="args_not_object")
    return ArgScore(_args_f1(ref_args, pred_args), easy=False, hard=True)


def answer_rouge(ref: Parsed, pred: Parsed) -> tuple[float, str | None]:
    """§2.6 R-L of a reference-finish step: ROUGE-L F of the predicted answer (``none`` when the
    prediction is not a finish) against the reference answer; 0 with quirk ``rouge_empty`` where
    the package raises."""
    hyp = pred.answer if pred.plan == "finish" and pred.answer is not None else "none"
    try:
        return rouge_l(hyp, ref.answer or ""), None
    except EmptyText:
        return 0.0, "rouge_empty"


@dataclass(slots=True)
class StepScore:
    """What one step adds to each metric; ``None`` = not in that metric's denominator."""

    ref: Parsed
    pred: Parsed
    plan_ok: bool
    hallu: bool
    act_em: bool | None = None
    arg: ArgScore | None = None
    rouge_l: float | None = None
    quirks: list[str] = field(default_factory=list)


def score_step(reference: str, prediction: str, tool_names: frozenset[str], mode: Mode) -> StepScore:
    """Score one step with the rules of ``mode`` (spec §2.2–§2.6, §2.8)."""
    ref, pred = parse(reference, mode), parse(prediction, mode)
    step = StepScore(ref, pred, plan_correct(ref, pred), hallucinated(pred, tool_names))
    for side, parsed in (("reference", ref), ("prediction", pred)):
        if parsed.quirk:
            step.quirks.append(f"{side}_{parsed.quirk}")
    if ref.plan == "call":
        step.act_em = action_match(ref, pred)
        if ref.action == "none" and step.act_em:
            step.quirks.append("reference_call_without_action")
        step.arg = arg_f1(ref, pred)
        if step.arg.quirk:
            step.quirks.append(step.arg.quirk)
    elif ref.plan == "finish":
        step.rouge_l, quirk = answer_rouge(ref, pred)
        if quirk:
            step.quirks.append(quirk)
    return step


METRICS = ("plan_acc", "act_em", "hallu", "arg_f1", "arg_f1_easy", "arg_f1_hard", "rouge_l")


def contributions(step: StepScore) -> dict[str, tuple[float, int]]:
    """(value, in denominator 0/1) of the step for every metric in :data:`METRICS` (value 0 when not
    in it): the micro-average of a metric over steps is Σ value / Σ in-denominator (0 when empty)."""
    arg = step.arg
    f1 = arg.f1 if arg is not None and arg.f1 is not None else 0.0
    in_f1 = int(arg is not None and arg.f1 is not None)
    in_easy, in_hard = int(arg is not None and arg.easy), int(arg is not None and arg.hard)
    return {
        "plan_acc": (float(step.plan_ok), 1),
        "act_em": (float(bool(step.act_em)), int(step.act_em is not None)),
        "hallu": (float(step.hallu), 1),
        "arg_f1": (f1 * in_f1, in_f1),
        "arg_f1_easy": (f1 * in_easy, in_easy),
        "arg_f1_hard": (f1 * in_hard, in_hard),
        "rouge_l": (step.rouge_l or 0.0, int(step.rouge_l is not None)),
    }
