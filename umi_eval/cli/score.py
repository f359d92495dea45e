"""``umieval score FILE`` and ``umieval compare A B``: argument handling only.

Registered by ``umi_eval.cli.commands`` with ``main.add_command``. Exit codes: 0 ok; 1 some records could
not be scored (counted and listed); 2 usage or I/O error (missing or unreadable file, unknown shape,
compare on different steps); 3 internal error; 130 interrupted.
"""

from __future__ import annotations

import json
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


# Not click.Path(exists=True): a directory, a symlink loop, a FIFO or a device each gets its own one-line
# error from umi_eval.score.predictions.open_regular (exit 2), never click's usage block or a hang.
_file = click.Path(path_type=str)
_bootstrap = click.option("--bootstrap", "resamples", type=click.IntRange(min=0), default=1000, show_default=True,
                          help="Bootstrap resamples for the 95 % intervals (0: none).")
_seed = click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling.")
_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


@click.command()
@click.argument("file", type=_file)
@_json
@click.option("--cases", "cases_out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write every failed step (and every record that could not be scored) with its reasons "
                   "to this JSONL file (atomic).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --cases file (never the input).")
@_bootstrap
@_seed
def score(file: str, as_json: bool, cases_out: str | None, overwrite: bool, resamples: int, seed: int) -> None:
    """Score FILE with the α-UMi step metrics (Plan ACC, Act. EM, Hallu., Arg. F1, R-L), exactly as
    the original metric script, plus 95 % bootstrap intervals over conversations.

    FILE is the original pipeline's predictions.json, the original single-model predictions.json,
    or umi's JSONL from `umieval generate`; the shape is detected. FILE is streamed (memory flat in
    its size; a line or array item over 64 MiB is refused), and must be a regular file. --json prints
    {"metrics": {...}, "ci": {...}, "counts": {...}} with fractions in [0, 1]. --cases is never the
    input and replaces an existing file only with --overwrite. Exits 1 when some records could not be
    scored (they are counted, listed and written to --cases)."""
    from umi_eval.score.scoring import score_file

    if cases_out:  # the one output rule (umi_data.output.guard), before anything is read or opened
        from umi_data.output.guard import UnsafeOutput, check_outputs

        try:
            check_outputs([cases_out], [file], may_exist=[cases_out] if overwrite else [])
        except UnsafeOutput as e:
            _fail("score", f"--cases: {e}")
    with _guard("score"):
        report = score_file(file, resamples=resamples, seed=seed, cases=cases_out)
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
    per metric A, B, B − A and a 95 % paired bootstrap interval of the difference. Two judged files
    (`umieval judge -o`) are compared on the same queries: pass rate (and win rate) per group and
    on average.

    Refuses (exit 2) when the files are not on the same steps. Exits 1 when either file has
    records that could not be scored."""
    from umi_eval.score.judge import compare_judged, is_judged_file
    from umi_eval.score.scoring import StepMismatch
    from umi_eval.score.scoring import compare as run

    judged = (is_judged_file(a), is_judged_file(b))
    if any(judged):
        if not all(judged):
            raise StepMismatch("one file is a judged file (umieval judge) and the other is not; compare two judged "
                               "files, or two prediction files")
        result = compare_judged(a, b, resamples=resamples, seed=seed)
        if as_json:
            _echo_json(result)
        else:
            from umi_eval.cli.judge import render_judged_comparison

            render_judged_comparison(result)
        sys.exit(EXIT_OK)
    with _guard("compare"):
        result = run(a, b, resamples=resamples, seed=seed)
        if as_json:
            _echo_json(result)
        else:
            from umi_eval.score.tables import render_comparison

            render_comparison(result)
    sys.exit(EXIT_FINDINGS if any(result["rejected"].values()) else EXIT_OK)

