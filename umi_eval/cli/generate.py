"""``umieval generate``: argument handling only; the work is :func:`umi_eval.generate.predict.generate`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from umi_cli.errors import EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK
from umi_cli.terminal import interactive
from umi_data.readers import FORMATS
from umi_eval.cli.options import (
    BackendOptions,
    ModelOptions,
    collect,
    decoding_options,
    library_bars,
    model_options,
)
from umi_eval.generate.backends import BACKENDS, BATCHING, DTYPES, Decoding, require_backend
from umi_eval.generate.predict import GenerateError, GenerateOptions, GenerateSummary, generate
from umi_eval.generate.steps import PROMPT_STYLES


def _scores(path: str) -> tuple[dict[str, float] | None, dict[str, Any] | None, str | None]:
    """(metrics, 95 % intervals, note) of the prediction file, scored by ``umi_eval.score.scoring``."""
    from umi_eval.score.predictions import ShapeError
    from umi_eval.score.scoring import score_file

    try:
        report = score_file(path)
    except (OSError, ShapeError) as e:
        return None, None, f"not scored: {e}"
    if not report.ids:
        return None, None, "no step to score"
    return dict(report.metrics), dict(report.ci or {}), None


METRIC_LABELS = (("plan_acc", "Plan ACC"), ("act_em", "Act. EM"), ("hallu", "Hallu."), ("arg_f1", "Arg. F1"),
                 ("rouge_l", "R-L"))


def format_summary(
    s: GenerateSummary, metrics: dict[str, float] | None, ci: dict[str, Any] | None, note: str | None
) -> str:
    rate = f"{s.generated / s.model_seconds:.2f} steps/s in the models" if s.model_seconds else "no model time"
    routes = ", ".join(f"{k} {v}" for k, v in sorted(s.routes.items())) or "none"
    issues = ", ".join(f"{k} {v}" for k, v in sorted(s.issues.items()))
    lines = [
        f"umieval generate → {s.out}",
        f"  records    {s.records} read = {s.trajectories} trajectories + {s.records - s.trajectories} rejected",
        f"  steps      {s.steps} = {s.done_before} already in the file + {s.generated} generated now"
        + (f" ({s.stale} lines in the file are not among these steps)" if s.stale else ""),
        f"  routes     {routes}",
        f"  tokens     {s.prompt_tokens:,} prompt, {s.completion_tokens:,} generated; "
        f"{s.truncated} prompts cut from the left; {s.errors} backend errors",
        f"  time       {s.seconds:.1f} s ({rate})",
        f"  not steps  {issues}; see {s.rejects}" if issues else f"  not steps  none ({s.rejects} is empty)",
    ]
    if metrics:
        keys = [(k, label) for k, label in METRIC_LABELS if k in metrics]
        lines.append("  scores     " + "".join(f"{label:>13}" for _, label in keys) + "   (×100)")
        lines.append("             " + "".join(f"{100 * metrics[k]:>13.2f}" for k, _ in keys))
        if ci and any(ci.get(k) for k, _ in keys):
            iv = [ci.get(k) for k, _ in keys]
            lines.append("             " + "".join(f"{f'{100 * v[0]:.1f}–{100 * v[1]:.1f}' if v else '':>13}"
                                                   for v in iv) + "   (95 % interval)")
        lines.append(f"             full table: umieval score {s.out}")
    elif note:
        lines.append(f"  scores     {note}")
    return "\n".join(lines)


@click.command("generate")
@collect(BackendOptions, "backend", ("kind", "base_url", "batch_size", "batching", "device", "dtype", "threads",
                                    "attn_implementation", "trust_remote_code", "timeout", "retries", "concurrency"))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=str, dir_okay=False),
              help="Prediction file (JSONL). An existing one made with the same settings is resumed.")
@model_options("One model for every step (single-model / global baseline, spec §1.7); a GLPFT run dir "
               "means its stage-1 global model.")
@click.option("--backend", "kind", type=click.Choice(BACKENDS), default="transformers", show_default=True)
@click.option("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (--backend openai); "
              "a model given as NAME@URL uses its own server. Key: $OPENAI_API_KEY.")
@click.option("--prompts", type=click.Choice(PROMPT_STYLES), default="umi", show_default=True,
              help="umi: the training prompts (train/test parity). original: the original static pipeline's "
              "(full history for every role, current thought labelled 'planner: '). chat: for models trained on "
              "`umidata split --template chat` rows — each model's own chat template over the training "
              "conversation, native tool calls read back as Action lines (local checkpoints).")
@decoding_options(3750, "Longer prompts keep their last tokens (transformers backend).",
                  "0 = greedy. The original sampled: --temperature 1 --top-k 50.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1),
              help="Requests per model step (transformers): the running batch of continuous batching, or the "
              "prompts per generate call of static batching.")
@click.option("--batching", type=click.Choice(BATCHING), default="auto", show_default=True,
              help="transformers: continuous (requests join and leave the running batch, paged KV cache) or "
              "static (padded batches); auto = continuous on CUDA, static on the CPU (no faster there, measured).")
@click.option("--device", default="auto", show_default=True,
              help="auto (all GPUs via device_map=auto, else CPU), cpu, cuda, cuda:N.")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True,
              help="auto = bfloat16 on a GPU that has it, else float32.")
@click.option("--threads", type=click.IntRange(1), help="CPU threads for torch (default: torch's own choice; "
              "1 is fastest for small models on a busy machine).")
@click.option("--attn-implementation", help="e.g. sdpa, flash_attention_2 (transformers).")
@click.option("--trust-remote-code", is_flag=True, help="Allow a checkpoint's own Python code (off by default).")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds per request (openai).")
@click.option("--retries", default=3, show_default=True, type=click.IntRange(0), help="Retries per request (openai).")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1),
              help="Requests in flight (openai).")
@click.option("--chunk-size", default=64, show_default=True, type=click.IntRange(1),
              help="Steps in flight at once (planner, caller and summarizer requests overlap among them); "
              "finished steps are written in step order this many at a time. Raise it with --batch-size on a GPU.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Force the input reader.")
@click.option("--template", default="alpha-umi", show_default=True,
              help="Template name or JSON file (a split dir uses its own).")
@click.option("--split", type=click.Choice(["dev", "train"]), default="dev", show_default=True,
              help="Which trajectories of a `umidata split` dir given as INPUT.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N steps.")
@click.option("--overwrite", is_flag=True, help="Start the prediction file over instead of resuming it.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no summary.")
def generate_cmd(inputs: tuple[str, ...], out: str, models: ModelOptions, backend: BackendOptions, prompts: str,
                 decoding: Decoding, chunk_size: int, fmt: str | None, template: str, split: str, limit: int | None,
                 overwrite: bool, as_json: bool, quiet: bool) -> None:
    """Run trained models on the static test steps of INPUT… (α-UMi test files such as
    out_of_domain.json, any input umidata reads, or a `umidata split` dir: its dev trajectories).

    Trio: --glpft-run DIR, or --planner/--caller/--summarizer. Single model: --model M.
    Exit codes: 0 ok, 1 some steps could not be made or a backend failed on some, 2 usage or I/O
    error, 3 internal error, 130 interrupted (finished chunks stay in the file; rerun to resume)."""
    try:
        missing = [p for p in inputs if not os.path.lexists(p)]
        if missing:
            raise GenerateError(f"no such input: {', '.join(missing)}")
        require_backend(backend.kind)
        mode, names = models.resolve(backend.kind)
        opts = GenerateOptions(mode, names, backend.kind, decoding, prompts, backend.open_options(decoding.seed),
                               chunk_size)
        if backend.kind == "transformers" and backend.threads:
            import torch

            torch.set_num_threads(backend.threads)
        library_bars(backend.kind, quiet)
        with _progress(quiet) as (on_start, on_steps):
            summary = generate(inputs, out, opts, fmt=fmt, template=template, split=split, overwrite=overwrite,
                               limit=limit, on_start=on_start, on_steps=on_steps)
        metrics, ci, note = _scores(out)
    except KeyboardInterrupt:  # usage, I/O and internal errors: the group's policy (umi_cli.errors)
        click.echo("\ninterrupted: finished chunks are in the file; rerun the same command to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if as_json:
        click.echo(json.dumps({**summary.to_dict(), "metrics": metrics, "ci": ci}, indent=2))
    elif not quiet:
        click.echo(format_summary(summary, metrics, ci, note))
    sys.exit(EXIT_FINDINGS if (summary.issues or summary.errors) else EXIT_OK)


class _progress:
    """A rich progress bar over steps, on a terminal only (never under --quiet or CI)."""

    def __init__(self, quiet: bool) -> None:
        self.on = interactive(quiet)
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> tuple[Callable[[int], None], Callable[[int], None]] | tuple[None, None]:
        if not self.on:
            return None, None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            transient=True)
        self.bar.__enter__()
        return self._start, self._advance

    def _start(self, total: int) -> None:
        self.task = self.bar.add_task("steps", total=total)

    def _advance(self, n: int) -> None:
        self.bar.advance(self.task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
