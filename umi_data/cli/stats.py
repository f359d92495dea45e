"""``umidata stats OUTDIR``: what a ``umidata split`` output holds, per role and split.

Registered by ``umi_data.cli.commands`` with ``main.add_command(stats)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from umi_data.split.stats import SplitStats

_DIST_KEYS = ("min", "p50", "p90", "p99", "max", "mean")
_DECISION_LABELS = (("call", "call"), ("conclude", "conclude"), ("give_up", "give up"), ("none", "none"))


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"umidata stats: error: {message}", err=True)
    sys.exit(code)


def _num(v: float | int | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"


def _decision_text(mix: dict[str, int] | None) -> str:
    if mix is None:
        return "-"
    parts = [f"{label} {mix[k]:,}" for k, label in _DECISION_LABELS if mix.get(k)]
    return " · ".join(parts) or "-"


def render(stats: list[SplitStats], outdir: str, tokenizer: str | None) -> None:
    from rich.table import Table

    from umi_cli.terminal import console as make_console

    console = make_console()  # piped or captured: wide, so tables are not wrapped at 80 columns
    overview = Table(title=f"umidata stats {outdir}", title_justify="left")
    for name, justify in (
        ("role", "left"),
        ("split", "left"),
        ("shards", "right"),
        ("examples", "right"),
        ("trajectories", "right"),
        ("decisions", "left"),
    ):
        overview.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in stats:
        overview.add_row(
            s.role, s.split, _num(s.shards), _num(s.examples), _num(s.trajectories), _decision_text(s.decisions)
        )
    console.print(overview)

    units = ["chars"] + (["tokens"] if tokenizer else [])
    lengths = Table(title="lengths" + (f" (tokens: {tokenizer})" if tokenizer else ""), title_justify="left")
    for name in ("role", "split", "field", *_DIST_KEYS):
        lengths.add_column(name, justify="left" if name in ("role", "split", "field") else "right")
    for s in stats:
        for unit in units:
            for kind in ("prompt", "completion"):
                dist = getattr(s, f"{kind}_{unit}") or {}
                lengths.add_row(s.role, s.split, f"{kind} {unit}", *(_num(dist.get(k)) for k in _DIST_KEYS))
    console.print(lengths)

    # The global role calls the same tools as the caller: list it only when there is no caller.
    tool_role = "caller" if any(s.role == "caller" for s in stats) else "global"
    with_tools = [s for s in stats if s.tools is not None and s.role == tool_role]
    if with_tools:
        tools = Table(title="most-used tools", title_justify="left")
        for name, justify in (
            ("role", "left"),
            ("split", "left"),
            ("calls", "right"),
            ("top tools", "left"),
            ("unparsed", "right"),
            ("non-JSON args", "right"),
        ):
            tools.add_column(name, justify=justify)  # type: ignore[arg-type]
        for s in with_tools:
            top = ", ".join(f"{n} ({c:,})" for n, c in s.tools or []) or "-"
            tools.add_row(s.role, s.split, _num(s.calls), top, _num(s.unparsed), _num(s.invalid_json_arguments))
        console.print(tools)


@click.command("stats")
@click.argument("outdir", type=click.Path(path_type=Path))
@click.option(
    "--tokenizer",
    "tokenizer",
    type=click.Path(path_type=Path),
    default=None,
    help="Local tokenizer: a directory (transformers AutoTokenizer) or a tokenizers JSON file.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write prompt/completion length histograms per role to this PNG file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="How many tools to list per role and split.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (check a split, or just --plot).")
def stats(outdir: Path, tokenizer: Path | None, plot_path: Path | None, as_json: bool, top: int, quiet: bool) -> None:
    """Examples, trajectories, length distributions, decision mix and most-used tools of a
    `umidata split` OUTDIR, per role and split. Every shard is read: an unreadable one is an
    error naming the file (exit 2)."""
    # polars is imported here, not at start-up: every other umidata command stays quick to start.
    from umi_data.split.stats import NotASplit, TokenizerError, collect, plot, to_json

    try:
        result = collect(outdir, tokenizer, top=top, keep_lengths=plot_path is not None)
    except (NotASplit, TokenizerError) as e:
        _fail(str(e))
        return
    if plot_path is not None:
        try:
            plot(result, plot_path, unit="tokens" if tokenizer is not None else "chars")
        except OSError as e:
            _fail(f"cannot write {plot_path}: {e.strerror or e}", code=1)
    if quiet:
        return
    if as_json:
        payload = to_json(outdir, result, tokenizer)
        if plot_path is not None:
            payload["plot"] = str(plot_path)
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        render(result, str(outdir), None if tokenizer is None else str(tokenizer))
        if plot_path is not None:
            click.echo(f"plot: {plot_path}")
