"""Tool executors: what answers the caller's calls in ``umieval run``.

One small interface, :class:`Executor`: ``execute(tool, arguments)`` → :class:`Observation`,
where ``arguments`` is the raw string the caller emitted (never re-serialised; an executor decides
what a non-JSON string means). Three kinds, chosen with ``--tools SPEC``:

- ``python:MODULE`` (a module name or a ``.py`` path): plain functions. Their schema is the
  module's ``tools`` list (JSON Schema, OpenAI ``{"type": "function", "function": …}`` or
  ``{name, description, parameters}``) or, without one, each public function's typed signature.
  Arguments are validated with ``jsonschema`` before the call; the call itself runs in a worker
  process (:mod:`umi_eval.agent.tool_worker`, under a time and memory limit), so an exception, an
  exit or a crash there becomes an error observation (the planner can re-plan, as it does on an
  API error) and never ends the run.
- ``replay:PATH[,PATH…]``: answers recorded in canonical trajectories or ToolBench answer files
  (the final chain *and* every explored node of the answer tree), keyed by tool name and
  normalised arguments (JSON decoded and re-encoded with sorted keys); a call nobody recorded gets
  an explicit ``no recorded response`` observation, counted — StableToolBench's cache, offline.
- ``http:URL``: a ToolBench/StableToolBench tool server: ``POST URL`` with
  ``{category, tool_name, api_name, tool_input, strip, toolbench_key}``, answered with
  ``{error, response}``. The observation is the ``response`` text as the training data stored it
  (the original agent JSON-encoded it again, a train/test mismatch). ``TOOLBENCH_KEY`` is sent
  only to a host the user named for it (``key_hosts``), and never over plain HTTP to another
  machine unless allowed explicitly; a redirect to another host is not followed (an error
  observation, code ``redirected``).

:func:`call_tool` adds what every executor needs: a time-out per call and retries of transient
failures (time-outs, connection errors, HTTP 5xx). A python function that raised is an answer, not
a transient failure, and is not retried.
"""

from __future__ import annotations

import json
import os
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from umi_data.readers import expand, parse_unit, read_bytes
from umi_data.readers.toolbench import _observation as toolbench_observation
from umi_data.trajectory import Tool, Trajectory
from umi_eval.agent.pymodule import (  # noqa: F401 - part of this module's interface
    ToolSpecError,
    function_table,
    load_module,
    module_tools,
    tool_from_function,
)

NO_RECORD = "no recorded response"
MAX_RESPONSE_BYTES = 1_000_000  # an http answer is read up to this size, the rest is dropped


@dataclass(frozen=True, slots=True)
class Observation:
    """What the agent sees after a call: ``content`` is the text the planner reads; a failed call
    has a stable ``code`` (``tool_error``, ``tool_crashed``, ``invalid_arguments``, ``timeout``,
    ``unavailable``, ``redirected``, ``no_record``, ``unknown_tool``, ``caller_unparsable``: codes of
    :data:`umi_data.trajectory.findings.CODES`) and the tool's ``error`` text."""

    content: str
    code: str | None = None
    error: str | None = None


def valid_text(text: str) -> str:
    """``text`` as valid Unicode: a lone surrogate (a file name that ``os.listdir`` decoded with
    ``surrogateescape``, a server's ``"\\ud800"``) becomes U+FFFD, a split surrogate pair is joined.
    Such a string cannot be written as UTF-8, so none may enter a trajectory."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def failed(code: str, message: str) -> Observation:
    """A failed call: ToolBench's ``{"error": message, "response": ""}`` as the content."""
    return Observation(error_content(message), code, message)


class Executor(Protocol):
    """Answers calls. ``tools`` are the tools it brings itself (python modules), or ``None`` when
    the tools come with each query."""

    name: str

    @property
    def tools(self) -> list[Tool] | None: ...  # read-only here, so a plain ``list[Tool]`` attribute matches

    def execute(self, tool: Tool, arguments: str, context: dict[str, Any]) -> Observation: ...


class TransientError(Exception):
    """A failure worth retrying (connection refused, HTTP 5xx)."""


def error_content(message: str) -> str:
    """The observation text of a failed call, in ToolBench's ``{"error", "response"}`` shape,
    which the α-UMi models saw in training (e.g. ``No such function name: …``)."""
    return json.dumps({"error": message, "response": ""}, ensure_ascii=False)


# --- time-out and retry -------------------------------------------------------------------------


def _with_timeout(fn: Callable[[], Observation], timeout: float) -> Observation:
    """Run ``fn`` in a daemon thread; past ``timeout`` seconds the call is abandoned (a Python
    thread cannot be killed, but the agent does not wait for it)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as e:  # handed back to the caller's thread
            box.append(e)

    t = threading.Thread(target=run, daemon=True, name="umieval-tool")
    t.start()
    t.join(timeout)
    if not box:
        raise TimeoutError(f"no answer within {timeout:g} s")
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def call_tool(
    executor: Executor,
    tool: Tool,
    arguments: str,
    context: dict[str, Any] | None = None,
    timeout: float = 30.0,
    retries: int = 1,
    backoff: float = 0.5,
) -> tuple[Observation, int]:
    """One call with a time-out and up to ``retries`` more attempts on transient failures;
    returns the observation and the number of attempts made. The observation's text is always
    valid Unicode (:func:`valid_text`), whatever the tool returned."""
    obs, attempts = _call_tool(executor, tool, arguments, context or {}, timeout, retries, backoff)
    content, error = valid_text(obs.content), None if obs.error is None else valid_text(obs.error)
    if content is not obs.content or error is not obs.error:
        obs = Observation(content, obs.code, error)
    return obs, attempts


def _call_tool(executor: Executor, tool: Tool, arguments: str, ctx: dict[str, Any], timeout: float,
               retries: int, backoff: float) -> tuple[Observation, int]:
    attempts = 0
    while True:
        attempts += 1
        try:
            return _with_timeout(lambda: executor.execute(tool, arguments, ctx), timeout), attempts
        except TimeoutError as e:
            failure = failed("timeout", f"Timeout: {e}")
        except TransientError as e:
            failure = failed("unavailable", f"Tool unavailable: {e}")
        except Exception as e:  # an executor bug must not end the run
            return failed("tool_error", f"{type(e).__name__}: {e}"), attempts
        if attempts > retries:
            return failure, attempts
        time.sleep(backoff * attempts)


# --- argument validation --------------------------------------------------------------------------


def decode_arguments(arguments: str) -> tuple[dict[str, Any] | None, str | None]:
    """``(object, None)`` or ``(None, why)`` when the text is not a JSON object."""
    try:
        value = json.loads(arguments)
    except ValueError as e:
        return None, f"arguments are not valid JSON ({e})"
    except RecursionError:  # ~1000 nested brackets: Python's decoder gives up
        return None, "arguments are not valid JSON (nested too deeply)"
    if not isinstance(value, dict):
        return None, f"arguments are a JSON {type(value).__name__}, not an object"
    return value, None


def schema_errors(parameters: dict[str, Any], args: dict[str, Any]) -> list[str]:
    """Every violation of the tool's full JSON Schema, one line each (empty when valid)."""
    try:
        validator = Draft202012Validator(parameters)
        errors = sorted(validator.iter_errors(args), key=lambda e: list(e.absolute_path))
    except SchemaError as e:
        return [f"the tool's schema is invalid: {e.message}"]
    except RecursionError:
        return ["arguments are nested too deeply to check against the schema"]
    return [("/".join(map(str, e.absolute_path)) + ": " if e.absolute_path else "") + e.message for e in errors]


# --- python: plain functions ----------------------------------------------------------------------

DEFAULT_TOOL_MEMORY = 4 << 30  # address space of the tools process (RLIMIT_AS); 0: no limit


class PythonExecutor:
    """Plain Python functions as tools (``python:MODULE``). The module is imported here for its
    schema; calls run in a :class:`~umi_eval.agent.tool_worker.ToolWorker` process that imports it
    again, under ``timeout`` seconds per call and ``max_bytes`` of address space."""

    def __init__(self, module: types.ModuleType, timeout: float = 30.0, max_bytes: int = DEFAULT_TOOL_MEMORY) -> None:
        import weakref

        from umi_eval.agent.tool_worker import ToolWorker

        self.name = f"python:{module.__name__}"
        self.tools, funcs = module_tools(module)
        self._funcs = set(funcs)
        self._params = {t.name: t.parameters for t in self.tools}
        self.timeout = timeout
        file = getattr(module, "__file__", None)  # load_module's .py files are imported by path again
        target = file if module.__name__.startswith("umieval_tools_") and file else module.__name__
        self._worker = ToolWorker(target, max_bytes)
        weakref.finalize(self, self._worker.close)

    def execute(self, tool: Tool, arguments: str, context: dict[str, Any]) -> Observation:
        from umi_eval.agent.tool_worker import WorkerDied, WorkerTimeout

        if tool.name not in self._funcs:
            return failed("unknown_tool", f"No such function name: {tool.name}")
        args, why = decode_arguments(arguments)
        if args is None:
            return failed("invalid_arguments", f"Invalid arguments: {why}")
        errors = schema_errors(self._params[tool.name], args)
        if errors:
            return failed("invalid_arguments", "Invalid arguments: " + "; ".join(errors))
        try:
            ok, text = self._worker.call(tool.name, args, self.timeout)
        except WorkerTimeout as e:
            raise TimeoutError(str(e)) from None
        except WorkerDied as e:  # os._exit, a crash, the memory limit: this call's answer, the run goes on
            return failed("tool_crashed", f"Tool crashed: {e}")
        return Observation(text) if ok else failed("tool_error", text)  # the tool's failure is an observation

    def close(self) -> None:
        """Stop the worker process (it also stops by itself when this process ends)."""
        self._worker.close()


# --- replay: recorded observations ------------------------------------------------------------------


def normalise_arguments(arguments: str) -> str:
    """The replay key of an argument string: JSON re-encoded with sorted keys and no spaces, or
    the stripped text when it is not JSON (a recorded call with broken JSON still matches itself)."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError):
        return arguments.strip()


@dataclass
class ReplayExecutor:
    """Recorded answers (``replay:PATH[,PATH…]``). The first recording of a key wins (inputs are
    read in a stable order); ``misses`` counts calls nobody recorded."""

    records: dict[tuple[str, str], Observation]
    name: str = "replay"
    tools: list[Tool] | None = None
    misses: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def execute(self, tool: Tool, arguments: str, context: dict[str, Any]) -> Observation:
        found = self.records.get((tool.name, normalise_arguments(arguments)))
        if found is not None:
            return found
        with self._lock:
            self.misses += 1
        return failed("no_record", f"{NO_RECORD} for {tool.name} with these arguments")


def _recorded(content: str, error: str | None) -> Observation:
    return Observation(content, "tool_error" if error else None, error or None)


def _record_trajectory(traj: Trajectory, out: dict[tuple[str, str], Observation]) -> None:
    """Pair each call with the observation(s) that follow its caller turn, in order."""
    pending: list[tuple[str, str]] = []
    for turn in traj.turns:
        if turn.role == "caller":
            pending = [(c.name, normalise_arguments(c.arguments)) for c in turn.calls or []]
        elif turn.role == "observation" and pending:
            out.setdefault(pending.pop(0), _recorded(turn.content or "", turn.error))
        elif turn.role != "user":
            pending = []


def _record_tree(node: dict[str, Any], out: dict[tuple[str, str], Observation]) -> None:
    """ToolBench answer trees: an ``Action`` node (name) whose ``Action Input`` child holds the
    arguments and the observation; every explored branch, failed ones included."""
    stack = [node]
    while stack:
        n = stack.pop()
        children = n.get("children") or []
        if n.get("node_type") == "Action" and isinstance(n.get("description"), str):
            for c in children:
                obs = c.get("observation")
                if c.get("node_type") == "Action Input" and isinstance(obs, str) and n["description"] != "Finish":
                    response, error, _ = toolbench_observation(obs)
                    key = (n["description"], normalise_arguments(str(c.get("description") or "")))
                    out.setdefault(key, _recorded(response, error))
        stack.extend(reversed([c for c in children if isinstance(c, dict)]))


def load_replay(paths: Iterable[str]) -> tuple[ReplayExecutor, int]:
    """A replay executor from any input umidata reads; also returns the number of accepted
    trajectories it was built from (0 means the SPEC points at nothing usable)."""
    records: dict[tuple[str, str], Observation] = {}
    used = 0
    for unit in expand(paths):
        data = read_bytes(unit)
        if not isinstance(data, bytes):
            raise ToolSpecError(f"replay: {data.findings[0].message} ({unit.path})")
        for rec in parse_unit(unit, data):
            if rec.trajectory is not None:
                used += 1
                _record_trajectory(rec.trajectory, records)
        if (unit.member or unit.path).endswith(".json") and b'"tree"' in data:
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            tree = obj.get("tree") if isinstance(obj, dict) else None
            if isinstance(tree, dict) and isinstance(tree.get("tree"), dict):
                _record_tree(tree["tree"], records)
    return ReplayExecutor(records), used


# --- http: a ToolBench-style tool server ---------------------------------------------------------------


def toolbench_route(tool: Tool, routes: dict[str, Any]) -> dict[str, str]:
    """``category``, ``tool_name`` and ``api_name`` of a call: from the query's routes (ToolBench
    query files carry them), else split from ToolBench's ``<api>_for_<tool>`` naming."""
    known = routes.get(tool.name)
    if isinstance(known, dict):
        return {k: str(known.get(k, "")) for k in ("category", "tool_name", "api_name")}
    api, sep, tool_name = tool.name.partition("_for_")
    return {"category": "", "tool_name": tool_name if sep else tool.name, "api_name": api}


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) — what must stay the same for a redirect to be followed."""
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): this machine."""
    import ipaddress

    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Redirected(Exception):
    def __init__(self, code: int, url: str) -> None:
        super().__init__(url)
        self.code, self.url = code, url


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the same scheme, host and port: another host's answer would be
    recorded as the tool's observation (and would see the request)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if _origin(newurl) != _origin(req.full_url):
            raise _Redirected(code, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass
class HttpExecutor:
    """A ToolBench/StableToolBench-style server (``http:URL``). ``key`` is sent as given: what
    may be sent to this URL is decided by :func:`make_executor`."""

    url: str
    key: str = ""
    name: str = "http"
    tools: list[Tool] | None = None
    timeout: float = 30.0
    key_withheld: bool = False  # TOOLBENCH_KEY is set but this host was not named for it

    def execute(self, tool: Tool, arguments: str, context: dict[str, Any]) -> Observation:
        payload = {**toolbench_route(tool, context.get("routes") or {}), "tool_input": arguments,
                   "strip": "truncate", "toolbench_key": self.key}
        req = urllib.request.Request(self.url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(_SameHostRedirects)
        try:
            with opener.open(req, timeout=self.timeout) as resp:
                body = resp.read(MAX_RESPONSE_BYTES)
        except _Redirected as e:
            return failed("redirected", f"HTTP {e.code}: {self.url} redirected to {e.url}, another host; not "
                          "followed")
        except urllib.error.HTTPError as e:
            if e.code >= 500:
                raise TransientError(f"HTTP {e.code} from {self.url}") from e
            return failed("tool_error", f"HTTP {e.code} {e.reason}")
        except (urllib.error.URLError, ConnectionError) as e:
            if isinstance(getattr(e, "reason", None), TimeoutError):
                raise TimeoutError(f"no answer from {self.url} within {self.timeout:g} s") from e
            raise TransientError(f"{self.url}: {getattr(e, 'reason', e)}") from e
        response, error, _ = toolbench_observation(body.decode("utf-8", "replace"))
        if not response and error:
            return failed("tool_error", str(error))
        return Observation(response, "tool_error" if error else None, str(error) if error else None)


# --- --tools SPEC ----------------------------------------------------------------------------------------


def _http_url(url: str, spec: str) -> str:
    """``url`` when it is an ``http(s)://HOST[:PORT]…`` URL; a usage error otherwise (``http:HOST:PORT``
    would be accepted and then fail every call as unavailable)."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as e:
        raise ToolSpecError(f"--tools {spec!r}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolSpecError(f"--tools {spec!r}: http:URL needs a URL with its scheme and host, "
                            "e.g. http:http://127.0.0.1:8080/virtual or http://127.0.0.1:8080/virtual")
    return url


def _host_matches(given: str, host: str, port: int | None) -> bool:
    """``given`` (``HOST``, ``HOST:PORT``, ``[::1]:PORT``) names ``host`` (and ``port``, if it has one)."""
    parts = urllib.parse.urlsplit(f"//{given.strip()}")
    try:
        gport = parts.port
    except ValueError:
        return False
    return (parts.hostname or "").lower() == host and (gport is None or gport == port)


def _http_executor(url: str, spec: str, timeout: float, key_hosts: Iterable[str], plain_http_key: bool) -> HttpExecutor:
    """The executor for ``url``, with ``TOOLBENCH_KEY`` only when the user named its host (``HOST``
    or ``HOST:PORT``) in ``key_hosts``; a usage error when that would send it over plain HTTP to
    another machine without ``plain_http_key``."""
    key = os.environ.get("TOOLBENCH_KEY", "")  # ToolBench's hosted server wants one; a local one does not
    scheme, host, port = _origin(url)
    named = any(_host_matches(h, host, port) for h in key_hosts)
    if key and named and scheme == "http" and not is_loopback(host) and not plain_http_key:
        raise ToolSpecError(f"--tools {spec!r}: TOOLBENCH_KEY would go over plain HTTP to {host}; use an https:// "
                            "URL, or pass --tool-key-over-http to send it anyway")
    return HttpExecutor(url, key=key if named else "", timeout=timeout, key_withheld=bool(key) and not named)


def make_executor(spec: str, timeout: float = 30.0, tool_memory: int = DEFAULT_TOOL_MEMORY,
                  key_hosts: Iterable[str] = (), plain_http_key: bool = False) -> Executor:
    """``python:MODULE`` / ``replay:PATH[,PATH…]`` / ``http:URL`` (``http://…`` works as is).
    ``key_hosts``: the hosts ``TOOLBENCH_KEY`` may be sent to (see :func:`_http_executor`)."""
    kind, sep, target = spec.partition(":")
    if kind in ("http", "https") and target.startswith("//"):
        return _http_executor(_http_url(spec, spec), spec, timeout, key_hosts, plain_http_key)
    if not sep or not target:
        raise ToolSpecError(f"--tools {spec!r}: expected python:MODULE, replay:PATH or http:URL")
    if kind == "python":
        return PythonExecutor(load_module(target), timeout=timeout, max_bytes=tool_memory)
    if kind == "replay":
        paths = [p for p in target.split(",") if p]
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise ToolSpecError(f"replay: no such input: {', '.join(missing)}")
        executor, used = load_replay(paths)
        if used == 0:
            raise ToolSpecError(f"replay: no trajectory could be read from {target}")
        return executor
    if kind == "http":
        return _http_executor(_http_url(target, spec), spec, timeout, key_hosts, plain_http_key)
    raise ToolSpecError(f"--tools {spec!r}: unknown executor {kind!r} (python, replay, http)")
