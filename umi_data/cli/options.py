"""Options shared by several ``umidata`` commands (one definition, one help text)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import click

from umi_cli.errors import EXIT_USAGE
from umi_data.readers import DEFAULT_READ, ReaderConfig, ReadOptions

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class ByteSize(click.ParamType):
    """``1073741824``, ``512M``, ``1G``, ``2GiB`` (powers of 1024)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(value).lower())
        if not m or float(m.group(1)) <= 0:
            self.fail(f"{value!r} is not a size such as 512M or 2G", param, ctx)
        return int(float(m.group(1)) * _UNITS[m.group(2)])


def read_limits(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--max-record-bytes`` and ``--max-ratio``: what one input may cost in memory."""
    f = click.option("--max-ratio", type=click.FloatRange(min=1), default=DEFAULT_READ.max_ratio, show_default=True,
                     help="A compressed input (zip member, .gz, .zst) may expand at most this many times its "
                          "compressed size (past 16 MiB); more is refused as a decompression bomb.")(f)
    return click.option("--max-record-bytes", type=ByteSize(), default="1G", show_default=True,
                        help="Largest JSON file, JSONL line or decompressed input read; larger ones are "
                             "rejected (too_large) and the run goes on.")(f)


def allow_empty(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--allow-empty", is_flag=True,
                        help="Accept inputs from which no record can be read (exit 1 instead of 2).")(f)


def read_options(max_record_bytes: int, max_ratio: float, duplicate_keys: bool = True) -> ReadOptions:
    return ReadOptions(max_record_bytes, max_ratio, duplicate_keys=duplicate_keys)


def check_dataset_info(path: str | None) -> None:
    """A --dataset-info file that is not a JSON object is a usage error, before any work."""
    try:
        ReaderConfig.load(dataset_info=path)
    except (OSError, ValueError) as e:
        click.echo(f"error: --dataset-info: {e}", err=True)
        sys.exit(EXIT_USAGE)


def check_tools_file(path: str | None) -> None:
    """A --tools file that holds no readable tool is a usage error, before any work."""
    try:
        ReaderConfig.load(tools=path)
    except (OSError, ValueError) as e:
        click.echo(f"error: --tools: {e}", err=True)
        sys.exit(EXIT_USAGE)


def workers(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--workers`` for ``validate`` / ``convert``: records are read and checked in that many
    processes (the driver's local pool); the output is the same bytes whatever the count."""
    return click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Processes that read and check records; the output is byte-identical whatever "
                             "the count.")(f)
