"""The umidata click commands: argument handling only."""

from umi_data.cli.commands import main

__all__ = ["main"]
