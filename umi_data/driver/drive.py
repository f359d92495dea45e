"""The driver of ``validate`` and ``convert``: units → read → check (any executor) → dedupe (main
process, input order) → checked records, in input order whatever the executor. ``split`` runs
the same read, check and dedupe steps with its own per-record work (rendering) in
:mod:`umi_data.split.pipeline`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from umi_data.driver.executors import Executor, InProcess
from umi_data.driver.progress import note
from umi_data.driver.steps import Checked, Dedupe, ReadSpec, UnitRead, check_record, read_unit
from umi_data.readers import Unit


def check_unit(unit: Unit, spec: ReadSpec, strict: bool) -> tuple[UnitRead, Iterator[Checked]]:
    """Read and check one unit, lazily (in process: a large JSONL file streams)."""
    seen, records = read_unit(unit, spec)
    return seen, (check_record(rec, strict) for rec in records)


def check_units(units: Sequence[Unit], spec: ReadSpec, strict: bool) -> list[tuple[UnitRead, list[Checked]]]:
    """A worker's task: read and check a chunk of units, whole (the results travel back)."""
    out = []
    for unit in units:
        seen, checked = check_unit(unit, spec, strict)
        done = list(checked)
        note(seen.size, len(done))
        out.append((seen, done))
    return out


def chunk_size(n_units: int, workers: int) -> int:
    """Units per worker task: enough tasks to keep every worker busy, few enough to amortise
    the hand-over (the output does not depend on it)."""
    return max(1, min(256, -(-n_units // (8 * max(1, workers)))))


def checked_records(
    units: Sequence[Unit],
    spec: ReadSpec,
    strict: bool = False,
    executor: Executor | None = None,
    on_unit: Callable[[Unit], None] | None = None,
) -> Iterator[Checked]:
    """Every record of ``units`` checked and deduped, in input order; ``on_unit`` is told when a
    unit is done (progress)."""
    executor = executor or InProcess()
    dedupe = Dedupe()
    per_unit: Iterator[Sequence[tuple[UnitRead, Iterable[Checked]]]]
    if executor.in_process:  # lazily, so a large JSONL file streams
        per_unit = executor.map(lambda u: [check_unit(u, spec, strict)], [(u,) for u in units])
    else:
        size = chunk_size(len(units), getattr(executor, "workers", 1))
        tasks = [(units[i : i + size], spec, strict) for i in range(0, len(units), size)]
        per_unit = executor.map(check_units, tasks)
    for results in per_unit:
        for seen, checked in results:
            for c in checked:
                yield dedupe.checked(c)
            if on_unit is not None:
                on_unit(seen.unit)
