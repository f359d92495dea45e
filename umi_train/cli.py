"""`umitrain`: thin click wrappers; the work lives in train.py / glpft.py / tiny.py.

Exit codes (``umi_cli.errors``): 0 ok, 2 usage or I/O error (bad path, role, option, a split
that does not match its manifest, a run dir holding a different run), 3 internal error (one line
+ a traceback file), 130 interrupted (re-running the same command resumes).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from umi_cli.terminal import interrupt_early

interrupt_early("umitrain", "umi_train")  # Ctrl-C while torch is still importing: one line, exit 130

import click  # noqa: E402

from umi_cli.errors import GuardedGroup  # noqa: E402
from umi_train import ROLES, UserError, __version__  # noqa: E402
from umi_train.tracking import REPORT_TO  # noqa: E402


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        format="umitrain: %(message)s",
        level=logging.WARNING if quiet else logging.INFO,
        stream=sys.stderr,
        force=True,
    )
    if "DATASETS_VERBOSITY" not in os.environ:
        # datasets sets its logger to WARNING only once its import is done, but `datasets.config`
        # logs "JAX version … available." (INFO) during that import, which our INFO root handler
        # would print. Its own default level, set before: the line stays library-internal. (USE_JAX=0
        # would not do: it turns JAX off for the user's process and logs "Disabling JAX" instead.)
        logging.getLogger("datasets").setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", message=".*pin_memory.*")


@click.group(
    cls=GuardedGroup,
    prog="umitrain",
    usage_errors=(UserError,),
    interrupted="interrupted: nothing half-written is used; run the same command again to resume",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="umitrain")
def main() -> None:
    """Train α-UMi planner / caller / summarizer models with GLPFT.

    Exit codes: 0 ok, 2 usage or I/O error (also: a split that does not match its manifest.json,
    a run directory holding a different run), 3 internal error (one line + a traceback file),
    130 interrupted (Ctrl-C; the same command resumes)."""
    click.get_current_context().call_on_close(_close_distributed)


def _close_distributed() -> None:
    """Tear down the process group torchrun set up, on every way out of a command. Left to the
    interpreter's exit, a gloo group's worker threads can still be joinable when their objects
    are destroyed, and the process aborts ("terminate called without an active exception") after
    a run that succeeded: the flake the two-process DDP test showed."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_OVERRIDES = [
    click.option(
        "--epochs", type=float, help="Training epochs [recipe: global 2, planner/caller 1, summarizer 2]."
    ),
    click.option("--lr", type=float, help="Peak learning rate [recipe: global 5e-5, stage 2 1e-5]."),
    click.option(
        "--warmup-ratio", type=float, help="Warmup share of steps [recipe: 0.4 / 0.2, summarizer 0.4]."
    ),
    click.option("--weight-decay", type=float, help="[recipe: global 0, stage 2 0.01]."),
    click.option("--scheduler", help="LR schedule [cosine]."),
    click.option("--max-length", type=int, help="Max tokens per example [4096]."),
    click.option("--batch-size", type=int, help="Examples per device per step [4]."),
    click.option("--grad-accum", type=int, help="Gradient accumulation steps [1]."),
    click.option(
        "--tokens-per-step",
        type=int,
        help="Fill each optimizer step with about this many real tokens (whole examples, all processes) "
        "instead of --batch-size x --grad-accum examples [off: the recipe's examples per step].",
    ),
    click.option(
        "--tokens-per-batch",
        type=int,
        help="Micro-batch budget per device with --tokens-per-step; gradient accumulation makes up the step "
        "[the step, divided among the processes]. Lower it when out of GPU memory.",
    ),
    click.option(
        "--chunked-loss/--no-chunked-loss",
        default=None,
        help="Loss from lm_head + cross-entropy in chunks of the label tokens, never all logits at once [on].",
    ),
    click.option("--max-steps", type=int, help="Stop after this many optimizer steps (overrides epochs)."),
    click.option("--bf16/--no-bf16", default=None, help="bf16 mixed precision [on; switched off on CPU]."),
    click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None, help="[on]."),
    click.option(
        "--packing/--no-packing",
        default=None,
        help="Pack examples [on]: one flat row per batch under umi_varlen / flash_attention_2, rows capped "
        "at the batch's longest example under sdpa/eager; falls back to padding if the model can't keep "
        "examples apart.",
    ),
    click.option(
        "--overlong",
        type=click.Choice(["drop", "trim-prompt"]),
        help="Examples longer than --max-length: drop them [drop] or left-trim the prompt.",
    ),
    click.option("--save-steps", type=int, help="Checkpoint every N steps [500]."),
    click.option("--logging-steps", type=int, help="Log loss every N steps [10]."),
    click.option("--seed", type=int, help="Random seed [42]."),
    click.option("--lora", help="LoRA, e.g. r=16,alpha=32,dropout=0.05,target=q_proj+v_proj (needs peft)."),
    click.option(
        "--attn-implementation",
        help="e.g. umi_varlen, sdpa, eager, flash_attention_2 [flash_attention_2 on CUDA with flash-attn "
        "installed, else umi_varlen (PyTorch varlen attention over packed rows)].",
    ),
    click.option("--num-proc", type=int, help="Tokenization processes [auto]."),
    click.option(
        "--report-to",
        type=click.Choice(REPORT_TO),
        help="Experiment tracker (transformers' integration) [none]; tensorboard writes RUNDIR/runs/RUN_NAME.",
    ),
    click.option("--run-name", help="Tracker run name [the run directory's name; glpft: NAME-<role>]."),
]
_OVERWRITE = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a run in the output dir that was trained from different data, model or options "
    "(without it such a re-run is refused; an identical finished run is skipped).",
)
_QUIET = click.option("-q", "--quiet", is_flag=True, help="No progress bars or per-step logs; summary only.")


def _override_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(_OVERRIDES):
        fn = opt(fn)
    return fn


def _collect(kwargs: dict[str, Any]) -> dict[str, Any]:
    names = (
        "epochs",
        "lr",
        "warmup_ratio",
        "weight_decay",
        "scheduler",
        "max_length",
        "batch_size",
        "grad_accum",
        "tokens_per_step",
        "tokens_per_batch",
        "chunked_loss",
        "max_steps",
        "bf16",
        "gradient_checkpointing",
        "packing",
        "overlong",
        "save_steps",
        "logging_steps",
        "seed",
        "lora",
        "attn_implementation",
        "num_proc",
        "report_to",
        "run_name",
    )
    out = {n: kwargs.pop(n) for n in names}
    if out["lora"] is not None:
        from umi_train.train import parse_lora

        out["lora"] = parse_lora(out["lora"])
    return {k: v for k, v in out.items() if v is not None}


@main.command()
@click.option("--data", required=True, type=click.Path(path_type=Path), help="An `umidata split` output dir.")
@click.option("--role", required=True, type=click.Choice(ROLES), help="Role dataset to train on.")
@click.option(
    "--model",
    required=True,
    help="Local model dir (checked first), hub name (from the local cache, or downloaded), or `tiny` "
    "(offline random tiny LLaMA + BPE tokenizer, for demos and tests).",
)
@click.option("-o", "--output-dir", required=True, type=click.Path(path_type=Path), help="Run directory.")
@click.option(
    "--resume",
    default="auto",
    show_default=True,
    help="auto: continue from RUNDIR's last checkpoint; never: start over; or a checkpoint dir.",
)
@click.option("--trust-remote-code", is_flag=True, help="Allow the model repo's own Python code (off).")
@_OVERWRITE
@_QUIET
@_override_options
def train(
    data: Path,
    role: str,
    model: str,
    output_dir: Path,
    resume: str,
    trust_remote_code: bool,
    overwrite: bool,
    quiet: bool,
    **kwargs: Any,
) -> None:
    """Fine-tune MODEL on one role of a split (loss on completion + EOS only)."""
    _setup_logging(quiet)
    from umi_train.glpft import recipe_defaults
    from umi_train.train import TrainConfig, format_summary, train_role

    opts = {**recipe_defaults(role), **_collect(kwargs)}
    cfg = TrainConfig(
        data=data,
        role=role,
        output_dir=output_dir,
        model=model,
        resume=resume,
        trust_remote_code=trust_remote_code,
        overwrite=overwrite,
        quiet=quiet,
        **opts,
    )
    summary = train_role(cfg)
    if summary:
        click.echo(format_summary(summary))


@main.command()
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), help="Override the pipeline's data dir.")
@click.option("--model", help="Override the pipeline's stage-1 model.")
@click.option(
    "-o", "--output-dir", type=click.Path(path_type=Path), help="Override the pipeline's output dir."
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any pipeline key, e.g. --set stage2.caller.lr=2e-5 (repeatable).",
)
@click.option(
    "--resume",
    type=click.Choice(["auto", "never"]),
    default="auto",
    show_default=True,
    help="auto: skip finished stages, resume interrupted ones; never: retrain everything.",
)
@click.option("--trust-remote-code", is_flag=True, help="Allow the model repo's own Python code (off).")
@_OVERWRITE
@_QUIET
@_override_options
def glpft(
    pipeline: Path,
    data: Path | None,
    model: str | None,
    output_dir: Path | None,
    sets: tuple[str, ...],
    resume: str,
    trust_remote_code: bool,
    overwrite: bool,
    quiet: bool,
    **kwargs: Any,
) -> None:
    """Run GLPFT from a PIPELINE yaml: stage 1 on `global`, then the three roles from its result.

    Flags like --lr or --max-steps apply to every stage; use --set for one stage.
    """
    _setup_logging(quiet)
    from umi_train.glpft import format_glpft, run_glpft

    stage_overrides = {
        **_collect(kwargs),
        "resume": resume,
        "quiet": quiet,
        "trust_remote_code": trust_remote_code or None,
        "overwrite": overwrite or None,
    }
    result = run_glpft(
        pipeline,
        {"data": data and str(data), "model": model, "output_dir": output_dir and str(output_dir)},
        sets,
        stage_overrides,
        echo=click.echo,
    )
    click.echo(format_glpft(result))


@main.command()
@click.option("--data", required=True, type=click.Path(path_type=Path), help="An `umidata split` output dir.")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="global",
    show_default=True,
    help="Role whose train text trains the tokenizer.",
)
@click.option("-o", "--output-dir", required=True, type=click.Path(path_type=Path))
@click.option("--vocab-size", default=2000, show_default=True)
@click.option("--seed", default=42, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an output directory that already holds files.")
@_QUIET
def tiny(data: Path, role: str, output_dir: Path, vocab_size: int, seed: int, overwrite: bool, quiet: bool) -> None:
    """Build the offline tiny model + tokenizer (what `--model tiny` uses) into a directory,
    written whole or not at all."""
    _setup_logging(quiet)
    from umi_cli.terminal import interactive
    from umi_data.output.guard import UnsafeOutput, check_output
    from umi_train.data import role_shards
    from umi_train.tiny import make_tiny
    from umi_train.train import _set_library_progress

    try:
        check_output(output_dir, [str(data)])
    except UnsafeOutput as e:
        raise UserError(str(e)) from None
    _set_library_progress(interactive(quiet))  # transformers' "Writing model shards" bar: a terminal's only
    shards = role_shards(data, role, "train")
    if not shards:
        raise UserError(f"no train shards for role {role!r} under {data}")
    make_tiny(shards, output_dir, seed=seed, vocab_size=vocab_size, overwrite=overwrite)
    click.echo(f"tiny model + tokenizer saved to {output_dir} (use it with --model {output_dir})")


if __name__ == "__main__":
    main()
