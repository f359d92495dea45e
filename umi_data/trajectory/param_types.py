"""Parameter types of tool definitions → JSON Schema.

Public tool-use data spells parameter types many ways; tool docs, the chat rendering and the
argument checks (``checks``) need JSON Schema. A *flat map* ``{"p": {"type": "str", "description": …,
"default": …}}`` (xLAM/APIGen) becomes ``{"type": "object", "properties": …, "required": […]}``, a
parameter being required unless its type says optional (``str, optional``, ``Optional[str]``) or it
has a ``default``. Type names that are not JSON Schema's are mapped: BFCL's ``dict``, ``float``,
``tuple``, ``any``, Java's ``String``/``HashMap``/``ArrayList``/``long``, and Python annotations
(``str``, ``List[int]``, ``Dict[str, Any]``, ``Optional[str]``, ``Union[int, float]``, ``Literal[…]``)
read with ``ast.parse`` (never evaluated). ``any`` drops the type (any value); a name that cannot be
mapped is kept as ``x-original-type`` with no ``type``, so nothing is checked against a guess.

It sits with the trajectory model because the checks read it; the readers
(``umi_data/readers/tool_specs.py``) apply it to every tool shape they accept.
"""

from __future__ import annotations

import ast
import re
from typing import Any

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
}
JSON_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})
_OPTIONAL = re.compile(r"\s*,\s*optional\s*$", re.I)



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
    known = [p for p in parts if p is not None]
    if all(set(p) == {"type"} and isinstance(p["type"], str) for p in known):
        return {"type": sorted({p["type"] for p in known})}
    return {"anyOf": known}


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
