"""umi_data: canonical tool-use trajectories and the α-UMi role datasets built from them."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Looked up on first use: importing importlib.metadata costs ~30 ms of every command's
    # start-up, before Ctrl-C handling is installed (umi_cli.terminal.interrupt_early).
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("umi")
        except PackageNotFoundError:  # running from a source tree without installation
            return "0.0.0+local"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
