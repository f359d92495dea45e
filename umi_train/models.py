"""Where ``--model`` comes from, checked before anything is loaded or downloaded.

Local paths are looked at first and a missing piece is named (no ``config.json``, no tokenizer);
a hub id is served from the local Hugging Face cache when it is there, and otherwise the hub is
probed once with a short timeout, so an offline machine fails in seconds with a hint instead of
spending a minute in download retries and ending on the hub's "Repo id must be …" message.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from umi_train import UserError

TINY = "tiny"
PROBE_TIMEOUT_S = 3.0
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
OFFLINE_HINT = (
    "pass a local model directory (saved with save_pretrained, or fetched where there is network with "
    "`huggingface-cli download NAME --local-dir DIR`), or `--model tiny` for the offline demo model"
)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now (huggingface_hub reads them at import)."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return False


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to the hub endpoint (``HF_ENDPOINT``); name lookup included, the whole
    probe is bounded by ``timeout`` (a thread: ``getaddrinfo`` itself has no timeout)."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "."))
        or "\\" in name
        or name.count("/") > 1
        or name.endswith("/")
        or not _HUB_ID.match(name)
    )


def check_local_dir(path: Path, name: str) -> None:
    """A model directory needs ``config.json``, weights and a tokenizer: name what is missing."""
    if not path.is_dir():
        raise UserError(f"--model {name}: {path} is a file; expected a model directory")
    present = {p.name for p in path.iterdir()}
    missing: list[str] = []
    if "config.json" not in present:
        missing.append("config.json")
    if not any(n.endswith((".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")) for n in present):
        missing.append("weights (*.safetensors)")
    if not present & set(TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json)")
    if missing:
        what = "is empty" if not present else "has no " + ", no ".join(missing)
        raise UserError(f"--model {name}: the directory {path} {what}; expected a saved transformers model")


def resolve_model(name: str) -> tuple[str, bool]:
    """``(path or hub id, local_files_only)`` for ``from_pretrained``; a clear ``UserError`` otherwise."""
    if name == TINY:
        return name, True
    path = Path(name).expanduser()
    if path.exists():
        check_local_dir(path, name)
        return str(path), True
    if _looks_like_path(name):
        parent = next((p for p in path.parents if p.exists()), None)
        first_missing = parent / path.relative_to(parent).parts[0] if parent is not None else path
        raise UserError(f"--model {name}: no such local directory ({first_missing} does not exist)")
    if _in_hub_cache(name):
        return name, True
    if hub_offline():
        raise UserError(
            f"--model {name}: not a local directory nor in the Hugging Face cache, and HF_HUB_OFFLINE is set; "
            + OFFLINE_HINT
        )
    if not hub_reachable():
        raise UserError(
            f"--model {name}: not a local directory nor in the Hugging Face cache, and the hub "
            f"({os.environ.get('HF_ENDPOINT') or 'huggingface.co'}) cannot be reached (tried for at most "
            f"{PROBE_TIMEOUT_S:.0f} s); {OFFLINE_HINT}; without network, set HF_HUB_OFFLINE=1 so the hub is never tried"
        )
    return name, False


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an invalid repo id for the cache layout: not cached
        return False
    return isinstance(found, str)


def model_key(name: str) -> str:
    """What identifies the starting weights for the skip decision: the hub id, or for a local
    directory its absolute path (however it was spelled: ``m``, ``./m``, ``/abs/m``) with its file
    names, sizes and modification times (a retrained stage-1 model changes it)."""
    path = Path(name).expanduser()
    if name == TINY or not path.is_dir():
        return name
    path = path.resolve()
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(path)}\x00{st.st_size}\x00{st.st_mtime_ns}\n".encode())
    return f"{path}@{h.hexdigest()[:16]}"
