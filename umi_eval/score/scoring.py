"""Score prediction files with the paper's step metrics (spec §2), with bootstrap intervals, and
compare two files on the same steps.

:func:`score_records` scores umi-shaped records (see :mod:`umi_eval.score.predictions`) one step at a time
with :func:`umi_eval.score.metrics.score_step` and micro-averages each metric over its denominator, as the
original script does; the report also keeps the counts behind every denominator, the plan confusion
matrix, the most frequent wrong and hallucinated tool names, every failed step with its reasons,
and every record that could not be scored.

Intervals: a 95 % percentile bootstrap that resamples whole conversations (``trajectory_id``) with
replacement, so steps of one conversation, which are not independent, move together; each resample
recomputes every metric as a ratio of sums. A resample whose subset for a metric is empty is left out
of that metric's interval. :func:`compare` resamples the same conversations for both files (paired),
so the interval is that of the difference itself.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from umi_cli.errors import UsageError
from umi_data.output.writers import atomic_path, write_jsonl
from umi_data.trajectory import Source
from umi_data.trajectory.findings import Reject
from umi_eval.score.metrics import METRICS, PLANS, StepScore, contributions, parse, predicted_action, score_step
from umi_eval.score.predictions import UMI, Loaded, invalid, open_predictions, read_predictions

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
TOP_TOOLS = 10
_CHUNK = 200  # resamples drawn at once (bounds memory: chunk × conversations counts)


class StepMismatch(UsageError, ValueError):
    """``compare`` was given two files that are not on the same steps."""


@dataclass(slots=True)
class ScoreReport:
    """Metrics (fractions in [0, 1]), their intervals and counts, and what went wrong where."""

    metrics: dict[str, float]
    counts: dict[str, Any]
    ci: dict[str, list[float] | None] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    values: np.ndarray | None = None  # steps × metrics: what each step adds to the numerator
    weights: np.ndarray | None = None  # steps × metrics: 1 where the step is in the denominator

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: ``{"metrics", "ci", "counts"}``."""
        return {"metrics": self.metrics, "ci": self.ci, "counts": self.counts}


def _ratio(num: float, den: float) -> float:
    """A micro-average; an empty subset is 0 (the original returns 0 or crashes, spec §2.3/§2.5/§2.6)."""
    return float(num / den) if den else 0.0


def _reasons(step: StepScore) -> list[str]:
    """Why a step is not perfect, in the order a reader checks it."""
    reasons = []
    if not step.plan_ok:
        reasons.append(f"plan_mismatch: reference {step.ref.plan}, predicted {step.pred.plan}")
    if step.hallu:
        reasons.append(f"hallucinated_tool: {step.pred.action}")
    elif step.act_em is False and step.pred.plan == "call":
        reasons.append(f"wrong_action: reference {step.ref.action}, predicted {step.pred.action}")
    if step.act_em and step.arg is not None and step.arg.f1 is not None and step.arg.f1 < 1.0:
        reasons.append(f"args_mismatch: F1 {step.arg.f1:.4g}")
    if step.ref.plan == "finish" and step.pred.plan == "finish" and (step.rouge_l or 0.0) < 0.99999:
        reasons.append(f"answer_differs: R-L {step.rouge_l or 0.0:.4g}")
    reasons.extend(step.quirks)
    return reasons


def _case(record: dict[str, Any], step: StepScore, reasons: list[str]) -> dict[str, Any]:
    arg = step.arg
    return {
        "source": record.get("source"), "id": record["id"], "reasons": reasons,
        "reference": step.ref.as_dict(), "prediction": step.pred.as_dict(),
        "scores": {"plan_ok": step.plan_ok, "hallucinated": step.hallu, "act_em": step.act_em,
                   "arg_f1": None if arg is None else arg.f1, "rouge_l": step.rouge_l},
        "reference_text": record["reference"], "prediction_text": record["prediction"],
    }


def score_records(
    records: Iterable[dict[str, Any]], mode: str | None = None, *, rejects: list[Reject] | None = None,
    resamples: int = 0, seed: int = DEFAULT_SEED, on_case: Callable[[dict[str, Any]], None] | None = None,
) -> ScoreReport:
    """Score umi-shaped records (``id``, ``trajectory_id``, ``mode``, ``tools``, ``reference``,
    ``prediction``; ``mode`` overrides each record's). ``rejects`` (records a reader could not use;
    a reader that streams may still be adding to the list while ``records`` is consumed) are
    counted and listed. ``resamples > 0`` adds bootstrap intervals.

    Records are consumed one at a time and only numbers are kept per step (what each adds to each
    metric), so memory does not grow with the texts. Failed steps and rejects go to ``on_case`` as
    they are found (``--cases``), else into ``report.cases``."""
    ids: list[str] = []
    groups: list[str] = []
    cases: list[dict[str, Any]] = []
    emit = cases.append if on_case is None else on_case
    failed = 0
    quirks: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    hallu: Counter[str] = Counter()
    confusion = {r: dict.fromkeys(PLANS, 0) for r in PLANS}
    modes: Counter[str] = Counter()
    unnamed_tools = 0
    direct: list[Reject] = []
    flat = array("d")  # per step: the value then the weight of each metric
    for n, record in enumerate(records):
        problem = invalid(record, mode)
        if problem:  # a record handed in directly (readers reject these already)
            source = record.get("source") if isinstance(record, dict) else None  # a location's text, if any
            direct.append(Reject(Source(UMI, str(source or f"record {n}")), *problem))
            continue
        step_mode = mode or record["mode"]
        names = frozenset(t["Name"] for t in record["tools"] if isinstance(t, dict) and isinstance(t.get("Name"), str))
        unnamed_tools += len(record["tools"]) - sum(
            1 for t in record["tools"] if isinstance(t, dict) and isinstance(t.get("Name"), str))
        step = score_step(record["reference"], record["prediction"], names, step_mode)  # type: ignore[arg-type]
        for value, weight in contributions(step).values():
            flat.append(value)
            flat.append(weight)
        ids.append(record["id"])
        groups.append(record.get("trajectory_id") or record["id"])
        modes[step_mode] += 1
        confusion[step.ref.plan][step.pred.plan] += 1
        quirks.update(step.quirks)
        if step.hallu:
            hallu[str(step.pred.action)] += 1
        elif step.act_em is False and step.pred.plan == "call":
            wrong[predicted_action(step.pred)] += 1
        reasons = _reasons(step)
        if reasons:
            failed += 1
            emit(_case(record, step, reasons))
    rejects = [*(rejects or []), *direct]
    for r in rejects:
        emit({"source": r.where(), "id": None, "reasons": [f"rejected_{r.reason}: {r.message}"]})
    pairs = np.frombuffer(flat, dtype=np.float64).reshape(len(ids), len(METRICS), 2)
    values, weights = pairs[:, :, 0].copy(), pairs[:, :, 1].copy()
    nums, dens = values.sum(axis=0), weights.sum(axis=0)
    metrics = {m: _ratio(nums[j], dens[j]) for j, m in enumerate(METRICS)}
    counts: dict[str, Any] = {
        "records": len(ids) + len(rejects),
        "steps": len(ids),
        "rejected": len(rejects),
        "rejected_by_reason": dict(sorted(Counter(r.reason for r in rejects).items())),
        "modes": dict(sorted(modes.items())),
        **{m: {"numerator": float(nums[j]), "denominator": int(dens[j])} for j, m in enumerate(METRICS)},
        "arg_f1_dropped": quirks.get("reference_args_invalid_json", 0),
        "empty_subsets": [m for j, m in enumerate(METRICS) if not dens[j]],
        "reference_plans": {p: sum(confusion[p].values()) for p in PLANS},
        "predicted_plans": {p: sum(confusion[r][p] for r in PLANS) for p in PLANS},
        "confusion": confusion,
        "quirks": dict(sorted(quirks.items())),
        "tools_without_name": unnamed_tools,
        "wrong_tools": [[n, c] for n, c in sorted(wrong.items(), key=lambda x: (-x[1], x[0]))[:TOP_TOOLS]],
        "hallucinated_tools": [[n, c] for n, c in sorted(hallu.items(), key=lambda x: (-x[1], x[0]))[:TOP_TOOLS]],
        "failed_steps": failed,
    }
    report = ScoreReport(metrics, counts, cases=cases, rejects=rejects, ids=ids, groups=groups,
                         values=values, weights=weights)
    add_intervals(report, resamples, seed)
    return report


def _group_sums(groups: list[str], *arrays: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Per-conversation sums of each steps × metrics array (groups in first-seen order)."""
    index: dict[str, int] = {}
    codes = np.array([index.setdefault(g, len(index)) for g in groups], dtype=np.int64)
    out = []
    for a in arrays:
        s = np.zeros((len(index), a.shape[1]))
        np.add.at(s, codes, a)
        out.append(s)
    return out, len(index)


def _resample_weights(n_groups: int, resamples: int, seed: int) -> Iterable[np.ndarray]:
    """Chunks of resamples: how many times each conversation is drawn when ``n_groups``
    conversations are drawn with replacement (one row per resample)."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        k = min(_CHUNK, resamples - done)
        draws = rng.integers(0, n_groups, size=(k, n_groups)) + (np.arange(k) * n_groups)[:, None]
        yield np.bincount(draws.ravel(), minlength=k * n_groups).reshape(k, n_groups).astype(np.float64)
        done += k


def _percentiles(samples: np.ndarray, point: float, empty: bool) -> list[float]:
    """The 2.5 / 97.5 percentiles of the finite samples; ``[point, point]`` for an empty subset."""
    finite = samples[np.isfinite(samples)]
    if empty or not finite.size:
        return [point, point]
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return [float(lo), float(hi)]


def _metric_samples(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def add_intervals(report: ScoreReport, resamples: int, seed: int = DEFAULT_SEED) -> None:
    """Fill ``report.ci`` with 95 % bootstrap intervals over conversations (None without resamples)."""
    report.counts["bootstrap"] = {"resamples": resamples, "seed": seed, "conversations": len(set(report.groups))}
    if resamples <= 0 or report.values is None or report.weights is None or not report.ids:
        report.ci = dict.fromkeys(METRICS)
        return
    (s, c), n_groups = _group_sums(report.groups, report.values, report.weights)
    samples = []
    for w in _resample_weights(n_groups, resamples, seed):
        samples.append(_metric_samples(w @ s, w @ c))
    all_samples = np.concatenate(samples)
    dens = report.weights.sum(axis=0)
    report.ci = {m: _percentiles(all_samples[:, j], report.metrics[m], not dens[j]) for j, m in enumerate(METRICS)}


def _write_line(f: BinaryIO, obj: dict[str, Any]) -> None:
    f.write(orjson.dumps(obj) + b"\n")


def score_file(path: str | Path, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
               cases: str | Path | None = None) -> ScoreReport:
    """Read a prediction file of any shape and score it, streaming it: memory holds one record at
    a time plus a few numbers per step, whatever the file's size. ``cases``: a file that receives
    every failed step and reject as they are found (opened only once the input's shape is known;
    atomic: it appears only if scoring succeeds), instead of ``report.cases``. The caller checks
    that it is a safe output (``umieval score``: :func:`umi_data.output.guard.check_outputs`).
    Raises ``OSError`` / ``ShapeError``."""
    pred = open_predictions(path)
    with ExitStack() as stack:
        on_case: Callable[[dict[str, Any]], None] | None = None
        if cases is not None:
            on_case = partial(_write_line, stack.enter_context(open(stack.enter_context(atomic_path(cases)), "wb")))
        report = score_records(pred.records(), rejects=pred.rejects, resamples=resamples, seed=seed,
                               on_case=on_case)
    report.counts = {"file": pred.path, "shape": pred.shape, **report.counts}
    return report


def _load_scored(path: str | Path) -> tuple[Loaded, ScoreReport]:
    loaded = read_predictions(path)
    return loaded, score_records(loaded.records, rejects=loaded.rejects)


def _same_steps(la: Loaded, lb: Loaded, order: list[str]) -> None:
    """Refuse two files whose steps share ids but not their content: every step's reference (as
    text for files of one mode, parsed across a trio and a single-model file, §2.8) and tools, then
    umi's ``steps_digest`` (the conversations behind the steps). Names the first step that differs."""
    ra, rb = {r["id"]: r for r in la.records}, {r["id"]: r for r in lb.records}
    for sid in order:
        a, b = ra[sid], rb[sid]
        if a["mode"] == b["mode"]:
            same = a["reference"] == b["reference"]
        else:
            same = parse(a["reference"], a["mode"]).as_dict() == parse(b["reference"], b["mode"]).as_dict()
        what = "reference" if not same else "tools" if a["tools"] != b["tools"] else None
        if what:
            raise StepMismatch(f"step {sid!r} has another {what} in B ({b['source']}) than in A ({a['source']}): "
                               "the files were not made on the same test steps; scores against different "
                               "references do not compare")
    da, db = ((x.header or {}).get("steps_digest") for x in (la, lb))
    if da and db and da != db:
        raise StepMismatch(f"the files were generated on other steps (steps_digest {str(da)[:19]}… in A, "
                           f"{str(db)[:19]}… in B): every step's reference and tools agree, so the conversations "
                           "behind the steps differ; generate both from the same inputs")


def compare(a: str | Path, b: str | Path, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
            ) -> dict[str, Any]:
    """Paired comparison of two prediction files on the same steps: per metric, A, B, the difference
    B − A and its 95 % paired bootstrap interval (conversations of A resampled once for both).
    Raises :class:`StepMismatch` when the two files are not on the same steps."""
    (la, ra), (lb, rb) = _load_scored(a), _load_scored(b)
    for loaded in (la, lb):
        if not loaded.stable_ids:
            raise StepMismatch(f"{loaded.path}: records without 'history' cannot be matched to another file's steps")
    if (la.shape == UMI) != (lb.shape == UMI):
        raise StepMismatch(f"cannot pair steps of a {la.shape} file with a {lb.shape} file: umi names steps by "
                           "trajectory id, the original files by conversation; compare files of the same kind")
    ia, ib = set(ra.ids), set(rb.ids)
    if ia != ib:
        only_a, only_b = sorted(ia - ib), sorted(ib - ia)
        raise StepMismatch(f"the files are not on the same steps: {len(only_a)} step(s) only in A "
                           f"(e.g. {only_a[:3]}), {len(only_b)} only in B (e.g. {only_b[:3]})")
    _same_steps(la, lb, ra.ids)
    order = {sid: i for i, sid in enumerate(rb.ids)}
    perm = np.array([order[sid] for sid in ra.ids], dtype=np.int64)
    vb, wb = rb.values[perm], rb.weights[perm]  # type: ignore[index]
    metrics: dict[str, Any] = {}
    (sa, ca, sb, cb), n_groups = _group_sums(ra.groups, ra.values, ra.weights, vb, wb)  # type: ignore[arg-type]
    diffs = []
    if resamples > 0 and n_groups:
        for w in _resample_weights(n_groups, resamples, seed):
            diffs.append(_metric_samples(w @ sb, w @ cb) - _metric_samples(w @ sa, w @ ca))
    all_diffs = np.concatenate(diffs) if diffs else np.empty((0, len(METRICS)))
    for j, m in enumerate(METRICS):
        va, vb_ = ra.metrics[m], rb.metrics[m]
        empty = not ca[:, j].sum() and not cb[:, j].sum()
        ci = _percentiles(all_diffs[:, j], vb_ - va, empty) if resamples > 0 else None
        metrics[m] = {"a": va, "b": vb_, "diff": vb_ - va, "ci": ci}
    return {
        "a": la.path, "b": lb.path, "steps": len(ra.ids), "conversations": n_groups,
        "rejected": {"a": len(ra.rejects), "b": len(rb.rejects)},
        "bootstrap": {"resamples": resamples, "seed": seed}, "metrics": metrics,
    }


def write_cases(path: str | Path, report: ScoreReport) -> int:
    """Every failed step and every rejected record, one JSON object a line (atomic write)."""
    return write_jsonl(path, report.cases)

