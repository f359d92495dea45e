"""One error policy for every umi command line (``umidata``, ``umitrain``, ``umieval``).

A crash must never look like "some records were rejected" (exit 1), and Ctrl-C must never print a
traceback. :class:`GuardedGroup` is a :class:`click.Group` that maps what escapes a command to an
exit code and one line on stderr:

====  =====================================================================================
0     ok
1     findings or rejects (the command decides; returned through ``sys.exit``)
2     usage or I/O error: a click usage error, one of ``usage_errors``, or an ``OSError``
      (the message names the path)
3     internal error (a bug): one line, plus the path of a file holding the full traceback
130   interrupted (Ctrl-C; SIGTERM exits 143): one line, no traceback
====  =====================================================================================

Use it on any click group::

    @click.group(cls=GuardedGroup, prog="umitrain", usage_errors=(UserError,))
    def main() -> None: ...

and call :func:`interrupt_early` at the top of the CLI module, so a Ctrl-C that arrives while the
program is still importing (pyarrow, torch: the first second) also exits 130 with one line.
Set ``UMI_DEBUG=1`` to let internal errors raise with their traceback instead.
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from umi_cli.terminal import early_interrupt_handler, interrupt_early

__all__ = ["GuardedGroup", "Terminated", "UsageError", "interrupt_early", "write_crash_report"]

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


class UsageError(Exception):
    """A problem the user can fix (bad option, missing input, unsafe output path): one line, exit 2."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so ``finally`` blocks and staging clean-up run."""


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise Terminated()


def crash_dir() -> Path:
    """Where traceback files go: ``$UMI_CRASH_DIR``, else the system temporary directory."""
    return Path(os.environ.get("UMI_CRASH_DIR") or tempfile.gettempdir())


def write_crash_report(prog: str, exc: BaseException) -> Path | None:
    """Write the full traceback (and the command line) to a new file; its path, or None if even
    that cannot be written."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        d = crash_dir()
        d.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{prog}-crash-{stamp}-{os.getpid()}-", suffix=".txt", dir=d)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"command: {' '.join(sys.argv)}\npython: {sys.version}\n\n")
            f.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return Path(name)
    except OSError:
        return None


def describe_os_error(e: OSError) -> str:
    """``No space left on device: /out/x.parquet`` — the reason and every path the error names."""
    reason = e.strerror or str(e) or type(e).__name__
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{reason}: {' → '.join(paths)}" if paths else reason


class GuardedGroup(click.Group):
    """A click group whose ``main`` applies the umi exit-code policy (module docstring).

    Extra keyword arguments: ``prog`` (the name used in messages), ``usage_errors`` (exception
    types that mean a mistake the user can fix: exit 2, one line) and ``interrupted`` (the line
    printed on Ctrl-C)."""

    def __init__(
        self,
        *args: Any,
        prog: str | None = None,
        usage_errors: Sequence[type[BaseException]] = (),
        interrupted: str = "interrupted",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.prog = prog
        self.usage_errors: tuple[type[BaseException], ...] = (UsageError, *usage_errors)
        self.interrupted = interrupted
        self.command_name: str | None = None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Remembers the subcommand, so its errors say ``umidata split: error: …``."""
        name, cmd, rest = super().resolve_command(ctx, args)
        self.command_name = cmd.name if cmd is not None else name
        return name, cmd, rest

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("standalone_mode", None)
        prog = self.prog or kwargs.get("prog_name") or os.path.basename(sys.argv[0]) or "umi"
        in_main_thread = threading.current_thread() is threading.main_thread()
        old_term = None
        if in_main_thread:
            if signal.getsignal(signal.SIGINT) is early_interrupt_handler:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            old_term = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]  # *args
        except (KeyboardInterrupt, click.exceptions.Abort):
            click.echo(f"{prog}: {self.interrupted}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Terminated:
            click.echo(f"{prog}: terminated (SIGTERM)", err=True)
            sys.exit(EXIT_TERMINATED)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except self.usage_errors as e:
            click.echo(f"{self._who(prog)}: error: {e}", err=True)
            sys.exit(EXIT_USAGE)
        except OSError as e:
            if os.environ.get("UMI_DEBUG"):
                raise
            click.echo(f"{self._who(prog)}: I/O error: {describe_os_error(e)}", err=True)
            sys.exit(EXIT_USAGE)
        except Exception as e:
            if os.environ.get("UMI_DEBUG"):
                raise
            report = write_crash_report(prog, e)
            where = f"full traceback in {report}" if report else "no traceback file could be written"
            msg = str(e).splitlines()[0][:200] if str(e) else ""
            click.echo(f"{prog}: internal error ({type(e).__name__}{': ' + msg if msg else ''}); this is a "
                       f"bug in umi, not in your data; {where}", err=True)
            sys.exit(EXIT_INTERNAL)
        finally:
            if in_main_thread and old_term is not None:
                signal.signal(signal.SIGTERM, old_term)

    def _who(self, prog: str) -> str:
        return f"{prog} {self.command_name}" if self.command_name else prog
