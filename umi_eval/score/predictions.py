"""Readers for prediction files: three shapes, detected from the file itself (no flag).

- ``alpha-umi-trio``: the original pipeline's ``predictions.json`` (spec §1.6): a JSON array of
  objects with ``tools``, ``reference``, ``predictions`` (and ``instruction``, ``history``,
  ``dispath``, …). References hold the planner markers (``Next: caller.`` …), scored with §2.1.
- ``alpha-umi-single``: the original single-model (backbone) ``predictions.json`` (spec §1.7/§2.8):
  the same keys (``reference`` may be the step file's ``target``), references without markers,
  scored with §2.8. Told apart from the trio by the references: a trio reference always carries a
  ``Next: …`` marker, a single-model one never does.
- ``umi``: umi's JSONL (``umieval generate``; ``notes``/contract): one object per step with ``id``,
  ``mode``, ``tools``, ``reference``, ``prediction``; an optional first header line holds
  ``umi_predictions``.

Every shape is normalised into the umi record (``id``, ``trajectory_id``, ``mode``, ``tools``,
``reference``, ``prediction``, ``source``) so that one scoring path serves all of them. The original
files have no step ids: a step is named by its conversation (the first user turn, i.e. the
instruction) and its position in it (the number of assistant turns in its gold history), which the
trio and the single-model files share; steps that still collide get a digest of their parsed
reference. Bootstrap groups are the conversations (``trajectory_id``; for the original files the
instruction digest).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from umi_cli.errors import UsageError
from umi_eval.score.metrics import parse

TRIO, SINGLE, UMI = "alpha-umi-trio", "alpha-umi-single", "umi"
SHAPE_KEYS: dict[str, tuple[str, ...]] = {
    "alpha-umi predictions.json": ("tools", "reference", "predictions"),
    UMI: ("id", "mode", "tools", "reference", "prediction"),
}
_MARKERS = ("Next: caller", "Next: conclusion", "Next: give up")
# the original single-model file may name its reference `target` (the step file's key)
_ALTERNATIVES: dict[tuple[str, str], tuple[str, ...]] = {("alpha-umi predictions.json", "reference"): ("target",)}


def _lacks(obj: dict[str, Any], shape: str) -> list[str]:
    """The keys of ``shape`` that ``obj`` has under none of their names."""
    return [k for k in SHAPE_KEYS[shape] if all(n not in obj for n in (k, *_ALTERNATIVES.get((shape, k), ())))]


class ShapeError(UsageError, ValueError):
    """The file is not one of the three shapes (or cannot be read); the message names the closest
    shape and the key that did not match."""


@dataclass(slots=True)
class Loaded:
    """What a reader got from one file: normalised records, per-item rejects, the shape."""

    path: str
    shape: str
    records: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    items: int = 0  # records read (header excluded), scored or rejected
    stable_ids: bool = True  # ids name the same step in another file of the same steps


def _digest(text: str, n: int = 12) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def _closest(obj: Any, shapes: tuple[str, ...]) -> str:
    if not isinstance(obj, dict):
        return f"the first record is a JSON {type(obj).__name__}, not an object"
    best = min(shapes, key=lambda s: len(_lacks(obj, s)))
    missing = _lacks(obj, best)
    if not missing:
        container = "JSONL" if best == UMI else "a JSON array"
        return f"closest shape: {best}, whose keys the record has, but {best} files are {container}"
    return f"closest shape: {best} (missing key {missing[0]!r}; the record has keys {sorted(obj)[:12]})"


def _matches(obj: Any, shape: str) -> bool:
    return isinstance(obj, dict) and not _lacks(obj, shape)


def _reject(loaded: Loaded, source: str, reason: str, message: str) -> None:
    loaded.rejects.append({"source": source, "reason": reason, "message": message})


def _check(obj: dict[str, Any], ref_key: str, pred_key: str) -> tuple[str, str] | None:
    """(reason, message) when a record cannot be scored, else None."""
    for key in (ref_key, pred_key):
        if key not in obj:
            return "missing_key", f"no {key!r} key"
        if not isinstance(obj[key], str):
            return "not_a_string", f"{key!r} is a JSON {type(obj[key]).__name__}, not a string"
    if not isinstance(obj.get("tools"), list):
        return "bad_tools", "'tools' is missing or not a list"
    return None


def invalid(record: Any, mode: str | None = None) -> tuple[str, str] | None:
    """(reason, message) when a umi-shaped record cannot be scored, else None."""
    if not isinstance(record, dict):
        return "not_an_object", f"record is a {type(record).__name__}"
    problem = _check(record, "reference", "prediction")
    if problem is None and (mode or record.get("mode")) not in ("trio", "single"):
        problem = ("unknown_mode", f"'mode' is {record.get('mode')!r}, not 'trio' or 'single'")
    if problem is None and not isinstance(record.get("id"), str):
        problem = ("missing_key", "no string 'id'")
    return problem


def _conversation_key(obj: dict[str, Any]) -> tuple[str, int] | None:
    """(instruction, assistant turns before the step) from an original record, None without history."""
    history = obj.get("history")
    if not isinstance(history, list):
        return None
    turns = [t for t in history if isinstance(t, dict)]
    instruction = obj.get("instruction")
    if not isinstance(instruction, str):
        instruction = next((t.get("value") for t in turns if t.get("from") == "user"), None)
    if not isinstance(instruction, str):
        return None
    return instruction, sum(1 for t in turns if t.get("from") == "assistant")


def _read_original(path: str, items: list[Any]) -> Loaded:
    """Both original predictions.json shapes; the mode is decided by the references' markers."""
    objs = [o for o in items if isinstance(o, dict)]
    refs = [o.get("reference", o.get("target")) for o in objs]
    refs = [r for r in refs if isinstance(r, str)]
    trio = sum(any(m in r for m in _MARKERS) for r in refs) * 2 >= len(refs)
    loaded = Loaded(path, TRIO if trio else SINGLE, items=len(items))
    mode = "trio" if trio else "single"
    for i, obj in enumerate(items):
        source = f"{path}[{i}]"
        if not isinstance(obj, dict):
            _reject(loaded, source, "not_an_object", f"item is a JSON {type(obj).__name__}")
            continue
        ref_key = "reference" if "reference" in obj or "target" not in obj else "target"
        problem = _check(obj, ref_key, "predictions")
        if problem:
            _reject(loaded, source, *problem)
            continue
        key = _conversation_key(obj)
        if key is None:
            loaded.stable_ids = False
            group, step_id = f"item-{i}", f"item-{i}"
        else:
            group = _digest(key[0])
            step_id = f"{group}#{key[1]}"
        loaded.records.append({
            "id": step_id, "trajectory_id": group, "mode": mode, "tools": obj["tools"],
            "reference": obj[ref_key], "prediction": obj["predictions"], "source": source,
        })  # fmt: skip
    _disambiguate(loaded.records)
    return loaded


def _disambiguate(records: list[dict[str, Any]]) -> None:
    """Steps that share a conversation key (two conversations with one instruction) are all named by
    their parsed reference too, which a trio and a single-model file share (§2.8), so that the names
    do not depend on file order; only steps identical in that too are numbered in file order."""
    base = Counter(r["id"] for r in records)
    for r in records:
        if base[r["id"]] > 1:
            parsed = parse(r["reference"], r["mode"])
            r["id"] = f"{r['id']}~{_digest(repr(tuple(parsed.as_dict().values())), 8)}"
    seen: Counter[str] = Counter()
    full = Counter(r["id"] for r in records)
    for r in records:
        if full[r["id"]] > 1:
            seen[r["id"]] += 1
            r["id"] = f"{r['id']}~{seen[r['id']]}"


def _read_umi(path: str, lines: list[bytes]) -> Loaded:
    loaded = Loaded(path, UMI)
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        source = f"{path}:{n}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            loaded.items += 1
            _reject(loaded, source, "invalid_json", str(e))
            continue
        if isinstance(obj, dict) and "umi_predictions" in obj:
            continue  # the header line
        loaded.items += 1
        if not isinstance(obj, dict):
            _reject(loaded, source, "not_an_object", f"line is a JSON {type(obj).__name__}")
            continue
        problem = invalid(obj)
        if problem is None and obj["id"] in seen:
            problem = ("duplicate_id", f"step {obj['id']!r} appears earlier in the file")
        if problem:
            _reject(loaded, source, *problem)
            continue
        seen.add(obj["id"])
        traj = obj.get("trajectory_id")
        loaded.records.append({
            "id": obj["id"], "trajectory_id": traj if isinstance(traj, str) else obj["id"].rsplit("#", 1)[0],
            "mode": obj["mode"], "tools": obj["tools"], "reference": obj["reference"],
            "prediction": obj["prediction"], "source": source,
        })  # fmt: skip
    return loaded


def read_predictions(path: str | Path) -> Loaded:
    """Read a prediction file of any of the three shapes. Raises ``OSError`` when it cannot be read
    and :class:`ShapeError` when it is none of the shapes or holds no record."""
    path = str(path)
    data = Path(path).read_bytes()
    head = data.lstrip()[:1]
    if head == b"[":
        try:
            items = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise ShapeError(f"{path}: starts like a JSON array (predictions.json) but is not valid JSON: {e}") from e
        if not items:
            raise ShapeError(f"{path}: the JSON array is empty: 0 records to score")
        if not any(_matches(o, "alpha-umi predictions.json") for o in items):
            raise ShapeError(f"{path}: a JSON array, but no item has the keys of the original predictions.json; "
                             + _closest(items[0], ("alpha-umi predictions.json", UMI)))  # fmt: skip
        return _read_original(path, items)
    if head == b"{":
        lines = data.splitlines()
        objs = []
        for line in lines:
            try:
                objs.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        if not objs:
            try:
                whole = orjson.loads(data)
            except orjson.JSONDecodeError as e:
                raise ShapeError(f"{path}: neither JSONL nor JSON: {e}") from e
            raise ShapeError(f"{path}: one JSON object, not a JSON array (predictions.json) or JSONL (umi); "
                             + _closest(whole, tuple(SHAPE_KEYS)))  # fmt: skip
        body = [o for o in objs if not (isinstance(o, dict) and "umi_predictions" in o)]
        if not body:
            raise ShapeError(f"{path}: only a header line: 0 records to score")
        if not any(_matches(o, UMI) for o in body):
            raise ShapeError(f"{path}: JSONL, but no line has the keys of umi's prediction file; "
                             + _closest(body[0], (UMI, "alpha-umi predictions.json")))  # fmt: skip
        return _read_umi(path, lines)
    if not data.strip():
        raise ShapeError(f"{path}: empty file: 0 records to score")
    raise ShapeError(f"{path}: not JSON: expected a JSON array (the original predictions.json) or JSONL (umi's)")
