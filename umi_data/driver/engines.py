"""Which executor a command gets from ``--engine``, ``--workers`` and ``--ray-address``."""

from __future__ import annotations

from umi_data.driver.executors import EngineError, Executor, InProcess, LocalPool

ENGINES = ("local", "ray")


def make_executor(engine: str = "local", workers: int = 1, ray_address: str | None = None) -> Executor:
    """The executor for ``--engine`` / ``--workers`` / ``--ray-address``; raises
    :class:`EngineError` (one line) when Ray is asked for and not installed."""
    if engine == "ray":
        from umi_data.driver.ray_engine import RayExecutor  # imports Ray: only when asked for

        return RayExecutor(workers, ray_address)
    if engine != "local":
        raise EngineError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if ray_address:
        raise EngineError("--ray-address needs --engine ray")
    return LocalPool(workers) if workers > 1 else InProcess()
