"""Check a split's shards against its ``manifest.json`` before training on them.

``umidata split`` records, per role and split, the shard file names, the row count and (since
umi 0.2) each file's size and SHA-256. Training on whatever shards happen to be on disk would
silently train on less (a deleted shard) or on something else (a replaced or corrupt one), so
every mismatch is a :class:`UserError` naming the file. The digest over the role's shards is
also what decides whether a finished run may be skipped (``umi_train.runstate``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from umi_data.output.writers import sha256_file
from umi_train import UserError
from umi_train.data import SPLITS, role_shards

SPLIT_FORMAT = "umi.split/v1"
RESPLIT = "re-run `umidata split` (or restore the split as it was written)"


@dataclass
class DataCheck:
    """What was verified: the role's shard digest, the manifest's own digest, and notes."""

    digest: str  # SHA-256 over the role's train + dev shards (names and contents)
    manifest_sha256: str | None  # SHA-256 of manifest.json as a file; None without a manifest
    umi_version: str | None = None  # the umi that wrote the split
    rows: dict[str, int] = field(default_factory=dict)  # split -> rows checked against the manifest
    notes: list[str] = field(default_factory=list)


def parquet_rows(path: Path) -> int:
    """Rows in a shard, from its footer; a located :class:`UserError` when it is not Parquet."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as e:  # pyarrow: ArrowInvalid, OSError, …
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable Parquet file ({first}); {RESPLIT}") from None


def _load_manifest(data_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    path = data_dir / "manifest.json"
    if not path.is_file():
        return None, None
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); {RESPLIT}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object")
    return doc, hashlib.sha256(raw).hexdigest()


def verify_data(data_dir: Path, role: str) -> DataCheck:
    """Verify ``data_dir/<role>`` against ``data_dir/manifest.json``; return its digest.

    Refused (``UserError``): a shard the manifest lists that is missing, a shard it does not list,
    a size or SHA-256 that differs, a row count that differs, a file that is not Parquet.
    Without a manifest (data not written by ``umidata split``) the shards are hashed but not
    verified, and the run summary says so.
    """
    role_shards(data_dir, role, "train")  # the data dir and the role exist
    manifest, manifest_sha = _load_manifest(data_dir)
    check = DataCheck(digest="", manifest_sha256=manifest_sha)
    listed: dict[str, dict[str, Any]] | None = None
    if manifest is None:
        check.notes.append(f"no manifest.json in {data_dir}: its shards were not verified")
    elif manifest.get("format") != SPLIT_FORMAT:
        check.notes.append(f"{data_dir}/manifest.json is not a `umidata split` manifest: shards not verified")
    else:
        check.umi_version = manifest.get("umi_version")
        roles = manifest.get("roles") or {}
        if role not in roles:
            raise UserError(
                f"{data_dir}/manifest.json has no {role!r} role (the split wrote: {', '.join(roles) or 'none'})"
            )
        listed = roles[role]
    h = hashlib.sha256()
    for split in SPLITS:
        present = role_shards(data_dir, role, split)
        digests = {p.name: sha256_file(p) for p in present}
        if listed is not None:
            _compare(data_dir / role, split, listed.get(split) or {}, present, digests, check)
        else:
            for p in present:  # at least a Parquet footer, so a cut-off file is named here
                parquet_rows(p)
        for name in sorted(digests):
            h.update(f"{split}/{name}\x00{digests[name]}\n".encode())
    check.digest = h.hexdigest()
    return check


def _compare(
    role_dir: Path,
    split: str,
    entry: dict[str, Any],
    present: list[Path],
    digests: dict[str, str],
    check: DataCheck,
) -> None:
    files = list(entry.get("files") or [])
    on_disk = {p.name for p in present}
    missing = [f for f in files if f not in on_disk]
    if missing:
        raise UserError(
            f"{role_dir}: {len(missing)} of {len(files)} {split} shard(s) listed in manifest.json are missing "
            f"({', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}); {RESPLIT}"
        )
    extra = sorted(on_disk - set(files))
    if extra:
        raise UserError(
            f"{role_dir}: {split} shard(s) not listed in manifest.json: {', '.join(extra[:3])}"
            f"{' …' if len(extra) > 3 else ''}; {RESPLIT}"
        )
    sizes, shas = entry.get("bytes"), entry.get("sha256")
    for i, name in enumerate(files):
        path = role_dir / name
        if isinstance(sizes, list) and i < len(sizes) and path.stat().st_size != sizes[i]:
            raise UserError(
                f"{path}: {path.stat().st_size:,} bytes, manifest.json says {sizes[i]:,}: the shard was changed, "
                f"truncated or is corrupt; {RESPLIT}"
            )
        if isinstance(shas, list) and i < len(shas) and digests[name] != shas[i]:
            raise UserError(
                f"{path}: its SHA-256 differs from manifest.json: the shard was changed or is corrupt; {RESPLIT}"
            )
    rows = sum(parquet_rows(role_dir / name) for name in files)
    expected = entry.get("examples")
    if isinstance(expected, int) and rows != expected:
        raise UserError(
            f"{role_dir}: the {split} shards hold {rows:,} rows, manifest.json says {expected:,}; {RESPLIT}"
        )
    check.rows[split] = rows


@contextmanager
def located_read_errors(shards: list[Path]) -> Iterator[None]:
    """Turn a library's read error (pyarrow's ZSTD or footer error, raised through datasets or
    the tiny tokenizer's trainer, naming no file) into a :class:`UserError` naming the shard."""
    try:
        yield
    except UserError:
        raise
    except Exception:
        from umi_data.split.shards import unreadable_shard

        where = unreadable_shard(shards)
        if where is None:
            raise
        raise UserError(f"{where}; {RESPLIT}") from None
