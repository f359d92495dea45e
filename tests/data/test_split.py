"""`umidata split` end to end: byte-exact α-UMi prompts, counts, lineage, schemas, determinism,
atomicity."""

from __future__ import annotations

import collections
import difflib
import filecmp
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from umi_data.cli.commands import main
from umi_data.readers import read_inputs
from umi_data.render.parse import parse_caller
from umi_data.split import pipeline
from umi_data.trajectory.schema import validator

from .conftest import REPO as ROOT
from .conftest import SHARED, STAGE2, need
from .conftest import TOOLBENCH as TOOLBENCH_ANSWERS

ALPHA_UMI = SHARED / "alpha-umi-example"
REFERENCE = {"global": "backbone", "planner": "planner", "caller": "caller", "summarizer": "summarizer"}


def need_shared() -> None:
    need(STAGE2)
    need(TOOLBENCH_ANSWERS)


def run_split(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["split", *args])
    return result.exit_code, result.output


def rows(outdir: Path, role: str, split: str | None = None) -> list[dict]:
    out = []
    for f in sorted((outdir / role).glob(f"{split or '*'}-*.parquet")):
        out.extend(pq.read_table(f).to_pylist())
    return out


@pytest.fixture(scope="module")
def stage2_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_shared()
    out = tmp_path_factory.mktemp("s2") / "out"
    code, output = run_split(str(STAGE2), "-o", str(out), "--dev-ratio", "0", "--export", "glpft-json",
                             "--workers", "1")
    assert code == 0, output
    return out


@pytest.fixture(scope="module")
def toolbench_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_shared()
    out = tmp_path_factory.mktemp("tb") / "out"
    code, output = run_split(str(TOOLBENCH_ANSWERS), "-o", str(out), "--dev-ratio", "0.3", "--workers", "1")
    assert code == 1, output  # two files carry no trajectory: rejected, so exit 1
    return out


def _readable(a: str, b: str) -> str:
    return "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), "reference", "umi", lineterm="", n=1))


@pytest.mark.parametrize("role", list(REFERENCE))
def test_matches_original_pair_by_pair(stage2_out: Path, role: str) -> None:
    """The multiset of (input, target) equals the original train_<role>.json, except the
    documented fix of the global give-up prompt."""
    want_items = json.loads((ALPHA_UMI / f"train_{REFERENCE[role]}.json").read_text())
    got_items = json.loads((stage2_out / "glpft-json" / f"train_{REFERENCE[role]}.json").read_text())
    want = collections.Counter((x["input"], x["target"]) for x in want_items)
    got = collections.Counter((x["input"], x["target"]) for x in got_items)
    missing, extra = want - got, got - want
    if role == "global":
        # Give-up examples: same targets, but the original reused an earlier step's prompt.
        assert all(t.endswith("\nconclusion: give up.") for _, t in missing)
        assert sorted(t for _, t in missing) == sorted(t for _, t in extra)
        assert len(missing) == 6
        for (stale, target) in missing:
            fixed = next(i for i, t in extra if t == target)
            assert len(fixed) > len(stale)  # the fixed prompt holds the turns the stale one missed
        return
    if missing or extra:
        mi = next(iter(missing), ("", ""))
        ei = next(iter(extra), ("", ""))
        pytest.fail(f"{role}: {sum(missing.values())} missing, {sum(extra.values())} extra\n"
                    + _readable(mi[0] + "\n=> " + mi[1], ei[0] + "\n=> " + ei[1])[:4000])
    # The parquet rows carry exactly the same pairs.
    assert collections.Counter((r["prompt"], r["completion"]) for r in rows(stage2_out, role)) == got
    # The export keeps the original shape (history = the α-UMi conversation so far).
    assert all(set(x) == {"tools", "history", "input", "target"} for x in got_items)


def test_counts_reconcile(toolbench_out: Path) -> None:
    manifest = json.loads((toolbench_out / "manifest.json").read_text())
    c = manifest["counts"]
    assert (c["records"], c["accepted"], c["rejected"]) == (15, 13, 2)
    assert c["rejected_by_reason"] == {"no_trajectory": 2}
    rejects = [json.loads(x) for x in (toolbench_out / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == 2 and {r["reason"] for r in rejects} == {"no_trajectory"}
    assert all(r["source"]["file"].endswith(".json") for r in rejects)
    trajectories = {t.trajectory.id for t in read_inputs([TOOLBENCH_ANSWERS]) if t.accepted}
    for role, sd in manifest["roles"].items():
        for split in ("train", "dev"):
            got = rows(toolbench_out, role, split)
            assert len(got) == sd[split]["examples"]
            assert len({r["trajectory_id"] for r in got}) == sd[split]["trajectories"]
            assert sd[split]["files"] == sorted(p.name for p in (toolbench_out / role).glob(f"{split}-*"))
        assert {r["trajectory_id"] for r in rows(toolbench_out, role)} <= trajectories
    # Every accepted trajectory is in the global and planner datasets.
    assert {r["trajectory_id"] for r in rows(toolbench_out, "planner")} == trajectories


@pytest.mark.parametrize("which", ["toolbench", "stage2"])
def test_lineage(which: str, toolbench_out: Path, stage2_out: Path) -> None:
    out = toolbench_out if which == "toolbench" else stage2_out
    planner = {(r["trajectory_id"], r["step"]): r for r in rows(out, "planner")}
    trajs = {r.trajectory.id: r.trajectory for r in read_inputs([TOOLBENCH_ANSWERS if which == "toolbench" else STAGE2])
             if r.accepted}
    callers = rows(out, "caller")
    assert callers
    for r in callers:
        p = planner[(r["trajectory_id"], r["step"])]
        assert p["decision"] == "call" and r["decision"] == "call"
        turn = trajs[r["trajectory_id"]].turns[r["turn"]]
        assert [(c.name, c.arguments) for c in parse_caller(r["completion"])] == [
            (c.name, c.arguments) for c in turn.calls]
    for r in rows(out, "summarizer"):
        assert planner[(r["trajectory_id"], r["step"])]["decision"] == "conclude"
        assert r["completion"] == trajs[r["trajectory_id"]].turns[r["turn"]].content


def test_rows_and_manifest_validate(toolbench_out: Path) -> None:
    v = validator("role-example")
    for role in REFERENCE:
        for r in rows(toolbench_out, role):
            v.validate(r)
            assert r["role"] == role
    manifest = json.loads((toolbench_out / "manifest.json").read_text())
    validator("manifest").validate(manifest)
    for name in ("role-example", "manifest"):
        Draft202012Validator.check_schema(json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text()))
    card = (toolbench_out / "README.md").read_text()
    assert "load_dataset" in card and "| `caller` |" in card


def test_loads_with_datasets(toolbench_out: Path) -> None:
    datasets = pytest.importorskip("datasets")
    for role in REFERENCE:
        ds = datasets.load_dataset("parquet", data_dir=str(toolbench_out / role))
        manifest = json.loads((toolbench_out / "manifest.json").read_text())
        assert ds["train"].num_rows == manifest["roles"][role]["train"]["examples"]
        assert {"prompt", "completion", "trajectory_id"} <= set(ds["train"].column_names)
        if manifest["roles"][role]["dev"]["examples"]:
            assert ds["validation"].num_rows == manifest["roles"][role]["dev"]["examples"]


def test_no_trajectory_in_both_splits(tmp_path: Path) -> None:
    need_shared()
    out = tmp_path / "out"
    run_split(str(TOOLBENCH_ANSWERS), str(STAGE2), "-o", str(out), "--dev-ratio", "0.5", "--workers", "1")
    for role in REFERENCE:
        train = {r["trajectory_id"] for r in rows(out, role, "train")}
        dev = {r["trajectory_id"] for r in rows(out, role, "dev")}
        assert train and dev and not train & dev


def _same_tree(a: Path, b: Path) -> None:
    fa = sorted(p.relative_to(a) for p in a.rglob("*"))
    assert fa == sorted(p.relative_to(b) for p in b.rglob("*"))
    for rel in fa:
        if rel.name == "README.md":  # the dataset card names its own OUTDIR
            assert (a / rel).read_text().replace(str(a), "OUT") == (b / rel).read_text().replace(str(b), "OUT")
        elif (a / rel).is_file():
            assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def test_deterministic_and_order_independent(tmp_path: Path) -> None:
    need_shared()
    args = ["--dev-ratio", "0.3", "--shard-size", "4", "--export", "glpft-json"]
    run_split(str(TOOLBENCH_ANSWERS), str(STAGE2), "-o", str(tmp_path / "a"), "--workers", "1", *args)
    run_split(str(TOOLBENCH_ANSWERS), str(STAGE2), "-o", str(tmp_path / "b"), "--workers", "1", *args)
    run_split(str(TOOLBENCH_ANSWERS), str(STAGE2), "-o", str(tmp_path / "c"), "--workers", "2", *args)
    _same_tree(tmp_path / "a", tmp_path / "b")
    _same_tree(tmp_path / "a", tmp_path / "c")
    assert len(list((tmp_path / "a" / "planner").glob("train-*"))) > 1  # several shards were compared
    # Input order changes row order, never the train/dev assignment.
    run_split(str(STAGE2), str(TOOLBENCH_ANSWERS), "-o", str(tmp_path / "d"), "--workers", "1", *args)
    for role in REFERENCE:
        assert sorted(r["id"] for r in rows(tmp_path / "a", role, "dev")) == sorted(
            r["id"] for r in rows(tmp_path / "d", role, "dev"))


def test_interrupted_run_leaves_no_outdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_shared()
    real = pipeline.process_shard
    calls = []

    def interrupted(k, *a, **kw):
        calls.append(k)
        if k == 1:
            raise KeyboardInterrupt
        return real(k, *a, **kw)

    monkeypatch.setattr(pipeline, "process_shard", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        pipeline.split([str(TOOLBENCH_ANSWERS)], str(out), pipeline.SplitOptions(shard_size=3, workers=1))
    assert calls == [0, 1]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left either


def test_ctrl_c_exits_130_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_shared()

    def interrupted(*_a, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "process_shard", interrupted)
    code, output = run_split(str(STAGE2), "-o", str(tmp_path / "out"), "--workers", "1")
    assert code == 130 and "interrupted" in output
    assert list(tmp_path.iterdir()) == []


def test_exclude_ids(tmp_path: Path) -> None:
    """ToolBench query ids (test_query_ids/*.json: an object keyed by id) exclude that query's
    answer files in every group, as the original stage-1 script did; other ids match exactly."""
    need_shared()
    ids = tmp_path / "G1_instruction.json"
    ids.write_text(json.dumps({"10": [], "3": []}))
    more = tmp_path / "more.txt"
    more.write_text("stage2/1\n")  # an α-UMi record id: <file stem>/<index>
    stage2 = tmp_path / "stage2.json"
    stage2.write_bytes(STAGE2.read_bytes())
    out = tmp_path / "out"
    code, output = run_split(str(TOOLBENCH_ANSWERS), str(stage2), "-o", str(out), "--workers", "1",
                             "--exclude-ids", str(ids), "--exclude-ids", str(more))
    assert code == 1, output
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    excluded = sorted(Path(r["source"]["file"]).parent.name + "/" + Path(r["source"]["file"]).name
                      + (f"[{r['source']['index']}]" if r["source"]["index"] is not None else "")
                      for r in rejects if r["reason"] == "excluded")
    assert excluded == ["G1_answer/10_ChatGPT_DFS_woFilter_w2.json", "G2_answer/10_ChatGPT_DFS_woFilter_w2.json",
                        "G3_answer/3_ChatGPT_DFS_woFilter_w2.json", f"{tmp_path.name}/stage2.json[1]"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rejected_by_reason"] == {"excluded": 4, "no_trajectory": 2}
    assert manifest["options"]["exclude_ids"]["count"] == 3
    kept = {r["trajectory_id"] for r in rows(out, "planner")}
    assert "G2_answer/102_ChatGPT_DFS_woFilter_w2" in kept and "stage2/10" in kept  # "10" is not a query id there
    code, output = run_split(str(stage2), "-o", str(tmp_path / "o2"), "--exclude-ids", str(tmp_path / "none.txt"))
    assert code == 2


def test_refuses_non_empty_outdir(tmp_path: Path) -> None:
    need_shared()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, output = run_split(str(STAGE2), "-o", str(out))
    assert code == 2 and "--overwrite" in output
    assert (out / "keep.txt").read_text() == "mine"
    code, _ = run_split(str(STAGE2), "-o", str(out), "--overwrite", "--workers", "1")
    assert code == 0 and not (out / "keep.txt").exists() and (out / "manifest.json").exists()


def test_usage_errors(tmp_path: Path) -> None:
    code, output = run_split(str(tmp_path / "missing.json"), "-o", str(tmp_path / "o"))
    assert code == 2 and "not found" in output
    code, output = run_split(str(tmp_path), "-o", str(tmp_path / "o"), "--roles", "planner,critic")
    assert code == 2 and "critic" in output
