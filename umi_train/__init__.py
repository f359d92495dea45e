"""umi_train: GLPFT training for α-UMi planner / caller / summarizer models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("umi")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+local"

ROLES: tuple[str, ...] = ("global", "planner", "caller", "summarizer")


class UserError(Exception):
    """A mistake the user can fix (bad path, role, YAML key): the CLI prints one line and exits 2."""
