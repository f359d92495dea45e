"""Executors: *where* the steps run, apart from *what* they do (datatrove's split).

An executor maps a step function over tasks (argument tuples: a shard of units, a chunk of
units) and yields the results **in task order**, whatever ran first, with a bounded number of
tasks in flight; so the output never depends on the executor or its worker count, and the main
process can dedupe and write in input order. Three executors:

- :class:`InProcess`: the main process, one task after the other (results may be lazy iterators).
- :class:`LocalPool`: forked worker processes on this machine, which die with the main process.
- :class:`umi_data.driver.ray_engine.RayExecutor`: Ray tasks, on a local Ray runtime or a cluster
  (``--engine ray``, ``--ray-address``), for ``pip install 'umi[ray]'``.

:func:`umi_data.driver.engines.make_executor` picks one from the command-line options.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

from umi_cli.errors import UsageError
from umi_data.driver import progress

R = TypeVar("R")
Tick = Callable[[int, int], None]  # (input bytes read, records read) so far


class EngineError(UsageError):
    """The engine cannot run: Ray missing, its cluster unreachable (exit code 2)."""


class WorkerLost(UsageError):
    """A worker process died (killed, out of memory): nothing is written (exit code 2)."""


class Executor(Protocol):
    """Runs ``fn(*task)`` for every task; yields the results in task order."""

    name: str
    in_process: bool  # results may be lazy (generators): the main process consumes them

    def map(self, fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]], tick: Tick | None = None,
            measure: Callable[[R], tuple[int, int]] | None = None) -> Iterator[R]: ...


class InProcess:
    """Every task in the main process, in order."""

    name = "local"
    in_process = True

    def map(self, fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]], tick: Tick | None = None,
            measure: Callable[[R], tuple[int, int]] | None = None) -> Iterator[R]:
        counter = [0, 0]
        progress.use(counter)
        try:
            for task in tasks:
                res = fn(*task)
                if tick:
                    tick(counter[0], counter[1])
                yield res
        finally:
            progress.use(None)


def _die_with_parent(parent: int) -> None:
    """Worker start-up: exit when the main process dies, however it dies (SIGKILL included),
    instead of running on forever. Linux: the kernel's parent-death signal; elsewhere, and as a
    fallback, a thread that watches the parent id. Ctrl-C is the main process's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    armed = False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="umi-parent-watch", daemon=True).start()


def _init_pool_worker(counter: Any, parent: int) -> None:
    _die_with_parent(parent)
    progress.use(counter)


class LocalPool:
    """``workers`` forked processes; at most ``2 * workers`` tasks in flight. One task (or one
    worker) runs in process: a pool would only add its start-up."""

    name = "local"
    in_process = False

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]], tick: Tick | None = None,
            measure: Callable[[R], tuple[int, int]] | None = None) -> Iterator[R]:
        if self.workers <= 1 or len(tasks) <= 1:
            yield from InProcess().map(fn, tasks, tick)
            return
        counter = mp.get_context("fork").Array("q", 2)
        before = set(mp.active_children())
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("fork"),
                                   initializer=_init_pool_worker, initargs=(counter, os.getpid()))
        pending: list[Future[R]] = []
        next_k = 0

        def submit() -> None:
            nonlocal next_k
            if next_k < len(tasks):
                pending.append(pool.submit(fn, *tasks[next_k]))
                next_k += 1

        try:
            # Workers start with Ctrl-C blocked until their initializer ignores it (the main process
            # handles it and stops them), so none prints a KeyboardInterrupt traceback.
            masked = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
            if masked:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                for _ in range(2 * self.workers):
                    submit()
            finally:
                if masked:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            while pending:
                head = pending[0]
                while True:
                    try:
                        res = head.result(timeout=0.2)
                        break
                    except FutureTimeout:
                        if tick:
                            tick(counter[0], counter[1])
                    except BrokenProcessPool as e:
                        raise WorkerLost("a worker process died (killed, or out of memory?); nothing was written "
                                         "— rerun, with fewer --workers if memory is short") from e
                pending.pop(0)
                submit()
                if tick:
                    tick(counter[0], counter[1])
                yield res
        except BaseException:
            # Stop the workers now: waiting for their tasks would delay Ctrl-C, and a worker still
            # writing could re-create files in a staging directory being removed.
            pool.shutdown(wait=False, cancel_futures=True)
            for p in set(mp.active_children()) - before:
                p.kill()
            for p in set(mp.active_children()) - before:
                p.join(timeout=5)
            raise
        pool.shutdown(wait=True)
