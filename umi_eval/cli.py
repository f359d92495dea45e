"""``umieval``: the command line. Commands only parse arguments and call one library function.

Exit codes: 0 ok; 1 findings (steps or predictions that could not be used, counted in the summary);
2 usage or I/O error; 3 internal error; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import click

from umi_eval import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="umieval")
def main() -> None:
    """Evaluate α-UMi models: build test steps, generate, score, and run the agent loop."""


from umi_eval.cli_score import compare, score  # noqa: E402  (the commands register on the group above)

main.add_command(score)
main.add_command(compare)

from umi_eval.cli_generate import generate_cmd  # noqa: E402

main.add_command(generate_cmd)
