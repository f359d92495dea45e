"""The option objects of `umieval generate` and `umieval run`: click options grouped into frozen
dataclasses, so a command receives a few objects instead of dozens of parameters, and both commands
choose their models, decode and open their backends through one definition each."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from umi_cli.terminal import interactive
from umi_eval.generate.backends import Decoding
from umi_eval.generate.predict import TRIO, GenerateError

F = TypeVar("F", bound=Callable[..., Any])

STAGE1 = "stage1-global"


def stack(options: Sequence[Callable[[Any], Any]]) -> Callable[[F], F]:
    """Several decorators (click options, :func:`collect`) as one, in the order given."""

    def apply(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def collect(cls: type[Any], into: str, fields: Sequence[str] | None = None) -> Callable[[F], F]:
    """Hand the command ``into=cls(...)`` instead of the parameters named ``fields`` (default: every
    field of ``cls``; the others keep their defaults). The options themselves are declared where the
    help lists them, which need not be next to each other."""
    names = tuple(fields) if fields is not None else tuple(f.name for f in dataclasses.fields(cls))

    def decorate(f: F) -> F:
        @functools.wraps(f)  # keeps the docstring (the help) and the click parameters declared so far
        def command(*args: Any, **kwargs: Any) -> Any:
            kwargs[into] = cls(**{k: kwargs.pop(k) for k in names})
            return f(*args, **kwargs)

        return command  # type: ignore[return-value]

    return decorate


# --- models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelOptions:
    """Which models: the trio, a GLPFT run directory, or one model (``--model``)."""

    planner: str | None = None
    caller: str | None = None
    summarizer: str | None = None
    glpft_run: str | None = None
    model: str | None = None

    def resolve(self, backend: str) -> tuple[str, dict[str, str]]:
        """(mode, role → model); a GLPFT run directory fills in what is not given."""
        return resolve_models(self.planner, self.caller, self.summarizer, self.model, self.glpft_run, backend)


def _run_model(run: Path, role: str) -> str:
    """The model a ``umitrain glpft`` run trained for ``role`` (``global`` = stage 1)."""
    stage = run / (STAGE1 if role == "global" else f"stage2-{role}") / "model"
    if not (stage / "config.json").is_file():
        raise GenerateError(f"--glpft-run {run}: no trained {role} model at {stage}")
    return str(stage)


def resolve_models(
    planner: str | None, caller: str | None, summarizer: str | None, model: str | None, run: str | None,
    backend: str,
) -> tuple[str, dict[str, str]]:
    """(mode, role → model) from the flags; a GLPFT run directory fills in what is not given."""
    trio = {"planner": planner, "caller": caller, "summarizer": summarizer}
    if model and run:
        raise GenerateError("--model and --glpft-run exclude each other (--model RUN means the run's stage-1 model)")
    if model and any(trio.values()):
        raise GenerateError("--model (single model) and --planner/--caller/--summarizer (trio) exclude each other")
    if model:
        if backend != "openai" and (Path(model) / STAGE1).is_dir():
            model = _run_model(Path(model), "global")
        return "single", {"model": model}
    if run:
        for role in TRIO:
            trio[role] = trio[role] or _run_model(Path(run), role)
    missing = [f"--{r}" for r in TRIO if not trio[r]]
    if missing:
        raise GenerateError(f"missing {', '.join(missing)} (or give --glpft-run DIR, or --model M for one model)")
    return "trio", {r: str(v) for r, v in trio.items()}


def model_options(model_help: str) -> Callable[[F], F]:
    """How `generate` and `run` choose their models (the trio, a GLPFT run, or one model): one
    definition; the command gets ``models``, a :class:`ModelOptions`."""
    return stack([
        collect(ModelOptions, "models"),
        click.option("--planner", help="Planner checkpoint dir (transformers) or served model name (openai)."),
        click.option("--caller", help="Caller checkpoint dir or served model name."),
        click.option("--summarizer", help="Summarizer checkpoint dir or served model name."),
        click.option("--glpft-run", type=click.Path(path_type=str, file_okay=False),
                     help="A `umitrain glpft` output dir: stage2-<role>/model for every trio role not given "
                     "(and, with --model DIR, its stage-1 model)."),
        click.option("--model", help=model_help),
    ])


# --- decoding -------------------------------------------------------------------------------


def decoding_options(max_input_tokens: int, max_input_help: str, temperature_help: str) -> Callable[[F], F]:
    """The decoding flags of `generate` and `run` (one definition; the defaults that differ are
    arguments): the command gets ``decoding``, a :class:`umi_eval.generate.backends.Decoding`."""
    return stack([
        collect(Decoding, "decoding"),
        click.option("--max-new-tokens", default=512, show_default=True, type=click.IntRange(1)),
        click.option("--max-input-tokens", default=max_input_tokens, show_default=True, type=click.IntRange(1),
                     help=max_input_help),
        click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0),
                     help=temperature_help),
        click.option("--top-p", default=1.0, show_default=True, type=click.FloatRange(0, 1)),
        click.option("--top-k", default=0, show_default=True, type=click.IntRange(0), help="0 = off."),
        click.option("--seed", default=42, show_default=True, type=int),
    ])


# --- backends -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendOptions:
    """How the models are served (``--backend`` is ``kind``); a command declares the flags it offers
    with its own help texts and :func:`collect` s them, the others keep these defaults."""

    kind: str = "transformers"
    base_url: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batching: str = "auto"
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    batch_size: int = 8
    threads: int | None = None
    timeout: float = 600.0
    retries: int = 3
    concurrency: int = 8

    def open_options(self, seed: int) -> dict[str, Any]:
        """The options :func:`umi_eval.generate.backends.open_backend` gets for this backend (what
        `generate` records in its header and `run` opens its models with; unset ones left out)."""
        if self.kind == "transformers":
            opts: dict[str, Any] = {"batch_size": self.batch_size, "device": self.device, "dtype": self.dtype,
                                    "attn_implementation": self.attn_implementation, "batching": self.batching,
                                    "trust_remote_code": self.trust_remote_code}
        elif self.kind == "vllm":
            opts = {"dtype": self.dtype, "trust_remote_code": self.trust_remote_code, "seed": seed}
        else:
            opts = {"base_url": self.base_url, "timeout": self.timeout, "retries": self.retries,
                    "concurrency": self.concurrency}
        return {k: v for k, v in opts.items() if v is not None}


def library_bars(backend: str, quiet: bool) -> None:
    """transformers' weight-loading bars only on a terminal, like umi's own (never under -q or CI)."""
    if backend == "transformers" and not interactive(quiet):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
