"""``--engine ray``: the same step functions as Ray tasks, on a local Ray runtime (default) or a
cluster (``--ray-address``). Ray is an optional extra (``pip install 'umi[ray]'``).

Why tasks and not Ray Data's ``map_batches``: umi's unit of work is already a shard of input
units whose rows go to that shard's files (the assignment that makes the output independent of
the engine); Ray Data would re-block the rows and need a sort to give them back in order. Tasks
are consumed in shard order with a bounded number in flight, exactly like the local pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from umi_data.driver.executors import EngineError, Tick, WorkerLost

R = TypeVar("R")


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise EngineError("--engine ray needs Ray: pip install 'umi[ray]' (or pip install 'ray>=2.9')") from e
    return ray


class RayExecutor:
    """Ray tasks, at most ``2 * parallelism`` in flight, results in task order. Joins a Ray
    runtime already started in this process (a test session, a notebook) and leaves it running;
    otherwise starts one (``address`` given: connects to that cluster) and shuts it down after."""

    name = "ray"
    in_process = False

    def __init__(self, workers: int = 1, address: str | None = None) -> None:
        self.ray = _ray()
        self.workers = max(1, workers)
        self.address = address

    def _start(self) -> bool:
        ray = self.ray
        if ray.is_initialized():
            return False
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        try:
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=self.workers, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray runtime"
            raise EngineError(f"cannot start {where}: {e}") from e
        return True

    def parallelism(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", self.workers)))

    def map(self, fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]], tick: Tick | None = None,
            measure: Callable[[R], tuple[int, int]] | None = None) -> Iterator[R]:
        ray = self.ray
        started = self._start()
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        in_flight = 2 * self.parallelism()
        pending: list[Any] = []
        next_k = 0
        done = [0, 0]
        try:
            while next_k < len(tasks) or pending:
                while next_k < len(tasks) and len(pending) < in_flight:
                    pending.append(remote.remote(*tasks[next_k]))
                    next_k += 1
                try:
                    res = ray.get(pending.pop(0))
                except ray.exceptions.RayTaskError as e:  # the step raised: raise what it raised
                    cause = getattr(e, "cause", None)
                    raise (cause if isinstance(cause, BaseException) else e) from None
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
                    raise WorkerLost(f"a Ray worker died (killed, or out of memory?); nothing was written ({e})") from e
                if measure is not None and tick is not None:
                    nbytes, n = measure(res)
                    done[0] += nbytes
                    done[1] += n
                    tick(done[0], done[1])
                yield res
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()
