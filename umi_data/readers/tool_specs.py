"""Tool definitions in any published shape → :class:`Tool` with a JSON-Schema ``parameters``.

Public tool-use data spells tools many ways; the prompts' tool docs, the chat rendering's
``tools`` and the argument checks all need one JSON Schema object. Accepted per tool:

- OpenAI ``{"type": "function", "function": {name, description, parameters}}``;
- bare ``{name, description, parameters}`` (BFCL, xLAM, ToolBench answer files' ``function``,
  ``input_schema`` read like ``parameters``);
- ToolBench's RapidAPI tool files ``{"tool_name", "api_list": [{name, description,
  required_parameters, optional_parameters}]}`` — one tool per API, named as ToolBench names
  them (``<api>_for_<tool>``);
- α-UMi docs ``{"Name", "function", "input"}``.

``parameters`` may be JSON Schema, or a *flat map* ``{"p": {"type": "str", "description": …,
"default": …}}`` (xLAM/APIGen): it becomes ``{"type": "object", "properties": …, "required": […]}``,
a parameter being required unless its type says optional (``str, optional``, ``Optional[str]``) or
it has a ``default``. Type names that are not JSON Schema's are mapped: BFCL's ``dict``, ``float``,
``tuple``, ``any``, Java's ``String``/``HashMap``/``ArrayList``/``long``, and Python annotations
(``str``, ``List[int]``, ``Dict[str, Any]``, ``Optional[str]``, ``Union[int, float]``, ``Literal[…]``)
read with ``ast.parse`` (never evaluated). ``any`` drops the type (any value); a name that cannot be
mapped is kept as ``x-original-type`` with no ``type``, so nothing is checked against a guess.

``--tools FILE`` (:func:`read_tools_file`, kept in ``ReaderConfig.tools``): a JSON list (or JSONL,
or an object with ``tools``) of tools in any of these shapes, given to every record that carries
no tool list of its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from umi_data.trajectory import Tool
from umi_data.trajectory.param_types import normalise_parameters, normalise_schema


class ToolSpecError(ValueError):
    """A tool definition that cannot be read; ``pointer`` locates it."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(message)
        self.pointer = pointer
        self.message = message


def _standardize(name: str) -> str:
    """ToolBench's name standardisation (``toolbench/utils.py``: non-word characters → ``_``,
    runs collapsed, lower case, ``_`` trimmed, a leading digit prefixed with ``get_``)."""
    s = re.sub(r"(_)\1+", "_", re.sub(r"[^\u4e00-\u9fa5a-zA-Z0-9_]", "_", name)).lower().strip("_")
    return "get_" + s if s[:1].isdigit() else s


_RESERVED = {"from", "class", "return", "false", "true", "id", "and"}


def _toolbench_api(tool_name: str, api: dict[str, Any], pointer: str) -> Tool:
    if not isinstance(api.get("name"), str):
        raise ToolSpecError(pointer, "an `api_list` entry needs a `name`")
    api_name = _standardize(api["name"])
    api_name = "is_" + api_name if api_name in _RESERVED else api_name
    props: dict[str, Any] = {}
    required: list[str] = []
    optional: list[str] = []
    for key, bucket in (("required_parameters", required), ("optional_parameters", optional)):
        for p in api.get(key) or []:
            if isinstance(p, dict) and isinstance(p.get("name"), str):
                spec = {"type": str(p.get("type", "string")), "description": str(p.get("description", ""))}
                if "default" in p:
                    spec["example_value"] = p["default"]
                props[p["name"]] = normalise_schema(spec)
                bucket.append(p["name"])
    params = {"type": "object", "properties": props, "required": required, "optional": optional}
    return Tool(f"{api_name}_for_{_standardize(tool_name)}"[-64:], str(api.get("description") or ""), params)


def tools_from_spec(spec: Any, pointer: str) -> list[Tool]:
    """The tool(s) one definition describes (a ToolBench tool file: one per API)."""
    if not isinstance(spec, dict):
        raise ToolSpecError(pointer, f"a tool must be an object, not {type(spec).__name__}")
    if isinstance(spec.get("api_list"), list):
        tool_name = str(spec.get("tool_name") or spec.get("name") or "")
        return [_toolbench_api(tool_name, api, f"{pointer}/api_list/{k}") for k, api in enumerate(spec["api_list"])
                if isinstance(api, dict)]
    if isinstance(spec.get("Name"), str) and "input" in spec:  # an α-UMi doc
        from umi_data.render.alpha_umi import tool_from_doc

        tool = tool_from_doc(spec)
        tool.parameters = normalise_parameters(tool.parameters)
        return [tool]
    fn = spec.get("function")
    if not isinstance(fn, dict):
        fn = spec
    if not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ToolSpecError(pointer, "a tool needs a `name`: {name, description, parameters} or "
                            "{type: function, function: {…}}")
    params = fn.get("parameters", fn.get("input_schema"))
    if params is not None and not isinstance(params, dict):
        raise ToolSpecError(f"{pointer}/parameters", "`parameters` must be a JSON Schema object or a map of "
                            "parameter names to {type, description}")
    desc = fn.get("description")
    return [Tool(fn["name"], desc if isinstance(desc, str) else "", normalise_parameters(params))]


def tools_from_list(raw: Any, pointer: str) -> list[Tool]:
    """A list of tool definitions (or a JSON string of one) → tools, in order."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except ValueError as e:
            raise ToolSpecError(pointer, f"the tool list is a string but not JSON ({e})") from None
    if raw is None:
        return []
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise ToolSpecError(pointer, "the tools must be a list of tool definitions")
    return [t for k, spec in enumerate(raw) for t in tools_from_spec(spec, f"{pointer}/{k}")]


def read_tools_file(path: str | Path) -> list[Tool]:
    """``--tools FILE``: a JSON list of tools, an object with a ``tools`` (or ``functions``) list,
    one tool, or JSONL (one tool per line, as BFCL's ``multi_turn_func_doc/`` files are).
    Raises ``ValueError`` (with the file named) when it holds no readable tool."""
    text = Path(path).read_text(encoding="utf-8-sig")
    try:
        data: Any = json.loads(text)
    except ValueError as e:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        try:
            data = [json.loads(ln) for ln in lines]
        except ValueError:
            raise ValueError(f"{path}: not JSON or JSONL ({e})") from None
    if isinstance(data, dict) and not ({"name", "api_list", "Name", "function"} & set(data)):
        data = data.get("tools", data.get("functions"))
    try:
        tools = tools_from_list(data, "")
    except ToolSpecError as e:
        raise ValueError(f"{path}#{e.pointer}: {e.message}") from None
    if not tools:
        raise ValueError(f"{path}: holds no tool definition")
    return tools

