"""The request engine of ``umieval generate`` and ``umieval run``: every role's requests in flight together.

Callers submit one request at a time (a prompt for one backend, with its decoding) and get a
future; they never wait for a whole batch of another role. How a request runs depends on what its
backend can do:

- a backend with ``submit`` (transformers with continuous batching, vLLM-served models through the
  openai backend) takes it at once: it joins that model's running batch, or goes out on the wire;
- any other backend (static batching, scripted test models) has one worker thread that takes every
  request waiting for it — up to ``gather`` of them, longest prompt first — and runs them through
  ``generate`` in batches of ``batch_size``, resolving each batch's futures as soon as it is done.

So while one model is busy the others run what has been routed to them: a step's caller request
starts as soon as its planner output is routed, not after the planner's whole chunk. The three
role models share the device by running concurrently, each with its own batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from umi_eval.generate.backends import Backend, Decoding, Generation


@dataclass(frozen=True, slots=True)
class _Job:
    prompt: str
    decoding: Decoding
    future: Future[Generation]


class _Worker:
    """One backend without ``submit``: batches of what is waiting, through ``generate``."""

    def __init__(self, backend: Backend, batch_size: int, batch_sampled: bool) -> None:
        self.backend, self.batch_size, self.batch_sampled = backend, max(1, batch_size), batch_sampled
        self.jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f"umieval-engine-{backend.name}"[:60], daemon=True)
        self.thread.start()

    def _take(self, first: list[_Job]) -> list[_Job]:
        """``first`` and whatever else is waiting now, up to 8 batches (a stop signal met on the way
        is put back, so the loop ends after these)."""
        got, stop = list(first), False
        while len(got) < 8 * self.batch_size:
            try:
                more = self.jobs.get_nowait()
            except queue.Empty:
                break
            if more is None:
                stop = True
                break
            got += more
        if stop:
            self.jobs.put(None)
        return got

    def _loop(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            jobs = self._take(first)
            # one generate call per decoding; sampled requests one per call unless batch_sampled: a
            # backend seeds per call, so a sampled output then depends on its prompt and seed only,
            # not on which other requests happened to be waiting (reproducible runs)
            groups: dict[Decoding, list[_Job]] = {}
            for j in jobs:
                groups.setdefault(j.decoding, []).append(j)
            for decoding, group in groups.items():
                size = self.batch_size if (decoding.greedy or self.batch_sampled) else 1
                group.sort(key=lambda j: -len(j.prompt))  # longest first, like the backend's own batches
                for start in range(0, len(group), size):
                    self._run(decoding, group[start : start + size])

    def _run(self, decoding: Decoding, batch: list[_Job]) -> None:
        live = [j for j in batch if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            gens = self.backend.generate([j.prompt for j in live], decoding)
            if len(gens) != len(live):
                raise RuntimeError(f"backend {self.backend.name} returned {len(gens)} completions for "
                                   f"{len(live)} prompts")
        except BaseException as e:  # handed to whoever waits on these requests
            for j in live:
                j.future.set_exception(e)
            return
        for j, g in zip(live, gens, strict=True):
            j.future.set_result(g)

    def stop(self) -> None:
        """Cancel what has not started; the batch in progress ends on its own."""
        while True:
            try:
                jobs = self.jobs.get_nowait()
            except queue.Empty:
                break
            for j in jobs or []:
                j.future.cancel()
        self.jobs.put(None)


def _free_memory(backend: Backend) -> int | None:
    """Free bytes on the accelerator a model is on (``None`` on the CPU)."""
    device = str(getattr(getattr(backend, "model", None), "device", "cpu"))
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.mem_get_info(torch.device(device))[0])


class Engine:
    """Submits requests to backends (one engine per run; it does not own the backends)."""

    def __init__(self, backends: Iterable[Backend], *, batch_size: int = 8, batch_sampled: bool = False) -> None:
        self.batch_size, self.batch_sampled = batch_size, batch_sampled
        self.workers: dict[int, _Worker] = {}
        self.lock = threading.Lock()
        paged = [b for b in {id(b): b for b in backends}.values() if hasattr(b, "cache_share")]
        for b in paged:  # the trio's paged caches split the free accelerator memory evenly
            b.cache_share = 0.85 / len(paged)  # hasattr() above narrows b
            b.cache_free = _free_memory(b)  # type: ignore[attr-defined]  # measured before any cache exists

    def submit(self, backend: Backend, prompt: str, decoding: Decoding) -> Future[Generation]:
        return self.submit_many(backend, [prompt], decoding)[0]

    def submit_many(self, backend: Backend, prompts: list[str], decoding: Decoding) -> list[Future[Generation]]:
        """Requests for one backend; several at once reach a batching worker together (one batch)."""
        direct = getattr(backend, "submit", None)
        out: list[Future[Generation] | None] = [direct(p, decoding) for p in prompts] if callable(direct) else \
            [None] * len(prompts)
        rest = [i for i, f in enumerate(out) if f is None]
        if rest:
            jobs = [_Job(prompts[i], decoding, Future()) for i in rest]
            for i, j in zip(rest, jobs, strict=True):
                out[i] = j.future
            self._worker(backend).jobs.put(jobs)
        return out  # type: ignore[return-value]

    def _worker(self, backend: Backend) -> _Worker:
        with self.lock:
            w = self.workers.get(id(backend))
            if w is None:
                w = self.workers[id(backend)] = _Worker(backend, self.batch_size, self.batch_sampled)
            return w

    def close(self) -> None:
        """Stop the workers after the batch they are in (daemon threads: Ctrl-C never waits on them)."""
        with self.lock:
            for w in self.workers.values():
                w.stop()
            self.workers.clear()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EngineBackend:
    """A backend seen through an engine: what the agent loop's threads call, so the requests of
    many trajectories meet in the same batches."""

    thread_safe = True

    def __init__(self, engine: Engine, backend: Backend) -> None:
        self.engine, self.backend, self.name = engine, backend, backend.name

    def generate(self, prompts: list[str], decoding: Decoding) -> list[Generation]:
        return [f.result() for f in self.engine.submit_many(self.backend, list(prompts), decoding)]
