"""``umieval generate``: run trained models on the static test steps, teacher-forced (spec §1.3–§1.5).

Trio (``mode="trio"``): the planner runs on every step; its post-processed output is routed
(``route``) to the caller or the summarizer, or ends the step on a give-up; the stored prediction
is composed as the original composed it. Single (``mode="single"``): one model on the global prompt,
the prediction is its post-processed text (§1.7). The flow is one-way (:meth:`_Runner.rows`):
steps → requests → :class:`umi_eval.generate.engine.Engine` → outputs → routed next requests → rows; a
step's second request starts as soon as its planner output is routed, while other steps' planner
requests still run, and rows are written in step order, ``chunk_size`` or more at a time.

The output is umi's prediction file (README, "Generating predictions"): a header line, then one JSON
line per step in step order, appended as chunks finish (each line one ``write``, flushed and
fsynced per chunk). A rerun with the same models and options resumes: steps already in the file
are skipped, a torn last line is cut off, and steps the backend failed on (``errors``) are
generated again (their new lines come at the end). A rerun with different models or options, or on other
steps (the header's ``steps_digest``: step ids, references, conversations and tools, so other inputs,
``--format`` or ``--split``) or with another ``--template`` (its name, or a digest of a file's content) is
refused.
Marked turns that make no step and rejected records go to ``<out>.rejects.jsonl``. Both files pass
the output-safety rule before anything is opened (:func:`check_resumable_output`), and a run holds
the output's lock for its whole length (one writer per output, as ``umidata split``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import queue
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from umi_cli.errors import UsageError
from umi_data import __version__
from umi_data.output.guard import UnsafeOutput, check_outputs, output_lock
from umi_data.output.writers import JsonlAppender, rejects_path, write_jsonl
from umi_data.readers import expand
from umi_data.render.templates import BUILTIN, Template
from umi_eval.generate.backends import Backend, Decoding, Generation, close, open_backend
from umi_eval.generate.engine import Engine
from umi_eval.generate.route import Route, compose, postprocess, route
from umi_eval.generate.steps import Prompts, Step, StepSet, load_steps, paths_read

HEADER_KEY = "umi_predictions"
MODES = ("trio", "single")
TRIO = ("planner", "caller", "summarizer")


class GenerateError(UsageError):
    """Unusable arguments or output file (exit 2)."""


@dataclass(frozen=True)
class GenerateOptions:
    mode: str  # trio / single
    models: dict[str, str]  # role → checkpoint dir or served model name ("model" in single mode)
    backend: str = "transformers"
    decoding: Decoding = field(default_factory=Decoding)
    prompts: str = "umi"
    backend_options: dict[str, Any] = field(default_factory=dict)
    chunk_size: int = 64

    def header(self, steps: Sequence[Step] = (), template: str = "alpha-umi") -> dict[str, Any]:
        """What a resumed run must agree on (and ``umi_version``, informative): the options, the
        steps (:func:`steps_digest`) and the template of their prompts (:func:`template_id`;
        ``template`` when there is no step)."""
        opts = {k: v for k, v in sorted(self.backend_options.items()) if k in _OUTPUT_OPTIONS}
        names = list(dict.fromkeys(template_id(s.template) for s in steps))
        return {
            HEADER_KEY: 1,
            "mode": self.mode,
            "models": dict(self.models),
            "backend": self.backend,
            "backend_options": opts,
            "decoding": self.decoding.to_dict(),
            "prompts": self.prompts,
            "template": ", ".join(names) if names else template,
            "steps_digest": steps_digest(steps),
            "umi_version": __version__,
        }


def template_id(t: Template) -> str:
    """A built-in template's name; for a template file, its name and a digest of its content."""
    if BUILTIN.get(t.name) == t:
        return t.name
    body = orjson.dumps({"prompts": t.prompts, "cues": t.cues}, option=orjson.OPT_SORT_KEYS)
    return f"{t.name} (sha256:{hashlib.sha256(body).hexdigest()[:16]})"


def steps_digest(steps: Sequence[Step]) -> str:
    """A digest of what the predictions depend on besides the options: every step's id and
    references, and each trajectory's conversation and tools (what its prompts are made of)."""
    h = hashlib.sha256()
    seen: set[str] = set()
    for s in steps:
        h.update(orjson.dumps([s.id, s.reference, s.reference_single]))
        if s.trajectory_id not in seen:
            seen.add(s.trajectory_id)
            h.update(orjson.dumps([s.prepared.conv, s.prepared.docs]))
    return f"sha256:{h.hexdigest()}"


# backend options that can change a prediction (batch size, device, concurrency cannot in principle)
_OUTPUT_OPTIONS = ("dtype", "base_url", "attn_implementation")
_COMPARED = ("mode", "models", "backend", "backend_options", "decoding", "prompts", "template", "steps_digest")
_RESOLVED = ("dtype", "device")  # what a backend made of `auto` (TransformersBackend); dtype is compared


@dataclass
class GenerateSummary:
    out: str
    steps: int = 0
    done_before: int = 0
    generated: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    truncated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    records: int = 0
    trajectories: int = 0
    issues: Counter[str] = field(default_factory=Counter)
    stale: int = 0  # lines in a resumed file whose step is not among this run's steps
    rejects: str | None = None

    @property
    def steps_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["routes"], d["issues"] = dict(sorted(self.routes.items())), dict(sorted(self.issues.items()))
        d["steps_per_second"] = round(self.steps_per_second, 4)
        return d


# --- the output file ---------------------------------------------------------------------------


def _read_existing(out: Path, header: dict[str, Any], overwrite: bool) -> tuple[set[str], dict[str, Any]]:
    """Ids already in ``out`` (resume), after cutting off a torn last line, and its header; checks
    the header and every line before anything in the file is changed, so a file that is not a
    prediction file (or not this run's) is refused untouched."""
    if not out.exists() or overwrite:
        return set(), {}  # (an overwritten file is only truncated once the models are open)
    data = out.read_bytes()
    if not data:
        return set(), {}
    end = data.rfind(b"\n") + 1
    lines = data[:end].splitlines()
    try:
        first = orjson.loads(lines[0]) if lines else None
    except orjson.JSONDecodeError:
        first = None
    if not isinstance(first, dict) or first.get(HEADER_KEY) != 1:
        raise GenerateError(f"{out} exists and is not a umieval prediction file; not touching it "
                            "(choose another -o)")
    diff = [k for k in _COMPARED if first.get(k) != header.get(k)]
    if diff:
        shown = "; ".join(
            "steps_digest: other steps (the inputs, --format or --split changed)" if k == "steps_digest"
            else f"{k}: file {first.get(k)!r} vs now {header.get(k)!r}" for k in diff
        )
        raise GenerateError(f"{out} was written with other settings ({shown}); pass --overwrite to start "
                            "over or choose another -o")
    done: set[str] = set()
    keep = [lines[0]]
    for line in lines[1:]:
        try:
            row = orjson.loads(line)
            if row.get("errors"):
                continue  # the backend failed on this step last time: try it again
            done.add(row["id"])
            keep.append(line)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise GenerateError(f"{out}: unreadable line {line[:80]!r}; pass --overwrite to start over") from None
    if end < len(data):  # a line torn by a crash: the step is simply generated again
        with open(out, "rb+") as f:
            f.truncate(end)
    if len(keep) < len(lines):
        write_jsonl(out, keep)  # the kept lines, as they were
    return done, first


def _resolved(backends: dict[str, Backend]) -> dict[str, dict[str, str]]:
    """What each open backend made of its ``auto`` options (the dtype and device it runs with)."""
    got = {role: {k: str(getattr(b, k)) for k in _RESOLVED if isinstance(getattr(b, k, None), str)}
           for role, b in sorted(backends.items())}
    return {role: r for role, r in got.items() if r}


# --- one chunk -----------------------------------------------------------------------------------


def _base(s: Step, mode: str) -> dict[str, Any]:
    return {
        "id": s.id,
        "trajectory_id": s.trajectory_id,
        "step": s.step,
        "mode": mode,
        "tools": s.tools,
        "reference": s.reference if mode == "trio" else s.reference_single,
    }


def _cost(row: dict[str, Any], *gens: Generation | None) -> None:
    got = [g for g in gens if g is not None]
    row["prompt_tokens"] = sum(g.prompt_tokens for g in got)
    row["completion_tokens"] = sum(g.completion_tokens for g in got)
    row["truncated"] = any(g.truncated for g in got)
    errors = [g.error for g in got if g.error]
    if errors:
        row["errors"] = errors


class _Runner:
    """Holds the backends (opened on first use) and turns steps into output rows through the engine."""

    def __init__(self, opts: GenerateOptions, open_fn: Callable[[str, str], Backend]) -> None:
        self.opts = opts
        self.open_fn = open_fn
        self.backends: dict[str, Backend] = {}
        self.prompts: Any = Prompts(opts.prompts) if opts.prompts != "chat" else _chat_prompts(opts)
        self.model_seconds = 0.0

    def open_all(self) -> None:
        """Open every backend before anything is written: a model that cannot load is a usage
        error, not a prediction file with a header and nothing else."""
        opened: dict[str, Backend] = {}  # one model directory given for several roles is loaded once
        for role, model in self.opts.models.items():
            if role not in self.backends:
                self.backends[role] = opened.get(model) or self.open_fn(role, model)
            opened.setdefault(model, self.backends[role])

    def rows(self, steps: Sequence[Step]) -> Iterator[list[dict[str, Any]]]:
        """The one-way flow: steps → requests → engine → outputs → routed next requests → rows.

        Up to ``chunk_size`` steps are in flight at once (a finished step makes room for the next);
        a step's caller or summarizer request is submitted as soon as its planner output is routed,
        while other steps' planner requests still run. Rows come out in step order, ``chunk_size``
        at a time (the rest at the end), whatever order the models finish in: on Ctrl-C at most the
        steps in flight are lost."""
        opts = self.opts
        batch = int(opts.backend_options.get("batch_size") or opts.backend_options.get("concurrency") or 8)
        window = max(1, opts.chunk_size)
        first = "model" if opts.mode == "single" else "planner"
        build_first = self.prompts.single if opts.mode == "single" else self.prompts.planner
        done: queue.SimpleQueue[tuple[int, str, Future[Generation]]] = queue.SimpleQueue()
        planned: dict[int, tuple[Generation, Route]] = {}
        ready: dict[int, dict[str, Any]] = {}
        admitted = running = written = 0
        out: list[dict[str, Any]] = []
        t = time.perf_counter()
        with Engine(self.backends.values(), batch_size=batch) as engine:

            def deliver(i: int, role: str, f: Future[Generation]) -> None:
                done.put((i, role, f))

            def send(role: str, items: list[tuple[int, str]]) -> None:
                b, d = self.backends[role], opts.decoding
                if d.greedy:
                    futures = engine.submit_many(b, [p for _, p in items], d)
                else:  # sampling: each request its own seed, so no output depends on what ran beside it
                    futures = [engine.submit(b, p, _request_decoding(d, steps[i], role)) for i, p in items]
                for (i, _), fut in zip(items, futures, strict=True):
                    fut.add_done_callback(functools.partial(deliver, i, role))

            while written < len(steps):
                admit = range(admitted, min(len(steps), admitted + window - running))
                if admit:
                    send(first, [(i, build_first(steps[i])) for i in admit])
                    admitted, running = admit.stop, running + len(admit)
                routed: dict[str, list[tuple[int, str]]] = {"caller": [], "summarizer": []}
                for i, role, fut in _drain(done):
                    row = self._output(steps[i], role, fut.result(), planned, routed, i)
                    if row is not None:
                        ready[i] = row
                        running -= 1
                for role, items in routed.items():
                    if items:
                        send(role, items)
                while written in ready:
                    out.append(ready.pop(written))
                    written += 1
                if out and (len(out) >= opts.chunk_size or written == len(steps)):
                    self.model_seconds += time.perf_counter() - t
                    yield out
                    out, t = [], time.perf_counter()
        self.model_seconds += time.perf_counter() - t

    def _output(self, s: Step, role: str, g: Generation, planned: dict[int, tuple[Generation, Route]],
                routed: dict[str, list[tuple[int, str]]], i: int) -> dict[str, Any] | None:
        """One model output: the step's row when it is the step's last, else its routed request."""
        if role == "model":
            row = {**_base(s, "single"), "prediction": postprocess(self._read("model", s, g.text))}
            _cost(row, g)
            return row
        if role == "planner":
            r = route(postprocess(self._read("planner", s, g.text)))
            if r.decision == "give_up":
                return self._trio_row(s, g, r, None)
            planned[i] = (g, r)
            who = "caller" if r.decision == "call" else "summarizer"
            build = self.prompts.caller if who == "caller" else self.prompts.summarizer
            routed[who].append((i, build(s, r.thought)))
            return None
        g1, r = planned.pop(i)
        return self._trio_row(s, g1, r, g)

    def _trio_row(self, s: Step, g1: Generation, r: Route, g2: Generation | None) -> dict[str, Any]:
        who = "caller" if r.decision == "call" else "summarizer"
        text2 = postprocess(self._read(who, s, g2.text)) if g2 is not None else None
        row = {**_base(s, "trio"), "prediction": compose(r, text2), "route": r.name, "planner_prediction": g1.text}
        if g2 is not None:
            row["caller_prediction" if r.decision == "call" else "summarizer_prediction"] = g2.text
        _cost(row, g1, g2)
        return row

    def _read(self, who: str, s: Step, text: str) -> str:
        """A chat model's output as α-UMi text (native calls → Action lines); others as they are."""
        return self.prompts.output(who, s, text) if self.opts.prompts == "chat" else text

    def close(self) -> None:
        for b in {id(b): b for b in self.backends.values()}.values():
            close(b)
        self.backends.clear()


def _request_decoding(d: Decoding, s: Step, role: str) -> Decoding:
    """A sampled request's decoding: ``--seed`` mixed with the step id and the role (a backend
    re-seeds per call; one seed for every request would draw the same random numbers for each)."""
    h = hashlib.sha256(f"{d.seed}/{s.id}/{role}".encode()).digest()
    return replace(d, seed=int.from_bytes(h[:4], "big") & 0x7FFFFFFF)


def _drain(done: queue.SimpleQueue[tuple[int, str, Future[Generation]]]) -> list[tuple[int, str, Future[Generation]]]:
    """The next finished request (waiting for one; polled, so Ctrl-C is never held up) and every
    other one already finished."""
    while True:
        try:
            got = [done.get(timeout=0.5)]
            break
        except queue.Empty:
            continue
    while True:
        try:
            got.append(done.get_nowait())
        except queue.Empty:
            return got


def _chat_prompts(opts: GenerateOptions) -> Any:
    from umi_eval.generate.chat_prompts import ChatPrompts, load_chat_tokenizer

    toks = {}
    for role, model in opts.models.items():
        try:
            toks[role] = load_chat_tokenizer(model, bool(opts.backend_options.get("trust_remote_code")))
        except (OSError, ValueError) as e:
            raise GenerateError(f"--prompts chat needs each model's tokenizer (a local checkpoint dir): {role} "
                                f"{model!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return ChatPrompts(toks)


def _open_default(opts: GenerateOptions) -> Callable[[str, str], Backend]:
    extra: dict[str, Any] = {}
    if opts.backend == "vllm":  # each of the models (vLLM engines) its share of the GPU
        extra["gpu_memory_utilization"] = round(0.85 / len(set(opts.models.values())), 3)
    return lambda _role, model: open_backend(opts.backend, model, **opts.backend_options, **extra)


def generate(
    inputs: Sequence[str],
    out: str | os.PathLike[str],
    opts: GenerateOptions,
    *,
    fmt: str | None = None,
    template: str = "alpha-umi",
    split: str = "dev",
    overwrite: bool = False,
    limit: int | None = None,
    steps: StepSet | None = None,
    open_backend_fn: Callable[[str, str], Backend] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_steps: Callable[[int], None] | None = None,
) -> GenerateSummary:
    """Generate predictions for every step of ``inputs`` into ``out`` (resuming it); see the module
    docstring. ``open_backend_fn(role, model)`` replaces the backend factory (tests, scripted models);
    ``on_start(todo)`` and ``on_steps(n)`` report progress."""
    if opts.mode not in MODES:
        raise GenerateError(f"unknown mode {opts.mode!r}")
    need = ("model",) if opts.mode == "single" else TRIO
    missing = [r for r in need if not opts.models.get(r)]
    if missing:
        raise GenerateError(f"no model for {', '.join(missing)}")
    t0 = time.perf_counter()
    out = Path(out)
    rej = rejects_path(out)
    try:
        check_resumable_output(out, inputs, overwrite)
    except UnsafeOutput as e:
        raise GenerateError(str(e)) from None
    with _locked(out):
        return _generate(inputs, out, rej, opts, t0, fmt=fmt, template=template, split=split, overwrite=overwrite,
                         limit=limit, steps=steps, open_backend_fn=open_backend_fn, on_start=on_start,
                         on_steps=on_steps)


def check_resumable_output(out: Path, inputs: Sequence[str], overwrite: bool) -> None:
    """The output-safety rule (:func:`umi_data.output.guard.check_outputs`) for a resumable output
    (``generate``'s prediction file, ``run``'s run file) and its ``.rejects.jsonl`` sidecar, before
    anything is opened: neither is, holds or lies inside an input (a split directory's own inputs
    included; symlinks and hard links resolved), they are not one file, and an existing sidecar is
    replaced only when ``out`` exists (resumed: the sidecar is that run's) or under ``--overwrite``.
    Raises :class:`umi_data.output.guard.UnsafeOutput`."""
    read = paths_read(inputs)
    rej = rejects_path(out)
    may_exist = [out, rej] if (overwrite or os.path.lexists(out)) else [out]
    check_outputs([out, rej], read, [u.path for u in expand(read)], may_exist=may_exist)


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One writer per output: ``.NAME.lock`` beside it, as ``umidata split`` takes
    (:func:`umi_data.output.guard.output_lock`); a second run on the same ``-o`` fails at once."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with output_lock(out, "umieval"):
            yield
    except UnsafeOutput as e:
        raise GenerateError(str(e)) from None


def _generate(
    inputs: Sequence[str], out: Path, rej: Path, opts: GenerateOptions, t0: float, *, fmt: str | None,
    template: str, split: str, overwrite: bool, limit: int | None, steps: StepSet | None,
    open_backend_fn: Callable[[str, str], Backend] | None, on_start: Callable[[int], None] | None,
    on_steps: Callable[[int], None] | None,
) -> GenerateSummary:
    stepset = steps if steps is not None else load_steps(inputs, fmt, template, split)
    if stepset.chat_split and opts.prompts != "chat":
        raise GenerateError("the split was written with --template chat: models trained on it are prompted with "
                            "their chat template; pass --prompts chat")
    todo_all = stepset.steps[:limit] if limit is not None else stepset.steps
    summary = GenerateSummary(str(out), steps=len(todo_all), records=stepset.records,
                              trajectories=stepset.trajectories, issues=stepset.reasons())
    header = opts.header(stepset.steps, template)
    done, old = _read_existing(out, header, overwrite)
    ids = {s.id for s in todo_all}
    summary.stale = len(done - ids)
    todo = [s for s in todo_all if s.id not in done]
    summary.done_before = len(todo_all) - len(todo)
    runner = _Runner(opts, open_backend_fn or _open_default(opts))
    try:
        if todo:
            runner.open_all()
            resolved = _resolved(runner.backends)
            if resolved:
                header["resolved"] = resolved
            dtypes = {r: v.get("dtype") for r, v in resolved.items()}
            before = {r: v.get("dtype") for r, v in old.get("resolved", {}).items()}
            if done and "resolved" in old and before != dtypes:
                raise GenerateError(
                    f"{out} was written with other settings (resolved dtype: file {before!r} vs now {dtypes!r}); "
                    "pass --overwrite to start over or choose another -o"
                )
        write_jsonl(rej, (i.to_dict() for i in stepset.issues))
        summary.rejects = str(rej)
        if on_start is not None:
            on_start(len(todo))
        appender = JsonlAppender(out, truncate=not done)  # a crash tears at most the last line
        try:
            if not done:
                appender.write(header)
            for rows in runner.rows(todo):
                appender.write_rows(rows)
                for row in rows:
                    summary.generated += 1
                    summary.routes[row.get("route", "single")] += 1
                    summary.errors += bool(row.get("errors"))
                    summary.truncated += bool(row["truncated"])
                    summary.prompt_tokens += row["prompt_tokens"]
                    summary.completion_tokens += row["completion_tokens"]
                if on_steps is not None:
                    on_steps(len(rows))
        finally:
            appender.close()
    finally:
        runner.close()
        summary.model_seconds = runner.model_seconds
        summary.seconds = time.perf_counter() - t0
    return summary
