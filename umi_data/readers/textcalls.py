"""Tool calls written as text, in the syntaxes public datasets use — parsed, never executed.

- ``<tool_call>{"name": "f", "arguments": {…}}</tool_call>`` (Hermes / ChatML, Qwen): each block
  JSON, or a Python literal (``{'name': 'f', 'arguments': {…}}``, read with :func:`literal`), or a
  Python call ``f(a=1)``; several blocks are parallel calls; the text around them is the thought.
- ``[f(a=1, b="x"), g()]`` (ToolACE, BFCL's Python style): a list of calls with keyword
  arguments whose values are literals. The text is parsed with :mod:`ast` and only literal
  nodes are read (constants, lists, tuples, dicts, ``-1``, and JSON's ``true``/``false``/``null``);
  anything else (a name, an expression, a call as a value) is refused. Tool names may hold
  spaces, dots or dashes (ToolACE's API names do): the list is split by a quote-aware scanner
  and only each call's argument list goes to :mod:`ast`.
- ``{"name": "f", "arguments": {…}}`` or a JSON list of them (a chat that writes its calls as
  JSON text).

Each returns ``None`` when the text is not in its syntax, and raises :class:`CallSyntax` when it
is (it opens like one) but cannot be read, so callers can tell "prose" from "a broken call".
Arguments come out as JSON text (``json.dumps(..., ensure_ascii=False)``, as LLaMA-Factory and
the transformers chat templates serialise them); arguments given as a string are kept as given.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from umi_data.trajectory import Call

_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
_ITEM = re.compile(r"\A(?P<name>[^\W\d][\w.\- ]*?)\s*\((?P<args>.*)\)\Z", re.S)
_JSON_NAMES = {"true": True, "false": False, "null": None}
# Text that opens like a call in one of the syntaxes above: a chat whose assistant text matches
# this but does not parse is accepted with a warning saying so, never silently taken as an answer.
_LOOKS = re.compile(r"\A\s*(?:<tool_call>|\[\s*[^\W\d][\w.\- ]*\(|[\[{]\s*\{?\s*[\"']name[\"']\s*:)")


class CallSyntax(ValueError):
    """Text that opens like tool calls in a known syntax but cannot be read as them."""


def literal(text: str) -> Any:
    """A JSON value, else a Python literal (``ast.literal_eval``: data is never executed);
    :class:`ValueError` when it is neither."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"neither JSON nor a Python literal ({type(e).__name__})") from None


def looks_like_calls(text: str | None) -> bool:
    return bool(text) and _LOOKS.match(text or "") is not None


def _arguments(args: Any, what: str) -> str:
    if isinstance(args, str):
        return args
    if isinstance(args, dict):
        try:
            return json.dumps(args, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError) as e:
            raise CallSyntax(f"{what}: arguments are not JSON-serialisable ({type(e).__name__})") from None
    raise CallSyntax(f"{what}: `arguments` must be an object or a string, not {type(args).__name__}")


def call_objects(value: Any, what: str) -> list[Call]:
    """``{"name", "arguments"}`` (``parameters`` also accepted) or a list of them → calls."""
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise CallSyntax(f"{what} must be {{name, arguments}} (or a list of them)")
        args = item.get("arguments", item.get("parameters", {}))
        calls.append(Call(item["name"], _arguments(args, what)))
    return calls


def tagged_calls(text: str) -> tuple[str | None, list[Call]] | None:
    """``(thought, calls)`` from ``<tool_call>`` blocks; ``None`` when the text has none."""
    if "<tool_call>" not in text:
        return None
    calls: list[Call] = []
    for k, m in enumerate(_TAG.finditer(text)):
        body = m.group(1).strip()
        what = f"<tool_call> block {k + 1}"
        try:
            value = literal(body)
        except ValueError:
            python = python_calls(f"[{body}]")
            if python is None:
                raise CallSyntax(f"{what} is neither JSON, a Python literal nor a Python call") from None
            calls.extend(python)
            continue
        calls.extend(call_objects(value, what))
    if not calls:
        raise CallSyntax("the <tool_call> blocks hold no call")
    thought = _TAG.sub("", text).strip()
    return thought or None, calls


def _split_items(body: str) -> list[str]:
    """Top-level comma-separated items, quotes and brackets respected."""
    items, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(body):
        ch = body[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if body.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
        elif ch in "\"'":
            quote = ch * 3 if body.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise CallSyntax("unbalanced brackets in the call list")
        elif ch == "," and depth == 0:
            items.append(body[start:i])
            start = i + 1
        i += 1
    if quote or depth:
        raise CallSyntax("unclosed string or bracket in the call list")
    items.append(body[start:])
    return [s.strip() for s in items]


def _value(node: ast.AST) -> Any:
    """A literal node's value (JSON's ``true``/``false``/``null`` too); :class:`ValueError` otherwise."""
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    if isinstance(node, ast.List | ast.Tuple):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("`**` in a dict")
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    return ast.literal_eval(node)


def python_calls(text: str) -> list[Call] | None:
    """``[f(a=1), g()]`` → calls; ``None`` when the text is not a bracketed list of ``name(…)``."""
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        return None
    try:
        items = [s for s in _split_items(body[1:-1]) if s]
    except CallSyntax:
        if _LOOKS.match(body) is None:
            return None
        raise
    if not items or any(_ITEM.match(s) is None for s in items):
        return None
    calls = []
    for item in items:
        m = _ITEM.match(item)
        assert m is not None  # checked above
        name = m["name"].strip()
        try:
            node = ast.parse(f"f({m['args']})", mode="eval").body
        except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
            raise CallSyntax(f"the arguments of {name!r} are not Python syntax ({type(e).__name__})") from None
        if not isinstance(node, ast.Call) or node.args or any(kw.arg is None for kw in node.keywords):
            raise CallSyntax(f"the call to {name!r} must have keyword arguments only (name=value)")
        try:
            args = {kw.arg: _value(kw.value) for kw in node.keywords}
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise CallSyntax(f"an argument of {name!r} is not a literal value (data is never evaluated)") from None
        calls.append(Call(name, _arguments(args, f"the call to {name!r}")))
    return calls


def json_calls(text: str) -> list[Call] | None:
    """JSON text ``{"name", "arguments"}`` or a list of them → calls; ``None`` otherwise."""
    body = text.strip()
    if not body.startswith(("{", "[")):
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, dict) and isinstance(i.get("name"), str)
                            and ("arguments" in i or "parameters" in i) for i in items):
        return None
    return call_objects(value, "the call")


def calls_in_text(text: str) -> tuple[str | None, list[Call]] | None:
    """``(thought, calls)`` when the whole text is calls in a known syntax (``<tool_call>``
    blocks may have a thought around them); ``None`` when it is not; :class:`CallSyntax` when it
    opens like calls but cannot be read."""
    tagged = tagged_calls(text)
    if tagged is not None:
        return tagged
    calls = json_calls(text)
    if calls is None:
        calls = python_calls(text)
    return (None, calls) if calls is not None else None


def double_encoded(arguments: str) -> str | None:
    """The inner text when ``arguments`` is a JSON string whose content is a JSON object
    (``"\\"{\\\\\\"a\\\\\\": 1}\\""``: encoded twice), else ``None``."""
    if not arguments.lstrip().startswith('"'):
        return None
    try:
        inner = json.loads(arguments)
        if isinstance(inner, str) and isinstance(json.loads(inner), dict):
            return inner
    except (ValueError, RecursionError):
        return None
    return None
