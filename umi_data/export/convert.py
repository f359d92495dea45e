"""Read → check → decide → write: the library behind ``umidata convert`` and ``umidata validate``.

Each input record is *checked* (reader findings + :func:`umi_data.trajectory.checks.check`) and then
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

from umi_data.output.guard import UnsafeOutput, check_output
from umi_data.output.writers import (
    atomic_path,
    rejects_path,
    write_json_array,
    write_json_list,
    write_jsonl,
    write_trajectories_parquet,
)
from umi_data.readers import (
    DEFAULT_READ,
    ReadOptions,
    Record,
    Unit,
    expand,
    prefixed,
    read_inputs,
    read_units,
    sharegpt,
)
from umi_data.render import alpha_umi
from umi_data.trajectory import Trajectory
from umi_data.trajectory.checks import Deduper, check
from umi_data.trajectory.findings import Finding

Target = Literal["umi", "alpha-umi", "openai", "sharegpt"]
REPORT_FORMAT = "umi.findings-report/v1"
# Reject reasons that mean "this input path yielded no record at all" (missing, unreadable,
# empty, over the size limits), as opposed to a record that was read and rejected.
UNREAD_REASONS = frozenset({"io_error", "no_input", "too_large"})
# Output suffix → what ``convert`` writes there (a reader of that suffix reads it back).
OUTPUT_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}


class NothingRead(Exception):
    """No record could be read from any input (exit code 2 unless ``allow_empty``)."""


class OutputError(Exception):
    """The output path cannot be used: it exists (no ``overwrite``), its suffix does not say
    what to write, or it would overwrite or mix with an input (exit code 2)."""


@dataclass(slots=True)
class Checked:
    """A record after checking: every finding, and whether (and why) it is rejected."""

    record: Record
    findings: list[Finding]
    reason: Finding | None = None
    blob: bytes = b""  # the accepted trajectory as canonical JSON (what convert writes)

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
    unread: int = 0  # rejects that are input paths yielding no record (UNREAD_REASONS)

    @property
    def nothing_read(self) -> bool:
        """No record could be read at all: every "record" is an unreadable input path."""
        return self.records == self.unread

    def add(self, c: Checked) -> None:
        self.records += 1
        if c.rejected:
            self.rejected += 1
            if c.reason is not None and c.reason.code in UNREAD_REASONS:
                self.unread += 1
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
        try:
            findings.extend(check(traj))
        except (RecursionError, orjson.JSONEncodeError) as e:  # e.g. a tool schema nested 900 deep
            findings.append(Finding("too_deep", f"the record is nested too deeply to check ({e})", rec.source))
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
            try:
                dups = dedupe.check(rec.trajectory)
            except (RecursionError, orjson.JSONEncodeError) as e:  # the fingerprint serialises it
                f = Finding("too_deep", f"the record is nested too deeply to serialise ({e})", rec.source)
                c.findings.append(f)
                c.reason = f
                yield c
                continue
            c.findings.extend(dups)
            if dups:
                c.reason = dups[0]
            else:
                try:  # serialise here, so a record too deep to write is one reject, not a crash
                    c.blob = orjson.dumps(rec.trajectory.to_dict())
                except (RecursionError, orjson.JSONEncodeError) as e:
                    c.reason = Finding("too_deep", f"the record is nested too deeply to write ({e})", rec.source)
                    c.findings.append(c.reason)
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
    """A trajectory as an α-UMi stage-2 record (history turns first: α-UMi has no history mark, so
    ``convert`` passes each multi-request chat once, folded into its last request:
    :func:`umi_data.export.formats.whole_chats`)."""
    return {
        "tools": alpha_umi.tool_docs(t.tools),
        "instruction": t.instruction,
        "conversations": alpha_umi.conversation(t.history + t.turns),
    }


def output_kind(out: str | os.PathLike[str], to: Target = "umi") -> str:
    """What ``convert`` writes at ``out``, from its suffix: ``jsonl`` (``.jsonl``/``.ndjson``),
    ``json`` (a JSON array, ``.json``), ``parquet``; ``--to alpha-umi`` writes a JSON list, so
    only to ``.json``. Any other suffix is refused: umidata would not read the file back."""
    suffix = os.path.splitext(os.fspath(out))[1].lower()
    kind = OUTPUT_KINDS.get(suffix)
    if to in ("openai", "sharegpt") and kind not in ("jsonl", "json"):
        raise OutputError(f"--to {to} writes JSONL (or a JSON list for .json): name the output *.jsonl or *.json")
    if to == "alpha-umi":
        if kind != "json":
            raise OutputError(f"--to alpha-umi writes a JSON list: name the output *.json, not {out}")
        return "alpha-umi"
    if kind is None:
        raise OutputError(f"cannot tell what to write from the name {out}: use .jsonl (one trajectory per line), "
                          ".json (a JSON array) or .parquet")  # fmt: skip
    return kind


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
    overwrite: bool = False,
    allow_empty: bool = False,
    read_opts: ReadOptions = DEFAULT_READ,
) -> Summary:
    """Write accepted trajectories to ``out`` (see :func:`output_kind`; OpenAI chats or
    LLaMA-Factory ShareGPT with ``to="openai"`` / ``"sharegpt"``, see :mod:`umi_data.export.formats`) and
    rejects to ``<stem>.rejects.jsonl`` beside it (always written, empty when nothing was rejected).
    Both files appear atomically, and only if the whole run succeeds. Raises
    :class:`OutputError` before reading anything when ``out`` exists without ``overwrite``, or
    when it or its rejects file is, holds or lies inside an input; :class:`NothingRead` (and
    writes nothing) when no record could be read, unless ``allow_empty``."""
    sharegpt.use_dataset_info(dataset_info)
    paths = [os.fspath(p) for p in paths]
    out = os.fspath(out)
    kind = output_kind(out, to)
    rej = rejects_path(out)
    units = expand(paths)
    try:
        for target in (out, rej):
            check_output(target, paths, (u.path for u in units))
    except UnsafeOutput as e:
        raise OutputError(str(e)) from e
    if os.path.isdir(out):
        raise OutputError(f"output {out} is a directory")
    if os.path.lexists(out) and not overwrite:
        raise OutputError(f"{out} already exists; pass --overwrite to replace it")
    summary = Summary()
    with atomic_path(rej) as rtmp, open(rtmp, "wb") as rf:

        def accepted() -> Iterator[tuple[Trajectory, bytes]]:
            checked = evaluate(prefixed(read_units(units, fmt, on_unit, read_opts), id_prefix), strict)
            if to != "umi":  # chats are written whole: a request after a rejected one is not written
                from umi_data.export.formats import cut_chats

                checked = cut_chats(checked, to, strict)
            for c in checked:
                summary.add(c)
                if on_checked is not None:
                    on_checked(c)
                if c.rejected:
                    rf.write(orjson.dumps(reject_row(c)) + b"\n")
                elif c.trajectory is not None:
                    yield c.trajectory, c.blob
            if summary.nothing_read and not allow_empty:
                raise NothingRead(f"no record could be read from {', '.join(paths)} (see the findings); "
                                  "nothing was written (--allow-empty accepts it)")  # fmt: skip

        if kind == "alpha-umi":
            from umi_data.export.formats import whole_chats

            write_json_list(out, (alpha_umi_item(t) for _, t in whole_chats(t for t, _ in accepted())))
        elif to in ("openai", "sharegpt"):
            from umi_data.export.formats import write_export

            write_export(out, to, (t for t, _ in accepted()))  # type: ignore[arg-type]
        elif kind == "parquet":
            write_trajectories_parquet(out, (t for t, _ in accepted()))
        elif kind == "json":
            write_json_array(out, (b for _, b in accepted()))
        else:
            write_jsonl(out, (b for _, b in accepted()))
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
    read_opts: ReadOptions = DEFAULT_READ,
) -> tuple[Summary, list[Finding]]:
    """Check every record without writing anything: the summary and every finding (only the
    counts with ``keep_findings=False``, so memory stays flat when findings are streamed out
    through ``on_checked``). ``summary.nothing_read`` says whether any record could be read."""
    sharegpt.use_dataset_info(dataset_info)
    summary = Summary()
    findings: list[Finding] = []
    for c in evaluate(prefixed(read_inputs(paths, fmt, on_unit, read_opts), id_prefix), strict):
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
