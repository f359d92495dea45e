"""umi_train: GLPFT training for α-UMi planner / caller / summarizer models."""

from importlib.metadata import PackageNotFoundError, version

from umi_cli.errors import UsageError
from umi_data.render.roles import ROLE_NAMES

try:
    __version__ = version("umi")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+local"

ROLES: tuple[str, ...] = ROLE_NAMES  # the one list of role names (umi_data.render.roles)


class UserError(UsageError):
    """A mistake the user can fix (bad path, role, YAML key): the CLI prints one line and exits 2."""
