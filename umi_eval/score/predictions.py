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

Files are streamed (:func:`open_predictions`): only a regular file is opened (:func:`open_regular`),
JSONL is read a line at a time and a JSON array an item at a time (:func:`_array_items`), each bounded
by :data:`MAX_RECORD_BYTES`, so ``umieval score`` keeps one record in memory, not the file.
:func:`read_predictions` materialises a file for ``compare``.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import json
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from umi_cli.errors import UsageError
from umi_data.readers import bounded_io
from umi_data.readers.bounded_io import NotRegularFile, check_regular, kind_of
from umi_data.trajectory import Source
from umi_data.trajectory.findings import Problem, Reject
from umi_eval.score.metrics import parse

TRIO, SINGLE, UMI = "alpha-umi-trio", "alpha-umi-single", "umi"
ORIGINAL = "alpha-umi predictions.json"  # either original shape, before the references tell trio from single
HEADER_KEY = "umi_predictions"  # umi_eval.generate.predict.HEADER_KEY (not imported: generate pulls the backends in)
SHAPE_KEYS: dict[str, tuple[str, ...]] = {
    ORIGINAL: ("tools", "reference", "predictions"),
    UMI: ("id", "mode", "tools", "reference", "prediction"),
}
_MARKERS = ("Next: caller", "Next: conclusion", "Next: give up")
# the original single-model file may name its reference `target` (the step file's key)
_ALTERNATIVES: dict[tuple[str, str], tuple[str, ...]] = {(ORIGINAL, "reference"): ("target",)}


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
    rejects: list[Reject] = field(default_factory=list)
    items: int = 0  # records read (header excluded), scored or rejected
    stable_ids: bool = True  # ids name the same step in another file of the same steps
    header: dict[str, Any] | None = None  # umi's header line (its steps_digest names the steps)


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


def _reject(loaded: Loaded | Predictions, source: Source, reason: str, message: str) -> None:
    loaded.rejects.append(Reject(source, reason, message))


def _check(obj: dict[str, Any], ref_key: str, pred_key: str) -> Problem | None:
    """(reason, message) when a record cannot be scored, else None."""
    for key in (ref_key, pred_key):
        if key not in obj:
            return "missing_key", f"no {key!r} key"
        if not isinstance(obj[key], str):
            return "not_a_string", f"{key!r} is a JSON {type(obj[key]).__name__}, not a string"
    if not isinstance(obj.get("tools"), list):
        return "bad_tools", "'tools' is missing or not a list"
    return None


def invalid(record: Any, mode: str | None = None) -> Problem | None:
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


def _base_id(obj: dict[str, Any], i: int) -> tuple[str, str, bool]:
    """(step id before disambiguation, conversation, whether the id is stable across files)."""
    key = _conversation_key(obj)
    if key is None:
        return f"item-{i}", f"item-{i}", False
    group = _digest(key[0])
    return f"{group}#{key[1]}", group, True


def _disambiguated(bases: list[str | None], parsed_digest: dict[int, str]) -> list[str | None]:
    """Final step ids: steps that share a conversation key (two conversations with one instruction)
    are all named by their parsed reference too (``parsed_digest``), which a trio and a
    single-model file share (§2.8), so the names do not depend on file order; only steps identical
    in that too are numbered in file order. ``None`` marks an item that is not a record."""
    ids = [b if b is None or i not in parsed_digest else f"{b}~{parsed_digest[i]}" for i, b in enumerate(bases)]
    full = Counter(x for x in ids if x is not None)
    seen: Counter[str] = Counter()
    for i, x in enumerate(ids):
        if x is not None and full[x] > 1:
            seen[x] += 1
            ids[i] = f"{x}~{seen[x]}"
    return ids


# --- bounded, streaming reads ------------------------------------------------------------------------

MAX_RECORD_BYTES = 64 << 20  # one JSONL line or one item of a JSON array (a step record is KBs)
_CHUNK = 1 << 20


def _not_regular(path: str, mode: int) -> ShapeError:
    if stat.S_ISDIR(mode):
        return ShapeError(f"{path} is a directory, not a prediction file")
    return ShapeError(f"{path} is {kind_of(mode)}, not a regular file: not reading it (it could block or never end)")


def open_regular(path: str) -> BinaryIO:
    """Open a prediction file for reading, only if it is a regular file (symlinks followed):
    :func:`umi_data.readers.bounded_io.open_regular` (a FIFO, device or socket is refused without
    being opened, and checked again once opened), with every refusal a one-line :class:`ShapeError`."""
    try:
        check_regular(path)  # first on its own: what cannot be looked at is worded for prediction files
    except NotRegularFile as e:
        raise _not_regular(path, e.mode) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ShapeError(f"{path}: a symlink loop (too many levels of symbolic links)") from None
        if e.errno == errno.ENOENT:
            broken = " (a symlink whose target is missing)" if os.path.islink(path) else ""
            raise ShapeError(f"{path} does not exist{broken}") from None
        raise ShapeError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return bounded_io.open_regular(path, buffering=_CHUNK)
    except NotRegularFile as e:  # swapped for a FIFO or device since
        raise _not_regular(path, e.mode) from None


def _lines(f: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its end) for every line of ``f``, read one at a time; ``None``
    for a line over :data:`MAX_RECORD_BYTES`, which is skipped without being held in memory."""
    limit = MAX_RECORD_BYTES
    n = 0
    while line := f.readline(limit + 1):
        n += 1
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := f.readline(_CHUNK)) and not rest.endswith(b"\n"):
                pass
            yield n, None
            continue
        yield n, line.rstrip(b"\r\n")


def _too_long() -> str:
    return f"longer than {MAX_RECORD_BYTES:,} bytes (a step record is a few KB): skipped unread"


def _array_items(f: BinaryIO, path: str) -> Iterator[Any]:
    """The items of a JSON array file, one at a time, so memory holds one item, not the file.

    Python's ``json`` scanner finds where each item ends (``raw_decode`` on a sliding window of
    decoded text); the item itself is parsed by orjson, so what is accepted is exactly what
    ``orjson.loads`` of the whole file accepts (no NaN, no lone surrogates). Raises
    :class:`ShapeError` for invalid JSON, text that is not UTF-8, or an item over
    :data:`MAX_RECORD_BYTES` (counted in characters)."""
    limit = MAX_RECORD_BYTES
    decoder = codecs.getincrementaldecoder("utf-8")()
    scanner = json.JSONDecoder()
    buf, pos, eof, seen = "", 0, False, 0  # seen: characters dropped from the front of buf

    def more(n: int) -> None:
        nonlocal buf, pos, eof, seen
        data = f.read(n)
        eof = not data
        try:
            text = decoder.decode(data, final=eof)
        except UnicodeDecodeError as e:
            raise ShapeError(f"{path}: not valid UTF-8 ({e.reason})") from None
        if pos > _CHUNK:
            buf, seen, pos = buf[pos:], seen + pos, 0
        buf += text

    def skip_ws() -> None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf) or eof:
                return
            more(_CHUNK)

    def bad(what: str) -> ShapeError:
        return ShapeError(f"{path}: starts like a JSON array (predictions.json) but is not valid JSON: {what}")

    skip_ws()
    if buf[pos : pos + 1] != "[":
        raise bad("no '[' at the start")
    pos += 1
    first = True
    while True:
        skip_ws()
        if buf[pos : pos + 1] == "]":
            pos += 1
            skip_ws()
            if pos < len(buf):
                raise bad(f"extra data after the array (character {seen + pos})")
            return
        if not first:
            if buf[pos : pos + 1] != ",":
                raise bad(f"expected ',' or ']' at character {seen + pos}" if pos < len(buf) else "unexpected end")
            pos += 1
            skip_ws()
        first = False
        while True:
            try:
                end = scanner.raw_decode(buf, pos)[1]
            except json.JSONDecodeError as e:
                if eof:
                    raise bad(f"{e.msg} at character {seen + e.pos}") from None
                end = -1
            except RecursionError:
                raise bad(f"nesting too deep at character {seen + pos}") from None
            if end >= 0 and (end < len(buf) or eof):  # complete (a number at the window's end may go on)
                break
            if len(buf) - pos > limit:
                break
            more(max(_CHUNK, len(buf) - pos))  # doubling: a long item is rescanned log(n) times
        if end < 0 or end - pos > limit:
            raise ShapeError(f"{path}: the item of the JSON array at character {seen + pos} is longer than "
                             f"{limit:,} characters (a step record is a few KB); not reading the file")
        try:
            yield orjson.loads(buf[pos:end])
        except orjson.JSONDecodeError as e:
            raise bad(f"{e} (item at character {seen + pos})") from None
        pos = end


@dataclass(slots=True)
class Predictions:
    """A prediction file whose shape is known: its records stream from :meth:`records` (the file is
    read again on every call; memory holds one record), ``rejects`` and ``items`` are complete once
    they have been read. ``header`` is umi's header line (``None`` without one, and for the
    original files)."""

    path: str
    shape: str
    header: dict[str, Any] | None = None
    stable_ids: bool = True
    items: int = 0
    rejects: list[Reject] = field(default_factory=list)
    _mode: str = ""
    _ids: list[str | None] = field(default_factory=list)  # original files: each item's step id (None: a reject)
    _groups: list[str] = field(default_factory=list)  # and its conversation

    def records(self) -> Iterator[dict[str, Any]]:
        """The normalised records, in file order."""
        if self.shape == UMI:
            yield from self._umi_records()
        else:
            yield from self._original_records()

    def _umi_records(self) -> Iterator[dict[str, Any]]:
        self.rejects.clear()
        self.items = 0
        seen: set[str] = set()
        with open_regular(self.path) as f:
            for n, line in _lines(f):
                where = Source(UMI, self.path, line=n)
                source = where.where()
                if line is None:
                    self.items += 1
                    _reject(self, where, "too_large", f"the line is {_too_long()}")
                    continue
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    self.items += 1
                    _reject(self, where, "invalid_json", str(e))
                    continue
                if isinstance(obj, dict) and HEADER_KEY in obj:
                    continue  # the header line
                self.items += 1
                if not isinstance(obj, dict):
                    _reject(self, where, "not_an_object", f"line is a JSON {type(obj).__name__}")
                    continue
                problem = invalid(obj)
                if problem is None and obj["id"] in seen:
                    problem = ("duplicate_id", f"step {obj['id']!r} appears earlier in the file")
                if problem:
                    _reject(self, where, *problem)
                    continue
                seen.add(obj["id"])
                traj = obj.get("trajectory_id")
                yield {
                    "id": obj["id"], "trajectory_id": traj if isinstance(traj, str) else obj["id"].rsplit("#", 1)[0],
                    "mode": obj["mode"], "tools": obj["tools"], "reference": obj["reference"],
                    "prediction": obj["prediction"], "source": source,
                }

    def _items(self) -> Iterator[tuple[int, Any]]:
        with open_regular(self.path) as f:
            yield from enumerate(_array_items(f, self.path))

    def _original_records(self) -> Iterator[dict[str, Any]]:
        for i, obj in self._items():
            step_id = self._ids[i] if i < len(self._ids) else None
            if step_id is None or not isinstance(obj, dict):
                continue  # a reject (listed when the file was opened)
            ref_key = _ref_key(obj)
            yield {
                "id": step_id, "trajectory_id": self._groups[i], "mode": self._mode, "tools": obj["tools"],
                "reference": obj[ref_key], "prediction": obj["predictions"], "source": f"{self.path}[{i}]",
            }


def _ref_key(obj: dict[str, Any]) -> str:
    return "reference" if "reference" in obj or "target" not in obj else "target"


def _open_original(path: str) -> Predictions:
    """Both original predictions.json shapes, read item by item: a first pass finds the shape, the
    mode (by the references' markers), the rejects and each step's conversation key; a second,
    only when two conversations share an instruction, names those steps by their parsed reference."""
    pred = Predictions(path, TRIO)
    bases: list[str | None] = []
    refs = marked = 0
    first: Any = None
    matched = False
    for i, obj in pred._items():
        pred.items += 1
        if i == 0:
            first = obj
        matched = matched or _matches(obj, ORIGINAL)
        if not isinstance(obj, dict):
            _reject(pred, Source(ORIGINAL, path, index=i), "not_an_object", f"item is a JSON {type(obj).__name__}")
            bases.append(None)
            pred._groups.append("")
            continue
        ref = obj.get("reference", obj.get("target"))
        if isinstance(ref, str):
            refs += 1
            marked += any(m in ref for m in _MARKERS)
        problem = _check(obj, _ref_key(obj), "predictions")
        if problem:
            _reject(pred, Source(ORIGINAL, path, index=i), *problem)
            bases.append(None)
            pred._groups.append("")
            continue
        base, group, stable = _base_id(obj, i)
        pred.stable_ids &= stable
        bases.append(base)
        pred._groups.append(group)
        continue
    if not pred.items:
        raise ShapeError(f"{path}: the JSON array is empty: 0 records to score")
    if not matched:
        raise ShapeError(f"{path}: a JSON array, but no item has the keys of the original predictions.json; "
                         + _closest(first, (ORIGINAL, UMI)))
    trio = marked * 2 >= refs
    pred.shape, pred._mode = (TRIO, "trio") if trio else (SINGLE, "single")
    counts = Counter(b for b in bases if b is not None)
    shared = {i for i, b in enumerate(bases) if b is not None and counts[b] > 1}
    digests: dict[int, str] = {}
    if shared:
        for i, obj in pred._items():
            if i in shared:
                parsed = parse(obj[_ref_key(obj)], "trio" if trio else "single")
                digests[i] = _digest(repr(tuple(parsed.as_dict().values())), 8)
    pred._ids = _disambiguated(bases, digests)
    return pred


def _open_umi(path: str, f: BinaryIO) -> Predictions:
    """umi's JSONL: read up to the first line with umi's keys (usually the second); a file where no
    line has them is a :class:`ShapeError` that says what the lines are instead."""
    header: dict[str, Any] | None = None
    first_obj: Any = None
    objs = bad = 0
    first_bad = ""
    for n, line in _lines(f):
        if line is not None and not line.strip():
            continue
        try:
            if line is None:
                raise ValueError(f"the line is {_too_long()}")
            obj = orjson.loads(line)
        except (orjson.JSONDecodeError, ValueError) as e:
            bad += 1
            first_bad = first_bad or f"line {n}: {e}"
            continue
        if isinstance(obj, dict) and HEADER_KEY in obj:
            header = header or obj
            continue
        objs += 1
        first_obj = obj if objs == 1 else first_obj
        if _matches(obj, UMI):
            return Predictions(path, UMI, header=header)
    if objs:
        raise ShapeError(f"{path}: JSONL, but no line has the keys of umi's prediction file; "
                         + _closest(first_obj, (UMI, ORIGINAL)))
    if header is not None:
        if bad:
            raise ShapeError(f"{path}: a header line and {bad} line(s) that are not JSON ({first_bad}): "
                             "0 records to score")
        raise ShapeError(f"{path}: only a header line: 0 records to score")
    size = os.fstat(f.fileno()).st_size
    if size <= MAX_RECORD_BYTES:  # one JSON value over several lines? read it whole to say what it is
        f.seek(0)
        try:
            whole = orjson.loads(f.read(MAX_RECORD_BYTES + 1))
        except orjson.JSONDecodeError as e:
            raise ShapeError(f"{path}: neither JSONL nor JSON: {e}") from None
        raise ShapeError(f"{path}: one JSON object, not a JSON array (predictions.json) or JSONL (umi); "
                         + _closest(whole, tuple(SHAPE_KEYS)))
    raise ShapeError(f"{path}: neither JSONL nor JSON: no line is a JSON value ({first_bad})")


def open_predictions(path: str | Path) -> Predictions:
    """Detect a prediction file's shape (only a regular file is opened: :func:`open_regular`) and
    return it ready to stream. Raises :class:`ShapeError` when it is none of the shapes, holds no
    record, or cannot be read."""
    path = str(path)
    with open_regular(path) as f:
        head = b""
        while not head:
            block = f.read(_CHUNK)
            if not block:
                break
            head = block.lstrip()[:1]
        if head == b"{":
            f.seek(0)
            return _open_umi(path, f)
    if head == b"[":
        return _open_original(path)
    if not head:
        raise ShapeError(f"{path}: empty file: 0 records to score")
    raise ShapeError(f"{path}: not JSON: expected a JSON array (the original predictions.json) or JSONL (umi's)")


def read_predictions(path: str | Path) -> Loaded:
    """Read a whole prediction file of any of the three shapes into memory (``compare``; ``score``
    streams with :func:`open_predictions`). Raises :class:`ShapeError` when it is none of the
    shapes, holds no record, or cannot be read."""
    pred = open_predictions(path)
    records = list(pred.records())
    return Loaded(pred.path, pred.shape, records, pred.rejects, pred.items, pred.stable_ids, pred.header)
