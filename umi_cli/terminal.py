"""Terminal behaviour shared by every umi command: when to draw progress bars, and Ctrl-C
during start-up. Standard library only, so it can run before the heavy imports."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

EXIT_INTERRUPTED = 130


def interactive(quiet: bool = False) -> bool:
    """Progress bars only on a terminal, never under ``--quiet`` or in CI (``CI=true``/``1``)."""
    return not quiet and sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("true", "1")


def early_interrupt_handler(_signum: int, _frame: Any) -> None:
    """SIGINT before the command started: nothing was written yet, so leave at once, one line."""
    os.write(2, b"\ninterrupted\n")
    os._exit(EXIT_INTERRUPTED)


def interrupt_early(prog: str, module: str) -> None:
    """When this process *is* the program (console script ``prog`` or ``python -m module``),
    make Ctrl-C during start-up (imports of pyarrow, torch: up to a second) exit 130 with one
    line instead of a ``KeyboardInterrupt`` traceback. ``cli_errors.GuardedGroup`` puts Python's
    handler back when the command starts; importing the module in a library or a test changes
    nothing."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    as_program = os.path.basename(sys.argv[0] if sys.argv else "") in (prog, f"{prog}.exe") or (
        spec is not None and spec.name in (module, f"{module}.__main__")
    )
    if (
        as_program
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, early_interrupt_handler)


PIPED_WIDTH = 200  # rich's 80-column default would wrap tables and summary lines in logs and pipes


def console(stderr: bool = False) -> Console:
    """A rich console; when not writing to a terminal, wide and without soft wrapping, so piped
    output keeps one table row or summary line per line."""
    from rich.console import Console

    c = Console(stderr=stderr)
    if not c.is_terminal:
        c = Console(stderr=stderr, width=PIPED_WIDTH, soft_wrap=True)
    return c
