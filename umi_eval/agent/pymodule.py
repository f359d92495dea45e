"""Python modules as tools (``--tools python:MODULE``): import the user's module, and read its
tools from a ``tools`` list or from its typed public functions.

Shared by the executor (``tools.PythonExecutor``, which imports the module for its schema) and the
worker process that calls the functions (``tool_worker``), so neither imports the other.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from umi_cli.errors import UsageError
from umi_data.trajectory import Tool


class ToolSpecError(UsageError, ValueError):
    """``--tools`` names something that cannot be used (usage error, exit 2)."""



_PY_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                             list: "array", dict: "object", tuple: "array", type(None): "null"}


_BY_NAME: dict[Any, Any] = {t.__name__: t for t in _PY_TYPES}


def _json_type(annotation: Any) -> dict[str, Any]:
    """JSON Schema of a parameter annotation; ``{}`` (anything) when it has none we know."""
    if annotation in _PY_TYPES:
        return {"type": _PY_TYPES[annotation]}
    origin = get_origin(annotation)
    if origin in _PY_TYPES:
        return {"type": _PY_TYPES[origin]}
    if origin in (Union, types.UnionType):
        types_ = [_json_type(a).get("type") for a in get_args(annotation)]
        if all(types_):
            return {"type": sorted(set(types_))}
    return {}


def _is_json(value: Any) -> bool:
    """Whether a default can stand in a JSON Schema as it is (``unit="C"`` can, ``object()`` cannot)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False)) == value
    except (TypeError, ValueError, RecursionError):
        return False


def tool_from_function(fn: Callable[..., Any]) -> Tool:
    """A tool from a typed signature: parameters without a default are required, the others
    carry their default (``default`` in the JSON Schema: the model and the tool's user see what an
    omitted argument means); the docstring's first paragraph is the description."""
    try:
        hints = inspect.get_annotations(fn, eval_str=True)
    except Exception:  # an annotation that does not evaluate: read the names as written
        hints = {k: _BY_NAME.get(v, v) for k, v in inspect.get_annotations(fn).items()}
    props: dict[str, Any] = {}
    required: list[str] = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        props[p.name] = _json_type(hints.get(p.name, inspect.Parameter.empty))
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
        elif _is_json(p.default):
            props[p.name]["default"] = p.default
    doc = (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ")
    params = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return Tool(fn.__name__, doc, params)


def _tool_from_spec(spec: Any) -> Tool:
    if isinstance(spec, dict) and spec.get("type") == "function" and isinstance(spec.get("function"), dict):
        spec = spec["function"]
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ToolSpecError(f"a `tools` entry must be an object with a string `name`: {str(spec)[:80]}")
    return Tool(spec["name"], str(spec.get("description") or ""),
                spec.get("parameters") or {"type": "object", "properties": {}})


def load_module(target: str) -> types.ModuleType:
    """A module by dotted name, or a ``.py`` file by path (the user's own tools: importing them
    runs their code, which is what the user asked for)."""
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ToolSpecError(f"python tools: no such file {target}")
        name = f"umieval_tools_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ToolSpecError(f"python tools: cannot import {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as e:  # the user's module failed to import: say where, no traceback
            raise ToolSpecError(f"python tools: importing {target} failed: {type(e).__name__}: {e}") from e
        return module
    try:
        return importlib.import_module(target)
    except (Exception, SystemExit) as e:
        raise ToolSpecError(f"python tools: cannot import {target!r} ({type(e).__name__}: {e})") from e


def module_tools(module: types.ModuleType) -> tuple[list[Tool], dict[str, Callable[..., Any]]]:
    """The tools a module offers and the function behind each (see ``python:MODULE`` above)."""
    name = f"python:{module.__name__}"
    declared = getattr(module, "tools", None)
    funcs = {n: f for n, f in vars(module).items()
             if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == module.__name__}
    if declared is not None:
        tools = [_tool_from_spec(s) for s in declared]
    else:
        tools = [tool_from_function(f) for f in funcs.values()]
    missing = [t.name for t in tools if t.name not in funcs]
    if missing:
        raise ToolSpecError(f"{name}: `tools` names functions the module does not define: {missing}")
    if not tools:
        raise ToolSpecError(f"{name}: the module defines no public function")
    return tools, {t.name: funcs[t.name] for t in tools}


def function_table(module: types.ModuleType) -> dict[str, Callable[..., Any]]:
    """Tool name → function (what the worker process calls)."""
    return module_tools(module)[1]
