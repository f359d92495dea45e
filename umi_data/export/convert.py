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
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from umi_cli.errors import UsageError
from umi_data.driver import Checked, Dedupe, Executor, ReadSpec, check_record, reject_row
from umi_data.driver import judge as judge  # handed on: its home before the driver
from umi_data.driver.drive import checked_records
from umi_data.export.outputs import OUTPUT_KINDS, OUTPUTS, suffix
from umi_data.output.guard import UnsafeOutput, check_outputs
from umi_data.output.writers import atomic_path, rejects_path
from umi_data.readers import DEFAULT_READ, ReadOptions, Record, Unit, expand, urls
from umi_data.trajectory import Trajectory
from umi_data.trajectory.findings import Finding

Target = Literal["umi", "alpha-umi", "openai", "sharegpt"]
REPORT_FORMAT = "umi.findings-report/v1"
# Reject reasons that mean "this input path yielded no record at all" (missing, unreadable,
# empty, over the size limits), as opposed to a record that was read and rejected.
UNREAD_REASONS = frozenset({"io_error", "no_input", "too_large"})


class NothingRead(UsageError):
    """No record could be read from any input (exit code 2 unless ``allow_empty``)."""


class OutputError(UsageError):
    """The output path cannot be used: it exists (no ``overwrite``), its suffix does not say
    what to write, or it would overwrite or mix with an input (exit code 2)."""


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


def evaluate(recs: Iterable[Record], strict: bool = False) -> Iterator[Checked]:
    """Check every record and decide accept / reject (see the module docstring): the driver's
    check and dedupe steps over records already read."""
    dedupe = Dedupe()
    for rec in recs:
        yield dedupe.checked(check_record(rec, strict))


def output_kind(out: str | os.PathLike[str], to: Target = "umi") -> str:
    """What ``convert`` writes at ``out``, from its suffix: ``jsonl`` (``.jsonl``/``.ndjson``),
    ``json`` (``.json``), ``parquet``, among the suffixes the ``--to`` format writes
    (:mod:`umi_data.export.outputs`). Any other suffix is refused: umidata would not read the file
    back."""
    fmt = OUTPUTS[to]
    if suffix(out) not in fmt.suffixes:
        raise OutputError(fmt.refusal(os.fspath(out)))
    return OUTPUT_KINDS[suffix(out)]


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
    tools: str | None = None,
    overwrite: bool = False,
    allow_empty: bool = False,
    read_opts: ReadOptions = DEFAULT_READ,
    executor: Executor | None = None,
) -> Summary:
    """Write accepted trajectories to ``out`` (see :func:`output_kind`; OpenAI chats or
    LLaMA-Factory ShareGPT with ``to="openai"`` / ``"sharegpt"``, see :mod:`umi_data.export.formats`) and
    rejects to ``<stem>.rejects.jsonl`` beside it (always written, empty when nothing was rejected).
    Both files appear atomically, and only if the whole run succeeds. Raises
    :class:`OutputError` before reading anything when ``out`` or its rejects file exists without
    ``overwrite``, or is, holds or lies inside an input (:func:`umi_data.output.guard.check_outputs`);
    :class:`NothingRead` (and writes nothing) when no record could be read, unless ``allow_empty``.
    ``tools``: a ``--tools`` file, whose tools go to records that carry none. ``executor``: where
    records are read and checked (default: this process); the output is the same bytes whichever."""
    inputs = [os.fspath(p) for p in paths]
    out = os.fspath(out)
    local = urls.local_path(out)
    if local is None:  # an object store: written here, then uploaded (the output last)
        kw = {"fmt": fmt, "to": to, "strict": strict, "on_unit": on_unit, "on_checked": on_checked,
              "id_prefix": id_prefix, "dataset_info": dataset_info, "tools": tools, "allow_empty": allow_empty,
              "read_opts": read_opts, "executor": executor}
        return _convert_to_url(inputs, out, overwrite, kw)
    out = local
    spec = ReadSpec(fmt, read_opts, id_prefix, dataset_info, tools).configured()
    output_kind(out, to)
    rej = rejects_path(out)
    units = expand(inputs)
    outputs: list[str | os.PathLike[str]] = [out, rej]
    if to == "sharegpt":  # its dataset_info.json entry is written beside the output: an output too
        from umi_data.export.formats import dataset_info_path

        outputs.append(os.fspath(dataset_info_path(out)))
    # dataset_info.json is updated in place (other files' entries kept), so it may exist already
    may_exist: list[str | os.PathLike[str]] = [*(outputs[:2] if overwrite else []), *outputs[2:]]
    try:  # the output and its sidecars: neither an input nor each other, neither replaced unasked
        local_inputs = [lp for p in inputs if (lp := urls.local_path(p)) is not None]  # file:// too
        local_files = [lp for u in units if (lp := urls.local_path(u.path)) is not None]
        check_outputs(outputs, local_inputs, local_files, may_exist=may_exist)
    except UnsafeOutput as e:
        raise OutputError(str(e)) from e
    if os.path.isdir(out):
        raise OutputError(f"output {out} is a directory")
    summary = Summary()
    with atomic_path(rej) as rtmp, open(rtmp, "wb") as rf:

        def accepted() -> Iterator[tuple[Trajectory, bytes]]:
            checked = checked_records(units, spec, strict, executor, on_unit)
            if OUTPUTS[to].whole_chats:  # a request after a rejected one of its chat is not written
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
                raise NothingRead(f"no record could be read from {', '.join(inputs)} (see the findings); "
                                  "nothing was written (--allow-empty accepts it)")

        OUTPUTS[to].write(out, accepted())
    return summary


def _convert_to_url(paths: list[str], url: str, overwrite: bool, kw: dict[str, Any]) -> Summary:
    """:func:`convert` to a URL on a filesystem without rename (an object store): the files are
    written to a local temporary directory, then uploaded, the rejects (and a ShareGPT
    ``dataset_info.json``) first and the output last; a failed upload leaves no new output."""
    output_kind(url, kw["to"])
    try:
        fs, rpath = urls.filesystem(url)
        for p in paths:
            if urls.overlaps(url, p):
                raise OutputError(f"output {url} is, holds or lies inside the input {p}; choose another output path")
        if fs.isdir(rpath):
            raise OutputError(f"output {url} is a directory")
        if fs.exists(rpath) and not overwrite:
            raise OutputError(f"{url} already exists; pass --overwrite to replace it")
        parent = rpath.rsplit("/", 1)[0] if "/" in rpath else ""
        with tempfile.TemporaryDirectory(prefix="umi-convert-") as tmp:
            local = Path(tmp) / rpath.rsplit("/", 1)[-1]
            info = f"{parent}/dataset_info.json"
            if kw["to"] == "sharegpt" and fs.exists(info):  # merged into, as beside a local output
                fs.get_file(info, str(Path(tmp) / "dataset_info.json"))
            summary = convert(paths, local, overwrite=True, **kw)
            for f in sorted(Path(tmp).iterdir(), key=lambda f: f == local):  # the output last
                fs.put_file(str(f), f"{parent}/{f.name}" if parent else f.name)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), url) from e
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
    tools: str | None = None,
    executor: Executor | None = None,
) -> tuple[Summary, list[Finding]]:
    """Check every record without writing anything: the summary and every finding (only the
    counts with ``keep_findings=False``, so memory stays flat when findings are streamed out
    through ``on_checked``). ``summary.nothing_read`` says whether any record could be read."""
    spec = ReadSpec(fmt, read_opts, id_prefix, dataset_info, tools).configured()
    summary = Summary()
    findings: list[Finding] = []
    for c in checked_records(expand(paths), spec, strict, executor, on_unit):
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
