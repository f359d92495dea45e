"""`umidata split --template chat`: one conversation per trajectory per role, loadable by
🤗 datasets, supervising exactly the turns the α-UMi examples target, rendering as native tool
calls under a real chat template (TRL's qwen2_5.jinja)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main
from umi_data.readers import read_inputs
from umi_data.trajectory.schema import validator

from .conftest import EXAMPLES, STAGE2, need

ROLES = ("global", "planner", "caller", "summarizer")


def split(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["split", *args])
    return result.exit_code, result.output


def rows(outdir: Path, role: str) -> list[dict]:
    import datasets

    files = sorted(str(f) for f in (outdir / role).glob("*.parquet"))
    return list(datasets.load_dataset("parquet", data_files=files, split="train")) if files else []


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need(STAGE2)
    base = tmp_path_factory.mktemp("chat")
    out: dict[str, Path] = {}
    for name, extra in (("alpha", []), ("traj", ["--template", "chat"]),
                        ("step", ["--template", "chat", "--granularity", "step"])):
        out[name] = base / name
        code, output = split(str(STAGE2), "-o", str(out[name]), "--dev-ratio", "0", "--workers", "1", *extra)
        assert code == 0, output
    return out


def _trajectories() -> dict[str, object]:
    return {r.trajectory.id: r.trajectory for r in read_inputs([str(STAGE2)])}


def test_one_row_per_trajectory_per_role_loadable_by_datasets(outs: dict[str, Path]) -> None:
    import datasets

    ds = datasets.load_dataset("parquet", data_dir=str(outs["traj"] / "caller"))
    assert set(ds) == {"train"}
    assert isinstance(ds["train"][0]["messages"][0], dict)  # Arrow JSON decodes to objects
    manifest = json.loads((outs["traj"] / "manifest.json").read_text())
    validator("manifest").validate(manifest)
    assert manifest["options"]["granularity"] == "trajectory"
    alpha = json.loads((outs["alpha"] / "manifest.json").read_text())
    for role in ROLES:
        got = rows(outs["traj"], role)
        ids = [r["trajectory_id"] for r in got]
        assert len(ids) == len(set(ids)), role
        # exactly the trajectories that have α-UMi examples of this role
        assert len(ids) == alpha["roles"][role]["train"]["trajectories"] == manifest["roles"][role]["train"]["examples"]
        for r in got:
            validator("chat-example").validate(r)
            assert r["messages"][0]["role"] == "system" and r["messages"][-1]["train"]


def test_supervised_turns_are_the_alpha_umi_examples(outs: dict[str, Path]) -> None:
    """Step rows carry the α-UMi example ids; the trajectory row trains exactly the union of
    its step rows' messages; planner/caller targets are the α-UMi targets in native form."""
    for role in ROLES:
        files = sorted((outs["alpha"] / role).glob("*.parquet"))
        alpha = {r["id"]: r for f in files for r in pq.read_table(f).to_pylist()}
        step = {r["id"]: r for r in rows(outs["step"], role)}
        assert set(step) == set(alpha), role
        per_traj: dict[str, set[int]] = {}
        for rid, r in step.items():
            trained = [i for i, m in enumerate(r["messages"]) if m["train"]]
            assert trained and trained[-1] == len(r["messages"]) - 1
            per_traj.setdefault(r["trajectory_id"], set()).update(trained)
            target = r["messages"][alpha[rid]["turn"] + 1]  # message i+1 is turn i
            assert target["train"]
            if role == "planner":
                assert target["content"] == alpha[rid]["completion"]
            if role == "caller":
                call = target["tool_calls"][0]["function"]
                assert alpha[rid]["completion"] == (
                    f"Action: {call['name']}\nAction Input: " + alpha[rid]["completion"].split("Action Input: ", 1)[1])
                assert json.loads(alpha[rid]["completion"].split("Action Input: ", 1)[1]) == call["arguments"]
        for r in rows(outs["traj"], role):
            trained = {i for i, m in enumerate(r["messages"]) if m["train"]}
            assert trained == per_traj[r["trajectory_id"]], (role, r["id"])


def test_summarizer_sees_history_without_tools_and_caller_sees_the_thought(outs: dict[str, Path]) -> None:
    for r in rows(outs["traj"], "summarizer"):
        assert r["tools"] == []
        assert any(m["role"] == "tool" for m in r["messages"])
    for r in rows(outs["traj"], "caller"):
        assert r["tools"] and all(t["type"] == "function" and "parameters" in t["function"] for t in r["tools"])
        for i, m in enumerate(r["messages"]):
            if m["train"]:
                before = r["messages"][i - 1]
                assert before["role"] == "assistant" and "Next: caller." in before["content"]


def test_caller_rows_render_as_native_qwen_tool_calls(outs: dict[str, Path]) -> None:
    """TRL's qwen2_5.jinja renders every call as <tool_call>{"name", "arguments"}</tool_call>
    with the canonical name and arguments, and lists the full tool schemas."""
    pytest.importorskip("trl")  # the `train` extra; the split itself needs neither
    from transformers.utils.chat_template_utils import render_jinja_template
    from trl.chat_template_utils import qwen2_5_chat_template

    trajs = _trajectories()
    for r in rows(outs["traj"], "caller"):
        text = render_jinja_template([r["messages"]], tools=r["tools"], chat_template=qwen2_5_chat_template)[0][0]
        body = text.split("</tools>", 1)[1].split("<|im_end|>", 1)[1]  # after the system's format line
        rendered = [json.loads(b) for b in re.findall(r"<tool_call>\n(.*?)\n</tool_call>", body, re.S)]
        canonical = [c for t in trajs[r["trajectory_id"]].turns if t.role == "caller" for c in t.calls]
        canonical = canonical[: len(rendered)]
        assert rendered and [x["name"] for x in rendered] == [c.name for c in canonical]
        assert [x["arguments"] for x in rendered] == [json.loads(c.arguments) for c in canonical]
        for tool in trajs[r["trajectory_id"]].tools:
            if tool.name != "Finish":
                assert json.dumps(tool.parameters, ensure_ascii=False) in text


def test_parallel_calls_stay_parallel(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = split(str(EXAMPLES / "openai-chats.jsonl"), "-o", str(out), "--template", "chat",
                         "--dev-ratio", "0", "--workers", "1")
    assert code in (0, 1), output
    row = next(r for r in rows(out, "summarizer") if r["trajectory_id"] == "chat-parallel-2")
    i, msg = next((i, m) for i, m in enumerate(row["messages"]) if len(m.get("tool_calls") or []) > 1)
    ids = [c["id"] for c in msg["tool_calls"]]
    answers = row["messages"][i + 1 : i + 1 + len(ids)]
    assert [a["role"] for a in answers] == ["tool"] * len(ids)
    names = {c["id"]: c["function"]["name"] for c in msg["tool_calls"]}
    assert sorted(a["tool_call_id"] for a in answers) == sorted(ids)  # answered in the input's order
    assert all(a["name"] == names[a["tool_call_id"]] for a in answers)


def test_chat_output_is_deterministic_across_workers(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    src = str(EXAMPLES / "toolbench-mini" / "answer")
    for out, workers in ((a, "1"), (b, "2")):
        code, output = split(src, "-o", str(out), "--template", "chat", "--workers", workers, "--shard-size", "3")
        assert code in (0, 1), output
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:  # the dataset card names its own OUTDIR; everything else is byte-identical
        if f.name == "README.md":
            assert (a / f).read_text().replace(str(a), "OUT") == (b / f).read_text().replace(str(b), "OUT")
        else:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f


@pytest.mark.parametrize(("args", "needle"), [
    (["--granularity", "step"], "--granularity applies to --template chat only"),
    (["--template", "chat", "--export", "glpft-json"], "glpft-json writes α-UMi prompts"),
])
def test_option_conflicts_are_usage_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    code, output = split(str(EXAMPLES / "openai-chats.jsonl"), "-o", str(tmp_path / "o"), *args)
    assert code == 2 and needle in output
    assert not (tmp_path / "o").exists()


def test_late_duplicate_removal_keeps_the_chat_schema(outs: dict[str, Path], tmp_path: Path) -> None:
    from umi_data.split.shards import drop_rows

    shard, original = tmp_path / "s.parquet", next((outs["traj"] / "caller").glob("*.parquet"))
    shard.write_bytes(original.read_bytes())
    table = pq.read_table(shard)
    key = (table.column("trajectory_id")[0].as_py(), table.column("source")[0].as_py())
    assert drop_rows(str(shard), {key}) == table.num_rows - 1
    assert pq.read_schema(shard).equals(pq.read_schema(original), check_metadata=True)
    assert key[0] not in pq.read_table(shard).column("trajectory_id").to_pylist()


# --- history (earlier requests of a chat, earlier ToolLLaMA steps): context, never trained ------

_WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
_TWO_REQUESTS = {"id": "c1", "tools": _WEATHER, "messages": [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": "Look it up.", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
    {"role": "tool", "tool_call_id": "a", "content": "4C"},
    {"role": "assistant", "content": "It is 4C in Oslo."},
    {"role": "user", "content": "And Bergen?"},
    {"role": "assistant", "content": "Look up Bergen.", "tool_calls": [
        {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'}}]},
    {"role": "tool", "tool_call_id": "b", "content": "7C"},
    {"role": "assistant", "content": "It is 7C in Bergen."},
]}
_API = ("You are AutoGPT. Specifically, you have access to the following APIs: [{'name': 'get_weather', "
        "'description': 'w', 'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}}}, "
        "{'name': 'Finish', 'description': 'f', 'parameters': {'type': 'object', 'properties': {}}}]")


def _toolllama_step(n: int, cities: list[str], finish: bool) -> dict:
    """A ToolLLaMA ``Step n`` record: one call per city, then (``finish``) the answer; without it
    the record ends at the last call, the step it trains."""
    conv = [{"from": "system", "value": _API}, {"from": "user", "value": "\nWeather in Oslo and Bergen?\nBegin!\n"}]
    for k, city in enumerate(cities):
        conv.append({"from": "assistant", "value": f"\nThought: look up {city}\nAction: get_weather\n"
                     f'Action Input: {{"city": "{city}"}}'})
        if finish or k + 1 < len(cities):  # a step record ends at the step it trains
            conv.append({"from": "function", "value": f'{{"error": "", "response": "{k}C"}}'})
    if finish:
        conv.append({"from": "assistant", "value": '\nThought: done\nAction: Finish\nAction Input: '
                     '{"return_type": "give_answer", "final_answer": "0C and 1C"}'})
    return {"id": f"Step {n}: Weather in Oslo and Bergen?", "conversations": conv}


def _split_three(src: Path, base: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for name, extra in (("alpha", []), ("traj", ["--template", "chat"]),
                        ("step", ["--template", "chat", "--granularity", "step"])):
        out[name] = base / name
        code, output = split(str(src), "-o", str(out[name]), "--dev-ratio", "0", "--workers", "1", *extra)
        assert code == 0, output
    return out


def _alpha_examples(outdir: Path, role: str) -> dict[str, dict]:
    return {r["id"]: r for f in sorted((outdir / role).glob("*.parquet")) for r in pq.read_table(f).to_pylist()}


def _assert_alpha_parity(out: dict[str, Path]) -> None:
    """Step rows are exactly the α-UMi examples, each training its example's turn (message i+1 is
    turn i, history first); a trajectory row trains the union; no row without a trained message."""
    for role in ROLES:
        alpha = _alpha_examples(out["alpha"], role)
        step = {r["id"]: r for r in rows(out["step"], role)}
        assert set(step) == set(alpha), role
        union: dict[str, set[int]] = {}
        for rid, r in step.items():
            trained = {i for i, m in enumerate(r["messages"]) if m["train"]}
            assert alpha[rid]["turn"] + 1 in trained and max(trained) == len(r["messages"]) - 1, rid
            union.setdefault(r["trajectory_id"], set()).update(trained)
        traj = rows(out["traj"], role)
        assert sorted(r["trajectory_id"] for r in traj) == sorted(union), role
        for r in traj:
            assert {i for i, m in enumerate(r["messages"]) if m["train"]} == union[r["trajectory_id"]], r["id"]


def test_multi_request_chat_keeps_earlier_requests_as_untrained_context(tmp_path: Path) -> None:
    src = tmp_path / "chat.jsonl"
    src.write_text(json.dumps(_TWO_REQUESTS) + "\n")
    out = _split_three(src, tmp_path)
    _assert_alpha_parity(out)
    for role in ROLES:
        for r in rows(out["traj"], role) + rows(out["step"], role):
            if r["trajectory_id"] != "c1#2":
                continue
            # request 1 (user, planner, call, tool, planner, answer) opens it, never trained
            msgs = r["messages"][1:]  # after the system message
            assert [m["role"] for m in msgs[:7]] == ["user", "assistant", "assistant", "tool", "assistant",
                                                     "assistant", "user"], r["id"]
            assert msgs[0]["content"] == "Weather in Oslo?" and msgs[5]["content"] == "It is 4C in Oslo."
            assert msgs[6]["content"] == "And Bergen?"
            assert not any(m["train"] for m in msgs[:7]) and any(m["train"] for m in msgs[7:]), r["id"]
    # request 2's caller learns the Bergen call, never the Oslo one again
    (caller,) = [r for r in rows(out["traj"], "caller") if r["trajectory_id"] == "c1#2"]
    assert [m["tool_calls"][0]["function"]["arguments"] for m in caller["messages"] if m["train"]] == [
        {"city": "Bergen"}]


def test_toolllama_step_history_is_context_and_caller_rows_match_alpha(tmp_path: Path) -> None:
    src = tmp_path / "toolllama.json"
    records = [_toolllama_step(2, ["Oslo"], finish=True),  # history: the Oslo call; trains the answer
               _toolllama_step(3, ["Oslo", "Bergen"], finish=False)]  # history: the Oslo call; trains Bergen
    src.write_text(json.dumps(records))
    out = _split_three(src, tmp_path)
    _assert_alpha_parity(out)
    n_callers = len(_alpha_examples(out["alpha"], "caller"))
    assert n_callers == 1 and len(rows(out["step"], "caller")) == n_callers == len(rows(out["traj"], "caller"))
    (caller,) = rows(out["traj"], "caller")
    assert [m["tool_calls"][0]["function"]["arguments"] for m in caller["messages"] if m["train"]] == [
        {"city": "Bergen"}]
    for role in ROLES:
        for r in rows(out["traj"], role):
            assert r["messages"][1]["role"] == "user" and not r["messages"][1]["train"], r["id"]
            oslo = next(m for m in r["messages"] if m.get("tool_calls"))
            assert oslo["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"} and not oslo["train"]
    (planner,) = [r for r in rows(out["traj"], "planner") if r["trajectory_id"].startswith("Step 2")]
    assert [m["content"] for m in planner["messages"] if m["train"]] == ["done\n Next: conclusion."]
