"""``umieval run``: the agent loop over a query file (arguments → :func:`umi_eval.agent.loop.run`)."""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack

import click

from umi_cli.errors import EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from umi_cli.terminal import interactive
from umi_data.render.templates import load_template
from umi_eval.agent.loop import LoopConfig, Models, run
from umi_eval.agent.queries import read_queries
from umi_eval.agent.tools import ToolSpecError, make_executor
from umi_eval.cli.generate import decoding_options, library_bars, model_options, resolve_models
from umi_eval.generate.backends import DTYPES, Backend, BackendError, Decoding, OpenAIBackend, TransformersBackend
from umi_eval.generate.predict import GenerateError


def _fail(code: int, message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.command("run")
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
@click.option("--tool-retries", default=1, show_default=True, type=click.IntRange(0),
              help="More attempts on a time-out or connection error.")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1),
              help="Queries run at once (threads; an in-process model still generates one prompt at a time).")
@click.option("--backend", type=click.Choice(["transformers", "openai"]), default="transformers", show_default=True)
@click.option("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (--backend openai).")
@decoding_options(3576, "Longer prompts keep their last tokens (the real-time agent: 4096 - 512 - 8).",
                  "0 = greedy; the original agent sampled at 0.5.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 (transformers).")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True)
@click.option("--trust-remote-code", is_flag=True, help="Allow a checkpoint's own Python code (off by default).")
@click.option("--template", default="alpha-umi", show_default=True, help="Built-in template name or JSON file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no summary.")
def run_cmd(queries: tuple[str, ...], out: str, planner: str | None, caller: str | None, summarizer: str | None,
            glpft_run: str | None, model: str | None, tools_spec: str, search: str, width: int, max_depth: int,
            max_steps: int,
            max_observation_length: int, tool_timeout: float, tool_retries: int, concurrency: int, backend: str,
            base_url: str | None, max_new_tokens: int, max_input_tokens: int, temperature: float, top_p: float,
            top_k: int, seed: int, device: str, dtype: str, trust_remote_code: bool, template: str,
            quiet: bool) -> None:  # fmt: skip
    """Run the planner → caller → tool → … → summarizer loop on each query of QUERIES and write
    one canonical trajectory per query (source.format "umi-run") that `umidata validate` checks
    and `umidata split` turns into training data.

    QUERIES: JSONL/JSON of {id, instruction, tools}, ToolBench query files (G1_instruction.json),
    or any trajectory input umidata reads (its instruction and tools are the query).

    Exit codes: 0 ok; 1 some query rejected or failed (see OUTPUT stem .rejects.jsonl);
    2 usage or I/O error; 3 internal error; 130 interrupted (rerun to resume)."""
    missing = [p for p in queries if not os.path.lexists(p)]
    if missing:
        _fail(EXIT_USAGE, f"no such input: {', '.join(missing)}")
    try:
        mode, names = resolve_models(planner, caller, summarizer, model, glpft_run, backend)
    except GenerateError as e:
        _fail(EXIT_USAGE, str(e))
    if backend == "openai" and not base_url:
        _fail(EXIT_USAGE, "--backend openai needs --base-url")
    try:
        tmpl = load_template(template)
        executor = make_executor(tools_spec, timeout=tool_timeout)
    except (ToolSpecError, ValueError, OSError) as e:
        _fail(EXIT_USAGE, str(e))
    decoding = Decoding(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                        max_input_tokens=max_input_tokens, top_k=top_k)  # fmt: skip
    cfg = LoopConfig(decoding=decoding, max_steps=max_steps, max_observation_length=max_observation_length,
                     search=search, width=width, max_depth=max_depth, timeout=tool_timeout, retries=tool_retries,
                     template=tmpl)  # fmt: skip
    loaded: dict[str, Backend] = {}
    library_bars(backend, quiet)

    def load(name: str) -> Backend:  # one backend per distinct model, shared by its roles
        if name not in loaded:
            if backend == "openai":
                loaded[name] = OpenAIBackend(base_url or "", name)
            else:
                loaded[name] = TransformersBackend(name, batch_size=1, device=device, dtype=dtype,
                                                   trust_remote_code=trust_remote_code)  # fmt: skip
        return loaded[name]

    try:
        if mode == "single":
            models = Models(single=load(names["model"]))
        else:
            models = Models(*(load(names[r]) for r in ("planner", "caller", "summarizer")))
    except BackendError as e:
        _fail(EXIT_USAGE, str(e))
    with ExitStack() as stack:
        bar = stack.enter_context(_Bar(quiet))
        try:
            summary = run(read_queries(list(queries)), models, executor, out, cfg, concurrency, tools_spec,
                          on_start=bar.start, on_done=bar.advance)  # fmt: skip
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
        self.progress = None
        self.task = None

    def __enter__(self) -> _Bar:
        if self.on:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("queries"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), transient=True)  # fmt: skip
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
