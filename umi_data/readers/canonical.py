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

from umi_data.readers.base import Episode, FormatDoc, Reader, Signature
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


class CanonicalReader(Reader):
    """``umi`` in the registry: detection order, signature and catalog entry; the module's
    functions do the reading."""

    name = FORMAT
    rank = 0
    catalog_rank = 1000  # umi's own format: listed after the formats users bring
    signature = Signature(("format",), ("instruction", "turns", "outcome", "source", "history"))
    doc = FormatDoc(
        "umi",
        "canonical trajectories written by `umidata convert` (JSONL or Parquet)",
        ('{"format": "umi.trajectory/v1", "id": "c1", "source": {…}, "instruction": "…", "tools": [{"name": "f", …}],',
         ' "turns": [{"role": "user", …}, {"role": "planner", "thought": "…", "decision": "call"}, {"role": "caller", …}, …], "outcome": "answered", "metadata": {}}'),  # noqa: E501
        "its own turns",
        "its own",
    )

    def sniff(self, obj: Any) -> bool:
        return sniff(obj)

    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        return [read(obj, source, traj_id)]

    def mismatch(self, obj: dict[str, Any]) -> str:
        if "format" in obj:
            return f"{self.name} (but `format` is {obj['format']!r}, not {FORMAT_VERSION!r})"
        return super().mismatch(obj)
