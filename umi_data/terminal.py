"""When to draw progress bars: one rule for every umi command."""

from __future__ import annotations

import os
import sys


def interactive(quiet: bool = False) -> bool:
    """Progress bars only on a terminal, never under ``--quiet`` or in CI (``CI=true``/``1``)."""
    return not quiet and sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("true", "1")
