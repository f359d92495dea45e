"""umi_data.split.stats and the ``umidata stats`` command over split-shaped fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from umi_data.cli.stats import stats as stats_command
from umi_data.readers import read_inputs
from umi_data.render.roles import ROLE_NAMES, examples
from umi_data.split.shards import EXAMPLE_SCHEMA
from umi_data.split.stats import NotASplit, collect, find_shards, to_json
from umi_data.trajectory import Call, Source, Tool, Trajectory, Turn

STAGE2 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "alpha-umi-example" / "raw_data_stage_2.json"

SCHEMA = EXAMPLE_SCHEMA


def write_split(out: Path, train: list[Trajectory], dev: list[Trajectory], train_shards: int = 2) -> Path:
    """OUT/<role>/{train,dev}-NNNNN-of-NNNNN.parquet + OUT/manifest.json, as `umidata split`
    lays them out (no dev files when ``dev`` is empty)."""
    for role in ROLE_NAMES:
        for split, trajs, k in (("train", train, train_shards), ("dev", dev, 1)):
            rows = [
                {
                    **{
                        f: getattr(ex, f)
                        for f in ("id", "trajectory_id", "step", "turn", "role", "prompt", "completion", "decision")
                    },
                    "source": t.source.file,
                }
                for t in trajs
                for ex in examples(t, role)
            ]
            if not trajs:
                continue
            (out / role).mkdir(parents=True, exist_ok=True)
            for i in range(k):
                table = pa.Table.from_pylist(rows[i::k], schema=SCHEMA)
                pq.write_table(table, out / role / f"{split}-{i:05d}-of-{k:05d}.parquet")
    (out / "manifest.json").write_text(json.dumps({"format": "umi.split/v1", "fixture": True}))
    return out


def _traj(tid: str, steps: list[tuple[str, str, str]], end: str, answer: str = "Done.") -> Trajectory:
    """``steps``: (thought, tool, arguments) calls; ``end``: conclude or give_up."""
    turns = [Turn("user", content=f"Question {tid}?")]
    for thought, tool, args in steps:
        turns += [
            Turn("planner", thought=thought, decision="call"),
            Turn("caller", calls=[Call(tool, args)]),
            Turn("observation", content='{"ok": true}'),
        ]
    if end == "conclude":
        turns += [Turn("planner", thought="I can answer.", decision="conclude"), Turn("conclusion", content=answer)]
    else:
        turns += [Turn("planner", thought="I cannot.", decision="give_up")]
    tools = [
        Tool(n, f"{n} tool", {"type": "object", "properties": {"city": {"type": "string"}}})
        for n in ("get_weather", "find_hotels", "search")
    ]
    return Trajectory(tid, Source("canonical", "fixture.json"), f"Question {tid}?", tools, turns)


TRAIN = [
    _traj("t1", [("Weather first.", "get_weather", '{"city": "Paris"}')], "conclude", "It is sunny in Paris."),
    _traj(
        "t2",
        [("Weather.", "get_weather", '{"city": "Oslo"}'), ("Hotels.", "find_hotels", '{"city": "Oslo"}')],
        "give_up",
    ),
]
DEV = [_traj("t3", [("Search.", "search", "{'q': 'x'}")], "conclude", "Found x.")]


@pytest.fixture
def split_dir(tmp_path: Path) -> Path:
    return write_split(tmp_path / "out", TRAIN, DEV)


def test_layout(split_dir: Path) -> None:
    found = find_shards(split_dir)
    assert set(found) == set(ROLE_NAMES)
    assert [p.name for p in found["planner"]["train"]] == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    assert [p.name for p in found["caller"]["dev"]] == ["dev-00000-of-00001.parquet"]


def test_counts_decisions_tools(split_dir: Path) -> None:
    by = {(s.role, s.split): s for s in collect(split_dir)}
    planner = by["planner", "train"]
    assert (planner.examples, planner.trajectories) == (5, 2)
    assert planner.decisions == {"call": 3, "conclude": 1, "give_up": 1}
    assert planner.tools is None and planner.prompt_tokens is None
    caller = by["caller", "train"]
    assert caller.examples == 3 and caller.decisions == {"call": 3, "conclude": 0, "give_up": 0}
    assert caller.tools == [("get_weather", 2), ("find_hotels", 1)]
    assert (caller.calls, caller.unparsed, caller.invalid_json_arguments) == (3, 0, 0)
    dev_caller = by["caller", "dev"]
    assert dev_caller.tools == [("search", 1)] and dev_caller.invalid_json_arguments == 1
    assert by["global", "train"].tools == [("get_weather", 2), ("find_hotels", 1)]
    assert by["summarizer", "train"].examples == 1 and by["summarizer", "dev"].trajectories == 1
    # character lengths agree with the examples themselves
    completions = sorted(len(ex.completion) for t in TRAIN for ex in examples(t, "planner"))
    dist = planner.completion_chars
    assert (dist["min"], dist["max"]) == (completions[0], completions[-1])
    assert dist["mean"] == round(sum(completions) / len(completions), 1)
    assert dist["min"] <= dist["p50"] <= dist["p90"] <= dist["p99"] <= dist["max"]


def test_missing_dev_is_fine(tmp_path: Path) -> None:
    out = write_split(tmp_path / "nodev", TRAIN, [])
    assert {s.split for s in collect(out)} == {"train"}


def _tokenizer_json(path: Path, split_dir: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0}
    for t in [*TRAIN, *DEV]:
        for role in ROLE_NAMES:
            for ex in examples(t, role):
                for w in (ex.prompt + " " + ex.completion).split():
                    vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(path))
    return path


def test_tokens_with_tokenizers_json_and_hf_dir(split_dir: Path, tmp_path: Path) -> None:
    tok_file = _tokenizer_json(tmp_path / "tok.json", split_dir)
    by = {(s.role, s.split): s for s in collect(split_dir, tok_file)}
    s = by["summarizer", "train"]
    assert s.completion_tokens == {"min": 5, "p50": 5, "p90": 5, "p99": 5, "max": 5, "mean": 5.0}
    prompt = next(ex.prompt for t in TRAIN for ex in examples(t, "summarizer"))
    assert s.prompt_tokens is not None and s.prompt_tokens["max"] == len(prompt.split())

    from transformers import PreTrainedTokenizerFast

    hf_dir = tmp_path / "hf"
    PreTrainedTokenizerFast(tokenizer_file=str(tok_file), unk_token="[UNK]").save_pretrained(hf_dir)
    by_hf = {(s.role, s.split): s for s in collect(split_dir, hf_dir)}
    assert by_hf["summarizer", "train"].completion_tokens == s.completion_tokens
    assert by_hf["planner", "dev"].prompt_tokens == by["planner", "dev"].prompt_tokens


# --- the command ---------------------------------------------------------------------------------


def test_cli_table(split_dir: Path) -> None:
    result = CliRunner().invoke(stats_command, [str(split_dir)])
    assert result.exit_code == 0, result.output
    for text in (
        "planner",
        "summarizer",
        "trajectories",
        "call 3 · conclude 1 · give up 1",
        "prompt chars",
        "get_weather (2)",
    ):
        assert text in result.stdout


def test_cli_json_and_plot(split_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "lengths.png"
    result = CliRunner().invoke(stats_command, [str(split_dir), "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["roles"]["planner"]["train"]["decisions"] == {"call": 3, "conclude": 1, "give_up": 1}
    assert data["roles"]["caller"]["train"]["tools"][0] == {"name": "get_weather", "calls": 2}
    assert set(data["roles"]["global"]) == {"train", "dev"}
    assert data["plot"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_tokenizer_json(split_dir: Path, tmp_path: Path) -> None:
    tok = _tokenizer_json(tmp_path / "tok.json", split_dir)
    result = CliRunner().invoke(stats_command, [str(split_dir), "--tokenizer", str(tok)])
    assert result.exit_code == 0, result.output
    assert "completion tokens" in result.stdout


def _broken_layouts(tmp_path: Path) -> dict[str, Path]:
    empty = tmp_path / "empty"
    empty.mkdir()
    no_shards = tmp_path / "no_shards"
    (no_shards / "planner").mkdir(parents=True)
    (no_shards / "manifest.json").write_text("{}")
    gap = write_split(tmp_path / "gap", TRAIN, DEV, train_shards=3)
    (gap / "caller" / "train-00001-of-00003.parquet").unlink()
    bad_manifest = write_split(tmp_path / "bad_manifest", TRAIN, [])
    (bad_manifest / "manifest.json").write_text("not json")
    return {
        "missing": tmp_path / "nope",
        "empty": empty,
        "no_shards": no_shards,
        "gap": gap,
        "bad_manifest": bad_manifest,
        "file": bad_manifest / "manifest.json",
    }


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "not a directory"),
        ("empty", "no manifest.json"),
        ("no_shards", "no <role>/train"),
        ("gap", "shard(s) 00001 of 00003 missing"),
        ("bad_manifest", "not a split manifest"),
        ("file", "not a directory"),
    ],
)
def test_cli_not_a_split(tmp_path: Path, case: str, message: str) -> None:
    path = _broken_layouts(tmp_path)[case]
    with pytest.raises(NotASplit, match=message.replace("(", r"\(").replace(")", r"\)")):
        find_shards(path)
    result = CliRunner().invoke(stats_command, [str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("umidata stats: error: ") and message in lines[0]
    assert "Traceback" not in result.output


def test_cli_bad_tokenizer(split_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(stats_command, [str(split_dir), "--tokenizer", str(tmp_path / "none")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    result = CliRunner().invoke(stats_command, [str(split_dir), "--tokenizer", str(junk)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


def test_stage2_sample(tmp_path: Path) -> None:
    if not STAGE2.exists():
        pytest.skip(f"{STAGE2} not available")
    trajs = [r.trajectory for r in read_inputs([STAGE2]) if r.trajectory is not None]
    out = write_split(tmp_path / "stage2", trajs[:18], trajs[18:])
    result = collect(out)
    data = to_json(out, result)
    planner = data["roles"]["planner"]
    n_planner = sum(1 for t in trajs for _ in examples(t, "planner"))
    assert planner["train"]["examples"] + planner["dev"]["examples"] == n_planner
    assert planner["train"]["trajectories"] == 18
    caller = data["roles"]["caller"]["train"]
    assert caller["unparsed"] == 0 and caller["calls"] >= caller["tools"][0]["calls"] > 0
    assert sum(planner["train"]["decisions"].values()) == planner["train"]["examples"]


def test_empty_shard_and_old_columns(tmp_path: Path) -> None:
    """A dev shard with no rows, and shards without the optional decision/turn columns."""
    out = write_split(tmp_path / "out", TRAIN, DEV)
    pq.write_table(SCHEMA.empty_table(), out / "planner" / "dev-00000-of-00001.parquet")
    minimal = pa.schema([(c, pa.string()) for c in ("id", "trajectory_id", "role", "prompt", "completion")])
    rows = [{"id": "a", "trajectory_id": "t", "role": "summarizer", "prompt": "p", "completion": "Answer."}]
    pq.write_table(pa.Table.from_pylist(rows, schema=minimal), out / "summarizer" / "dev-00000-of-00001.parquet")
    by = {(s.role, s.split): s for s in collect(out)}
    empty = by["planner", "dev"]
    assert (empty.examples, empty.trajectories, empty.prompt_chars["p50"]) == (0, 0, None)
    assert empty.decisions == {"call": 0, "conclude": 0, "give_up": 0}
    old = by["summarizer", "dev"]
    assert old.examples == 1 and old.decisions is None and old.completion_chars["max"] == 7
    result = CliRunner().invoke(stats_command, [str(out)])
    assert result.exit_code == 0, result.output
