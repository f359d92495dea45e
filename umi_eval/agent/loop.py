"""The α-UMi agent loop (``umieval run``): planner → caller → tool → … → summarizer.

One agent step (spec ``alpha-umi-eval.md`` §3.3), from the turns so far:

1. **Planner.** Its prompt is rendered by umi_data's role rules (:mod:`umi_data.render.roles`), the code
   that rendered the training prompts, so train and run prompts cannot drift. The output loses
   trailing white space and a leading ``": "``; an empty, ``.`` or ``,`` output is sampled again
   (5 attempts when sampling, 1 when greedy), then becomes ``none``.
2. **Route** (first match wins, markers with their period): ``Next: give up.`` → give up;
   ``Next: conclusion.`` → summarizer; otherwise the caller. The text is cut after the chosen
   marker; an output with *no* marker goes to the caller (finding ``planner_no_marker``).
3. **Caller** → calls (:func:`umi_data.render.parse.parse_caller`, tolerant of ``</s>`` and text before
   ``Action:``). Each call is looked up by the name the model saw (the tool doc's ``Name``) and
   executed; the observation is cut to ``max_observation_length`` characters plus ``...``.
   **Summarizer** → the conclusion.

Choices where the spec leaves room or the original is broken (§3.7 fixed by construction: one
model per role, templates by role name, real token counts from the backend):

- Unknown tool name: exact match only (the original called the first tool whose name *ends
  with* the prediction, so an empty name matched something). The observation is ToolBench's
  ``{"error": "No such function name: X", "response": ""}``, finding ``unknown_tool``.
- Unparsable caller output: the caller turn keeps the raw text, the observation is
  ``No such function name: none`` (the original's ``none`` action), finding ``caller_unparsable``.
- Invalid JSON / schema-violating arguments: recorded (``arguments_not_json``,
  ``arguments_schema``) and sent to the tool as they are, as the original did; the executor
  answers (a python tool refuses with an error observation, an http server gets the raw text).
- History: each turn enters the history in its canonical spelling (``<thought>\\n Next: caller.``
  as in training), not the model's spelling; the raw output is kept when it differs.
- The step limit counts planner invocations (``max_steps``, default 12); a trajectory that hits
  it ends ``incomplete`` with ``metadata.end = "step_limit"`` (umidata rejects it for training
  with ``no_terminal_turn``: a run that never ended teaches no ending).

- Text that is not valid Unicode (a lone surrogate from a tool's output or a model's) becomes
  U+FFFD before it enters the history, so every trajectory can be written.
- Resume: each trajectory records ``metadata.query_digest`` (:meth:`Query.digest`, instruction and
  tools); an id already in the run file whose digest differs from the input's query is refused
  (usage error) rather than skipped, since the file holds the answer to another question.

``--search dfsdt`` is ToolBench's depth-first search with width 2 (§3.5), see :func:`_dfsdt`.
Every search step gets its own seed (``seed + (step - 1) × planner_attempts``, plus the attempt):
the second child of a child that made no call has the same prompt as the first, and backends
re-seed per call, so one seed would repeat the first child exactly under sampling.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from umi_cli.errors import UsageError
from umi_data import __version__
from umi_data.output.guard import UnsafeOutput, output_lock
from umi_data.output.writers import JsonlAppender, rejects_path, write_jsonl
from umi_data.render.parse import ParseError, parse_caller_clean, parse_global, parse_planner, parse_summarizer
from umi_data.render.roles import examples
from umi_data.render.templates import ALPHA_UMI, Template
from umi_data.trajectory import FORMAT_VERSION, Call, Source, Tool, Trajectory, Turn, derive_outcome
from umi_data.trajectory.checks import argument_schema
from umi_data.trajectory.findings import Problem, declared
from umi_eval.agent.queries import Query, Reject
from umi_eval.agent.tools import Executor, Observation, call_tool, decode_arguments, failed, schema_errors, valid_text
from umi_eval.generate.backends import Backend, Decoding
from umi_eval.generate.engine import Engine, EngineBackend
from umi_eval.generate.route import postprocess, route

FORMAT = "umi-run"
_TOOL_ERRORS = ("tool_error", "tool_crashed", "timeout", "unavailable", "no_record", "invalid_arguments",
                "redirected")
# ToolBench's DFSDT "diversity" message (``Algorithms/DFS.py``), as it appears in the training data.
DIVERSITY = (
    "This is not the first time you try this task, all previous trails failed.\nBefore you generate my "
    "thought for this state, I will first show you your previous actions for this state, and then you must "
    "generate actions that is different from all of them. Here are some previous actions candidates:\n"
    "{previous}\nRemember you are now in the intermediate state of a trail, you will first analyze the now "
    "state and previous action candidates, then make actions that is different from all the previous."
)


@dataclass(frozen=True)
class Models:
    """The trio, or one ``single`` model that plays every role with the global prompt."""

    planner: Backend | None = None
    caller: Backend | None = None
    summarizer: Backend | None = None
    single: Backend | None = None

    def names(self) -> dict[str, str]:
        if self.single is not None:
            return {"global": self.single.name}
        return {r: getattr(self, r).name for r in ("planner", "caller", "summarizer")}


@dataclass(frozen=True)
class LoopConfig:
    decoding: Decoding = field(default_factory=Decoding)
    max_steps: int = 12  # planner invocations per query (the whole search under dfsdt)
    max_observation_length: int = 1024
    planner_attempts: int = 5  # when sampling; greedy decoding gets one attempt
    search: str = "plain"  # or "dfsdt"
    width: int = 2  # dfsdt: children per state
    max_depth: int = 4  # dfsdt: agent steps on one root-to-leaf path (ToolBench: 12 nodes / 3)
    timeout: float = 30.0  # seconds per tool call
    retries: int = 1  # more attempts on time-outs and connection errors
    template: Template = ALPHA_UMI

    def view(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["template"] = self.template.name
        if self.search != "dfsdt":
            d.pop("width")
            d.pop("max_depth")
        return d


class RunError(UsageError):
    """Nothing to run (no query read): a usage error."""


class ModelError(Exception):
    """A backend could not complete a prompt (server error): the query is not written, it is
    listed in the rejects file and runs again on resume."""


# --- one query ------------------------------------------------------------------------------


@dataclass
class _State:
    """What one query's run accumulates besides its turns."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    raw: list[dict[str, Any]] = field(default_factory=list)  # model outputs that were normalised

    def find(self, code: str, turn: int, message: str) -> None:
        self.findings.append({"code": declared(code), "pointer": f"/turns/{turn}", "message": message})


@dataclass
class _Step:
    turns: list[Turn]
    kind: str  # call / conclude / give_up / plain


class _Run:
    """The loop for one query: renders prompts, calls the models and the tools."""

    def __init__(self, query: Query, tools: list[Tool], models: Models, executor: Executor, cfg: LoopConfig):
        self.q, self.tools, self.models, self.executor, self.cfg = query, tools, models, executor, cfg
        self.by_doc_name = {t.name[-64:]: t for t in tools if t.name != "Finish"}
        self.st = _State()
        self.base = Trajectory(query.id, Source(FORMAT, query.source.file), query.instruction, tools, [])

    # prompts: the training renderer over the turns so far plus a provisional last turn
    def _prompt(self, role: str, turns: list[Turn], *extra: Turn) -> str:
        traj = dataclasses.replace(self.base, turns=[*turns, *extra])
        *_, last = examples(traj, role, self.cfg.template)
        return last.prompt

    def _generate(self, backend: Backend, prompt: str, turn: int, attempt: int = 0) -> str:
        decoding = self.cfg.decoding
        offset = attempt
        if self.cfg.search == "dfsdt":  # each search step its own seed (see the module docstring)
            offset += (self.st.steps - 1) * max(1, self.cfg.planner_attempts)
        if offset:
            decoding = dataclasses.replace(decoding, seed=decoding.seed + offset)
        gen = backend.generate([prompt], decoding)[0]
        if gen.error:
            raise ModelError(f"{backend.name}: {gen.error}")
        self.st.prompt_tokens += gen.prompt_tokens
        self.st.completion_tokens += gen.completion_tokens
        if gen.truncated and attempt == 0:
            self.st.find("prompt_truncated", turn, "the prompt was cut from the left to fit the model's input")
        return valid_text(postprocess(gen.text)).rstrip()

    def _planner_text(self, backend: Backend, prompt: str, turn: int) -> str:
        attempts = self.cfg.planner_attempts if self.cfg.decoding.temperature > 0 else 1
        for attempt in range(attempts):
            text = self._generate(backend, prompt, turn, attempt)
            if text != "none":
                return text
        self.st.find("planner_empty", turn, f"empty planner output after {attempts} attempt(s); it became `none`")
        return "none"

    def step(self, turns: list[Turn]) -> _Step:
        self.st.steps += 1
        if self.models.single is not None:
            return self._global_step(turns)
        at = len(turns)
        prompt = self._prompt("planner", turns, Turn("planner", decision="give_up"))
        text = self._planner_text(self.models.planner, prompt, at)  # type: ignore[arg-type]
        r = route(text)
        decision = r.decision
        if not r.marked:
            self.st.find("planner_no_marker", at, "planner output has no `Next: …` marker; routed to the caller")
            planner = Turn("planner", thought=text, decision="call")
        else:
            parsed = parse_planner(r.thought)
            planner = Turn("planner", thought=parsed.thought, decision=decision)  # type: ignore[arg-type]
        if not r.marked or text != r.thought or not parse_planner(r.thought).clean:
            self.st.raw.append({"turn": at, "role": "planner", "text": text})
        if decision == "give_up":
            return _Step([planner], "give_up")
        if decision == "conclude":
            prompt = self._prompt("summarizer", turns, planner, Turn("conclusion", content="x"))
            answer = parse_summarizer(self._generate(self.models.summarizer, prompt, at + 1))  # type: ignore[arg-type]
            return _Step([planner, self._conclusion(answer, at + 1)], "conclude")
        prompt = self._prompt("caller", turns, planner, Turn("caller", calls=[Call("x", "{}")]))
        text = self._generate(self.models.caller, prompt, at + 1)  # type: ignore[arg-type]
        return _Step([planner, *self._calls(text, at + 1)], "call")

    def _global_step(self, turns: list[Turn]) -> _Step:
        at = len(turns)
        prompt = self._prompt("global", turns, Turn("planner", decision="give_up"))
        text = self._planner_text(self.models.single, prompt, at)  # type: ignore[arg-type]
        out = parse_global(text)
        if not out.clean:
            self.st.raw.append({"turn": at, "role": "global", "text": text})
        if out.decision is None:
            self.st.find("no_decision", at, "the model neither called a tool nor concluded")
            return _Step([Turn("planner", thought=out.thought)], "plain")
        planner = Turn("planner", thought=out.thought, decision=out.decision)  # type: ignore[arg-type]
        if out.decision == "give_up":
            return _Step([planner], "give_up")
        if out.decision == "conclude":
            return _Step([planner, self._conclusion(out.answer or "", at + 1)], "conclude")
        if not out.calls:  # `Next: caller.` and no `Action:` line: what the caller path does
            try:
                parse_caller_clean(text)
                why = f"the output chose the caller but has no call: {text[:60]!r}"
            except ParseError as e:
                why = str(e)
            return _Step([planner, *self._unparsable(text, why, at + 1)], "call")
        calls = [c.as_call() for c in out.calls]
        return _Step([planner, *self._execute(Turn("caller", calls=calls), at + 1)], "call")

    def _conclusion(self, answer: str, at: int) -> Turn:
        if answer == "none":
            self.st.find("empty_answer", at, "the summarizer gave no answer; it became `none`")
            answer = "none"
        return Turn("conclusion", content=answer)

    def _calls(self, text: str, at: int) -> list[Turn]:
        try:
            calls, clean = parse_caller_clean(text)
        except ParseError as e:
            return self._unparsable(text, str(e), at)
        if not clean:
            self.st.raw.append({"turn": at, "role": "caller", "text": text})
        return self._execute(Turn("caller", calls=[c.as_call() for c in calls]), at)

    def _unparsable(self, text: str, why: str, at: int) -> list[Turn]:
        """No call to read: the caller turn keeps the raw text, the observation is the original's
        ``none`` action."""
        self.st.find("caller_unparsable", at, why)
        obs = failed("caller_unparsable", "No such function name: none")
        return [Turn("caller", calls=[], raw=text), self._observation(obs, None)]

    def _execute(self, caller: Turn, at: int) -> list[Turn]:
        out = [caller]
        for j, call in enumerate(caller.calls or []):
            where = f"{at}/calls/{j}"
            tool = self.by_doc_name.get(call.name)
            self.st.calls += 1
            if tool is None:
                self.st.find("unknown_tool", at, f"call to {call.name!r}, which is not in the tool list")
                obs = failed("unknown_tool", f"No such function name: {call.name}")
                out.append(self._observation(obs, call.name))
                continue
            args, why = decode_arguments(call.arguments)
            if args is None:
                self.st.find("arguments_not_json", at, f"/turns/{where}: {why}")
            else:
                schema = argument_schema(tool.parameters)
                if schema is not None:
                    errors = schema_errors(schema, args)
                    if errors:
                        self.st.find("arguments_schema", at, f"{tool.name}: " + "; ".join(errors))
            obs, _attempts = call_tool(self.executor, tool, call.arguments, {"routes": self.q.routes},
                                       self.cfg.timeout, self.cfg.retries)
            if obs.code:
                self.st.find(obs.code, at, f"{tool.name}: {(obs.error or obs.content)[:200]}")
            out.append(self._observation(obs, tool.name))
        return out

    def _observation(self, obs: Observation, name: str | None) -> Turn:
        limit = self.cfg.max_observation_length
        content = obs.content if len(obs.content) <= limit else obs.content[:limit] + "..."
        return Turn("observation", content=content, error=obs.error, name=name)

    # --- searches ----------------------------------------------------------------------------

    def plain(self) -> tuple[list[Turn], str]:
        turns = [Turn("user", content=self.q.instruction)]
        while self.st.steps < self.cfg.max_steps:
            s = self.step(turns)
            turns += s.turns
            if s.kind in ("conclude", "give_up"):
                return turns, "answered" if s.kind == "conclude" else "gave_up"
        return turns, "step_limit"

    def dfsdt(self) -> tuple[list[Turn], str]:
        """ToolBench DFSDT (§3.5): pre-order depth-first search, up to ``width`` children per
        state. A give-up abandons its state (the parent tries its next child); a path that hits
        ``max_depth`` or an exhausted subtree lets the state try its next child; before a
        second child, a diversity ``user`` turn lists the earlier children's calls. The first
        answer ends the search; the trajectory is that path (ToolBench keeps the same chain as
        ``train_messages``), or the last path explored."""
        root = [Turn("user", content=self.q.instruction)]
        self.branches = 0
        last: list[list[Turn]] = [root]

        def expand(state: list[Turn], depth: int) -> str | None:
            children: list[list[Turn]] = []
            for i in range(self.cfg.width):
                if self.st.steps >= self.cfg.max_steps:
                    return "step_limit"
                diversity = self._diversity(state, children) if i > 0 else None
                if diversity is not None:
                    state = [*state, Turn("user", content=diversity)]
                s = self.step(state)
                child = state + s.turns
                children.append(child)
                last[0] = child
                if s.kind == "conclude":
                    return "answered"
                if s.kind == "give_up":
                    self.branches += 1
                    return None  # this state is abandoned; its parent tries its next child
                if depth + 1 >= self.cfg.max_depth:
                    self.branches += 1
                    continue
                end = expand(child, depth + 1)
                if end is not None:
                    return end
            return None

        end = expand(root, 0)
        return last[0], end or "exhausted"

    def _diversity(self, state: list[Turn], children: list[list[Turn]]) -> str | None:
        """ToolBench's message before a further child; ``None`` when no earlier child made a call
        (ToolBench adds the message only when it has candidates to list)."""
        previous = []
        for child in children:
            new = child[len(state) :]
            caller = next((t for t in new if t.role == "caller"), None)
            if caller is None or not caller.calls:
                continue
            obs = next((t for t in new if t.role == "observation"), None)
            output = json.dumps({"error": (obs.error or "") if obs else "", "response": obs.content if obs else ""})
            previous.append({"name": caller.calls[0].name, "arguments": caller.calls[0].arguments,
                             "function_output": output, "mento-carlo-action-value": 0.0})
        if not previous:
            return None
        text = json.dumps(previous, indent=2) + "\n"
        last = state[-1] if state else None
        if last is not None and last.role == "observation":
            text += f"again, your former observation: {last.content}\n"
        return DIVERSITY.replace("{previous}", text)


def run_query(query: Query, models: Models, executor: Executor, cfg: LoopConfig, tools_spec: str = "") -> Trajectory:
    """One query → its canonical trajectory (``source.format = "umi-run"``)."""
    tools = query.tools if query.tools is not None else list(executor.tools or [])
    run = _Run(query, tools, models, executor, cfg)
    turns, end = run.dfsdt() if cfg.search == "dfsdt" else run.plain()
    st = run.st
    meta: dict[str, Any] = {
        "run": {"umi_version": __version__, "models": models.names(), "tools": tools_spec or executor.name}
        | cfg.view(),
        "query_digest": query.digest(),
        "end": end,
        "steps": st.steps,
        "calls": st.calls,
        "tokens": {"prompt": st.prompt_tokens, "completion": st.completion_tokens},
        "findings": st.findings,
    }
    if cfg.search == "dfsdt":
        meta["branches"] = run.branches
    if st.raw:
        meta["raw_outputs"] = st.raw
    if query.routes:
        meta["routes"] = query.routes
    outcome = derive_outcome(turns)
    src = query.source
    return Trajectory(query.id, Source(FORMAT, src.file, src.index, src.line, src.member), query.instruction,
                      tools, turns, outcome, meta)


# --- many queries: concurrency, resumable output, summary ------------------------------------------


@dataclass
class RunSummary:
    queries: int = 0  # read from the input (accepted)
    resumed: int = 0  # already in the output, skipped
    ran: int = 0
    rejected: int = 0
    failed: int = 0  # crashed inside the loop (listed in the rejects file)
    ends: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    reject_codes: Counter[str] = field(default_factory=Counter)
    output: str = ""
    rejects_file: str | None = None

    def add(self, traj: Trajectory, seconds: float) -> None:
        m = traj.metadata
        self.ran += 1
        self.ends[m["end"]] += 1
        self.findings.update(f["code"] for f in m["findings"])
        self.calls += m["calls"]
        self.steps += m["steps"]
        self.tokens += m["tokens"]["prompt"] + m["tokens"]["completion"]
        self.seconds += seconds

    def lines(self) -> list[str]:
        n = max(self.ran, 1)
        f = self.findings
        args = f["arguments_not_json"] + f["arguments_schema"]
        errors = sum(f[c] for c in _TOOL_ERRORS)
        out = [
            f"queries {self.queries + self.rejected} = ran {self.ran} + already done {self.resumed} + "
            f"rejected {self.rejected}" + (f" (failed in the loop {self.failed})" if self.failed else ""),
            f"ended: answered {self.ends['answered']}, gave up {self.ends['gave_up']}, "
            f"step limit {self.ends['step_limit']}"
            + (f", search exhausted {self.ends['exhausted']}" if self.ends["exhausted"] else ""),
            f"per query: {self.steps / n:.1f} steps, {self.calls / n:.1f} calls, "
            f"{self.tokens / n:.0f} tokens, {self.seconds / n:.2f} s",
            f"hallucinated tool names {f['unknown_tool']}, unparsable calls {f['caller_unparsable']}, "
            f"argument violations {args} (not JSON {f['arguments_not_json']}, schema {f['arguments_schema']}), "
            f"tool errors {errors} (time-outs {f['timeout']}, no recorded response {f['no_record']})",
        ]
        other = {k: v for k, v in sorted(f.items()) if k not in (
            "unknown_tool", "caller_unparsable", "arguments_not_json", "arguments_schema", *_TOOL_ERRORS)}
        if other:
            out.append("other findings: " + ", ".join(f"{k} {v}" for k, v in other.items()))
        if self.reject_codes:
            codes = ", ".join(f"{k} {v}" for k, v in sorted(self.reject_codes.items()))
            out.append(f"rejected: {codes}; see {self.rejects_file}")
        out.append(f"→ {self.output}")
        return out


_RUN_LINE_START = orjson.dumps({"format": FORMAT_VERSION})[:-1] + b","  # every run line begins so


def _torn_run_line(tail: bytes) -> bool:
    """Whether ``tail`` (the bytes after a file's last newline) can be the start of a run line that
    a crash cut: a prefix of one, or the start of one."""
    return tail.startswith(_RUN_LINE_START) or _RUN_LINE_START.startswith(tail)


def _done_ids(path: Path) -> tuple[dict[str, str | None], int]:
    """Ids already in a run file with the digest of the query each was run for (``None`` in a file
    written before digests were recorded), after cutting a last line that a crash left
    half-written (returns how many bytes were cut). Every line is checked before anything is cut,
    so a file that is not a run file is refused untouched."""
    if not path.exists():
        return {}, 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    ids: dict[str, str | None] = {}
    for n, line in enumerate(data[:keep].splitlines(), start=1):
        if line.strip():
            try:
                obj = orjson.loads(line)
                meta = obj.get("metadata")
                ids[obj["id"]] = meta.get("query_digest") if isinstance(meta, dict) else None
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                raise RunError(f"{path}:{n} is not a run file line ({e}); not touching it (choose another "
                               "--output)") from None
    cut = len(data) - keep
    if cut and not _torn_run_line(data[keep:]):
        raise RunError(f"{path}: its last line ({data[keep:keep + 40]!r}…) is not the start of a run file line; "
                       "not touching it (choose another --output)")
    if cut:
        with open(path, "r+b") as f:
            f.truncate(keep)
    return ids, cut


def _sort_output(path: Path, order: list[str]) -> None:
    """Rewrite the run file in query order (atomically), so a run's bytes do not depend on
    which thread finished first; lines of ids not in this input stay, after the others."""
    rank = {q: i for i, q in enumerate(order)}
    lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    keyed = sorted(((rank.get(orjson.loads(ln)["id"], len(rank)), i, ln) for i, ln in enumerate(lines)))
    write_jsonl(path, (ln for *_, ln in keyed))


def run(
    items: Iterable[Query | Reject],
    models: Models,
    executor: Executor,
    output: str | os.PathLike[str],
    cfg: LoopConfig = LoopConfig(),
    concurrency: int = 1,
    tools_spec: str = "",
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[], None] | None = None,
    inputs: Sequence[str] = (),
    overwrite: bool = False,
) -> RunSummary:
    """Run every query not yet in ``output`` and append its trajectory as soon as it ends;
    rejects (bad records, duplicate ids, queries without tools, crashes) go to
    ``<output stem>.rejects.jsonl``. ``inputs`` are the query files ``items`` come from: before
    anything is read or written, the run file and its sidecar are checked against them
    (:func:`umi_eval.generate.predict.check_resumable_output`), then the run file is locked for this run
    (a second run on it fails at once). ``overwrite`` starts the run file over instead of resuming it."""
    from umi_eval.generate.predict import check_resumable_output

    out = Path(output)
    try:
        check_resumable_output(out, list(inputs), overwrite)
        out.parent.mkdir(parents=True, exist_ok=True)
        with output_lock(out, "umieval"):
            return _run_locked(items, models, executor, out, cfg, concurrency, tools_spec, on_start, on_done,
                               overwrite)
    except UnsafeOutput as e:
        raise RunError(str(e)) from None


def _run_locked(items: Iterable[Query | Reject], models: Models, executor: Executor, out: Path, cfg: LoopConfig,
                concurrency: int, tools_spec: str, on_start: Callable[[int], None] | None,
                on_done: Callable[[], None] | None, overwrite: bool) -> RunSummary:
    summary = RunSummary(output=str(out))
    queries, rejects = _admit(items, executor)
    if not queries and not rejects:
        raise RunError("no query in the input")
    summary.queries = len(queries)
    todo = _todo(out, queries, overwrite)
    summary.resumed = len(queries) - len(todo)
    if on_start is not None:
        on_start(len(todo))
    rank = {q.id: i for i, q in enumerate(queries)}
    crashed = _run_all(todo, models, executor, out, cfg, concurrency, tools_spec, summary, rank, on_done)
    rejects += [r for _, r in sorted(crashed, key=lambda x: x[0])]
    _sort_output(out, [q.id for q in queries])
    _write_rejects(out, rejects, summary)
    return summary


def _admit(items: Iterable[Query | Reject], executor: Executor) -> tuple[list[Query], list[Reject]]:
    """The queries to run, and the reject lines of the others (bad records, repeated ids, no tools)."""
    queries: list[Query] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Reject):
            rejects.append(item)
        elif item.id in seen:
            rejects.append(Reject(item.source, "duplicate_id", f"query id {item.id!r} appeared before"))
        elif item.tools is None and not executor.tools:
            rejects.append(Reject(item.source, "no_tools", "the query lists no tools and the executor has none"))
        else:
            seen.add(item.id)
            queries.append(item)
    return queries, rejects


def _todo(out: Path, queries: list[Query], overwrite: bool) -> list[Query]:
    """The queries not yet in the run file (emptied first under ``overwrite``); an id in it that was
    run for another query is a usage error."""
    if overwrite and out.exists():
        os.truncate(out, 0)
    done, _cut = _done_ids(out)
    changed = [q for q in queries if q.id in done and done[q.id] not in (None, q.digest())]
    if changed:
        q = changed[0]
        where = q.source.file + (f":{q.source.line}" if q.source.line is not None else "")
        raise RunError(
            f"{out} has a trajectory for query id {q.id!r} ({where}) that was run for another "
            f"instruction or tools ({len(changed)} such id(s)): the queries changed since that run, or an id "
            "taken from the line number moved when lines were inserted. Give the queries explicit ids, "
            "or choose another --output (or delete those lines from it) to run them again")
    return [q for q in queries if q.id not in done]


def _run_all(todo: list[Query], models: Models, executor: Executor, out: Path, cfg: LoopConfig, concurrency: int,
             tools_spec: str, summary: RunSummary, rank: dict[str, int],
             on_done: Callable[[], None] | None) -> list[tuple[int, Reject]]:
    """Run ``todo`` in ``concurrency`` threads, appending each trajectory to ``out`` as it ends and
    adding it to ``summary``; returns the reject lines of the queries that failed, with their rank."""
    # every query's requests go through one engine: a model in this process batches the requests
    # of the queries in flight (one worker per model, or its continuous batch), a server gets them
    # concurrently. Sampled requests run one per call, each with its own seed, as before.
    roles = (models.planner, models.caller, models.summarizer, models.single)
    engine = Engine([b for b in roles if b], batch_size=max(1, concurrency))
    via = {id(b): EngineBackend(engine, b) for b in roles if b}
    locked = Models(*(via[id(b)] if b else None for b in roles))  # type: ignore[arg-type]
    appender = JsonlAppender(out)

    def one(q: Query) -> tuple[Query, Trajectory | None, float, Problem]:
        t0 = time.perf_counter()
        try:
            traj = run_query(q, locked, executor, cfg, tools_spec)
            appender.write(traj.to_dict())  # a line that cannot be written rejects this query only
        except ModelError as e:
            return q, None, time.perf_counter() - t0, ("model_error", str(e))
        except Exception as e:  # one query's crash is reported, the run goes on
            return q, None, time.perf_counter() - t0, ("internal_error", f"{type(e).__name__}: {e}")
        return q, traj, time.perf_counter() - t0, ("", "")

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="umieval-run")
    crashed: list[tuple[int, Reject]] = []
    try:
        pending: set[Any] = set()
        for q in todo:  # at most 2 × concurrency queries in flight
            pending.add(pool.submit(one, q))
            if len(pending) >= 2 * max(1, concurrency):
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                _collect(finished, summary, crashed, rank, on_done)
        finished, _ = wait(pending)
        _collect(finished, summary, crashed, rank, on_done)
    finally:  # on Ctrl-C: drop what has not started; finished lines are already on disk
        pool.shutdown(wait=False, cancel_futures=True)
        engine.close()
        appender.close()
    return crashed


def _write_rejects(out: Path, rejects: list[Reject], summary: RunSummary) -> None:
    """The rejects file beside the run file (atomically), or none when nothing was rejected."""
    summary.rejected = len(rejects)
    summary.reject_codes.update(r.reason for r in rejects)
    rpath = rejects_path(out)
    if rejects:
        write_jsonl(rpath, (r.to_dict() for r in rejects))
        summary.rejects_file = str(rpath)
    else:
        rpath.unlink(missing_ok=True)  # a previous run's rejects no longer apply


def _collect(finished: Iterable[Any], summary: RunSummary, crashed: list[tuple[int, Reject]],
             rank: dict[str, int], on_done: Callable[[], None] | None) -> None:
    for fut in finished:
        q, traj, seconds, error = fut.result()
        if traj is None:
            summary.failed += 1
            crashed.append((rank[q.id], Reject(q.source, *error)))
        else:
            summary.add(traj, seconds)
        if on_done is not None:
            on_done()
