"""The process where ``python:`` tools run, so that no tool can take the agent loop down.

A tool is the user's code: it may call ``sys.exit``, ``os._exit``, raise ``KeyboardInterrupt``,
loop forever or eat all memory. Run in the agent's own process, each of those ended (or froze)
``umieval run``. Here every call goes to one worker process (spawned, so no model or lock state
is inherited), which imports the module again and calls the function:

- an exception of any kind, ``SystemExit`` and ``KeyboardInterrupt`` included, is that call's
  ``tool_error`` answer;
- a worker that dies during the call (``os._exit``, a crash, the memory limit) or does not answer
  within the time limit (it is killed) is that call's ``tool_crashed`` / ``timeout`` answer, and the
  next call starts a fresh worker;
- the worker ignores SIGINT, so the user's Ctrl-C reaches only ``umieval run`` (exit 130), and
  it exits by itself when its parent is gone.

Calls are serialised through the one worker: module state is shared by all calls as it was in
process, and results do not depend on which of several workers answered.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

_START_TIMEOUT = 120.0  # seconds for a fresh worker to import the tools module


class WorkerDied(Exception):
    """The worker ended during a call (``os._exit``, a crash, the memory limit)."""


class WorkerTimeout(TimeoutError):
    """The worker did not answer within the time limit; it has been killed."""


def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone (``umieval run`` leaves with ``os._exit`` on Ctrl-C)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _limit_memory(max_bytes: int) -> None:
    if max_bytes <= 0:
        return
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def _serve(conn: Any, target: str, max_bytes: int, parent: int) -> None:
    """The worker's loop: import ``target``, then answer ``(name, kwargs)`` with ``("ok", text)``
    or ``("error", message)`` until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    _limit_memory(max_bytes)
    from umi_eval.agent.pymodule import function_table, load_module  # after the limit: the import counts too

    try:
        funcs = function_table(load_module(target))
    except BaseException as e:  # reported to the parent, whatever it is
        conn.send(("error", f"importing {target} failed: {type(e).__name__}: {e}"))
        return
    conn.send(("ready", ""))
    while True:
        try:
            name, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = funcs[name](**args)
            text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
            answer = ("ok", text)
        except BaseException as e:  # SystemExit, KeyboardInterrupt too: this call's error
            what = {SystemExit: " (a tool must return or raise, not exit)",
                    KeyboardInterrupt: " (raised by the tool, not the user's Ctrl-C)"}.get(type(e), "")
            answer = ("error", f"{type(e).__name__}: {e}{what}")
        try:
            conn.send(answer)
        except BaseException as e:  # e.g. a MemoryError while sending a huge answer
            conn.send(("error", f"the tool's answer cannot be returned ({type(e).__name__}: {e})"))


class ToolWorker:
    """One worker process for one tools module (``target``: a ``.py`` path or a module name),
    started on the first call and again after one died or was killed."""

    def __init__(self, target: str, max_bytes: int = 0) -> None:
        self.target = target
        self.max_bytes = max_bytes
        self._proc: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()
        self.restarts = 0

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child_conn, self.target, self.max_bytes, os.getpid()),
                           name="umieval-tools", daemon=True)
        proc.start()
        child_conn.close()
        self._proc, self._conn = proc, parent_conn
        if not parent_conn.poll(_START_TIMEOUT):
            self._kill()
            raise WorkerTimeout(f"the tools process did not start within {_START_TIMEOUT:g} s")
        try:
            kind, message = parent_conn.recv()
        except (EOFError, OSError):
            code = self._kill()
            raise WorkerDied(f"the tools process ended while importing {self.target} (exit code {code})") from None
        if kind != "ready":
            self._kill()
            raise WorkerDied(message)

    def _kill(self) -> int | None:
        """Stop the worker (if running) and forget it; its exit code."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is None:
            return None
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        return proc.exitcode

    def call(self, name: str, args: dict[str, Any], timeout: float) -> tuple[bool, str]:
        """``(True, text)`` or ``(False, error message)`` for ``name(**args)``; raises
        :class:`WorkerDied` / :class:`WorkerTimeout` (the worker is then restarted by the next call)."""
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                if self._proc is not None:
                    self._kill()
                    self.restarts += 1
                self._start()
            try:
                self._conn.send((name, args))
                ready = self._conn.poll(timeout)
            except (OSError, EOFError):
                ready = True  # the worker is gone: recv says so below
            if not ready:
                self._kill()
                raise WorkerTimeout(f"no answer within {timeout:g} s (the tool's process was stopped)")
            try:
                kind, text = self._conn.recv()
            except (EOFError, OSError):
                code = self._kill()
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                raise WorkerDied(f"the tool's process ended during the call ({how}); it is restarted for the "
                                 "next call") from None
            return kind == "ok", text

    def close(self) -> None:
        with self._lock:
            self._kill()
