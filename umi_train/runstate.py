"""A run directory's state: what it was trained from, whether it may be skipped or resumed.

``RUNDIR/run.json`` records the run's identity when it starts — the data digest
(``umi_train.verify``), the model and every option that changes the result. A re-run into the
same directory skips a finished run, or resumes an interrupted one, only when that identity is
unchanged; otherwise it refuses (exit 2) unless ``--overwrite``. Checkpoints written by a run
that was killed mid-save are skipped on resume, with a message.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from umi_data.output.writers import write_atomic
from umi_train import UserError

log = logging.getLogger("umi_train")

RUN_FILE = "run.json"
TRAINER_STATE = "trainer_state.json"
# Options that do not change the trained weights: a re-run may differ in them and still skip.
NOT_IDENTITY = frozenset(
    {
        "data",
        "output_dir",
        "model",
        "resume",
        "quiet",
        "num_proc",
        "report_to",
        "run_name",
        "logging_steps",
        "save_steps",
        "save_total_limit",
        "overwrite",
        "trust_remote_code",
        "callbacks",
    }
)


def write_json_atomic(path: Path, data: Any) -> None:
    """A run directory's JSON (``indent=2``), atomically (:func:`umi_data.output.writers.write_atomic`):
    a kill leaves the old file or the new one."""
    write_atomic(path, json.dumps(data, indent=2))


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """A directory written whole or not at all: the body fills a sibling ``.NAME.partial-PID``,
    which then replaces ``path`` (an older one is removed first). A kill leaves either nothing or a
    whole directory at ``path`` (plus a partial one the next run removes, see ``clean_stale``)."""
    from umi_data.output.guard import clean_stale

    clean_stale(path.parent, path.name)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def safetensors_complete(path: Path) -> bool:
    """Whether a ``.safetensors`` file holds every byte its header promises (a save cut off by a
    kill leaves a shorter file, which fails only later, when the model is loaded)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                return False
            n = int.from_bytes(head, "little")
            if n > min(size - 8, 100 << 20):
                return False
            header = json.loads(f.read(n))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        return size == 8 + n + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def identity(data_digest: str, model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The part of ``run.json`` that must match for a skip or a resume (JSON-normalised)."""
    opts = {k: v for k, v in sorted(options.items()) if k not in NOT_IDENTITY}
    return json.loads(json.dumps({"data_digest": data_digest, "model": model, "options": opts}, default=str))


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two identities, e.g. ``lr 1e-05 -> 2e-05``."""
    out: list[str] = []
    if old.get("data_digest") != new.get("data_digest"):
        out.append("data (the shards' SHA-256 differs)")
    if old.get("model") != new.get("model"):
        out.append(f"model {old.get('model')} -> {new.get('model')}")
    a, b = old.get("options") or {}, new.get("options") or {}
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            out.append(f"{key} {a.get(key, '(unset)')} -> {b.get(key, '(unset)')}")
    return out


def clear_run(out: Path, names: tuple[str, ...]) -> None:
    """Remove what a previous run wrote (never the directory itself, nor anything else in it)."""
    for name in names:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)


def decide(out: Path, ident: dict[str, Any], finished: bool, has_checkpoints: bool, overwrite: bool) -> str:
    """``"skip"`` (finished, same identity), ``"resume"`` / ``"fresh"``, or ``"clear"`` (``--overwrite``
    over a different run). A different run without ``--overwrite`` is a :class:`UserError`.

    A run stopped before its first checkpoint has nothing worth keeping but what it built on the
    way (the tiny model + tokenizer in ``init/``, built from its data): it starts ``"fresh"`` over
    them only for the same identity, and is ``"clear"``-ed first otherwise (or without a
    ``run.json`` to tell), so a new run never trains on another run's leftovers."""
    previous = read_json(out / RUN_FILE)
    old = (previous or {}).get("identity")
    if not finished and not has_checkpoints:
        return "fresh" if old == ident else "clear"
    if old == ident:
        return "skip" if finished else "resume"
    if overwrite:
        return "clear"
    what = "a finished run" if finished else "an interrupted run"
    why = "; ".join(differences(old, ident)) if old else f"it has no {RUN_FILE} (written by an older umi)"
    raise UserError(
        f"{out} holds {what} with different inputs ({why}); pass --overwrite to replace it, or choose another -o"
    )


def complete_checkpoint(path: Path) -> bool:
    """The Trainer writes ``trainer_state.json`` last: a checkpoint without a readable one was cut off."""
    state = read_json(path / TRAINER_STATE)
    return state is not None and "global_step" in state


def last_complete_checkpoint(root: Path, main_process: bool = True) -> str | None:
    """The newest complete ``checkpoint-N`` under ``root``; incomplete newer ones are removed
    (by the main process only) with a message, so the Trainer never picks them up."""
    if not root.is_dir():
        return None
    found = []
    for p in root.iterdir():
        step = p.name.removeprefix("checkpoint-")
        if p.is_dir() and p.name.startswith("checkpoint-") and step.isdigit():
            found.append((int(step), p))
    for _, path in sorted(found, reverse=True):
        if complete_checkpoint(path):
            return str(path)
        log.warning(
            "%s is incomplete (no readable %s: the run was stopped while writing it); skipping it%s",
            path,
            TRAINER_STATE,
            " and removing it" if main_process else "",
        )
        if main_process:
            shutil.rmtree(path, ignore_errors=True)
    return None
