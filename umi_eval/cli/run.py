"""``umieval run``: the agent loop over a query file (arguments → :func:`umi_eval.agent.loop.run`)."""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from umi_cli.errors import EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from umi_cli.terminal import interactive
from umi_data.cli.options import ByteSize
from umi_data.output.guard import UnsafeOutput
from umi_data.render.templates import load_template
from umi_eval.agent.loop import LoopConfig, Models, run
from umi_eval.agent.queries import read_queries
from umi_eval.agent.tools import ToolSpecError, make_executor
from umi_eval.cli.options import (
    BackendOptions,
    ModelOptions,
    collect,
    decoding_options,
    library_bars,
    model_options,
)
from umi_eval.generate.backends import (
    BACKENDS,
    BATCHING,
    DTYPES,
    Backend,
    BackendError,
    Decoding,
    close,
    open_backend,
    require_backend,
    served_model,
)
from umi_eval.generate.predict import GenerateError, check_resumable_output

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def _fail(code: int, message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@dataclass(frozen=True)
class ToolOptions:
    """How tools are called (``--tools`` and the ``--tool-*`` flags)."""

    tools_spec: str
    tool_timeout: float = 30.0
    tool_memory: int = 0
    key_hosts: tuple[str, ...] = ()
    tool_key_over_http: bool = False
    tool_retries: int = 1


@dataclass(frozen=True)
class LoopOptions:
    """The search: which, how wide and deep, and how many planner calls and observation characters."""

    search: str = "plain"
    width: int = 2
    max_depth: int = 4
    max_steps: int = 12
    max_observation_length: int = 1024


@click.command("run")
@collect(ToolOptions, "tools")
@collect(LoopOptions, "loop")
@collect(BackendOptions, "backend", ("kind", "base_url", "device", "dtype", "batching", "trust_remote_code"))
@click.argument("queries", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=str, dir_okay=False),
              help="Run file (JSONL, one canonical trajectory per query); an existing one is resumed.")
@model_options("One model for every role, with the global (GLPFT stage-1) prompt (a GLPFT run dir means its "
               "stage-1 model).")
@click.option("--tools", "tools_spec", required=True,
              help="python:MODULE_OR_FILE.py | replay:TRAJECTORIES[,…] | http://HOST:PORT/PATH (ToolBench server).")
@click.option("--search", type=click.Choice(["plain", "dfsdt"]), default="plain", show_default=True,
              help="plain: one chain; dfsdt: ToolBench's depth-first search with backtracking.")
@click.option("--width", default=2, show_default=True, type=click.IntRange(1), help="dfsdt: children per state.")
@click.option("--max-depth", default=4, show_default=True, type=click.IntRange(1),
              help="dfsdt: agent steps per root-to-leaf path (ToolBench: 12 nodes = 4 steps).")
@click.option("--max-steps", default=12, show_default=True, type=click.IntRange(1),
              help="Planner invocations per query (the whole search under dfsdt; ToolBench used 200).")
@click.option("--max-observation-length", default=1024, show_default=True, type=click.IntRange(1),
              help="Longer tool answers are cut to this many characters, plus '...'.")
@click.option("--tool-timeout", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds per tool call.")
@click.option("--tool-memory", type=ByteSize(), default="4G", show_default=True,
              help="Address-space limit of the process that runs python: tools (0: none).")
@click.option("--tool-key-host", "key_hosts", multiple=True, metavar="HOST[:PORT]",
              help="A host that may receive TOOLBENCH_KEY (http: tools); repeatable. Other hosts get no key.")
@click.option("--tool-key-over-http", is_flag=True,
              help="Allow sending TOOLBENCH_KEY over plain http:// to a host that is not this machine.")
@click.option("--tool-retries", default=1, show_default=True, type=click.IntRange(0),
              help="More attempts on a time-out or connection error.")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1),
              help="Queries run at once: their requests meet in each model's batches (up to this many) or go "
              "to the server together.")
@click.option("--backend", "kind", type=click.Choice(BACKENDS), default="transformers", show_default=True)
@click.option("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (--backend openai); "
              "a model given as NAME@URL uses its own server.")
@decoding_options(3576, "Longer prompts keep their last tokens (the real-time agent: 4096 - 512 - 8).",
                  "0 = greedy; the original agent sampled at 0.5.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 (transformers).")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True)
@click.option("--batching", type=click.Choice(BATCHING), default="auto", show_default=True,
              help="transformers: continuous (requests join and leave the running batch; auto on CUDA) or static.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a checkpoint's own Python code (off by default).")
@click.option("--template", default="alpha-umi", show_default=True, help="Built-in template name or JSON file.")
@click.option("--overwrite", is_flag=True, help="Start the run file (and its rejects file) over instead of "
              "resuming it; never an input.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no summary.")
def run_cmd(queries: tuple[str, ...], out: str, models: ModelOptions, tools: ToolOptions, loop: LoopOptions,
            concurrency: int, backend: BackendOptions, decoding: Decoding, template: str, overwrite: bool,
            quiet: bool) -> None:
    """Run the planner → caller → tool → … → summarizer loop on each query of QUERIES and write
    one canonical trajectory per query (source.format "umi-run") that `umidata validate` checks
    and `umidata split` turns into training data.

    QUERIES: JSONL/JSON of {id, instruction, tools}, ToolBench query files (G1_instruction.json),
    or any trajectory input umidata reads (its instruction and tools are the query).

    The run file and its OUTPUT-stem .rejects.jsonl are never an input (symlinks and hard links
    resolved); an existing rejects file is replaced only when the run file is resumed or under
    --overwrite; one run at a time writes a run file (a second one exits 2).

    Exit codes: 0 ok; 1 some query rejected or failed (see OUTPUT stem .rejects.jsonl);
    2 usage or I/O error; 3 internal error; 130 interrupted (rerun to resume)."""
    missing = [p for p in queries if not os.path.lexists(p)]
    if missing:
        _fail(EXIT_USAGE, f"no such input: {', '.join(missing)}")
    try:  # before any model loads (run() checks again, then locks the run file)
        check_resumable_output(Path(out), list(queries), overwrite)
    except UnsafeOutput as e:
        _fail(EXIT_USAGE, str(e))
    # the queries' requests meet in each model's batches (transformers) or are in flight together (a server)
    backend = replace(backend, batch_size=concurrency, concurrency=concurrency)
    try:
        require_backend(backend.kind)
        mode, names = models.resolve(backend.kind)
        if backend.kind == "openai":  # a server for every model (--base-url or NAME@URL), before the tools start
            for name in names.values():
                served_model(name, backend.base_url)
    except (GenerateError, BackendError) as e:
        _fail(EXIT_USAGE, str(e))
    try:
        tmpl = load_template(template)
        executor = make_executor(tools.tools_spec, timeout=tools.tool_timeout, tool_memory=tools.tool_memory,
                                 key_hosts=tools.key_hosts, plain_http_key=tools.tool_key_over_http)
    except (ToolSpecError, ValueError, OSError) as e:
        _fail(EXIT_USAGE, str(e))
    if getattr(executor, "key_withheld", False) and not quiet:
        click.echo(f"umieval run: note: TOOLBENCH_KEY is not sent to {tools.tools_spec} (name its host with "
                   "--tool-key-host to send it)", err=True)
    cfg = LoopConfig(decoding=decoding, max_steps=loop.max_steps, max_observation_length=loop.max_observation_length,
                     search=loop.search, width=loop.width, max_depth=loop.max_depth, timeout=tools.tool_timeout,
                     retries=tools.tool_retries, template=tmpl)
    loaded: dict[str, Backend] = {}
    library_bars(backend.kind, quiet)
    options = backend.open_options(decoding.seed)

    def load(name: str) -> Backend:  # one backend per distinct model, shared by its roles
        if name not in loaded:
            loaded[name] = open_backend(backend.kind, name, **options)
        return loaded[name]

    try:
        if mode == "single":
            ready = Models(single=load(names["model"]))
        else:
            ready = Models(*(load(names[r]) for r in ("planner", "caller", "summarizer")))
    except BackendError as e:
        _fail(EXIT_USAGE, str(e))
    with ExitStack() as stack:
        # free the models at the end: a continuous-batching manager's thread would otherwise hold the exit
        stack.callback(lambda: list(map(close, loaded.values())))
        bar = stack.enter_context(_Bar(quiet))
        try:
            summary = run(read_queries(list(queries)), ready, executor, out, cfg, concurrency, tools.tools_spec,
                          on_start=bar.start, on_done=bar.advance, inputs=list(queries),
                          overwrite=overwrite)
        except KeyboardInterrupt:
            click.echo(f"\ninterrupted: finished queries are in {out}; rerun the same command to resume", err=True)
            sys.stderr.flush()
            # Threads still in a model or tool call would hold the exit; every line written so far
            # is complete and fsynced, so nothing is lost by not waiting for them.
            os._exit(EXIT_INTERRUPTED)
        # RunError (nothing to run), OSError and bugs: the group's policy (umi_cli.errors)
    if not quiet:
        click.echo("umieval run\n" + "\n".join(summary.lines()), err=True)
    sys.exit(EXIT_FINDINGS if summary.rejected else EXIT_OK)


class _Bar:
    """A progress bar over queries, on a terminal only (umi_cli.terminal.interactive)."""

    def __init__(self, quiet: bool) -> None:
        self.on = interactive(quiet)
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> _Bar:
        if self.on:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("queries"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), transient=True)
            self.progress.__enter__()
        return self

    def start(self, total: int) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task("run", total=total)

    def advance(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
