"""One driver for read → check → dedupe → write: the steps (:mod:`.steps`) and where they run
(:mod:`.executors`; Ray in :mod:`.ray_engine`), shared by ``validate``, ``convert`` and ``split``."""

from umi_data.driver.engines import ENGINES, make_executor
from umi_data.driver.executors import EngineError, Executor, InProcess, LocalPool, WorkerLost
from umi_data.driver.steps import (
    Checked,
    Dedupe,
    ReadSpec,
    UnitRead,
    check_record,
    failure,
    judge,
    read_unit,
    reject,
    reject_row,
)

__all__ = [
    "ENGINES",
    "Checked",
    "Dedupe",
    "EngineError",
    "Executor",
    "InProcess",
    "LocalPool",
    "ReadSpec",
    "UnitRead",
    "WorkerLost",
    "check_record",
    "failure",
    "judge",
    "make_executor",
    "read_unit",
    "reject",
    "reject_row",
]
