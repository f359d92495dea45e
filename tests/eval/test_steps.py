"""Static evaluation steps: the spec's step rule and reference strings, and prompts that are the
training prompts of the same step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umi_data.readers import read_inputs
from umi_data.render.roles import examples
from umi_eval.generate.steps import Prompts, StepsError, load_steps, trajectory_steps

from .conftest import STAGE2, TRAJECTORIES, need

MARKERS = ("Next: caller.", "Next: conclusion.", "Next: give up.")


def test_counts_and_references_follow_the_spec_on_the_shared_sample() -> None:
    path = need(STAGE2)
    raw = json.loads(path.read_text(encoding="utf-8"))
    # spec §1.2 by hand: one step per assistant turn whose value contains a marker
    want_refs: dict[str, str] = {}
    for k, conv in enumerate(raw):
        turns = conv["conversations"]
        for i, t in enumerate(turns):
            if t["from"] == "assistant" and any(m in t["value"] for m in MARKERS):
                if "Next: give up." in t["value"]:
                    ref = t["value"]
                else:
                    nxt = turns[i + 1]
                    ref = f"assistant: {t['value']}</s>{nxt['from']}: {nxt['value']}</s>"
                want_refs[f"raw_data_stage_2/{k}#{i}"] = ref
    got = load_steps([path])
    assert got.records == got.trajectories == 20 and not got.issues
    assert {s.id: s.reference for s in got.steps} == want_refs
    assert len(got.steps) == 79  # = the original's train_planner.json / train_backbone.json example counts
    assert got.decisions() == {"call": 59, "conclude": 14, "give_up": 6}
    backbone = json.loads((path.parent / "train_backbone.json").read_text(encoding="utf-8"))
    assert sorted(s.reference_single for s in got.steps) == sorted(e["target"] for e in backbone)


def test_prompts_are_the_training_prompts_of_the_same_step() -> None:
    """For every step: planner, caller, summarizer and global inputs rendered with the gold thought
    equal the prompt of the training example of that step (umi style: no documented difference)."""
    need(STAGE2)
    prompts = Prompts("umi")
    n = 0
    for rec in read_inputs([STAGE2]):
        traj = rec.trajectory
        assert traj is not None
        steps = {s.step: s for s in trajectory_steps(traj)[0]}
        for role in ("planner", "caller", "summarizer", "global"):
            for ex in examples(traj, role):
                s = steps[ex.step]
                got = {
                    "planner": lambda s=s: prompts.planner(s),
                    "caller": lambda s=s: prompts.caller(s, s.gold_thought),
                    "summarizer": lambda s=s: prompts.summarizer(s, s.gold_thought),
                    "global": lambda s=s: prompts.single(s),
                }[role]()
                assert got == ex.prompt, (role, ex.id)
                n += 1
    assert n == 79 + 59 + 14 + 79


def test_planner_prompts_are_the_original_training_inputs() -> None:
    """Independent of umi's renderer: each planner prompt is an input of the original train_planner.json."""
    path = need(STAGE2)
    originals = {e["input"] for e in json.loads((path.parent / "train_planner.json").read_text(encoding="utf-8"))}
    steps = load_steps([path]).steps
    assert all(Prompts().planner(s) in originals for s in steps)


def _relabel_last(prompt: str, thought: str) -> str:
    head, sep, tail = prompt.rpartition(f"assistant: {thought}</s>")
    assert sep
    return f"{head}planner: {thought}</s>{tail}"


def test_original_style_labels_the_thought_planner_and_gives_every_role_the_full_history() -> None:
    need(STAGE2)
    umi, orig = Prompts("umi"), Prompts("original")
    for s in load_steps([STAGE2]).steps:
        assert orig.planner(s) == umi.planner(s)
        t = s.gold_thought
        if s.decision == "call":
            # the sample has no hallucinated call or `none` conclusion, so only the label differs
            a, b = umi.caller(s, t), orig.caller(s, t)
            assert b == _relabel_last(a, t) and a != b
        if s.decision == "conclude":
            a, b = umi.summarizer(s, t), orig.summarizer(s, t)
            assert b == _relabel_last(a, t) and a != b
        assert "system: " not in orig.planner(s)[:20]


def test_role_histories_follow_the_training_rules(tmp_path: Path) -> None:
    """A hallucinated call is left out of the caller's history (as in training) but kept in the
    planner's; the original style keeps it for every role."""
    conv = [
        {"from": "user", "value": "q"},
        {"from": "assistant", "value": "try x\n Next: caller."},
        {"from": "caller", "value": "Action: invalid_hallucination_function_name\nAction Input: {}"},
        {"from": "observation", "value": "no such function"},
        {"from": "assistant", "value": "try y\n Next: caller."},
        {"from": "caller", "value": 'Action: y\nAction Input: {"a": 1}'},
    ]
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"tools": [{"Name": "y", "function": "f", "input": {}}], "instruction": "q",
                                 "conversations": conv}]))
    got = load_steps([path])
    assert [s.step for s in got.steps] == [1, 4]  # the hallucinated step is a step (its reference names the bad tool)
    s = got.steps[1]
    caller = Prompts("umi").caller(s, s.gold_thought)
    assert "invalid_hallucination_function_name" not in caller
    assert "invalid_hallucination_function_name" in Prompts("umi").planner(s)
    assert "invalid_hallucination_function_name" in Prompts("original").caller(s, s.gold_thought)
    traj = next(iter(read_inputs([path]))).trajectory
    assert traj is not None
    assert [e.prompt for e in examples(traj, "caller")] == [caller]


def test_turns_without_a_reference_and_rejected_records_are_reported(tmp_path: Path) -> None:
    good = TRAJECTORIES[0]
    bad = [
        {"tools": [], "instruction": "q", "conversations": [{"from": "user", "value": "q"},
         {"from": "assistant", "value": "go\n Next: caller."}]},  # marker, no next turn
        {"tools": [], "instruction": "q", "conversations": [{"from": "user", "value": "q"},
         {"from": "assistant", "value": "go\n Next: conclusion."}, {"from": "user", "value": "more"}]},
        {"tools": [], "instruction": "q", "conversations": [{"from": "user", "value": "q"},
         {"from": "assistant", "value": "no marker"}, {"from": "caller", "value": "Action: a\nAction Input: {}"}]},
        {"tools": "nope", "instruction": "q", "conversations": []},  # schema reject
    ]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([good, *bad]))
    got = load_steps([path])
    assert got.records == 5 and got.trajectories == 4 and got.rejected == 1
    assert len(got.steps) == 2  # the good trajectory's two steps
    assert got.reasons() == {"reference_missing": 1, "reference_mismatch": 1, "no_marker": 1, "schema": 1}
    assert all(i.source.file == str(path) for i in got.issues)
    assert {i.source.index for i in got.issues} == {1, 2, 3, 4}
    rows = {i.reason: i.to_dict() for i in got.issues}  # generate's rejects file: the one shape + where
    assert all(list(r) == ["source", "reason", "message", "pointer", "findings", "trajectory_id", "turn"]
               for r in rows.values())
    assert rows["no_marker"]["turn"] == 1 and rows["schema"]["turn"] is None and rows["schema"]["findings"]


def test_nothing_read_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    got = load_steps([empty])
    assert got.records == 1 and not got.steps  # the empty file is itself a rejected record
    with pytest.raises(StepsError):
        load_steps([])


def test_a_split_directory_gives_its_dev_trajectories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    from umi_data.split.pipeline import SplitOptions, split

    need(STAGE2)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.json").write_text(STAGE2.read_text(encoding="utf-8"), encoding="utf-8")
    split(["in.json"], "out", SplitOptions(dev_ratio=0.3))
    dev_rows = pq.read_table(sorted((tmp_path / "out" / "global").glob("dev-*.parquet"))[0]).to_pylist()
    got = load_steps(["out"], split="dev")
    assert got.steps and {s.trajectory_id for s in got.steps} == {r["trajectory_id"] for r in dev_rows}
    assert sorted(s.reference_single for s in got.steps) == sorted(r["completion"] for r in dev_rows)
    train = load_steps(["out"], split="train")
    assert len(train.steps) + len(got.steps) == 79
    monkeypatch.chdir(STAGE2.parent)  # the manifest's relative input path no longer resolves
    with pytest.raises(StepsError, match="not there"):
        load_steps([str(tmp_path / "out")])


def test_history_turns_are_prompt_context_not_steps_again(tmp_path: Path) -> None:
    """A trajectory's ``history`` (an earlier request of a chat, earlier ToolLLaMA steps) enters
    its prompts but makes no step: the shared step is evaluated once, as it is trained once."""
    tools = [{"name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {}}}]
    first = [{"role": "user", "content": "Weather in Paris?"},
             {"role": "planner", "thought": "Call it.", "decision": "call", "raw": "Call it. Next: caller."},
             {"role": "caller", "calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]},
             {"role": "observation", "content": '{"temp": 21}'}]
    second = [{"role": "planner", "thought": "It is 21.", "decision": "conclude", "raw": "It is 21. Next: conclusion."},
              {"role": "conclusion", "content": "It is 21 degrees in Paris."}]
    src = {"format": "alpha-umi", "file": "t.json", "index": 0, "line": None, "member": None}
    rec = {"format": "umi.trajectory/v1", "source": src, "instruction": "Weather in Paris?", "tools": tools,
           "outcome": "answered", "metadata": {}}
    path = tmp_path / "hist.jsonl"
    path.write_text(json.dumps({**rec, "id": "A", "turns": first}) + "\n"
                    + json.dumps({**rec, "id": "B", "turns": second, "history": first}) + "\n")
    got = load_steps([path])
    assert got.trajectories == 2 and not got.issues
    assert [s.id for s in got.steps] == ["A#1", "B#4"]  # not B#1, a second copy of A#1
    b = got.steps[1]
    assert "Call it. Next: caller." in Prompts().planner(b)  # the history is still in the prompt
    for rec_ in read_inputs([path]):
        traj = rec_.trajectory
        assert traj is not None
        assert [s.step for s in trajectory_steps(traj)[0]] == [e.step for e in examples(traj, "planner")]
