"""Static evaluation steps (spec §1.2, §1.7) from any input umidata reads, and their prompts.

A step is one planner turn that decides something, evaluated teacher-forced: every model sees the
gold history before that turn. Steps come from the canonical trajectories of umi_data's readers
(α-UMi test files such as ``out_of_domain.json``, ToolBench answers, OpenAI logs, canonical JSONL)
or from a ``umidata split`` directory (its dev — or train — trajectories, re-read from the inputs
its manifest lists).

Records are checked as ``umidata validate`` checks them; one that is rejected there is not
evaluated either, except a trajectory that merely ends mid-way (``no_terminal_turn``).

Which turns are steps: the spec's rule, an assistant value *containing* ``Next: caller.``,
``Next: conclusion.`` or ``Next: give up.`` (give-up beats conclusion beats caller, as routing).
The reference is the spec's string (§1.2) for the trio and the global target (§1.7) for a single
model, so both are scored on the same steps.

Prompts are rendered by :func:`umi_data.render.roles.history` and :func:`umi_data.render.roles.render`, the
code that renders the training examples, so for the gold thought a test prompt *is* the
training prompt of the same step. Two prompt styles:

- ``umi`` (default): train/test parity. Each role sees the history its training rule gives it
  (the caller's history leaves hallucinated calls out, the summarizer's leaves ``none``
  conclusions out) and the current thought enters as ``assistant: T</s>``, as in training.
- ``original``: the original static pipeline's inputs (spec §1.3): every role gets the full
  dispatch string and the current thought is labelled ``planner: `` — what the released
  checkpoints met at test time, for reproducing the paper's static numbers.

Neither style prepends ``system: ``: umi's training prompts have no such prefix (the original
trainer added one; its inference pipelines did not).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from umi_cli.errors import UsageError
from umi_data.export.convert import judge
from umi_data.readers import Unit, read_inputs
from umi_data.render.roles import Prepared, history, prepare, render
from umi_data.render.templates import ALPHA_UMI, Template, load_template
from umi_data.trajectory import Source, Trajectory
from umi_data.trajectory.findings import Finding, Reject
from umi_eval.generate.route import EOS, marker_decision

PROMPT_STYLES = ("umi", "original", "chat")  # chat: umi_eval.generate.chat_prompts (models trained on chat rows)
_SECOND = {"call": "caller", "conclude": "conclusion"}
SPLIT_FORMAT = "umi.split/v1"  # umi_data.split.pipeline.SPLIT_FORMAT (not imported: it pulls pyarrow writers in)


# Findings that reject a record for training but not for evaluation: a trajectory that ends mid-way
# still has teacher-forced steps (the original evaluates every conversation of a test file).
EVALUABLE = frozenset({"no_terminal_turn"})


class StepsError(UsageError):
    """An input that cannot be used at all (missing file, broken split directory): exit 2."""


@dataclass(frozen=True, slots=True)
class Step:
    """One evaluation step of one trajectory (``step`` = index of the planner turn in its α-UMi
    conversation, the ``step`` of the role datasets' rows)."""

    id: str
    trajectory_id: str
    step: int
    decision: str  # call / conclude / give_up: what the gold planner decided
    reference: str  # trio reference, spec §1.2
    reference_single: str  # single-model reference (the global target), spec §1.7
    prepared: Prepared = field(repr=False, compare=False)
    template: Template = field(repr=False, compare=False, default=ALPHA_UMI)
    trajectory: Trajectory | None = field(repr=False, compare=False, default=None)  # chat prompts render it
    system_prompt: str = "prepend"  # chat prompts: the split's --system-prompt (α-UMi's is in ``prepared``)

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.prepared.docs

    @property
    def gold_thought(self) -> str:
        return self.prepared.conv[self.step]["value"]


def issue(reason: str, message: str, source: Source, trajectory_id: str | None = None, turn: int | None = None,
          findings: Sequence[Finding] = (), pointer: str = "") -> Reject:
    """A record or a turn that makes no step, and why (never dropped silently): the one reject shape
    plus the trajectory and the planner turn it is about (``null`` for a whole record)."""
    return Reject(source, reason, message, pointer, list(findings), {"trajectory_id": trajectory_id, "turn": turn})


@dataclass
class StepSet:
    steps: list[Step] = field(default_factory=list)
    issues: list[Reject] = field(default_factory=list)
    records: int = 0
    trajectories: int = 0
    chat_split: bool = False  # a split written with --template chat was read: its models need chat prompts

    @property
    def rejected(self) -> int:
        return self.records - self.trajectories

    def decisions(self) -> Counter[str]:
        return Counter(s.decision for s in self.steps)

    def reasons(self) -> Counter[str]:
        return Counter(i.reason for i in self.issues)


# --- steps of one trajectory -----------------------------------------------------------------


def _global_target(conv: list[dict[str, str]], i: int) -> str:
    from umi_data.render.roles import _global_target

    return _global_target(conv, i)


def trajectory_steps(traj: Trajectory, template: Template = ALPHA_UMI, system_prompt: str = "ignore",
                     chat_system_prompt: str = "prepend") -> tuple[list[Step], list[Reject]]:
    """The steps of one trajectory, and the marked planner turns that cannot be steps. Turns of
    the trajectory's ``history`` (``Prepared.start``) are in the prompts but are not steps: as in
    training (:func:`umi_data.render.roles.examples`), a step shared by several episodes counts once.
    ``system_prompt`` / ``chat_system_prompt``: what the α-UMi / chat prompts do with the
    trajectory's own system prompt (``umidata split --system-prompt``; each rendering's default)."""
    p = prepare(traj, system_prompt)
    conv = p.conv
    steps: list[Step] = []
    issues: list[Reject] = []
    src = traj.source
    for i, item in enumerate(conv):
        if i < p.start or item["from"] != "assistant":
            continue  # history turns (another episode's steps) only enter the prompts, as in training
        decision = marker_decision(item["value"])
        nxt = conv[i + 1]["from"] if i + 1 < len(conv) else None
        if decision is None:
            if nxt in ("caller", "conclusion"):
                issues.append(issue("no_marker", f"planner turn {i} has no 'Next: …' marker but is followed by "
                                    f"a {nxt} turn; not evaluated", src, traj.id, i))
            continue
        if decision == "give_up":
            reference = item["value"]
        else:
            want = _SECOND[decision]
            if nxt != want:
                reason = "reference_missing" if nxt is None else "reference_mismatch"
                issues.append(issue(reason, f"planner turn {i} decides {decision} but the next turn is "
                                    f"{nxt or 'absent'}, not {want}: no reference", src, traj.id, i))
                continue
            reference = f"assistant: {item['value']}{EOS}{want}: {conv[i + 1]['value']}{EOS}"
        steps.append(Step(f"{traj.id}#{i}", traj.id, i, decision, reference, _global_target(conv, i), p, template,
                          traj, chat_system_prompt))
    return steps, issues


# --- prompts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prompts:
    """The model inputs of a step, in one of :data:`PROMPT_STYLES`."""

    style: str = "umi"

    def __post_init__(self) -> None:
        if self.style not in PROMPT_STYLES or self.style == "chat":
            raise ValueError(f"unknown prompt style {self.style!r} (expected {', '.join(PROMPT_STYLES)})")

    def planner(self, s: Step) -> str:
        return render(s.prepared, "planner", history(s.prepared.conv, "planner", s.step), s.template)

    def single(self, s: Step) -> str:
        return render(s.prepared, "global", history(s.prepared.conv, "global", s.step), s.template)

    def _with_thought(self, s: Step, role: str, thought: str) -> str:
        if self.style == "original":
            return history(s.prepared.conv, "planner", s.step) + f"planner: {thought}{EOS}"
        current = [{"from": "assistant", "value": thought}]
        return history(s.prepared.conv, role, s.step) + history(current, role)

    def caller(self, s: Step, thought: str) -> str:
        return render(s.prepared, "caller", self._with_thought(s, "caller", thought), s.template, thought)

    def summarizer(self, s: Step, thought: str) -> str:
        return render(s.prepared, "summarizer", self._with_thought(s, "summarizer", thought), s.template)


# --- inputs ----------------------------------------------------------------------------------


def _split_inputs(d: Path, split: str) -> tuple[list[str], set[str], str | None, str, str | None]:
    """A ``umidata split`` directory → (its inputs, the trajectory ids of ``split``, format, template,
    ``--system-prompt`` or None when the split predates it)."""
    try:
        manifest = orjson.loads((d / "manifest.json").read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise StepsError(f"{d}: unreadable manifest.json ({e})") from None
    if manifest.get("format") != SPLIT_FORMAT:
        raise StepsError(f"{d}/manifest.json is not a umidata split manifest (format {manifest.get('format')!r})")
    import pyarrow.parquet as pq

    ids: set[str] = set()
    for shard in sorted(d.glob(f"*/{split}-*.parquet")):
        ids.update(pq.read_table(shard, columns=["trajectory_id"]).column("trajectory_id").to_pylist())
    if not ids:
        raise StepsError(f"{d}: the split has no {split} trajectories (no {split}-*.parquet rows)")
    inputs = [str(i["path"]) for i in manifest.get("inputs", [])]
    missing = [p for p in inputs if not os.path.exists(p)]
    if missing:
        raise StepsError(f"{d}: the split's input {missing[0]!r} (from manifest.json) is not there; "
                         "run from the directory the split was made in")
    opts = manifest.get("options", {})
    mode = opts.get("system_prompt")
    return (inputs, ids, opts.get("format"), str(manifest.get("template") or "alpha-umi"),
            mode if mode in ("ignore", "prepend") else None)


def is_split_dir(path: str | os.PathLike[str]) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "manifest.json"))


def paths_read(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Every path :func:`load_steps` reads: the paths given and, for a split directory, the inputs
    its manifest lists (an output must be none of them; an unreadable manifest adds nothing here,
    :func:`load_steps` reports it)."""
    out = [os.fspath(p) for p in paths]
    for p in list(out):
        if is_split_dir(p):
            with contextlib.suppress(OSError, orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
                manifest = orjson.loads(Path(p, "manifest.json").read_bytes())
                out += [str(i["path"]) for i in manifest.get("inputs", [])]
    return out


def load_steps(
    paths: Iterable[str | os.PathLike[str]],
    fmt: str | None = None,
    template: str = "alpha-umi",
    split: str = "dev",
    on_unit: Callable[[Unit], None] | None = None,
) -> StepSet:
    """Every step of every input, in input order. A split directory contributes the trajectories
    of its ``split`` (read from the inputs its manifest lists, with its format and template).
    Records that are rejected (reader errors, failed checks, repeated ids) and marked turns
    without a reference are in ``issues``; ``records`` counts every record read."""
    out = StepSet()
    seen: dict[str, str] = {}
    # (inputs, wanted ids, format, template, α-UMi system prompt mode, chat system prompt mode)
    groups: list[tuple[list[str], set[str] | None, str | None, Template, str, str]] = []
    plain = [str(p) for p in paths if not is_split_dir(p)]
    for p in paths:
        if is_split_dir(p):
            inputs, ids, sfmt, tname, mode = _split_inputs(Path(p), split)
            out.chat_split |= tname == "chat"
            try:  # a chat split's steps and references are the α-UMi ones; its prompts are --prompts chat
                tmpl = load_template("alpha-umi" if tname == "chat" else tname)
            except (OSError, ValueError) as e:
                raise StepsError(f"{p}: cannot load the split's template {tname!r}: {e}") from None
            chat = tname == "chat"  # each rendering's default where the split does not say
            groups.append((inputs, ids, fmt or sfmt, tmpl, (mode if not chat else None) or "ignore",
                           (mode if chat else None) or "prepend"))
    if plain:
        try:
            tmpl = load_template(template)
        except (OSError, ValueError) as e:
            raise StepsError(f"cannot load template {template!r}: {e}") from None
        groups.insert(0, (plain, None, fmt, tmpl, "ignore", "prepend"))
    for inputs, wanted, gfmt, tmpl, mode, chat_mode in groups:
        found: set[str] = set()
        for rec in read_inputs(inputs, gfmt, on_unit):
            traj = rec.trajectory
            if wanted is not None and (traj is None or traj.id not in wanted or traj.id in found):
                continue  # another split's trajectory (or a rejected record the split already listed)
            out.records += 1
            checked = judge(rec)
            src = rec.source
            blocking = [f for f in checked.findings if f.severity == "error" and f.code not in EVALUABLE]
            if blocking or traj is None:
                r = blocking[0] if blocking else checked.reason
                out.issues.append(issue(r.code, r.message, src, findings=checked.findings, pointer=r.pointer) if r
                                  else issue("schema", "no trajectory", src, findings=checked.findings))
                continue
            if traj.id in seen:
                out.issues.append(issue("duplicate_id", f"trajectory id {traj.id!r} already read from "
                                        f"{seen[traj.id]}", src, traj.id))
                continue
            seen[traj.id] = rec.source.where()
            found.add(traj.id)
            out.trajectories += 1
            steps, issues = trajectory_steps(traj, tmpl, mode, chat_mode)
            out.steps.extend(steps)
            out.issues.extend(issues)
        if wanted is not None:
            for tid in sorted(wanted - found):
                out.issues.append(issue("not_found", f"trajectory {tid!r} of the split is not in its inputs "
                                        "(changed since the split?)", Source(SPLIT_FORMAT, ", ".join(inputs)),
                                        tid))
    if out.records == 0:
        raise StepsError("no record read from the inputs")
    return out
