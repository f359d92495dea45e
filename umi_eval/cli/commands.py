"""``umieval``: the command line. Commands only parse arguments and call one library function.

Exit codes: 0 ok; 1 findings (steps, predictions or queries that could not be used, counted in the
summary); 2 usage or I/O error; 3 internal error (one line + a traceback file); 130 interrupted
(Ctrl-C). The policy is umi_cli.errors', shared by every umi command line.
"""

# ruff: noqa: E402  (Ctrl-C handling is installed before the heavy imports)
from __future__ import annotations

from umi_cli.terminal import interrupt_early

interrupt_early("umieval", "umi_eval.cli.commands")

import click

from umi_cli.errors import GuardedGroup
from umi_eval import __version__
from umi_eval.cli.generate import generate_cmd
from umi_eval.cli.run import run_cmd
from umi_eval.cli.score import compare, score


@click.group(cls=GuardedGroup, prog="umieval", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="umieval")
def main() -> None:
    """Evaluate α-UMi models: generate predictions on test steps, score them, and run the agent loop.

    Exit codes: 0 ok, 1 findings (steps, predictions or queries that could not be used), 2 usage or
    I/O error, 3 internal error (one line + a traceback file), 130 interrupted (Ctrl-C).
    """


for _command in (generate_cmd, score, compare, run_cmd):
    main.add_command(_command)
