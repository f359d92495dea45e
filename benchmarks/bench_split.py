"""Benchmark ``umidata split`` against the parse floor and the reference preprocessing's figures.

    python benchmarks/bench_split.py --files 3000 30000 [--workers N] [--repeat 3] [--profile]
    python benchmarks/bench_split.py --files 30000 150000 --engines local ray   # both engines, one table

For every corpus size (built or reused by ``benchmarks/corpus.py`` under ``benchmarks/corpus/N``):

1. warm-up: read every input file once, so the page cache is warm for both measurements;
2. parse floor: read + ``orjson.loads`` of every input file, one core, in this process; best of
   ``--repeat``;
3. ``umidata split CORPUS -o benchmarks/out/N --overwrite --quiet`` as a subprocess, ``--repeat``
   times: wall time (``time.perf_counter``), peak RSS of the process tree (psutil, sampled every
   ~20 ms, RSS of the split process and all its descendants summed) and the largest single
   process's peak RSS (``ru_maxrss`` from ``os.wait4`` on the split process: the kernel's exact
   high-water mark of the split process and every descendant it reaped, which is what
   ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` reads in a fresh wrapper process);
4. bytes written under the output folder, and the counts of ``OUT/manifest.json``.

``--engines local ray`` runs step 3 once per engine (``--engine ray``: a local Ray runtime that the
split starts and stops, its start-up included in the wall time) on the same corpus and floor, and
checks that both manifests hold the same counts; the table then has one row per corpus and engine
(``benchmarks/results/split-engines.{json,md}``, so the local engine's ``split.*`` stay as they are).

Results go to ``benchmarks/results/split.json`` and, as a Markdown table next to the reference
figures of ``../shared/docs/reference-figures.md``, to stdout and ``benchmarks/results/split.md``.
``--profile`` also runs the split once (``--workers 1``) under ``python -m cProfile`` on the
smallest corpus, writes ``benchmarks/results/split.prof`` and prints the top entries.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import platform
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from corpus import build_corpus, corpus_files  # noqa: E402

MB = 1e6
KIB = 1 if sys.platform == "darwin" else 1024  # unit of ru_maxrss: KiB on Linux, bytes on macOS
POLL_S = 0.02
# ../shared/docs/reference-figures.md: the original α-UMi preprocessing on the same kind of corpus
# (2 cores, 24 GiB, CPython 3.11). Output is JSON there, Parquet here.
REFERENCE = {
    3000: {"input_bytes": 279e6, "trajectories": 2600, "wall_s": 5.6, "peak_mb": 102,
           "output_bytes": 327e6, "parse_floor_s": 0.20},
    30000: {"input_bytes": 2.8e9, "trajectories": 26000, "wall_s": 61.5, "peak_mb": 910,
            "output_bytes": 3.2e9, "parse_floor_s": 2.08},
}


def umidata_exe() -> str:
    """The ``umidata`` console script installed next to the running interpreter."""
    exe = Path(sys.executable).parent / "umidata"
    if not exe.exists():
        raise SystemExit(f"no umidata next to {sys.executable}: install the project (pip install -e .)")
    return str(exe)


def has_split(exe: str) -> bool:
    """Whether ``umidata --help`` lists a ``split`` command."""
    try:
        r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and re.search(r"^\s+split(\s|$)", r.stdout, re.MULTILINE) is not None


def machine() -> dict:
    vm = psutil.virtual_memory()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    return {
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(vm.total / 2**30, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "orjson": orjson.__version__,
        "git_commit": commit,
    }


# ---------------------------------------------------------------------------------------------
# measurements


def read_all(files: list[Path]) -> int:
    n = 0
    for p in files:
        with open(p, "rb") as f:
            n += len(f.read())
    return n


def parse_floor(files: list[Path]) -> float:
    """Seconds to read + ``orjson.loads`` every file once, one core, in this process."""
    loads = orjson.loads
    t0 = time.perf_counter()
    for p in files:
        with open(p, "rb") as f:
            loads(f.read())
    return time.perf_counter() - t0


def wait_idle(max_s: float, below: float = 0.5) -> None:
    """Wait up to ``max_s`` seconds for the 1-minute load average to drop under ``below``."""
    t0 = time.monotonic()
    while os.getloadavg()[0] >= below and time.monotonic() - t0 < max_s:
        time.sleep(2)
    load = os.getloadavg()[0]
    if load >= below:
        log(f"warning: load average {load:.2f}: other work on the machine will inflate the wall times")


def tree_rss(proc: psutil.Process) -> int:
    """RSS of ``proc`` and all its descendants, summed (processes that vanish meanwhile count 0)."""
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_measured(cmd: list[str], poll_s: float = POLL_S, **popen_kw) -> dict:
    """Run ``cmd``; return rc, wall_s, peak_rss_tree_mb (psutil sampling) and peak_rss_max_process_mb.

    The process is reaped with ``os.wait4`` so its rusage is its own: ``ru_maxrss`` is the largest
    peak RSS of the process and of every descendant it waited for (workers of a pool included), the
    per-run value of ``getrusage(RUSAGE_CHILDREN).ru_maxrss``. The tree figure sums RSS over the
    live process tree every ``poll_s``: it sees workers that are not reaped, but may miss a spike
    shorter than the poll interval and counts pages shared between forked processes once per process.
    """
    t0 = time.perf_counter()
    popen = subprocess.Popen(cmd, **popen_kw)
    try:
        proc = psutil.Process(popen.pid)
    except psutil.Error:
        proc = None
    peak = 0
    while True:
        pid, status, ru = os.wait4(popen.pid, os.WNOHANG)
        if pid:
            wall = time.perf_counter() - t0
            break
        if proc is not None:
            peak = max(peak, tree_rss(proc))
        time.sleep(poll_s)
    popen.returncode = os.waitstatus_to_exitcode(status)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    stdout = popen.stdout.read() if popen.stdout else None
    stderr = popen.stderr.read() if popen.stderr else None
    return {
        "rc": popen.returncode,
        "wall_s": wall,
        "peak_rss_tree_mb": peak / MB,
        "peak_rss_max_process_mb": ru.ru_maxrss * KIB / MB,
        # CPU seconds (user + sys) of the process and its reaped descendants: less sensitive than
        # wall time to other load on the machine.
        "cpu_s": ru.ru_utime + ru.ru_stime,
        # Same figure, cumulative over every child this process has reaped so far (cross-check).
        "rusage_children_maxrss_mb": children * KIB / MB,
        "stdout": stdout,
        "stderr": stderr,
    }


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def parquet_uncompressed_bytes(path: Path) -> int | None:
    """Sum of the Parquet row groups' uncompressed sizes under ``path`` (``None`` without pyarrow).

    The benchmark corpus repeats 15 texts, which Parquet's compression folds away; the uncompressed
    size is what a corpus of distinct texts would come closer to."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    total = 0
    for f in path.rglob("*.parquet"):
        md = pq.ParquetFile(f).metadata
        total += sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    return total


def read_manifest(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def split_counts(m: dict) -> dict:
    """Records, accepted trajectories and examples per role of a ``umi.split/v1`` manifest."""
    counts = m.get("counts") or {}
    roles = m.get("roles") or {}
    per_role = {
        role: sum(d.get("examples", 0) for d in sd.values() if isinstance(d, dict))
        for role, sd in roles.items() if isinstance(sd, dict)
    }
    return {
        "records": counts.get("records"),
        "trajectories": counts.get("accepted"),
        "rejected": counts.get("rejected"),
        "rejected_by_reason": counts.get("rejected_by_reason"),
        "examples": sum(per_role.values()) if per_role else None,
        "examples_by_role": per_role or None,
    }


def manifest_counts(m: dict) -> dict:
    """Every count of a manifest whose key path names trajectories, examples, rejects, …"""
    found: dict = {}

    def walk(obj, path: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(obj, int) and not isinstance(obj, bool):
            low = path.lower()
            if any(w in low for w in ("traject", "example", "reject", "rows", "files", "input", "total")):
                found[path] = obj

    walk(m, "")
    return found


def pick(counts: dict, *words: str) -> int | None:
    """The count whose key path mentions all ``words``: a ``total`` first, then the top-most one."""
    hits = [p for p in counts if all(w in p.lower() for w in words)]
    if not hits:
        return None
    best = min(hits, key=lambda p: (not p.lower().endswith("total"), p.count("."), len(p), p))
    return counts[best]


# ---------------------------------------------------------------------------------------------
# one corpus


def corpus_path(n: int, args) -> Path:
    return Path(args.corpus_dir) / (f"{n}-identical" if args.identical else str(n))


def split_ok(rc: int, out: Path) -> bool:
    """umidata exits 0 when clean, 1 when it rejected records (the corpus has 2 of every 15 without a
    trajectory), 2 on usage or I/O errors; a finished split always leaves a manifest."""
    return rc in (0, 1) and (out / "manifest.json").is_file()


def bench_corpus(n: int, args, exe: str) -> list[dict]:
    """One result per engine of ``--engines`` on the corpus of ``n`` files (one parse floor)."""
    cdir = corpus_path(n, args)
    out = Path(args.out_dir) / str(n)
    t0 = time.perf_counter()
    info = build_corpus(n, cdir, seed=args.seed, identical=args.identical)
    build_s = time.perf_counter() - t0
    files = corpus_files(cdir)
    assert len(files) == n, f"{cdir}: {len(files)} files, expected {n}"
    log(f"[{n}] corpus {cdir} ({info['input_bytes'] / MB:.0f} MB, ready in {build_s:.1f} s)")

    input_bytes = read_all(files)  # warm-up: page cache warm for the floor and the split alike
    wait_idle(args.wait_idle)
    floors = [parse_floor(files) for _ in range(args.repeat)]
    log(f"[{n}] parse floor: best {min(floors):.3f} s of {', '.join(f'{x:.3f}' for x in floors)}")

    results = [bench_engine(n, args, exe, engine, cdir, out if engine == "local" else out.with_name(f"{n}-{engine}"),
                            info, input_bytes, floors) for engine in args.engines]
    counts = {r["engine"]: (r["records"], r["trajectories"], r["rejected"], r["examples"]) for r in results}
    if len(set(counts.values())) > 1:
        raise SystemExit(f"[{n}] the engines disagree on the counts: {counts}")
    return results


def bench_engine(n: int, args, exe: str, engine: str, cdir: Path, out: Path, info: dict, input_bytes: int,
                 floors: list[float]) -> dict:
    cmd = [exe, "split", str(cdir), "-o", str(out), "--overwrite", "--quiet"]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    if engine != "local":
        cmd += ["--engine", engine]
    files = corpus_files(cdir)
    runs = []
    for i in range(args.repeat):
        read_all(files)  # keep the cache warm between runs (outputs of the last run may evict it)
        load_before = round(os.getloadavg()[0], 2)
        r = run_measured(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if not split_ok(r["rc"], out):
            sys.stderr.write(r["stderr"].decode(errors="replace")[-4000:])
            raise SystemExit(f"[{n}] {' '.join(cmd)} failed with exit status {r['rc']}")
        runs.append({k: round(r[k], 3) for k in ("wall_s", "cpu_s", "peak_rss_tree_mb",
                                                  "peak_rss_max_process_mb", "rusage_children_maxrss_mb")})
        runs[-1]["loadavg_1min_before"] = load_before
        log(f"[{n}] {engine} split run {i + 1}/{args.repeat}: {r['wall_s']:.2f} s ({r['cpu_s']:.2f} s CPU), tree peak "
            f"{r['peak_rss_tree_mb']:.0f} MB, largest process {r['peak_rss_max_process_mb']:.0f} MB")

    output_bytes = dir_bytes(out)
    manifest = read_manifest(out)
    sc = split_counts(manifest)
    counts = manifest_counts(manifest)
    ref = REFERENCE.get(n, {})
    wall = min(r["wall_s"] for r in runs)
    floor = min(floors)
    res = {
        "files": n,
        "engine": engine,
        "input_bytes": input_bytes,
        "corpus": str(cdir),
        "corpus_copies": info["copies"],
        "command": " ".join([Path(exe).name, *cmd[1:]]),
        "workers": args.workers if args.workers is not None else "default",
        "parse_floor_s": round(floor, 3),
        "parse_floor_runs_s": [round(x, 3) for x in floors],
        "split_wall_s": round(wall, 3),
        "split_cpu_s": round(min(r["cpu_s"] for r in runs), 3),
        "split_wall_median_s": round(statistics.median(r["wall_s"] for r in runs), 3),
        "ratio_to_floor": round(wall / floor, 2),
        "peak_rss_tree_mb": round(max(r["peak_rss_tree_mb"] for r in runs), 1),
        "peak_rss_max_process_mb": round(max(r["peak_rss_max_process_mb"] for r in runs), 1),
        "split_runs": runs,
        "output_bytes": output_bytes,
        "output_ratio_to_input": round(output_bytes / input_bytes, 4),
        "output_ratio_to_reference": round(output_bytes / ref["output_bytes"], 4) if ref else None,
        "output_parquet_uncompressed_bytes": parquet_uncompressed_bytes(out),
        "records": sc["records"] if sc["records"] is not None else pick(counts, "record"),
        "trajectories": sc["trajectories"] if sc["trajectories"] is not None else pick(counts, "traject"),
        "rejected": sc["rejected"],
        "rejected_by_reason": sc["rejected_by_reason"],
        "examples": sc["examples"] if sc["examples"] is not None else pick(counts, "example"),
        "examples_by_role": sc["examples_by_role"],
        "reference": ref or None,
    }
    return res  # the last run's output stays in benchmarks/out/N (git-ignored) for inspection


# ---------------------------------------------------------------------------------------------
# report


def fmt_bytes(b: float | None) -> str:
    if b is None:
        return "–"
    return f"{b / 1e9:.2f} GB" if b >= 1e9 else f"{b / MB:.0f} MB" if b >= MB else f"{b / 1e3:.0f} kB"


def fmt(x, spec: str, unit: str = "") -> str:
    return "–" if x is None else f"{x:{spec}}{unit}"


def table(results: list[dict]) -> str:
    head = ["corpus", "engine", "input", "parse floor", "split wall", "split CPU", "× floor", "ref. wall",
            "peak RSS (tree)", "peak RSS (largest process)", "ref. peak", "output", "ref. output", "output / ref.",
            "output uncompr.", "trajectories", "examples"]
    rows = []
    for r in results:
        ref = r["reference"] or {}
        rows.append([
            f"{r['files']:,} files", r.get("engine", "local"), fmt_bytes(r["input_bytes"]),
            fmt(r["parse_floor_s"], ".2f", " s"),
            fmt(r["split_wall_s"], ".2f", " s"), fmt(r.get("split_cpu_s"), ".2f", " s"),
            fmt(r["ratio_to_floor"], ".1f", "×"),
            fmt(ref.get("wall_s"), ".1f", " s"), fmt(r["peak_rss_tree_mb"], ".0f", " MB"),
            fmt(r["peak_rss_max_process_mb"], ".0f", " MB"), fmt(ref.get("peak_mb"), ".0f", " MB"),
            fmt_bytes(r["output_bytes"]), fmt_bytes(ref.get("output_bytes")),
            fmt(r["output_ratio_to_reference"], ".3f"), fmt_bytes(r.get("output_parquet_uncompressed_bytes")),
            fmt(r["trajectories"], ","), fmt(r["examples"], ","),
        ])
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    m = report["machine"]
    workers = report["results"][0]["workers"] if report["results"] else "default"
    s = [
        "# `umidata split` benchmark",
        "",
        f"Measured {report['date']} with `python benchmarks/bench_split.py {report['argv']}` on "
        f"{m['cores_usable'] or m['cores_logical']} cores, {m['memory_gib']} GiB, {m['implementation']} "
        f"{m['python']}, {m['platform']} (commit {m['git_commit']}); workers: {workers}. "
        f"Wall time is the best of {report['repeat']} runs, peaks the largest; the parse floor is "
        "read + `orjson.loads` of every input file on one core (best of the same number of runs), "
        f"page cache warm for both; split CPU is user + sys of the split and its workers. 1-minute load "
        f"average at start: {report['loadavg_at_start'][0]}. Reference: the original α-UMi preprocessing "
        "(`../shared/docs/reference-figures.md`, 2 cores, 24 GiB; JSON output, Parquet here). "
        "The corpus repeats 15 real texts (each copy's query suffixed), which Parquet's compression "
        "folds away: *output uncompr.* (the row groups' size before compression) is the fairer "
        "figure to hold against the reference's JSON.",
        "",
        table(report["results"]),
        "",
    ]
    if report.get("profile"):
        s += ["## Profile (one worker, cProfile, top entries by cumulative time)", "",
              f"`{report['profile']['command']}` — {report['profile']['wall_s']:.2f} s under the profiler.",
              "", "```", report["profile"]["top_cumulative"].rstrip(), "```", "",
              "Top entries by own time:", "", "```", report["profile"]["top_tottime"].rstrip(), "```", ""]
    return "\n".join(s)


def profile_split(n: int, args, exe: str) -> dict:
    cdir = corpus_path(n, args)
    build_corpus(n, cdir, seed=args.seed, identical=args.identical)
    read_all(corpus_files(cdir))
    prof = Path(args.results) / "split.prof"
    out = Path(args.out_dir) / f"{n}-profile"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), exe, "split", str(cdir), "-o", str(out),
           "--overwrite", "--quiet", "--workers", "1"]
    t0 = time.perf_counter()
    rc = subprocess.run(cmd).returncode
    if not split_ok(rc, out):
        raise SystemExit(f"profiled split failed with exit status {rc}")
    wall = time.perf_counter() - t0

    def top(sort: str, k: int) -> str:
        buf = io.StringIO()
        st = pstats.Stats(str(prof), stream=buf)
        st.strip_dirs().sort_stats(sort).print_stats(k)
        text = buf.getvalue()
        return text[text.find("   ncalls"):] if "   ncalls" in text else text

    return {
        "corpus_files": n,
        "command": " ".join(["python -m cProfile -o", str(prof), "umidata", *cmd[6:]]),
        "wall_s": wall,
        "top_cumulative": top("cumulative", 25),
        "top_tottime": top("tottime", 15),
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, nargs="+", default=[3000], help="corpus sizes (files)")
    ap.add_argument("--workers", type=int, default=None, help="passed to umidata split (default: its own)")
    ap.add_argument("--engines", nargs="+", choices=["local", "ray"], default=["local"],
                    help="umidata split --engine values to run on each corpus (ray: pip install 'umi[ray]')")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the parse floor and of the split")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one single-worker split of the smallest corpus (cProfile)")
    ap.add_argument("--profile-only", action="store_true", help="only the profile, no timed runs")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed")
    ap.add_argument("--identical", action="store_true",
                    help="exact byte copies (umidata split then drops all but 13 as duplicates)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S",
                    help="wait up to S seconds for the 1-min load average to drop under 0.5 before each corpus")
    ap.add_argument("--umidata", default=None, help="umidata executable (default: next to this python)")
    ap.add_argument("--corpus-dir", default=str(HERE / "corpus"))
    ap.add_argument("--out-dir", default=str(HERE / "out"))
    ap.add_argument("--results", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    exe = args.umidata or umidata_exe()
    if not has_split(exe):
        raise SystemExit(f"{exe} --help lists no `split` command: nothing to benchmark yet")
    Path(args.results).mkdir(parents=True, exist_ok=True)

    report = {
        "benchmark": "umidata split",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": " ".join(sys.argv[1:] if argv is None else argv),
        "repeat": args.repeat,
        "poll_interval_s": POLL_S,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "machine": machine(),
        "results": [],
    }
    if not args.profile_only:
        for n in args.files:
            report["results"].extend(bench_corpus(n, args, exe))
    if args.profile or args.profile_only:
        p = profile_split(min(args.files), args, exe)
        report["profile"] = p
        print(f"\n# cProfile of a single-worker split of {p['corpus_files']} files "
              f"({p['wall_s']:.2f} s under the profiler)\n{p['top_cumulative']}")

    if report["results"]:
        saved = {k: v for k, v in report.items() if k != "profile"}
        if report.get("profile"):
            saved["profile"] = {k: v for k, v in report["profile"].items() if not k.startswith("top_")}
        name = "split" if args.engines == ["local"] else "split-engines"
        (Path(args.results) / f"{name}.json").write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n")
        md = markdown(report)
        (Path(args.results) / f"{name}.md").write_text(md)
        print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
