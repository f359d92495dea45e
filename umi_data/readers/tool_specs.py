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

``--tools FILE`` (:func:`use_tools_file`): a JSON list (or JSONL, or an object with ``tools``) of
tools in any of these shapes, given to every record that carries no tool list of its own.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from umi_data.trajectory import Tool

_SCALARS: dict[str, str | None] = {
    "str": "string", "string": "string", "text": "string", "char": "string", "character": "string",
    "int": "integer", "integer": "integer", "long": "integer", "short": "integer", "byte": "integer",
    "bigint": "integer",
    "float": "number", "double": "number", "number": "number", "decimal": "number",
    "bool": "boolean", "boolean": "boolean",
    "list": "array", "array": "array", "tuple": "array", "set": "array", "frozenset": "array",
    "sequence": "array", "iterable": "array", "arraylist": "array", "queue": "array", "stack": "array",
    "dict": "object", "object": "object", "map": "object", "mapping": "object", "hashmap": "object",
    "hashtable": "object",
    "none": "null", "null": "null", "nonetype": "null",
    "any": None, "enum": "string",
}  # fmt: skip
JSON_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})
_OPTIONAL = re.compile(r"\s*,\s*optional\s*$", re.I)


class ToolSpecError(ValueError):
    """A tool definition that cannot be read; ``pointer`` locates it."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(message)
        self.pointer = pointer
        self.message = message


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):  # typing.List
        return node.attr
    if isinstance(node, ast.Constant) and node.value is None:
        return "None"
    return None


def _from_ast(node: ast.expr) -> dict[str, Any] | None:
    """JSON Schema for a parsed annotation; ``None`` when it cannot be mapped."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # int | None
        return _union([node.left, node.right])
    if isinstance(node, ast.Subscript):
        head = (_name(node.value) or "").lower()
        args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "optional":
            return _union([args[0], ast.Constant(None)])
        if head == "union":
            return _union(args)
        if head == "literal":
            values = [a.value for a in args if isinstance(a, ast.Constant)]
            return {"enum": values} if len(values) == len(args) else None
        base = _SCALARS.get(head, "?")
        if base == "array":
            item = _from_ast(args[0]) if head not in ("tuple",) and args else None
            return {"type": "array", "items": item} if item else {"type": "array"}
        if base == "object":
            value = _from_ast(args[1]) if len(args) == 2 else None
            return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
        return None
    name = _name(node)
    if name is None:
        return None
    t = _SCALARS.get(name.lower(), "?")
    if t == "?":
        return None
    return {} if t is None else {"type": t}


def _union(nodes: list[ast.expr]) -> dict[str, Any] | None:
    parts = [_from_ast(n) for n in nodes]
    if any(p is None for p in parts):
        return None
    if any(p == {} for p in parts):  # Union[Any, …] is any
        return {}
    if all(set(p) == {"type"} and isinstance(p["type"], str) for p in parts):  # type: ignore[union-attr]
        return {"type": sorted({p["type"] for p in parts})}  # type: ignore[index]
    return {"anyOf": parts}


def type_schema(text: str) -> tuple[dict[str, Any] | None, bool]:
    """``(schema, optional)`` for a type name: JSON Schema's own, BFCL's, Java's or a Python
    annotation. ``schema`` is ``{}`` for any value and ``None`` when the name cannot be mapped;
    ``optional`` when the name says so (``str, optional``, ``Optional[str]``)."""
    text = text.strip()
    optional = bool(_OPTIONAL.search(text))
    text = _OPTIONAL.sub("", text)
    simple = _SCALARS.get(text.lower(), "?")
    if simple != "?":
        return ({} if simple is None else {"type": simple}), optional
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None, optional
    schema = _from_ast(node)
    if schema is not None and isinstance(node, ast.Subscript) and (_name(node.value) or "").lower() == "optional":
        optional = True
    return schema, optional


def json_type(t: Any) -> str | list[str] | None:
    """The JSON-Schema ``type`` value of a (possibly odd) type name, for argument checks; ``None``
    when it cannot be used (unknown, or any value)."""
    if isinstance(t, list):
        names = [json_type(x) for x in t]
        if names and all(isinstance(n, str) for n in names):
            return sorted(set(names))  # type: ignore[arg-type]
        return None
    if not isinstance(t, str):
        return None
    schema, _ = type_schema(t)
    return schema.get("type") if schema else None


def normalise_schema(spec: Any) -> Any:
    """A property's schema with every ``type`` mapped to JSON Schema, nested ones included
    (``properties``, ``items``, ``additionalProperties``, ``anyOf``/``oneOf``/``allOf``)."""
    if not isinstance(spec, dict):
        return spec
    t = spec.get("type")
    if isinstance(t, str) and t not in JSON_TYPES:
        schema, _ = type_schema(t)
        # the mapped type in the place of the old one; its items/enum only where the spec gives none
        out = {}
        for k, v in spec.items():
            if k != "type":
                out[k] = v
            elif schema is None:
                out["x-original-type"] = t
            else:
                out.update(schema)
        out.update({k: v for k, v in spec.items() if k != "type"})
    elif isinstance(t, list):
        mapped = json_type(t)
        out = {k: (mapped if k == "type" else v) for k, v in spec.items()}
        if mapped is None:
            out = {("x-original-type" if k == "type" else k): (t if k == "type" else v) for k, v in spec.items()}
    else:
        out = dict(spec)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: normalise_schema(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = normalise_schema(out["items"])
    elif isinstance(out.get("items"), list):
        out["items"] = [normalise_schema(v) for v in out["items"]]
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = normalise_schema(out["additionalProperties"])
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(out.get(key), list):
            out[key] = [normalise_schema(v) for v in out[key]]
    return out


def is_flat(params: Any) -> bool:
    """A flat parameter map ``{"p": {"type": …, "description": …}}`` rather than JSON Schema."""
    if not isinstance(params, dict) or not params:
        return False
    if "properties" in params or params.get("type") in ("object", "dict"):
        return False
    return all(isinstance(v, dict) and ("type" in v or "description" in v) for v in params.values())


def normalise_parameters(params: Any) -> Any:
    """``parameters`` as a JSON Schema object (see the module docstring); a value that is
    neither JSON Schema nor a flat map is returned as it is, for the checks to report."""
    if params is None or params == {}:
        return {"type": "object", "properties": {}}
    if is_flat(params):
        props: dict[str, Any] = {}
        required: list[str] = []
        for name, spec in params.items():
            spec = dict(spec)
            flag = spec.pop("required", None)
            _, optional = type_schema(spec["type"]) if isinstance(spec.get("type"), str) else (None, False)
            props[name] = normalise_schema(spec)
            if flag is True or (flag is None and not optional and "default" not in spec):
                required.append(name)
        return {"type": "object", "properties": props, "required": required}
    if isinstance(params, dict) and ("properties" in params or params.get("type") in ("object", "dict")):
        out = normalise_schema({"type": "object", **params})
        out["type"] = "object"
        out.setdefault("properties", {})
        return out
    return params


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
                if isinstance(api, dict)]  # fmt: skip
    if isinstance(spec.get("Name"), str) and "input" in spec:  # an α-UMi doc
        from umi_data.render.alpha_umi import tool_from_doc

        tool = tool_from_doc(spec)
        tool.parameters = normalise_parameters(tool.parameters)
        return [tool]
    fn = spec.get("function") if isinstance(spec.get("function"), dict) else spec
    if not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ToolSpecError(pointer, "a tool needs a `name`: {name, description, parameters} or "
                            "{type: function, function: {…}}")  # fmt: skip
    params = fn.get("parameters", fn.get("input_schema"))
    if params is not None and not isinstance(params, dict):
        raise ToolSpecError(f"{pointer}/parameters", "`parameters` must be a JSON Schema object or a map of "
                            "parameter names to {type, description}")  # fmt: skip
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


_GIVEN: list[Tool] = []


def use_tools_file(path: str | Path | None) -> None:
    """Set (``None``: forget) the tools given to records without a tool list of their own, in
    the process that reads (each worker calls it). Raises ``ValueError`` for an unusable file."""
    tools = read_tools_file(path) if path is not None else []
    _GIVEN[:] = tools


def given_tools() -> list[Tool]:
    """Copies of the ``--tools`` tools (each trajectory owns its tools)."""
    return [Tool(t.name, t.description, json.loads(json.dumps(t.parameters))) for t in _GIVEN]


def has_given_tools() -> bool:
    return bool(_GIVEN)
