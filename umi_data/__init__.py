"""umi_data: canonical tool-use trajectories and the α-UMi role datasets built from them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("umi")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"
