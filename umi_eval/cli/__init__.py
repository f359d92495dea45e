"""The umieval click commands: argument handling only."""

from umi_eval.cli.commands import main

__all__ = ["main"]
