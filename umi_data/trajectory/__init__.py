"""The canonical trajectory: the model (``model``), its JSON Schema binding (``schema``), the finding
codes (``findings``) and the semantic checks (``checks``).

The model's names are handed on here, so ``from umi_data.trajectory import Trajectory`` is the one
spelling everywhere.
"""

from umi_data.trajectory.model import (
    FORMAT_VERSION,
    ROLE_FIELDS,
    ROLES,
    Call,
    Decision,
    Outcome,
    Role,
    Source,
    Tool,
    Trajectory,
    Turn,
    derive_outcome,
    ends_in_calls,
    record_id,
)

__all__ = [
    "FORMAT_VERSION",
    "ROLES",
    "ROLE_FIELDS",
    "Call",
    "Decision",
    "Outcome",
    "Role",
    "Source",
    "Tool",
    "Trajectory",
    "Turn",
    "derive_outcome",
    "ends_in_calls",
    "record_id",
]
