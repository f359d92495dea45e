"""``umieval score FILE`` and ``umieval compare A B``: argument handling only.

Registered by ``umi_eval.cli.commands`` with ``main.add_command``. Exit codes: 0 ok; 1 some records could
not be scored (counted and listed); 2 usage or I/O error (missing or unreadable file, unknown shape,
compare on different steps); 3 internal error; 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import click

from umi_cli.errors import EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE


def _fail(command: str, message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"umieval {command}: error: {message}", err=True)
    sys.exit(code)


@contextmanager
def _guard(command: str) -> Iterator[None]:
    """Ctrl-C → 130 with one line; usage, I/O and internal errors go to the group's policy
    (umi_cli.errors: 2, 2, 3)."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo("\ninterrupted: no partial output was left behind", err=True)
        sys.exit(EXIT_INTERRUPTED)


_file = click.Path(exists=True, dir_okay=False, path_type=str)
_bootstrap = click.option("--bootstrap", "resamples", type=click.IntRange(min=0), default=1000, show_default=True,
                          help="Bootstrap resamples for the 95 % intervals (0: none).")  # fmt: skip
_seed = click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling.")
_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


@click.command()
@click.argument("file", type=_file)
@_json
@click.option("--cases", "cases_out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write every failed step (and every record that could not be scored) with its reasons "
                   "to this JSONL file (atomic).")  # fmt: skip
@_bootstrap
@_seed
def score(file: str, as_json: bool, cases_out: str | None, resamples: int, seed: int) -> None:
    """Score FILE with the α-UMi step metrics (Plan ACC, Act. EM, Hallu., Arg. F1, R-L), exactly as
    the original metric script, plus 95 % bootstrap intervals over conversations.

    FILE is the original pipeline's predictions.json, the original single-model predictions.json,
    or umi's JSONL from `umieval generate`; the shape is detected. --json prints
    {"metrics": {...}, "ci": {...}, "counts": {...}} with fractions in [0, 1]. Exits 1 when some
    records could not be scored (they are counted, listed and written to --cases)."""
    from umi_eval.score.scoring import score_file, write_cases

    if cases_out and os.path.exists(cases_out) and os.path.samefile(cases_out, file):
        _fail("score", f"--cases {cases_out} is the input file; it would be overwritten")
    with _guard("score"):
        report = score_file(file, resamples=resamples, seed=seed)
        if cases_out:
            write_cases(cases_out, report)
        if as_json:
            _echo_json(report.to_json())
        else:
            from umi_eval.score.tables import render_report

            render_report(report)
    sys.exit(EXIT_FINDINGS if report.rejects else EXIT_OK)


@click.command()
@click.argument("a", type=_file)
@click.argument("b", type=_file)
@_json
@_bootstrap
@_seed
def compare(a: str, b: str, as_json: bool, resamples: int, seed: int) -> None:
    """Compare two prediction files A and B on the same steps (e.g. the trio and a single model):
    per metric A, B, B − A and a 95 % paired bootstrap interval of the difference.

    Refuses (exit 2) when the files are not on the same steps. Exits 1 when either file has
    records that could not be scored."""
    from umi_eval.score.scoring import compare as run

    with _guard("compare"):
        result = run(a, b, resamples=resamples, seed=seed)
        if as_json:
            _echo_json(result)
        else:
            from umi_eval.score.tables import render_comparison

            render_comparison(result)
    sys.exit(EXIT_FINDINGS if any(result["rejected"].values()) else EXIT_OK)

