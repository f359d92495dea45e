"""The steps every command runs on each record: read a unit → check and judge a record →
dedupe (main process) — the pieces ``validate``, ``convert`` and ``split`` share.

Each step is a plain function or a small picklable object, so any executor
(:mod:`umi_data.driver.executors`) can run it in whichever process it likes; the only step
that needs to see every record, in input order, is :class:`Dedupe`, and it runs in the main
process. A record that makes a step fail is rejected alone (:func:`failure`): too deep for
Python's recursion or orjson (``too_deep``), or a bug (``internal_error``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson

from umi_data.readers import (
    DEFAULT_READ,
    ReaderConfig,
    ReadOptions,
    Record,
    Unit,
    parse_unit,
    prefixed,
    read_bytes,
)
from umi_data.trajectory import Source, Trajectory
from umi_data.trajectory.checks import Deduper, check, fingerprint
from umi_data.trajectory.findings import Finding, Reject

DEEP = (RecursionError, orjson.JSONEncodeError)  # a record nested deeper than Python or orjson go


def failure(e: BaseException, source: Source, what: str) -> Finding:
    """The one rule for a record that makes a step fail: ``too_deep`` when it is nested too deeply
    for ``what`` (check, serialise, write, render), else ``internal_error`` (a bug, reported where
    it happened so one record never aborts a 100k-file run)."""
    if isinstance(e, DEEP):
        return Finding("too_deep", f"the record is nested too deeply to {what} ({e})", source)
    return Finding("internal_error", f"umidata failed on this record ({type(e).__name__}: {e})", source)


@dataclass(slots=True)
class Checked:
    """A record after checking: every finding, and whether (and why) it is rejected."""

    record: Record
    findings: list[Finding]
    reason: Finding | None = None
    blob: bytes = b""  # the accepted trajectory as canonical JSON (what convert writes)
    fingerprint: str = ""  # content hash for the dedupe step ("" when rejected before it)
    unwritable: Finding | None = None  # too deep to serialise: rejected unless a duplicate first

    @property
    def rejected(self) -> bool:
        return self.reason is not None

    @property
    def trajectory(self) -> Trajectory | None:
        return None if self.rejected else self.record.trajectory

    def to_reject(self) -> Reject:
        """A rejected record in the one reject shape: its reason, every finding, the record's source."""
        assert self.reason is not None
        return Reject.of(self.reason, self.findings, self.record.source)


def judge(rec: Record, strict: bool = False) -> Checked:
    """Check one record on its own (reader findings + semantic checks) and decide whether it
    is rejected; cross-record duplicates are :class:`Dedupe`'s job."""
    findings = list(rec.findings)
    traj = rec.trajectory
    if traj is not None:
        try:
            findings.extend(check(traj, rec.source))
        except DEEP as e:  # e.g. a tool schema nested 900 deep
            findings.append(failure(e, rec.source, "check"))
    blocking = [f for f in findings if f.severity == "error" or strict]
    if traj is None and not blocking:  # a reader must explain a rejection; never drop silently
        findings.append(Finding("schema", "the reader produced no trajectory", rec.source))
        blocking = findings[-1:]
    return Checked(rec, findings, blocking[0] if blocking else None)


def reject(c: Checked, finding: Finding) -> Checked:
    """``c`` rejected for ``finding`` (added to its findings)."""
    c.findings.append(finding)
    c.reason = finding
    return c


def check_record(rec: Record, strict: bool = False) -> Checked:
    """``validate`` / ``convert``'s per-record step: judge it, then hash and serialise an accepted
    one (so a record too deep to write is one reject, not a crash); whether it is a duplicate is
    :class:`Dedupe`'s call. A record that trips a bug in the checks is rejected alone."""
    try:
        c = judge(rec, strict)
    except Exception as e:  # DEEP is judge's own finding; this is a bug (internal_error)
        return reject(Checked(rec, list(rec.findings)), failure(e, rec.source, "check"))
    if c.rejected or rec.trajectory is None:
        return c
    try:  # the fingerprint serialises it
        c.fingerprint = fingerprint(rec.trajectory)
    except DEEP as e:
        return reject(c, failure(e, rec.source, "serialise"))
    try:
        c.blob = orjson.dumps(rec.trajectory.to_dict())
    except DEEP as e:
        c.unwritable = failure(e, rec.source, "write")
    return c


def reject_row(c: Checked) -> dict[str, Any]:
    """One line of the rejects ledger (:meth:`Checked.to_reject`)."""
    return c.to_reject().to_dict()


class Dedupe:
    """The cross-record step, run in the main process in input order: a trajectory that repeats
    the id or the content of an earlier *kept* one is rejected (the earlier stays). Holds two
    small entries per kept trajectory, never the trajectories."""

    def __init__(self) -> None:
        self._seen = Deduper()

    def __call__(self, traj_id: str, content: str, source: Source, keep: bool = True) -> list[Finding]:
        """The duplicate findings for this trajectory ([] when it is new); a new one is
        remembered unless ``keep`` is false (it is rejected for another reason)."""
        dups = self._seen.check_key(traj_id, content, source)
        if not dups and keep:
            self._seen.add_key(traj_id, content, source)
        return dups

    def checked(self, c: Checked) -> Checked:
        """:meth:`__call__` on a :func:`check_record` result."""
        traj = c.record.trajectory
        if c.rejected or traj is None:
            return c
        dups = self(traj.id, c.fingerprint, c.record.source, keep=c.unwritable is None)
        if dups:
            c.findings.extend(dups)
            c.reason = dups[0]
        elif c.unwritable is not None:
            reject(c, c.unwritable)
        return c


@dataclass(frozen=True)
class ReadSpec:
    """How records are read, wherever the reading runs: the format, the limits, ``--id-prefix``
    (applied here, once) and the files that configure readers (``--dataset-info``, ``--tools``),
    which :meth:`configured` loads into the options."""

    fmt: str | None = None
    opts: ReadOptions = DEFAULT_READ
    id_prefix: str = ""
    dataset_info: str | None = None
    tools: str | None = None

    def configured(self) -> ReadSpec:
        """This spec with the reader configuration loaded into its options (once, in the process
        that plans the run; it travels to workers with the spec: ``ReaderConfig`` pickles)."""
        return replace(self, opts=replace(self.opts, config=ReaderConfig.load(self.dataset_info, self.tools)))


@dataclass(frozen=True, slots=True)
class UnitRead:
    """A unit as read: its bytes (0 when it could not be read) and their sha256 (when asked)."""

    unit: Unit
    size: int
    sha256: str


def read_unit(unit: Unit, spec: ReadSpec, digest: bool = False) -> tuple[UnitRead, Iterator[Record]]:
    """The read step: a unit's records, in order, ids prefixed; a unit that cannot be read is one
    record saying why (``io_error``, ``too_large``, ``no_input``)."""
    data = read_bytes(unit, spec.opts)
    if isinstance(data, Record):
        return UnitRead(unit, 0, ""), iter([data])
    sha = hashlib.sha256(data).hexdigest() if digest else ""
    return UnitRead(unit, len(data), sha), prefixed(parse_unit(unit, data, spec.fmt, spec.opts), spec.id_prefix)
