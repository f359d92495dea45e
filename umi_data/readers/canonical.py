"""umi's own canonical trajectories (what ``umidata convert`` writes) → trajectories.

Input shape: one object per JSONL line (or Parquet row, column ``trajectory`` holding the same
JSON text), as described by ``schemas/trajectory.schema.json``::

    {"format": "umi.trajectory/v1", "id": "G1_answer/10_…", "source": {…}, "instruction": "…",
     "tools": [{"name", "description", "parameters"}], "turns": [{"role": "user", …}, …],
     "outcome": "answered", "metadata": {…}}

The record keeps its original ``source`` (lineage survives a convert → split round trip).
"""

from __future__ import annotations

from typing import Any

from umi_data.trajectory import FORMAT_VERSION, Source, Trajectory
from umi_data.trajectory.findings import Finding
from umi_data.trajectory.schema import validator

FORMAT = "umi"


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT_VERSION


def read(obj: Any, source: Source, traj_id: str) -> tuple[Trajectory | None, list[Finding]]:
    errors = sorted(validator("trajectory").iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        return None, [
            Finding("schema", e.message[:300], source, "/" + "/".join(str(p) for p in e.absolute_path))
            for e in errors[:5]
        ]
    return Trajectory.from_dict(obj), []
