"""``umidata``: the command line. Commands only parse arguments and call one library function.

Exit codes: 0 ok; 1 findings (validate: an error, or a warning under --strict) or rejects
(convert: any record rejected); 2 usage or I/O error (missing input, unwritable output, nothing
read); 3 internal error (a bug: one line + a traceback file); 130 interrupted (Ctrl-C). The
policy lives in ``umi_cli.errors``, shared by every umi command line.
"""

# ruff: noqa: E402  (Ctrl-C handling is installed before the heavy imports)
from __future__ import annotations

from umi_cli.terminal import interrupt_early

interrupt_early("umidata", "umi_data.cli.commands")

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson

from umi_cli.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, GuardedGroup, UsageError, describe_os_error
from umi_cli.terminal import interactive
from umi_data import __version__
from umi_data.cli.options import (
    allow_empty,
    check_dataset_info,
    check_tools_file,
    read_limits,
    read_options,
    workers,
)
from umi_data.export.outputs import OUTPUTS
from umi_data.readers import FORMATS, Unit, expand, urls
from umi_data.trajectory.findings import CODES

if TYPE_CHECKING:
    from umi_data.driver import Checked
    from umi_data.export.convert import Summary

PROGRESS_MIN_BYTES = 20_000_000  # show a progress bar only for inputs at least this large

_inputs = click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
_format = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default=None,
    help="Read every record with this reader instead of detecting the format per record.",
)
_strict = click.option("--strict", is_flag=True, help="Treat warnings as errors (reject those records).")
_dataset_info = click.option(
    "--dataset-info", type=click.Path(exists=True, dir_okay=False), default=None,
    help="A LLaMA-Factory dataset_info.json: ShareGPT role tags and columns for the input files its entries "
         "name (default: a dataset_info.json beside each file).")
_tools = click.option(
    "--tools", "tools_file", type=click.Path(exists=True, dir_okay=False), default=None,
    help="Tool definitions for records that carry no tool list: a JSON list (or JSONL) of tools in any shape "
         "umidata reads (OpenAI, BFCL/xLAM {name, description, parameters}, ToolBench api_list).")
_id_prefix = click.option("--id-prefix", default="", help="Prepend this to every trajectory id (e.g. the system "
                          "that wrote the answers).")
_quiet = click.option(
    "--quiet", "-q", is_flag=True, help="Print nothing but fatal errors; use the exit code."
)


def _check_inputs(inputs: tuple[str, ...]) -> None:
    try:
        missing = [p for p in inputs if not urls.exists(p)]
    except OSError as e:  # a URL scheme without its fsspec package (s3:// without s3fs)
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_USAGE)
    if missing:
        click.echo(f"error: no such input: {', '.join(missing)}", err=True)
        sys.exit(EXIT_USAGE)


@contextmanager
def _progress(inputs: tuple[str, ...], quiet: bool) -> Iterator[Callable[[Unit], None] | None]:
    """A rich progress bar over input bytes, on a terminal, for large inputs only."""
    units = expand(inputs) if interactive(quiet) else []
    total = sum(u.size for u in units)
    if total < PROGRESS_MIN_BYTES:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("reading"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("read", total=total)
        yield lambda unit: bar.advance(task, unit.size)


def _summary(summary: Summary, quiet: bool, err: bool = True) -> None:
    """The totals line (a table on a terminal). ``err=False`` for validate: its findings are its
    output, on stdout, and the totals belong with them on the same stream (two streams interleave
    in whatever order their buffers flush when piped together)."""
    if quiet:
        return
    line = (f"records read: {summary.records} = accepted {summary.accepted} + rejected {summary.rejected} "
            f"({summary.errors} errors, {summary.warnings} warnings)")
    if not interactive():
        click.echo(line, err=err)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="umidata", show_edge=False)
    for col in ("records", "accepted", "rejected", "errors", "warnings"):
        table.add_column(col, justify="right")
    table.add_row(
        *(str(getattr(summary, c)) for c in ("records", "accepted", "rejected", "errors", "warnings"))
    )
    console = Console(stderr=err)
    console.print(table)
    if summary.counts_by_code:
        console.print("  ".join(f"{c}={n}" for c, n in sorted(summary.counts_by_code.items())))


@click.group(cls=GuardedGroup, prog="umidata", interrupted="interrupted: no partial output was left behind",
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="umidata")
def main() -> None:
    """umi data tools: ToolBench / α-UMi / OpenAI-style agent trajectories → canonical,
    JSON-Schema-validated trajectories → α-UMi datasets.

    Exit codes: 0 ok, 1 findings or rejects, 2 usage or I/O error (or nothing read), 3 internal
    error (a bug; the traceback goes to a file), 130 interrupted."""


@main.command()
@_inputs
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=str),
              help="Output file: canonical JSONL (.jsonl), a JSON array (.json), Parquet (.parquet), α-UMi JSON "
                   "(.json) with --to alpha-umi, OpenAI/ShareGPT JSONL (a JSON list for .json) with --to "
                   "openai|sharegpt. Rejects go to <stem>.rejects.jsonl beside it.")
@_format
@click.option("--to", "to", type=click.Choice(list(OUTPUTS)), default="umi",
              show_default=True,
              help="umi: canonical trajectories; alpha-umi: α-UMi stage-2 conversations; openai: chats with "
                   "messages + tools; sharegpt: LLaMA-Factory ShareGPT, plus its entry in a dataset_info.json "
                   "beside the output.")
@_strict
@_id_prefix
@_dataset_info
@_tools
@click.option("--overwrite", is_flag=True, help="Replace an existing output (never an input).")
@read_limits
@allow_empty
@workers
@_quiet
def convert(inputs: tuple[str, ...], out: str, fmt: str | None, to: str, strict: bool, id_prefix: str,
            dataset_info: str | None, tools_file: str | None, overwrite: bool, max_record_bytes: int,
            max_ratio: float, allow_empty: bool, workers: int, quiet: bool) -> None:
    """Convert INPUT files, directories or zips to canonical trajectories (or α-UMi).

    Records with an error finding (or a warning under --strict) and duplicates (same id or same
    content as an earlier record) are rejected into <stem>.rejects.jsonl, one JSON line each:
    {source, reason, message, pointer, findings}. Both files are written atomically. Exits 1
    when any record was rejected; 2 when the output exists (without --overwrite), is or lies
    inside an input, or no record could be read."""
    from umi_data.driver import make_executor
    from umi_data.export.convert import convert as run

    _check_inputs(inputs)
    check_dataset_info(dataset_info)
    check_tools_file(tools_file)
    try:
        with _progress(inputs, quiet) as on_unit:
            summary = run(inputs, out, fmt=fmt, to=to, strict=strict, on_unit=on_unit,  # type: ignore[arg-type]
                          id_prefix=id_prefix, dataset_info=dataset_info, tools=tools_file, overwrite=overwrite,
                          allow_empty=allow_empty, read_opts=read_options(max_record_bytes, max_ratio),
                          executor=make_executor("local", workers))
    except OSError as e:  # usage errors (unsafe output, nothing read) are the group's to print
        raise UsageError(f"cannot write {out}: {describe_os_error(e)}") from e
    _summary(summary, quiet)
    if not quiet:
        click.echo(f"wrote {summary.accepted} trajectories to {out}, {summary.rejected} rejects to "
                   f"{out[: len(out) - len(Path(out).name)]}{Path(out).stem}.rejects.jsonl", err=True)
    sys.exit(EXIT_FINDINGS if summary.rejected else EXIT_OK)


@main.command()
@_inputs
@_format
@_strict
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON report (schemas/findings-report.schema.json), not lines.")
@_id_prefix
@_dataset_info
@_tools
@read_limits
@allow_empty
@workers
@_quiet
def validate(inputs: tuple[str, ...], fmt: str | None, strict: bool, as_json: bool, id_prefix: str,
             dataset_info: str | None, tools_file: str | None, max_record_bytes: int, max_ratio: float,
             allow_empty: bool, workers: int, quiet: bool) -> None:
    """Check INPUT files, directories or zips and report findings; write nothing.

    One line per finding (file:line#/pointer: severity [code] message), then a summary, both on
    stdout (errors about the command itself go to stderr). Exits 1 when there is an error (or a
    warning under --strict), or a duplicate; 2 when no record could be read at all."""
    from umi_data.driver import make_executor
    from umi_data.export.convert import report
    from umi_data.export.convert import validate as run

    _check_inputs(inputs)
    on_checked = None
    if not quiet and not as_json:

        def on_checked(c: Checked) -> None:
            for f in c.findings:
                click.echo(f.line())

    check_dataset_info(dataset_info)
    check_tools_file(tools_file)
    with _progress(inputs, quiet) as on_unit:
        summary, findings = run(inputs, fmt=fmt, strict=strict, on_unit=on_unit, on_checked=on_checked,
                                keep_findings=as_json, id_prefix=id_prefix, dataset_info=dataset_info,
                                tools=tools_file, read_opts=read_options(max_record_bytes, max_ratio),
                                executor=make_executor("local", workers))
    if as_json:
        sys.stdout.buffer.write(
            orjson.dumps(report(summary, findings, strict), option=orjson.OPT_INDENT_2) + b"\n"
        )
        sys.stdout.flush()
    else:
        _summary(summary, quiet, err=False)
    if summary.nothing_read and not allow_empty:
        click.echo(f"umidata validate: error: no record could be read from {', '.join(inputs)} (see the "
                   "findings; --allow-empty accepts it)", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_FINDINGS if summary.rejected else EXIT_OK)


@main.command()
@click.option("--markdown", is_flag=True, help="Print docs/findings.md (the generated reference page).")
def codes(markdown: bool) -> None:
    """List every finding and reject code (umidata's and umieval's) with its default severity and meaning."""
    if markdown:
        click.echo(findings_markdown(), nl=False)
        return
    width = max(map(len, CODES))
    for c in CODES.values():
        click.echo(f"{c.code:<{width}}  {c.severity:<7}  {c.description}")


@main.command()
@click.option("--markdown", is_flag=True, help="Print the README's input table (markdown).")
def formats(markdown: bool) -> None:
    """List every input format: its shape, a two-line example, how it maps to planner / caller /
    observation / conclusion, and its id rule. The format is detected per record."""
    from umi_data.readers import catalog

    click.echo(catalog.markdown() if markdown else catalog.text(), nl=False)


def findings_markdown() -> str:
    """The text of ``docs/findings.md``, generated from ``findings.CODES``."""
    lines = [
        "# Finding codes",
        "",
        "<!-- Generated from umi_data/trajectory/findings.py by `umidata codes --markdown > docs/findings.md`;"
        " do not edit. -->",
        "",
        "`umidata validate` and `umidata convert` report problems as findings: a stable code, a",
        "severity, the record's location (`file:line` or `file[index]`, `zip!member`) and a JSON",
        "pointer. Reading and schema findings point into the *input* record; semantic findings",
        "point into the *canonical* trajectory (`/turns/4/calls/0/arguments`). A record with an",
        "`error` is rejected (`--strict`: a warning too); a later duplicate of an accepted record",
        "is rejected. Rejects are listed in `<output stem>.rejects.jsonl`.",
        "",
        "This one table holds every code umi emits: umidata's findings and rejects, and `umieval`'s",
        "(`generate`'s steps that are not evaluated, `score`'s records that cannot be scored, `run`'s",
        "rejected queries and the agent loop's findings in a run's `metadata.findings`, `judge`'s",
        "rejects). Every rejects file (`umidata convert`/`split`, `umieval generate`/`run`/`judge`)",
        "has one line shape: `{source, reason, message, pointer, findings}` — `reason` a code below,",
        "`source` the record's location, `findings` everything found in it — followed by the keys a",
        "command adds (`generate`: `trajectory_id`, `turn`; `judge`: `input`).",
        "",
        "| code | severity | meaning |",
        "| --- | --- | --- |",
    ]
    for c in CODES.values():
        desc = c.description.replace("|", "\\|")
        lines.append(f"| `{c.code}` | {c.severity} | {desc} |")
    return "\n".join(lines) + "\n"


def _register() -> None:
    """Commands that live in their own modules (one module per command family)."""
    from umi_data.cli.split import split_command
    from umi_data.cli.stats import stats

    main.add_command(split_command)
    main.add_command(stats)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
