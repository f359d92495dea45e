"""When to draw progress bars: one rule for every umi command."""

from __future__ import annotations

import os
import sys


def interactive(quiet: bool = False) -> bool:
    """Progress bars only on a terminal, never under ``--quiet`` or in CI (``CI=true``/``1``)."""
    return not quiet and sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("true", "1")


PIPED_WIDTH = 200  # rich's 80-column default would wrap tables and summary lines in logs and pipes


def console(stderr: bool = False):  # type: ignore[no-untyped-def]
    """A rich console; when not writing to a terminal, wide and without soft wrapping, so piped
    output keeps one table row or summary line per line."""
    from rich.console import Console

    c = Console(stderr=stderr)
    if not c.is_terminal:
        c = Console(stderr=stderr, width=PIPED_WIDTH, soft_wrap=True)
    return c
