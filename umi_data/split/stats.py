"""Statistics of a ``umidata split`` output directory.

Layout read: ``OUTDIR/manifest.json`` and ``OUTDIR/<role>/<split>-NNNNN-of-MMMMM.parquet`` for
the roles ``global / planner / caller / summarizer`` and the splits ``train / dev`` (dev may be
missing). Per role and split: examples, distinct trajectories, prompt and completion lengths
(characters, and tokens with a tokenizer), the decision mix, and the most-used tools (caller
completions read with :mod:`umi_data.render.parse`).

Character statistics are one lazy polars query per (role, split) over the shards, run on the
streaming engine; tool counts and token lengths need Python per row, so they stream the shards
batch by batch (``collect_batches``) and keep only counters and one integer per example.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from umi_data.render.parse import ParseError, parse_caller, parse_global
from umi_data.split.shards import unreadable_shard

ROLES = ("global", "planner", "caller", "summarizer")
SPLITS = ("train", "dev")
REQUIRED_COLUMNS = ("id", "trajectory_id", "role", "prompt", "completion")
DECISION_KEYS = ("call", "conclude", "give_up")
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
_SHARD_RE = re.compile(r"^(?P<split>train|dev)-(?P<k>\d{5})-of-(?P<n>\d{5})\.parquet$")
BATCH_ROWS = 2_000


class NotASplit(Exception):
    """OUTDIR is not a ``umidata split`` output (the message says why, in one line)."""


class TokenizerError(Exception):
    """The ``--tokenizer`` path cannot be loaded (the message says why, in one line)."""


# --- layout ------------------------------------------------------------------------------------


def find_shards(outdir: str | Path) -> dict[str, dict[str, list[Path]]]:
    """``{role: {split: [shard paths in order]}}``; raises :class:`NotASplit`."""
    out = Path(outdir)
    if not out.is_dir():
        raise NotASplit(f"{out} is not a directory")
    manifest = out / "manifest.json"
    if not manifest.is_file():
        raise NotASplit(f"{out} is not a `umidata split` output: no manifest.json")
    try:
        if not isinstance(json.loads(manifest.read_text(encoding="utf-8")), dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise NotASplit(f"{manifest} is not a split manifest ({e})") from None
    found: dict[str, dict[str, list[Path]]] = {}
    for role in ROLES:
        if not (out / role).is_dir():
            continue
        by_split: dict[str, dict[int, Path]] = {}
        counts: dict[str, set[int]] = {}
        for f in (out / role).iterdir():
            m = _SHARD_RE.match(f.name)
            if m is None:
                continue
            by_split.setdefault(m["split"], {})[int(m["k"])] = f
            counts.setdefault(m["split"], set()).add(int(m["n"]))
        for split, shards in by_split.items():
            (n, *others) = sorted(counts[split])
            if others or sorted(shards) != list(range(n)):
                missing = sorted(set(range(max([n, *others]))) - set(shards))
                raise NotASplit(
                    f"{out / role} has an incomplete {split} split: shard(s) "
                    f"{', '.join(f'{k:05d}' for k in missing) or '?'} of {max([n, *others]):05d} missing "
                    "or numbered inconsistently"
                )
            found.setdefault(role, {})[split] = [shards[k] for k in range(n)]
        if role in found and "train" not in found[role]:
            raise NotASplit(f"{out / role} has no train-NNNNN-of-NNNNN.parquet shard")
    if not found:
        raise NotASplit(
            f"{out} is not a `umidata split` output: no <role>/train-NNNNN-of-NNNNN.parquet "
            f"under any of {', '.join(ROLES)}"
        )
    return found


def scan(shards: list[Path]) -> pl.LazyFrame:
    """One lazy frame over the shards of one (role, split); checks the columns."""
    lf = pl.scan_parquet([str(p) for p in shards])
    try:
        names = lf.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as e:
        where = unreadable_shard(shards)
        raise NotASplit(where or f"cannot read {shards[0].parent}: {str(e).splitlines()[0]}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise NotASplit(f"{shards[0].parent} shards lack column(s) {', '.join(missing)}")
    return lf


# --- tokenizers ----------------------------------------------------------------------------------

TokenCounter = Callable[[list[str]], list[int]]


def load_token_counter(path: str | Path) -> TokenCounter:
    """A function ``texts -> token counts`` (no special tokens) for a local tokenizer: a
    directory (``transformers.AutoTokenizer``, no remote code, no download) or a
    ``tokenizers`` JSON file."""
    p = Path(path)
    if p.is_file():
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(p))
        except Exception as e:  # the tokenizers library raises plain Exceptions
            raise TokenizerError(f"{p} is not a tokenizers JSON file ({str(e).splitlines()[0]})") from None

        def count_file(texts: list[str]) -> list[int]:
            return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]

        return count_file
    if p.is_dir():
        try:
            from transformers import AutoTokenizer

            hf = AutoTokenizer.from_pretrained(str(p), trust_remote_code=False, local_files_only=True)
        except Exception as e:  # transformers raises many kinds (OSError, ValueError, ...)
            raise TokenizerError(f"cannot load a tokenizer from {p} ({str(e).splitlines()[0]})") from None

        def count_dir(texts: list[str]) -> list[int]:
            return [len(ids) for ids in hf(texts, add_special_tokens=False)["input_ids"]]

        return count_dir
    raise TokenizerError(f"tokenizer path {p} does not exist")


# --- statistics ----------------------------------------------------------------------------------


def _dist_exprs(n: pl.Expr, prefix: str) -> list[pl.Expr]:
    """min / p50 / p90 / p99 / max / mean of an integer expression, aliased ``<prefix><stat>``."""
    return [
        n.min().alias(f"{prefix}min"),
        *[n.quantile(q, interpolation="nearest").alias(f"{prefix}{name}") for name, q in QUANTILES],
        n.max().alias(f"{prefix}max"),
        n.mean().alias(f"{prefix}mean"),
    ]


def _dist_from_row(row: dict[str, Any], prefix: str) -> dict[str, float | int | None]:
    keys = ["min", *[k for k, _ in QUANTILES], "max", "mean"]
    out: dict[str, float | int | None] = {}
    for k in keys:
        v = row[f"{prefix}{k}"]
        out[k] = None if v is None else (round(float(v), 1) if k == "mean" else int(v))
    return out


def distribution(values: list[int] | pl.Series) -> dict[str, float | int | None]:
    """min / p50 / p90 / p99 / max / mean of integer lengths (same quantile rule as the
    character statistics: nearest rank)."""
    frame = pl.Series("v", values, dtype=pl.Int64).to_frame()
    return _dist_from_row(frame.select(_dist_exprs(pl.col("v"), "")).row(0, named=True), "")


def _tools_of(role: str, completion: str) -> tuple[list[str], int] | None:
    """Tool names called by one completion and how many had arguments that are not JSON;
    ``None`` when the role has no calls or the completion cannot be parsed."""
    if role == "caller":
        try:
            calls = parse_caller(completion)
        except ParseError:
            return None
    elif role == "global":
        calls = parse_global(completion).calls
        if calls is None:
            return [], 0
    else:
        return [], 0
    return [c.name for c in calls], sum(not c.valid_json for c in calls)


def _batches(lf: pl.LazyFrame, columns: list[str]) -> Iterator[pl.DataFrame]:
    yield from lf.select(columns).collect_batches(chunk_size=BATCH_ROWS, engine="streaming")


@dataclass
class SplitStats:
    role: str
    split: str
    shards: int
    examples: int = 0
    trajectories: int = 0
    prompt_chars: dict[str, Any] = field(default_factory=dict)
    completion_chars: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: dict[str, Any] | None = None
    completion_tokens: dict[str, Any] | None = None
    decisions: dict[str, int] | None = None
    tools: list[tuple[str, int]] | None = None
    calls: int | None = None
    unparsed: int | None = None
    invalid_json_arguments: int | None = None
    # Per-example lengths kept for --plot only (not part of the JSON).
    lengths: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "shards": self.shards,
            "examples": self.examples,
            "trajectories": self.trajectories,
            "prompt_chars": self.prompt_chars,
            "completion_chars": self.completion_chars,
        }
        if self.prompt_tokens is not None:
            d["prompt_tokens"] = self.prompt_tokens
            d["completion_tokens"] = self.completion_tokens
        if self.decisions is not None:
            d["decisions"] = self.decisions
        if self.tools is not None:
            d["tools"] = [{"name": n, "calls": c} for n, c in self.tools]
            d["calls"] = self.calls
            d["unparsed"] = self.unparsed
            d["invalid_json_arguments"] = self.invalid_json_arguments
        return d


def split_stats(
    role: str,
    split: str,
    shards: list[Path],
    count_tokens: TokenCounter | None = None,
    top: int = 10,
    keep_lengths: bool = False,
) -> SplitStats:
    try:
        return _split_stats(role, split, shards, count_tokens, top, keep_lengths)
    except (pl.exceptions.PolarsError, OSError) as e:
        where = unreadable_shard(shards)
        if where is None:
            raise
        raise NotASplit(where) from e


def _split_stats(
    role: str,
    split: str,
    shards: list[Path],
    count_tokens: TokenCounter | None,
    top: int,
    keep_lengths: bool,
) -> SplitStats:
    lf = scan(shards)
    names = lf.collect_schema().names()
    st = SplitStats(role, split, len(shards))
    agg = lf.select(
        pl.len().alias("examples"),
        pl.col("trajectory_id").n_unique().alias("trajectories"),
        *_dist_exprs(pl.col("prompt").str.len_chars(), "prompt_"),
        *_dist_exprs(pl.col("completion").str.len_chars(), "completion_"),
    ).collect(engine="streaming")
    row = agg.row(0, named=True)
    st.examples, st.trajectories = int(row["examples"]), int(row["trajectories"])
    st.prompt_chars = _dist_from_row(row, "prompt_")
    st.completion_chars = _dist_from_row(row, "completion_")
    if "decision" in names:
        counts = lf.group_by("decision").agg(pl.len().alias("n")).collect(engine="streaming")
        mix = dict.fromkeys(DECISION_KEYS, 0)
        for decision, n in counts.iter_rows():
            key = decision if decision in DECISION_KEYS else "none"
            mix[key] = mix.get(key, 0) + int(n)
        st.decisions = mix
    if keep_lengths:
        lengths = lf.select(
            pl.col("prompt").str.len_chars().alias("p"), pl.col("completion").str.len_chars().alias("c")
        ).collect(engine="streaming")
        st.lengths = {"prompt_chars": lengths["p"].to_list(), "completion_chars": lengths["c"].to_list()}
    want_tools = role in ("caller", "global")
    if want_tools or count_tokens is not None:
        tools: Counter[str] = Counter()
        unparsed = invalid = 0
        prompt_tokens: list[int] = []
        completion_tokens: list[int] = []
        columns = ["completion"] if count_tokens is None else ["prompt", "completion"]
        for batch in _batches(lf, columns):
            completions = batch["completion"].to_list()
            if want_tools:
                for text in completions:
                    got = _tools_of(role, text)
                    if got is None:
                        unparsed += 1
                        continue
                    tools.update(got[0])
                    invalid += got[1]
            if count_tokens is not None:
                prompt_tokens += count_tokens(batch["prompt"].to_list())
                completion_tokens += count_tokens(completions)
        if want_tools:
            st.tools = tools.most_common(top)
            st.calls = sum(tools.values())
            st.unparsed = unparsed
            st.invalid_json_arguments = invalid
        if count_tokens is not None:
            st.prompt_tokens = distribution(prompt_tokens)
            st.completion_tokens = distribution(completion_tokens)
            if keep_lengths:
                st.lengths["prompt_tokens"] = prompt_tokens
                st.lengths["completion_tokens"] = completion_tokens
    return st


def collect(
    outdir: str | Path, tokenizer: str | Path | None = None, top: int = 10, keep_lengths: bool = False
) -> list[SplitStats]:
    """Statistics of every (role, split) present, in role then split order."""
    found = find_shards(outdir)
    count_tokens = load_token_counter(tokenizer) if tokenizer is not None else None
    return [
        split_stats(role, split, found[role][split], count_tokens, top, keep_lengths)
        for role in ROLES
        if role in found
        for split in SPLITS
        if split in found[role]
    ]


def to_json(outdir: str | Path, stats: list[SplitStats], tokenizer: str | Path | None = None) -> dict[str, Any]:
    roles: dict[str, dict[str, Any]] = {}
    for s in stats:
        roles.setdefault(s.role, {})[s.split] = s.to_dict()
    return {
        "outdir": str(outdir),
        "tokenizer": None if tokenizer is None else str(tokenizer),
        "quantiles": "nearest rank",
        "roles": roles,
    }


# --- plot ----------------------------------------------------------------------------------------


def plot(stats: list[SplitStats], path: str | Path, unit: str = "chars") -> None:
    """Prompt and completion length histograms per role (rows) with train and dev overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roles = [r for r in ROLES if any(s.role == r for s in stats)]
    fig, axes = plt.subplots(len(roles), 2, figsize=(11, 2.6 * len(roles)), squeeze=False)
    for row, role in enumerate(roles):
        for col, kind in enumerate(("prompt", "completion")):
            ax = axes[row][col]
            series = [(s.split, s.lengths.get(f"{kind}_{unit}", [])) for s in stats if s.role == role]
            everything = [v for _, values in series for v in values]
            if everything:  # one set of bins for train and dev, so the bars line up
                lo, hi = min(everything), max(everything)
                bins = [lo + (hi - lo + 1) * i / 40 for i in range(41)]
                for split, values in series:
                    if values:
                        ax.hist(values, bins=bins, alpha=0.6, label=f"{split} ({len(values)})")
            ax.set_title(f"{role}: {kind} length")
            ax.set_xlabel(unit)
            ax.set_ylabel("examples")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
