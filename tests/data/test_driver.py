"""One driver for read → check → dedupe → write: ``validate`` and ``convert`` run their steps
through the same executors as ``split``, with the same bytes out whatever the worker count, and
a step that fails on one record rejects that record alone."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main
from umi_data.driver import InProcess, LocalPool
from umi_data.driver.drive import chunk_size
from umi_data.readers import expand

from .conftest import EXAMPLES, good_chat, write_jsonl


def run(*args: str | Path):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.mark.parametrize("to", ["umi", "openai"])
def test_convert_with_workers_writes_the_same_bytes(to: str, tmp_path: Path) -> None:
    units = expand([EXAMPLES])
    assert chunk_size(len(units), 2) < len(units)  # several tasks: the pool really runs
    outs = []
    for w in ("1", "2"):
        out = tmp_path / f"w{w}.jsonl"
        res = run("convert", EXAMPLES, "-o", out, "--to", to, "--id-prefix", "sys/", "--workers", w, "-q")
        assert res.exit_code in (0, 1), res.output
        outs.append((out.read_bytes(), out.with_name(f"w{w}.rejects.jsonl").read_bytes()))
    assert outs[0] == outs[1] and outs[0][0]
    first = orjson.loads(outs[0][0].splitlines()[0]) if to == "umi" else None
    if first is not None:  # --id-prefix applied once, in the read step
        assert first["id"].startswith("sys/") and not first["id"].startswith("sys/sys/")


def test_validate_with_workers_reports_the_same(tmp_path: Path) -> None:
    reports = [run("validate", EXAMPLES, "--json", "--workers", w).stdout for w in ("1", "2")]
    assert reports[0] == reports[1] and '"records"' in reports[0]


def test_a_check_that_fails_on_one_record_rejects_it_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import umi_data.driver.steps as steps

    real = steps.check

    def flaky(traj, source=None):  # type: ignore[no-untyped-def]
        if traj.id.endswith("boom"):
            raise KeyError("unexpected")
        return real(traj, source)

    monkeypatch.setattr(steps, "check", flaky)
    src = write_jsonl(tmp_path / "in.jsonl", [good_chat(id="boom"), good_chat(id="ok")])
    out = tmp_path / "o.jsonl"
    res = run("convert", src, "-o", out)
    assert res.exit_code == 1, res.output
    rej = [orjson.loads(x) for x in (tmp_path / "o.rejects.jsonl").read_bytes().splitlines()]
    assert [(r["reason"], r["source"]["line"]) for r in rej] == [("internal_error", 1)]
    assert "KeyError" in rej[0]["message"]
    assert len(out.read_bytes().splitlines()) == 1


def test_executors_yield_in_task_order() -> None:
    tasks = [(k,) for k in range(7)]
    assert list(InProcess().map(_square, tasks)) == [k * k for k in range(7)]
    assert list(LocalPool(2).map(_square, tasks)) == [k * k for k in range(7)]


def _square(k: int) -> int:
    import time

    time.sleep(0.02 * (7 - k))  # later tasks finish first
    return k * k
