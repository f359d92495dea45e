"""Read → check → decide → write: the library behind ``umidata convert`` and ``umidata validate``.

Each input record is *checked* (reader findings + :func:`umi_data.checks.check`) and then
accepted or rejected:

- rejected when it has a finding of severity ``error`` (or any warning under ``strict``), the
  ``reason`` being the first such finding;
- otherwise rejected when it repeats the id (``duplicate_id``) or the content
  (``duplicate_trajectory``) of an earlier *accepted* record; the earlier one is kept and the
  message names where it came from;
- accepted otherwise, warnings and all.

So ``records = accepted + rejected`` always holds; nothing is dropped silently.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from umi_data import alpha_umi
from umi_data.checks import Deduper, check
from umi_data.findings import Finding
from umi_data.readers import Record, Unit, prefixed, read_inputs, sharegpt
from umi_data.trajectory import Trajectory
from umi_data.writers import (
    atomic_path,
    rejects_path,
    trajectory_rows,
    write_json_list,
    write_jsonl,
    write_trajectories_parquet,
)

Target = Literal["umi", "alpha-umi", "openai", "sharegpt"]
REPORT_FORMAT = "umi.findings-report/v1"


@dataclass(slots=True)
class Checked:
    """A record after checking: every finding, and whether (and why) it is rejected."""

    record: Record
    findings: list[Finding]
    reason: Finding | None = None

    @property
    def rejected(self) -> bool:
        return self.reason is not None

    @property
    def trajectory(self) -> Trajectory | None:
        return None if self.rejected else self.record.trajectory


@dataclass(slots=True)
class Summary:
    records: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: int = 0
    warnings: int = 0
    counts_by_code: Counter[str] = field(default_factory=Counter)

    def add(self, c: Checked) -> None:
        self.records += 1
        if c.rejected:
            self.rejected += 1
        else:
            self.accepted += 1
        for f in c.findings:
            self.counts_by_code[f.code] += 1
            if f.severity == "error":
                self.errors += 1
            else:
                self.warnings += 1


def judge(rec: Record, strict: bool = False) -> Checked:
    """Check one record on its own (reader findings + semantic checks) and decide whether it
    is rejected; cross-record duplicates are :func:`evaluate`'s (or the split pipeline's) job."""
    findings = list(rec.findings)
    traj = rec.trajectory
    if traj is not None:
        findings.extend(check(traj))
    blocking = [f for f in findings if f.severity == "error" or strict]
    if traj is None and not blocking:  # a reader must explain a rejection; never drop silently
        findings.append(Finding("schema", "the reader produced no trajectory", rec.source))
        blocking = findings[-1:]
    return Checked(rec, findings, blocking[0] if blocking else None)


def evaluate(recs: Iterable[Record], strict: bool = False) -> Iterator[Checked]:
    """Check every record and decide accept / reject (see the module docstring)."""
    dedupe = Deduper()
    for rec in recs:
        c = judge(rec, strict)
        if not c.rejected and rec.trajectory is not None:
            dups = dedupe.check(rec.trajectory)
            c.findings.extend(dups)
            if dups:
                c.reason = dups[0]
            else:
                dedupe.add(rec.trajectory)
        yield c


def reject_row(c: Checked) -> dict[str, Any]:
    """One line of the rejects ledger."""
    assert c.reason is not None
    return {
        "source": c.record.source.to_dict(),
        "reason": c.reason.code,
        "message": c.reason.message,
        "pointer": c.reason.pointer,
        "findings": [f.to_dict() for f in c.findings],
    }


def alpha_umi_item(t: Trajectory) -> dict[str, Any]:
    """A trajectory as an α-UMi stage-2 record (history turns first: α-UMi has no history mark)."""
    return {
        "tools": alpha_umi.tool_docs(t.tools),
        "instruction": t.instruction,
        "conversations": alpha_umi.conversation(t.history + t.turns),
    }


def convert(
    paths: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    fmt: str | None = None,
    to: Target = "umi",
    strict: bool = False,
    on_unit: Callable[[Unit], None] | None = None,
    on_checked: Callable[[Checked], None] | None = None,
    id_prefix: str = "",
    dataset_info: str | None = None,
) -> Summary:
    """Write accepted trajectories to ``out`` (canonical JSONL, or Parquet when ``out`` ends in
    ``.parquet``; α-UMi stage-2 JSON with ``to="alpha-umi"``; OpenAI chats or LLaMA-Factory
    ShareGPT with ``to="openai"`` / ``"sharegpt"``, see :mod:`umi_data.exports`) and rejects to
    ``<stem>.rejects.jsonl`` beside it (always written, empty when nothing was rejected).
    Both files appear atomically, and only if the whole run succeeds."""
    sharegpt.use_dataset_info(dataset_info)
    summary = Summary()
    out = os.fspath(out)
    with atomic_path(rejects_path(out)) as rtmp, open(rtmp, "wb") as rf:

        def accepted() -> Iterator[Trajectory]:
            for c in evaluate(prefixed(read_inputs(paths, fmt, on_unit), id_prefix), strict):
                summary.add(c)
                if on_checked is not None:
                    on_checked(c)
                if c.rejected:
                    rf.write(orjson.dumps(reject_row(c)) + b"\n")
                elif c.trajectory is not None:
                    yield c.trajectory

        if to == "alpha-umi":
            write_json_list(out, (alpha_umi_item(t) for t in accepted()))
        elif to in ("openai", "sharegpt"):
            from umi_data.exports import write_export

            write_export(out, to, accepted())  # type: ignore[arg-type]
        elif out.endswith(".parquet"):
            write_trajectories_parquet(out, accepted())
        else:
            write_jsonl(out, trajectory_rows(accepted()))
    return summary


def validate(
    paths: Iterable[str | os.PathLike[str]],
    fmt: str | None = None,
    strict: bool = False,
    on_unit: Callable[[Unit], None] | None = None,
    on_checked: Callable[[Checked], None] | None = None,
    keep_findings: bool = True,
    id_prefix: str = "",
    dataset_info: str | None = None,
) -> tuple[Summary, list[Finding]]:
    """Check every record without writing anything: the summary and every finding (only the
    counts with ``keep_findings=False``, so memory stays flat when findings are streamed out
    through ``on_checked``)."""
    sharegpt.use_dataset_info(dataset_info)
    summary = Summary()
    findings: list[Finding] = []
    for c in evaluate(prefixed(read_inputs(paths, fmt, on_unit), id_prefix), strict):
        summary.add(c)
        if keep_findings:
            findings.extend(c.findings)
        if on_checked is not None:
            on_checked(c)
    return summary, findings


def report(summary: Summary, findings: list[Finding], strict: bool = False) -> dict[str, Any]:
    """The ``validate --json`` report (``schemas/findings-report.schema.json``)."""
    return {
        "format": REPORT_FORMAT,
        "records": summary.records,
        "accepted": summary.accepted,
        "rejected": summary.rejected,
        "errors": summary.errors,
        "warnings": summary.warnings,
        "strict": strict,
        "findings": [f.to_dict() for f in findings],
        "counts_by_code": dict(sorted(summary.counts_by_code.items())),
    }
