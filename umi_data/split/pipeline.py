"""``umidata split``: inputs → canonical trajectories → role examples → Parquet shards.

Flow: the driver's steps (:mod:`umi_data.driver`), with rendering as the per-record work::

    expand(inputs) ──► shards of units ──► [worker] read + hash ─► judge ─► render roles ─► ShardResult
                                                                                    │ (in shard order)
    [main] dedupe (ids, content) ─► train/dev by trajectory hash ─► ShardWriter per role/split
           ─► rejects.jsonl, manifest.json, README.md ─► staging dir renamed onto OUTDIR

The worker is whatever executor ``--engine`` / ``--workers`` pick (in process, a local process
pool, Ray tasks, which ship their shard files back). Streaming: at most ``2 * workers`` shards are
in flight and shards are written row group by row group, so memory is bounded by those, not by the
corpus. Determinism: units are sorted, results are consumed in shard order whatever the executor,
and the train/dev assignment is a hash of (seed, trajectory id), so it is also independent of input
order. Atomicity: everything is written into a sibling staging directory that replaces OUTDIR only
once complete; an interrupted run leaves no OUTDIR behind (an OUTDIR URL on an object store: staged
locally, published manifest last, :func:`publish`).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shlex
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from umi_cli.errors import UsageError
from umi_data import __version__
from umi_data.driver import (
    Checked,
    Dedupe,
    EngineError,
    Executor,
    ReadSpec,
    failure,
    judge,
    make_executor,
    read_unit,
    reject_row,
)
from umi_data.driver import WorkerLost as _Lost
from umi_data.driver.progress import note
from umi_data.export.convert import UNREAD_REASONS
from umi_data.output.guard import UnsafeOutput, check_output, clean_stale, output_lock
from umi_data.output.writers import sha256_file
from umi_data.readers import (
    DEFAULT_READ,
    ReaderConfig,
    ReadOptions,
    Record,
    Unit,
    expand,
    urls,
)
from umi_data.render import chat
from umi_data.render.roles import ROLE_NAMES, SYSTEM_PROMPT_MODES, examples, prepare
from umi_data.render.templates import load_template
from umi_data.split.shards import CHAT_SCHEMA, EXAMPLE_SCHEMA, ShardWriter, drop_rows
from umi_data.trajectory import Source, record_id
from umi_data.trajectory.checks import fingerprint
from umi_data.trajectory.findings import Finding

SPLIT_FORMAT = "umi.split/v1"
SPLITS = ("train", "dev")
# What each role dataset is for (README card and `umidata stats`).
ROLE_PURPOSE = {
    "global": "GLPFT stage 1: one model plays every role (the original calls it backbone).",
    "planner": "Stage 2: writes the rationale and decides the next move (Next: caller / conclusion / give up).",
    "caller": "Stage 2: turns the planner's rationale into one exact API call (Action / Action Input).",
    "summarizer": "Stage 2: writes the final answer from the whole trajectory.",
}
EXPORT_NAMES = {"global": "backbone", "planner": "planner", "caller": "caller", "summarizer": "summarizer"}


class SplitError(UsageError):
    """A usage or I/O problem (exit code 2)."""


class WorkerLost(SplitError):
    """A worker process died (killed, out of memory): nothing is written (exit code 2)."""



@dataclass(frozen=True)
class SplitOptions:
    roles: tuple[str, ...] = ROLE_NAMES
    dev_ratio: float = 0.02
    seed: int = 0
    shard_size: int | None = None  # input units per shard; None: chosen from the corpus size
    template: str = "alpha-umi"
    format: str | None = None
    strict: bool = False
    export_glpft_json: bool = False
    exclude_ids: frozenset[str] = frozenset()
    granularity: str | None = None  # --template chat only: trajectory (default) or step
    system_prompt: str | None = None  # a record's own system prompt: ignore / prepend; None: by template
    workers: int = 1
    engine: str = "local"  # local: this machine's processes; ray: Ray tasks (--engine ray)
    ray_address: str | None = None  # --ray-address: a Ray cluster (default: a local Ray runtime)
    id_prefix: str = ""
    dataset_info: str | None = None  # --dataset-info: LLaMA-Factory ShareGPT tags per file name
    tools: str | None = None  # --tools: tool definitions for records that carry none
    max_record_bytes: int = DEFAULT_READ.max_record_bytes
    max_ratio: float = DEFAULT_READ.max_ratio
    allow_empty: bool = False

    def read_spec(self) -> ReadSpec:
        """The read step's configuration (``--id-prefix`` is applied there, once)."""
        return ReadSpec(self.format, self.read_options(), self.id_prefix, self.dataset_info, self.tools)

    def read_options(self) -> ReadOptions:
        """Duplicate JSON keys are looked for under --strict only (a warning then rejects): the
        check parses each input a second time, which ``split`` cannot afford on every run. The
        ``--dataset-info`` and ``--tools`` files are read here (once per split: the read spec,
        configuration included, is handed to every shard)."""
        return ReadOptions(self.max_record_bytes, self.max_ratio, duplicate_keys=self.strict,
                           config=ReaderConfig.load(self.dataset_info, self.tools))

    def system_mode(self) -> str:
        """``--system-prompt`` as given, else by template: ``ignore`` for α-UMi's text prompts
        (byte parity with the paper's), ``prepend`` for chat rows (the system message)."""
        return self.system_prompt or ("prepend" if self.template == chat.CHAT else "ignore")

    def manifest_view(self) -> dict[str, Any]:
        d = asdict(self)
        d["system_prompt"] = self.system_mode()
        d.pop("workers")  # never changes the output
        d.pop("ray_address")
        if self.engine == "local":
            d.pop("engine")  # the manifest names the engine only when it is not the default
        d.pop("allow_empty")
        if self.template == chat.CHAT:
            d["granularity"] = self.granularity or "trajectory"
        else:
            d.pop("granularity")  # α-UMi examples are always one per step
        d["roles"] = list(self.roles)
        ids = sorted(self.exclude_ids)
        d["exclude_ids"] = {"count": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()}
        return d


@dataclass
class RecordResult:
    """What a worker reports about one input record (small: rows go straight to disk)."""

    where: str
    source: Source
    trajectory_id: str | None = None
    fingerprint: str | None = None
    split: str = "train"
    warnings: list[str] = field(default_factory=list)
    reject: dict[str, Any] | None = None
    examples: dict[str, int] = field(default_factory=dict)  # role -> examples written


@dataclass
class ShardResult:
    index: int
    units: list[tuple[Unit, int, str]]  # (unit, bytes, sha256)
    records: list[RecordResult]
    files: dict[tuple[str, str], int]  # (role, split) -> rows in this shard's file
    exports: dict[tuple[str, str], list[tuple[str, str]]]  # keys of the lines of each fragment
    blobs: dict[str, bytes] = field(default_factory=dict)  # shipped shard files by path under OUTDIR (Ray)


def excluded_by(trajectory_id: str, source_format: str, exclude: frozenset[str]) -> str | None:
    """The listed id that excludes a trajectory: its own id, or, for ToolBench trajectories
    (``G1_answer/10_ChatGPT_DFS_woFilter_w2``), its query id ``10`` — ToolBench's
    ``test_query_ids/*.json`` list query ids, and the original stage-1 script drops every answer
    file whose name starts with one, in any group."""
    if not exclude:
        return None
    if trajectory_id in exclude:
        return trajectory_id
    if source_format != "toolbench":
        return None
    query = trajectory_id.rsplit("/", 1)[-1].split("_", 1)[0]
    return query if query != trajectory_id and query in exclude else None


def read_id_list(path: str) -> set[str]:
    """Ids from a JSON list, a JSON object's keys (ToolBench's ``test_query_ids/*.json``), or a
    text file with one id per line."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {line.strip() for line in text.splitlines() if line.strip()}
    if isinstance(data, dict | list):
        return {str(x) for x in data}
    raise SplitError(f"{path}: expected a JSON list or object of ids, or one id per line")


def is_dev(trajectory_id: str, seed: int, dev_ratio: float) -> bool:
    """Train/dev by a hash of (seed, trajectory id): stable whatever the input order."""
    h = hashlib.blake2b(f"{seed}\x00{trajectory_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < dev_ratio


def _part(stage: Path, role: str, split_name: str, k: int) -> Path:
    return stage / role / f".{split_name}-{k:05d}.part"


def _fragment(stage: Path, role: str, split_name: str, k: int) -> Path:
    return stage / "glpft-json" / f".{split_name}_{EXPORT_NAMES[role]}-{k:05d}.part"


class _ShardJob:
    """Renders and writes one shard: its units' records, every role, train and dev."""

    def __init__(self, k: int, stage: Path, opts: SplitOptions) -> None:
        self.k, self.stage, self.opts = k, stage, opts
        self.chat = opts.template == chat.CHAT
        self.template = None if self.chat else load_template(opts.template)
        self.schema = CHAT_SCHEMA if self.chat else EXAMPLE_SCHEMA
        self.writers: dict[tuple[str, str], ShardWriter] = {}
        self.fragments: dict[tuple[str, str], Any] = {}
        self.export_keys: dict[tuple[str, str], list[tuple[str, str]]] = {}

    def _writer(self, role: str, split_name: str) -> ShardWriter:
        w = self.writers.get((role, split_name))
        if w is None:
            w = self.writers[(role, split_name)] = ShardWriter(
                str(_part(self.stage, role, split_name, self.k)), schema=self.schema)
        return w

    def _export(self, role: str, split_name: str, key: tuple[str, str], blob: bytes) -> None:
        f = self.fragments.get((role, split_name))
        if f is None:
            path = _fragment(self.stage, role, split_name, self.k)
            f = self.fragments[(role, split_name)] = open(path, "wb")  # noqa: SIM115 - closed in finish()
            self.export_keys[(role, split_name)] = []
        f.write(blob + b"\n")
        self.export_keys[(role, split_name)].append(key)

    def record(self, rec: Record) -> RecordResult:
        """One record → its examples written, or its reject; a record too deep to render (or
        that trips a bug) is rejected alone and the run goes on."""
        try:
            return self._record(rec)
        except Exception as e:  # a located reject, so one record never aborts a 100k-file run
            finding = failure(e, rec.source, "render")
        res = RecordResult(rec.source.where(), rec.source)
        res.reject = reject_row(Checked(rec, [*rec.findings, finding], finding))
        return res

    def _record(self, rec: Record) -> RecordResult:
        res = RecordResult(rec.source.where(), rec.source)
        checked = judge(rec, self.opts.strict)
        traj = checked.trajectory
        if traj is None:
            res.reject = reject_row(checked)
            return res
        excluded = (excluded_by(traj.id, traj.source.format, self.opts.exclude_ids)
                    or excluded_by(record_id(traj), traj.source.format, self.opts.exclude_ids))  # a chat: all requests
        if excluded is not None:
            finding = Finding("excluded", f"{excluded!r} is in the --exclude-ids list", rec.source)
            res.reject = reject_row(Checked(rec, [*checked.findings, finding], finding))
            return res
        res.trajectory_id = traj.id
        res.fingerprint = fingerprint(traj)
        res.warnings = [f.code for f in checked.findings]
        # the requests of one chat share a split: a later one's history holds the earlier ones
        res.split = "dev" if is_dev(record_id(traj), self.opts.seed, self.opts.dev_ratio) else "train"
        mode = self.opts.system_mode()
        prepared = prepare(traj, "ignore" if self.chat else mode)
        key = (traj.id, res.where)
        rows: list[tuple[str, dict[str, Any], bytes | None]] = []  # rendered first: all or nothing
        for role in self.opts.roles:
            if self.template is None:  # chat rows (self.chat): no template
                res.examples[role] = len(rows)
                rows.extend((role, chat.row_dict(row, res.where), None)
                            for row in chat.rows(traj, role, prepared, self.opts.granularity or "trajectory", mode))
                res.examples[role] = len(rows) - res.examples[role]
                continue
            n = 0
            for ex in examples(traj, role, self.template, prepared):
                n += 1
                rows.append((role, {
                    "id": ex.id, "trajectory_id": ex.trajectory_id, "step": ex.step, "turn": ex.turn,
                    "role": ex.role, "prompt": ex.prompt, "completion": ex.completion,
                    "decision": ex.decision, "source": res.where,
                }, orjson.dumps({"tools": prepared.docs, "history": prepared.conv[: ex.turn],
                                 "input": ex.prompt, "target": ex.completion})
                    if self.opts.export_glpft_json else None))
            res.examples[role] = n
        for role, row, blob in rows:
            self._writer(role, res.split).add(row)
            if blob is not None:
                self._export(role, res.split, key, blob)
        return res

    def finish(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], list[tuple[str, str]]]]:
        for f in self.fragments.values():
            f.close()
        return {key: w.close() for key, w in self.writers.items()}, self.export_keys


def process_shard(k: int, units: list[Unit], stage: str, opts: SplitOptions, spec: ReadSpec) -> ShardResult:
    """Worker entry point: read, hash, check, render and write one shard (``spec``: how to read,
    its reader configuration loaded once, in the main process)."""
    # The work allocates millions of short-lived, acyclic objects that reference counting
    # frees; the cyclic collector's passes over them cost ~10 % and reclaim nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _process_shard(k, units, stage, opts, spec)
    finally:
        if gc_was_enabled:
            gc.enable()


def _process_shard(k: int, units: list[Unit], stage: str, opts: SplitOptions, spec: ReadSpec) -> ShardResult:
    if not stage:  # ship: the worker may be on another machine; its files travel back in the result
        with tempfile.TemporaryDirectory(prefix="umi-shard-") as tmp:
            root = Path(tmp)
            for d in (*opts.roles, "glpft-json"):
                (root / d).mkdir()
            res = _process_shard(k, units, tmp, opts, spec)
            res.blobs = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
            return res
    job = _ShardJob(k, Path(stage), opts)
    seen_units: list[tuple[Unit, int, str]] = []
    records: list[RecordResult] = []
    for unit in units:
        seen, recs = read_unit(unit, spec, digest=True)
        seen_units.append((unit, seen.size, seen.sha256))
        before = len(records)
        records.extend(job.record(r) for r in recs)
        if seen.size:
            note(seen.size, len(records) - before)
    files, exports = job.finish()
    return ShardResult(k, seen_units, records, files, exports)


def _measure(sr: ShardResult) -> tuple[int, int]:
    """(input bytes, records) of a shard, for progress where workers share no counter (Ray)."""
    return sum(size for _, size, _ in sr.units), len(sr.records)


def shard_units(n_units: int, shard_size: int | None) -> int:
    """Input units per shard: ``shard_size`` if given, else a function of the corpus size only
    (never of the worker count, so output bytes never depend on it): ~16 shards, 500–5,000
    units each."""
    if shard_size:
        return shard_size
    return max(500, min(5_000, -(-n_units // 16)))


def _ordered_shards(
    units: list[Unit], per_shard: int, stage: Path, opts: SplitOptions, tick: Callable[[int, int], None] | None,
    executor: Executor,
) -> Iterator[ShardResult]:
    """Shard results in shard order, from whichever executor runs :func:`process_shard`; on Ray the
    workers ship their shard files back (they may run on other machines) and they are written here."""
    groups = [units[i : i + per_shard] for i in range(0, len(units), per_shard)]
    where = "" if executor.name == "ray" else str(stage)
    spec = opts.read_spec()  # the --dataset-info / --tools files read once; the spec travels to every shard
    try:
        tasks = [(k, g, where, opts, spec) for k, g in enumerate(groups)]
        for sr in executor.map(process_shard, tasks, tick, _measure):
            for rel, data in sr.blobs.items():
                (stage / rel).write_bytes(data)
            sr.blobs = {}
            yield sr
    except EngineError as e:
        raise SplitError(str(e)) from e
    except _Lost as e:
        raise WorkerLost("a worker process died (killed, or out of memory?) while splitting; "
                         "nothing was written — rerun, with fewer --workers if memory is short") from e


@dataclass
class SplitSummary:
    outdir: str
    records: int
    accepted: int
    rejected: int
    rejected_by_reason: dict[str, int]
    warnings_by_code: dict[str, int]
    roles: dict[str, dict[str, dict[str, int]]]
    seconds: float
    input_bytes: int
    output_bytes: int  # bytes of the role datasets written (shards, glpft-json)


def split(
    inputs: list[str],
    outdir: str,
    opts: SplitOptions,
    overwrite: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
) -> SplitSummary:
    """Run the whole split; ``progress(done_bytes, total_bytes, records)`` is called as work
    advances.
    Raises :class:`SplitError` for usage and I/O problems."""
    start = time.perf_counter()
    unknown = sorted(set(opts.roles) - set(ROLE_NAMES))
    if unknown:
        raise SplitError(f"unknown role(s) {', '.join(unknown)}; choose from {', '.join(ROLE_NAMES)}")
    if not 0.0 <= opts.dev_ratio < 1.0:
        raise SplitError(f"--dev-ratio must be in [0, 1), got {opts.dev_ratio}")
    _check_chat_options(opts)
    try:
        make_executor(opts.engine, opts.workers, opts.ray_address)  # Ray missing: one line, before any work
    except EngineError as e:
        raise SplitError(str(e)) from e
    try:
        if opts.template != chat.CHAT:
            load_template(opts.template)
    except (OSError, ValueError) as e:
        raise SplitError(f"cannot load template {opts.template!r}: {e}") from e
    missing = [p for p in inputs if not urls.exists(p)]
    if missing:
        raise SplitError(f"input not found: {', '.join(missing)}")
    local = urls.local_path(outdir)
    if local is None:  # an object store, HDFS …: staged here, then published manifest-last
        return _split_to_url(inputs, outdir, opts, overwrite, progress, start)
    outdir = local  # a path, or a file:// URL: the local guarantees (lock, atomic rename) hold
    out = Path(outdir)
    local_inputs = [lp for p in inputs if (lp := urls.local_path(p)) is not None]
    try:
        check_output(out, local_inputs)
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
            raise SplitError(f"{outdir} exists and is not empty; pass --overwrite to replace it")
        out.parent.mkdir(parents=True, exist_ok=True)
        with output_lock(out):
            clean_stale(out.parent, out.name)  # what killed runs on this OUTDIR left behind
            return _split_locked(inputs, out, opts, progress, start, local_inputs)
    except UnsafeOutput as e:
        raise SplitError(str(e)) from e
    except OSError as e:
        raise SplitError(f"cannot write {outdir}: {_os_reason(e)}") from e


def _os_reason(e: OSError) -> str:
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return (e.strerror or str(e)) + (f" ({', '.join(paths)})" if paths else "")


def _split_locked(
    inputs: list[str], out: Path, opts: SplitOptions, progress: Callable[[int, int, int], None] | None, start: float,
    local_inputs: list[str], name: str | None = None,
) -> SplitSummary:
    """The split into ``out`` (a local directory); ``name``: how the card names OUTDIR (a URL)."""
    units_by_input = [(p, expand([p])) for p in inputs]
    units = [u for _, us in units_by_input for u in us]
    if out.exists():  # replacing it must not delete anything read, symlinks followed
        files = (lp for u in units if (lp := urls.local_path(u.path)) is not None)
        check_output(out, local_inputs, files)
    total = sum(u.size for u in units)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
    except OSError as e:
        raise SplitError(f"cannot create {out}: {_os_reason(e)}") from e
    try:
        tick = (lambda done, n: progress(done, total, n)) if progress else None
        summary = _write_split(units_by_input, units, total, stage, opts, tick, outdir=name or str(out))
        unread = sum(n for r, n in summary.rejected_by_reason.items() if r in UNREAD_REASONS)
        if summary.records == unread and not opts.allow_empty:
            raise SplitError(f"no record could be read from the inputs ({summary.records} input path(s) unreadable: "
                             f"{_first_rejects(stage)}); nothing was written (--allow-empty writes an empty split)")
        _commit(stage, out)
    except OSError as e:
        shutil.rmtree(stage, ignore_errors=True)
        raise SplitError(f"cannot write {out}: {_os_reason(e)}") from e
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    summary.outdir = str(out)
    summary.seconds = time.perf_counter() - start
    return summary


def _split_to_url(
    inputs: list[str], url: str, opts: SplitOptions, overwrite: bool,
    progress: Callable[[int, int, int], None] | None, start: float,
) -> SplitSummary:
    """OUTDIR on a filesystem without atomic rename or locks (an object store): the split is
    staged in a local temporary directory, then published with ``manifest.json`` last."""
    try:
        fs, root = urls.filesystem(url)
        root = root.rstrip("/")
        for p in inputs:  # the guard of local paths, by path on the same filesystem
            if urls.overlaps(url, p):
                raise SplitError(f"output {url} is, holds or lies inside the input {p}; choose another output")
        existing = bool(fs.exists(root)) and (not fs.isdir(root) or bool(fs.ls(root)))
    except OSError as e:
        raise SplitError(f"cannot use {url}: {_os_reason(e)}") from e
    if existing and not overwrite:
        raise SplitError(f"{url} exists and is not empty; pass --overwrite to replace it")
    with tempfile.TemporaryDirectory(prefix="umi-split-") as tmp:
        summary = _split_locked(inputs, Path(tmp) / "out", opts, progress, start, [], name=url)
        try:
            publish(Path(tmp) / "out", fs, root, existing)
        except OSError as e:
            raise SplitError(f"cannot write {url}: {_os_reason(e)} (no manifest.json was written: the copy there "
                             "is incomplete; rerun with --overwrite)") from e
    summary.outdir = url
    summary.seconds = time.perf_counter() - start
    return summary


def publish(stage: Path, fs: Any, root: str, replace: bool) -> None:
    """Copy a finished split to ``root`` on ``fs``: the old ``manifest.json`` is removed first and
    the new one written last, so a manifest there always describes complete files (its sizes and
    digests let ``umitrain`` check them); an interrupted copy leaves no manifest."""
    manifest = f"{root}/manifest.json"
    if replace:
        if fs.exists(manifest):
            fs.rm(manifest)
        fs.rm(root, recursive=True)
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    for p in files:
        rel = p.relative_to(stage).as_posix()
        if rel != "manifest.json":
            fs.makedirs(f"{root}/{rel}".rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(str(p), f"{root}/{rel}")
    fs.put_file(str(stage / "manifest.json"), manifest)


def _first_rejects(stage: Path, n: int = 3) -> str:
    """The first rejects, one phrase each, for a message."""
    parts = []
    with contextlib.suppress(OSError), open(stage / "rejects.jsonl", "rb") as f:
        for line, _ in zip(f, range(n), strict=False):
            r = orjson.loads(line)
            src = r["source"]
            where = src["file"] + (f"!{src['member']}" if src.get("member") else "")
            parts.append(f"{where}: [{r['reason']}] {r['message']}")
    return "; ".join(parts) or "no input"


def _check_chat_options(opts: SplitOptions) -> None:
    if opts.system_prompt not in (None, *SYSTEM_PROMPT_MODES):
        raise SplitError(f"--system-prompt must be one of {', '.join(SYSTEM_PROMPT_MODES)}, got {opts.system_prompt!r}")
    if opts.template == chat.CHAT:
        if opts.granularity not in (None, *chat.GRANULARITIES):
            raise SplitError(f"--granularity must be one of {', '.join(chat.GRANULARITIES)}, got {opts.granularity!r}")
        if opts.export_glpft_json:
            raise SplitError("--export glpft-json writes α-UMi prompts; it needs the alpha-umi template, not chat")
    elif opts.granularity is not None:
        raise SplitError("--granularity applies to --template chat only (α-UMi examples are one per step)")


def _commit(stage: Path, out: Path) -> None:
    """Replace ``out`` by the complete ``stage`` directory (rename is atomic on one filesystem)."""
    if out.exists():
        trash = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, trash)
        os.replace(stage, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(stage, out)


def _input_entry(path: str, units: list[tuple[Unit, int, str]]) -> dict[str, Any]:
    h = hashlib.sha256()
    for unit, _size, digest in units:
        h.update(f"{unit.path}\x00{unit.member or ''}\x00{digest}\n".encode())
    return {"path": path, "files": len(units), "bytes": sum(s for _, s, _ in units), "sha256": h.hexdigest()}


@dataclass
class _Tally:
    """What the shard results add up to: counts for the summary and manifest, and what
    :func:`_name_shards` needs (each shard's files and exports, the late duplicates to drop)."""

    records: int = 0
    accepted: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    trajs: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples_n: Counter[tuple[str, str]] = field(default_factory=Counter)
    unit_info: dict[Unit, tuple[Unit, int, str]] = field(default_factory=dict)
    shard_files: list[dict[tuple[str, str], int]] = field(default_factory=list)
    shard_exports: list[dict[tuple[str, str], list[tuple[str, str]]]] = field(default_factory=list)
    drop: dict[int, set[tuple[str, str]]] = field(default_factory=dict)


def _write_split(
    units_by_input: list[tuple[str, list[Unit]]],
    units: list[Unit],
    total: int,
    stage: Path,
    opts: SplitOptions,
    tick: Callable[[int, int], None] | None,
    outdir: str = "OUTDIR",
) -> SplitSummary:
    for role in opts.roles:
        (stage / role).mkdir()
    if opts.export_glpft_json:
        (stage / "glpft-json").mkdir()
    with open(stage / "rejects.jsonl", "wb") as rejects:
        shards = _ordered_shards(units, shard_units(len(units), opts.shard_size), stage, opts, tick,
                                 make_executor(opts.engine, opts.workers, opts.ray_address))
        t = _consume(shards, rejects)
    roles = _name_shards(stage, opts, t.shard_files, t.shard_exports, t.drop)
    for role, sd in roles.items():
        for s, d in sd.items():
            d["examples"], d["trajectories"] = t.examples_n[(role, s)], t.trajs[(role, s)]
    summary = SplitSummary(
        outdir="", records=t.records, accepted=t.accepted, rejected=t.records - t.accepted,
        rejected_by_reason=dict(sorted(t.reasons.items())), warnings_by_code=dict(sorted(t.warnings.items())),
        roles={r: {s: {k: d[k] for k in ("examples", "trajectories")} for s, d in sd.items()}
               for r, sd in roles.items()},
        seconds=0.0, input_bytes=total, output_bytes=0,
    )
    manifest = _manifest(units_by_input, opts, t, summary, roles)
    (stage / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    (stage / "README.md").write_text(dataset_card(manifest, outdir), encoding="utf-8")
    # the datasets written (shards, glpft-json), not the rejects ledger or the card
    datasets_dirs = [stage / r for r in opts.roles] + [stage / "glpft-json"]
    summary.output_bytes = sum(p.stat().st_size for d in datasets_dirs for p in d.rglob("*") if p.is_file())
    return summary


def _consume(shards: Iterable[ShardResult], rejects: BinaryIO) -> _Tally:
    """Take the shard results in shard order: dedupe across shards (a later duplicate becomes a
    reject and is marked for dropping from its shard), write every reject line, count the rest."""
    t = _Tally()
    dedupe = Dedupe()
    for sr in shards:
        t.unit_info.update({u[0]: u for u in sr.units})
        t.shard_files.append(sr.files)
        t.shard_exports.append(sr.exports)
        for res in sr.records:
            t.records += 1
            if res.reject is None:
                tid, fp = res.trajectory_id or "", res.fingerprint or ""
                dups = dedupe(tid, fp, res.source)
                if dups:
                    res.reject = reject_row(Checked(Record(res.source, None), dups, dups[0]))
                    t.drop.setdefault(sr.index, set()).add((tid, res.where))
            if res.reject is not None:
                t.reasons[res.reject["reason"]] += 1
                rejects.write(orjson.dumps(res.reject) + b"\n")
                continue
            t.accepted += 1
            t.warnings.update(res.warnings)
            for role, n in res.examples.items():
                if n:
                    t.trajs[(role, res.split)] += 1
                    t.examples_n[(role, res.split)] += n
    return t


def _manifest(units_by_input: list[tuple[str, list[Unit]]], opts: SplitOptions, t: _Tally, summary: SplitSummary,
              roles: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """``manifest.json``: format, version, template, options, inputs with their digests, counts,
    the per-role files, and the schemas of what was written."""
    return {
        "format": SPLIT_FORMAT,
        "umi_version": __version__,
        "template": opts.template,
        "options": opts.manifest_view(),
        "inputs": [_input_entry(p, [t.unit_info[u] for u in us]) for p, us in units_by_input],
        "counts": {
            "records": t.records, "accepted": t.accepted, "rejected": t.records - t.accepted,
            "rejected_by_reason": summary.rejected_by_reason, "warnings_by_code": summary.warnings_by_code,
        },
        "roles": roles,
        "rejects": "rejects.jsonl",
        "schemas": {
            "example": "https://umi.dev/schemas/"
            + ("chat-example.schema.json" if opts.template == chat.CHAT else "role-example.schema.json"),
            "trajectory": "https://umi.dev/schemas/trajectory.schema.json",
            "manifest": "https://umi.dev/schemas/manifest.schema.json",
        },
    }


def _name_shards(
    stage: Path,
    opts: SplitOptions,
    shard_files: list[dict[tuple[str, str], int]],
    shard_exports: list[dict[tuple[str, str], list[tuple[str, str]]]],
    drop: dict[int, set[tuple[str, str]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Drop late duplicates from their shards, give non-empty shards their final names and
    join the glpft-json fragments; returns the per-role file lists."""
    roles: dict[str, dict[str, dict[str, Any]]] = {}
    for role in opts.roles:
        for s in SPLITS:
            parts = []
            for k, files in enumerate(shard_files):
                if not files.get((role, s)):
                    continue
                path = _part(stage, role, s, k)
                if k in drop and drop_rows(str(path), drop[k]) == 0:
                    continue
                parts.append(path)
            names = [f"{s}-{i:05d}-of-{len(parts):05d}.parquet" for i in range(len(parts))]
            for path, name in zip(parts, names, strict=True):
                os.replace(path, stage / role / name)
            # sizes and digests let `umitrain` refuse a split with a missing, changed or corrupt shard
            roles.setdefault(role, {})[s] = {
                "files": names,
                "bytes": [(stage / role / n).stat().st_size for n in names],
                "sha256": [sha256_file(stage / role / n) for n in names],
            }
            if opts.export_glpft_json:
                _join_export(stage, role, s, shard_exports, drop)
    return roles


def _join_export(
    stage: Path, role: str, s: str,
    shard_exports: list[dict[tuple[str, str], list[tuple[str, str]]]],
    drop: dict[int, set[tuple[str, str]]],
) -> None:
    """One JSON list per role and split, in the original α-UMi trainer's shape."""
    first = True
    out_path = stage / "glpft-json" / f"{s}_{EXPORT_NAMES[role]}.json"
    with open(out_path, "wb") as out:
        out.write(b"[")
        for k, exports in enumerate(shard_exports):
            keys = exports.get((role, s))
            if not keys:
                continue
            frag = _fragment(stage, role, s, k)
            with open(frag, "rb") as f:
                for key, line in zip(keys, f, strict=True):
                    if key in drop.get(k, ()):
                        continue
                    out.write(b"\n" if first else b",\n")
                    out.write(line.rstrip(b"\n"))
                    first = False
            frag.unlink()
        out.write(b"\n]\n")


def _engine_flag(manifest: dict[str, Any]) -> str:
    engine = manifest["options"].get("engine", "local")
    return "" if engine == "local" else f" --engine {engine}"


def dataset_card(manifest: dict[str, Any], outdir: str = "OUTDIR") -> str:
    """The OUTDIR/README.md: what each role dataset is for, counts, template, how to load it.

    The loading snippet names OUTDIR as the user gave it, so it can be pasted as is."""
    first = "planner" if "planner" in manifest["roles"] else next(iter(manifest["roles"]), "planner")
    role_dir = json.dumps(Path(outdir, first).as_posix(), ensure_ascii=False)
    lines = [
        "# α-UMi role datasets (umi)",
        "",
        f"Written by `umidata split{_engine_flag(manifest)}` (umi {manifest['umi_version']}), "
        f"template `{manifest['template']}`, "
        f"dev ratio {manifest['options']['dev_ratio']} by trajectory (seed {manifest['options']['seed']}).",
        "",
        f"Records read: {manifest['counts']['records']} = {manifest['counts']['accepted']} accepted "
        f"+ {manifest['counts']['rejected']} rejected (see `rejects.jsonl`).",
        "",
        "| role | purpose | train examples | dev examples | train trajectories | dev trajectories |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for role, sd in manifest["roles"].items():
        lines.append(
            f"| `{role}` | {ROLE_PURPOSE[role]} | {sd['train']['examples']} | {sd['dev']['examples']} "
            f"| {sd['train']['trajectories']} | {sd['dev']['trajectories']} |"
        )
    if manifest["template"] == chat.CHAT:
        lines += ["", *chat.CARD_ROWS.format(granularity=manifest["options"]["granularity"]).splitlines()]
    else:
        lines += [
            "",
            "Each row: `id`, `trajectory_id`, `step` (the planner turn it belongs to), `turn`, `role`, "
            "`prompt` (the model input, role cue included), `completion` (the target; append EOS when "
            "training), `decision` (call / conclude / give_up), `source` (input file and record).",
        ]
    lines += [
        "",
        "Load a role with 🤗 datasets (`dev` files become the `validation` split):",
        "",
        "```python",
        "from datasets import load_dataset",
        f'{first} = load_dataset("parquet", data_dir={role_dir})',
        "```",
        "",
        f"or train it with `umitrain train --data {shlex.quote(outdir)} --role {first} --model PATH -o RUN`.",
        f"Schemas: `schemas/{manifest['schemas']['example'].rsplit('/', 1)[-1]}`, "
        "`schemas/manifest.schema.json` in the umi repository.",
        "",
    ]
    return "\n".join(lines)
