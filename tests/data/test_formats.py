"""The chat-shaped formats (ShareGPT, typed-part and legacy OpenAI, ToolLLaMA), the rules they
share (calls only, one trajectory per request, nothing empty), ids, exports and round trips.

Every input here is written for these tests (small look-alikes of the public files named in the
readers' docstrings), never copied from elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from click.testing import CliRunner

from umi_data.cli.commands import main
from umi_data.readers import FORMATS, catalog, read_inputs
from umi_data.render.roles import examples

from .conftest import REPO, SHARED, need, write_jsonl

AREA = {"name": "area", "description": "Area of a shape",
        "parameters": {"type": "object", "properties": {"shape": {"type": "string"}, "dims": {"type": "array"}},
                       "required": ["shape", "dims"]}}
TIME = {"name": "local_time", "description": "Time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def fc(name: str, **args: Any) -> dict[str, str]:
    return {"from": "function_call", "value": json.dumps({"name": name, "arguments": args})}


def h(text: str) -> dict[str, str]:
    return {"from": "human", "value": text}


def g(text: str) -> dict[str, str]:
    return {"from": "gpt", "value": text}


def obs(text: str) -> dict[str, str]:
    return {"from": "observation", "value": text}


def glaive_like() -> list[dict[str, Any]]:
    """The shapes of LLaMA-Factory's glaive_toolcall demo: tool chats over several requests,
    plain chats with ``"tools": "[]"``, a call-only chat, and one exact duplicate record."""
    multi = {"conversations": [h("Area of a 5 by 3 rectangle?"), fc("area", shape="rectangle", dims=[5, 3]),
                               obs('{"area": 15}'), g("It is 15."), h("Thanks! And a circle of radius 2?"),
                               fc("area", shape="circle", dims=[2]), obs('{"area": 12.57}'), g("About 12.57."),
                               h("Bye"), g("Goodbye!")],
             "tools": json.dumps([AREA])}
    plain = {"conversations": [h("What is an API?"), g("An interface."), h("And REST?"), g("A style.")],
             "tools": "[]"}
    calls_only = {"conversations": [h("Time in Oslo and Lima?"),
                                    {"from": "function_call", "value": json.dumps([
                                        {"name": "local_time", "arguments": {"city": "Oslo"}},
                                        {"name": "local_time", "arguments": {"city": "Lima"}}])}],
                  "tools": json.dumps([TIME])}
    return [multi, plain, calls_only, plain]


def typed_like() -> list[dict[str, Any]]:
    """The shapes of LLaMA-Factory's reason_tool_use demo: typed parts, reasoning, tools as a
    JSON string (with one non-function tool), a chat that ends in calls."""

    def part(kind: str, value: str) -> dict[str, str]:
        return {"type": kind, "value": value}

    def call(name: str, **args: Any) -> dict[str, str]:
        return part("tool_call", json.dumps({"name": name, "arguments": args}))

    tools = json.dumps([{"type": "function", "function": TIME}, {"type": "code_interpreter"}])
    system = {"role": "system", "content": [part("text", "Reason, then act.")]}
    answered = {"messages": [
        system, {"role": "user", "content": [part("text", "Time in Oslo?")]},
        {"role": "assistant", "content": [part("reasoning", "I need local_time."), call("local_time", city="Oslo")]},
        {"role": "tool", "content": [part("text", "09:00")]},
        {"role": "assistant", "content": [part("reasoning", "Report it."), part("text", "It is 09:00 in Oslo.")]},
        {"role": "user", "content": [part("text", "And in Lima?")]},
        {"role": "assistant", "content": [part("reasoning", "Again."), call("local_time", city="Lima")]}],
        "tools": tools}
    return [answered]


SYSTEM = ("You are AutoGPT, you can use many tools(functions) to do the following task.\nThought:\nAction\n"
          "Action Input:\n\nSpecifically, you have access to the following APIs: "
          + repr([{"name": "find_for_maps", "description": "Find a place.",
                   "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"],
                                  "optional": []}},
                  {"name": "Finish", "description": "Finish the task.",
                   "parameters": {"type": "object", "properties": {"return_type": {"type": "string"},
                                                                   "final_answer": {"type": "string"}},
                                  "required": ["return_type"]}}]))


def toolllama_like() -> list[dict[str, Any]]:
    """Three ``Step N`` records of one search, as ToolBench's preprocessing writes them."""
    sys_, user = {"from": "system", "value": SYSTEM}, {"from": "user", "value": "\nFind a cafe in Oslo.\nBegin!\n"}
    step1 = {"from": "assistant",
             "value": "\nThought: Search it.\nAction: find_for_maps\nAction Input: {\n  \"q\": \"cafe Oslo\"\n}"}
    result = {"from": "function", "value": '{"error": "", "response": "Cafe Sol, Storgata 1"}'}
    finish = {"from": "assistant", "value": "\nThought: \nAction: Finish\nAction Input: {\n  \"return_type\": "
              "\"give_answer\",\n  \"final_answer\": \"Cafe Sol, Storgata 1.\"\n}"}
    return [{"id": "Step 2: Find a cafe in Oslo.", "conversations": [sys_, user, step1]},
            {"id": "Step 4: Find a cafe in Oslo.", "conversations": [sys_, user, step1, result, finish]}]


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def trajectories(path: Path) -> list:
    recs = list(read_inputs([path]))
    assert all(r.accepted for r in recs), [f.line() for r in recs for f in r.findings]
    return [r.trajectory for r in recs]


def roles_of(turns) -> list[tuple[str, str | None]]:
    return [(t.role, t.decision) for t in turns]


# --- readers, field by field --------------------------------------------------------------------


def test_sharegpt_requests_and_calls_only(tmp_path: Path) -> None:
    recs = list(read_inputs([write_json(tmp_path / "glaive.json", glaive_like())]))
    assert {r.source.format for r in recs} == {"sharegpt"}
    t1, t2, t3, p1, p2, co, *_ = [r.trajectory for r in recs]
    assert [t.id for t in (t1, t2, t3)] == ["glaive/0", "glaive/0#2", "glaive/0#3"]
    assert [t.instruction for t in (t1, t2, t3)] == ["Area of a 5 by 3 rectangle?", "Thanks! And a circle of radius 2?",
                                                      "Bye"]
    assert t1.tools[0].name == "area" and t1.tools[0].parameters == AREA["parameters"]
    assert roles_of(t1.turns) == [("user", None), ("planner", "call"), ("caller", None), ("observation", None),
                                  ("planner", "conclude"), ("conclusion", None)]
    assert t1.turns[1].thought is None and t1.turns[2].calls[0].name == "area"
    assert t1.turns[2].calls[0].arguments == '{"shape": "rectangle", "dims": [5, 3]}'
    assert t1.turns[3].content == '{"area": 15}' and t1.turns[3].name == "area"
    assert t1.turns[5].content == "It is 15." and t1.outcome == "answered" and t1.history == []
    # request 2: request 1 is its history; request 3 sees both
    assert t2.history == t1.turns and t2.turns[0].content == "Thanks! And a circle of radius 2?"
    assert t2.turns[-1].content == "About 12.57." and len(t3.history) == len(t1.turns) + len(t2.turns)
    assert (t2.metadata["umi_episode"], t2.metadata["umi_episodes"]) == (2, 3)
    assert (p1.id, p2.id, p2.instruction, p2.turns[-1].content) == ("glaive/1", "glaive/1#2", "And REST?", "A style.")
    # a chat that ends in (parallel) calls
    assert co.outcome == "calls_only" and roles_of(co.turns) == [("user", None), ("planner", "call"), ("caller", None)]
    assert [c.arguments for c in co.turns[2].calls] == ['{"city": "Oslo"}', '{"city": "Lima"}']


def test_calls_only_examples(tmp_path: Path) -> None:
    (rec,) = read_inputs([write_json(tmp_path / "c.json", glaive_like()[2])])
    assert rec.accepted and [f.code for f in rec.findings] == []
    from umi_data.export.convert import judge

    checked = judge(rec)
    assert not checked.rejected and [f.code for f in checked.findings] == ["parallel_calls"]  # no missing result
    traj = rec.trajectory
    counts = {role: list(examples(traj, role)) for role in ("planner", "caller", "summarizer", "global")}
    assert [e.completion for e in counts["planner"]] == [" Next: caller."]
    assert counts["caller"][0].completion == ('Action: local_time\nAction Input: {"city": "Oslo"}\n'
                                              'Action: local_time\nAction Input: {"city": "Lima"}')
    assert counts["summarizer"] == [] and len(counts["global"]) == 1


def test_history_makes_no_examples(tmp_path: Path) -> None:
    t1, t2, t3, *_ = trajectories(write_json(tmp_path / "g.json", glaive_like()[:1]))
    for t in (t1, t2, t3):
        callers = list(examples(t, "caller"))
        summaries = list(examples(t, "summarizer"))
        assert len(summaries) == 1 and len(callers) == (0 if t is t3 else 1)
    second = next(iter(examples(t2, "summarizer")))
    assert second.completion == "About 12.57."
    # the earlier request is in the prompt's history, not a target
    assert "user: Area of a 5 by 3 rectangle?</s>" in second.prompt and "conclusion: It is 15.</s>" in second.prompt
    assert next(iter(examples(t2, "planner"))).turn == len(t1.turns) + 1  # indices count history first


def test_sharegpt_custom_tags(tmp_path: Path) -> None:
    rec = {"chat": [{"speaker": "me", "text": "Time in Oslo?"},
                    {"speaker": "tool-call", "text": json.dumps({"name": "local_time", "arguments": {"city": "Oslo"}})},
                    {"speaker": "result", "text": "09:00"}, {"speaker": "bot", "text": "09:00."}],
           "conversations": [], "functions": json.dumps([TIME])}
    data = write_json(tmp_path / "mine.json", [rec])
    write_json(tmp_path / "dataset_info.json", {"mine": {
        "file_name": "mine.json", "formatting": "sharegpt", "columns": {"messages": "chat", "tools": "functions"},
        "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot",
                 "observation_tag": "result", "function_tag": "tool-call"}}})
    (t,) = trajectories(data)
    assert t.instruction == "Time in Oslo?" and t.tools[0].name == "local_time" and t.outcome == "answered"
    assert roles_of(t.turns)[1:3] == [("planner", "call"), ("caller", None)] and t.turns[3].content == "09:00"
    # a role the tags do not name is a located schema error
    rec["chat"][1]["speaker"] = "robot"
    (bad,) = read_inputs([write_json(data, [rec])])
    assert not bad.accepted and bad.findings[-1].pointer == "/chat/1/speaker" and "robot" in bad.findings[-1].message


def test_openai_typed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "reason.jsonl", typed_like())
    recs = list(read_inputs([path]))
    assert [r.source.format for r in recs] == ["openai-typed", "openai-typed"]
    t1, t2 = (r.trajectory for r in recs)
    assert [f.code for f in recs[0].findings] == ["non_function_tool"] and recs[0].findings[0].pointer == "/tools/1"
    assert t1.metadata["other_tools"] == [{"type": "code_interpreter"}] and [t.name for t in t1.tools] == ["local_time"]
    assert t1.system == "Reason, then act." and t1.instruction == "Time in Oslo?"
    assert (t1.turns[1].thought, t1.turns[1].decision) == ("I need local_time.", "call")
    assert t1.turns[2].calls[0].arguments == '{"city": "Oslo"}' and t1.turns[3].content == "09:00"
    assert (t1.turns[4].thought, t1.turns[4].decision, t1.turns[5].content) == ("Report it.", "conclude",
                                                                                 "It is 09:00 in Oslo.")
    assert t2.id == "reason/1#2" and t2.outcome == "calls_only" and t2.turns[1].thought == "Again."


def test_openai_functions_legacy() -> None:
    from umi_data.readers import openai_functions

    rec = {"messages": [{"role": "user", "content": "Time in Oslo?"},
                        {"role": "assistant", "content": "Looking.", "function_call":
                         {"name": "local_time", "arguments": '{"city": "Oslo"}'}},
                        {"role": "function", "name": "local_time", "content": "09:00"},
                        {"role": "assistant", "content": "09:00."}],
           "functions": [TIME]}
    assert openai_functions.sniff(rec)
    from umi_data.trajectory import Source

    ((t, findings),) = openai_functions.read(rec, Source("openai-functions", "x.json"), "x")
    assert findings == [] and [x.name for x in t.tools] == ["local_time"]
    assert (t.turns[1].thought, t.turns[2].calls[0].arguments) == ("Looking.", '{"city": "Oslo"}')
    assert (t.turns[3].content, t.turns[3].name, t.turns[5].content, t.outcome) == ("09:00", "local_time", "09:00.",
                                                                                     "answered")


def test_toolllama(tmp_path: Path) -> None:
    s2, s4 = trajectories(write_json(tmp_path / "toolllama_G1.json", toolllama_like()))
    assert s2.id == "Step 2: Find a cafe in Oslo." and s2.source.format == "toolllama"
    assert [t.name for t in s2.tools] == ["find_for_maps", "Finish"] and s2.tools[0].parameters["required"] == ["q"]
    assert s2.instruction == "Find a cafe in Oslo." and s2.system.startswith("You are AutoGPT")
    assert "following APIs" not in s2.system
    assert s2.history == [] and s2.outcome == "calls_only"
    assert (s2.turns[1].thought, s2.turns[2].calls[0].arguments) == ("Search it.", '{\n  "q": "cafe Oslo"\n}')
    # Step 4: the earlier step is history, only the Finish step makes examples
    assert roles_of(s4.history) == [("user", None), ("planner", "call"), ("caller", None), ("observation", None)]
    assert s4.history[3].content == "Cafe Sol, Storgata 1" and s4.history[3].error is None
    assert roles_of(s4.turns) == [("planner", "conclude"), ("conclusion", None)] and s4.turns[0].thought is None
    assert s4.turns[1].content == "Cafe Sol, Storgata 1." and s4.outcome == "answered"
    assert [len(list(examples(s4, r))) for r in ("planner", "caller", "summarizer")] == [1, 0, 1]


def test_toolllama_reference_sample() -> None:
    data = need(SHARED / "toolllama-example")
    recs = list(read_inputs([data]))
    assert len(recs) == 50 and all(r.accepted and r.source.format == "toolllama" for r in recs)
    for r in recs:  # one record = one step: exactly one planner example each
        assert len(list(examples(r.trajectory, "planner"))) == 1
        assert len(r.trajectory.tools) > 1 and r.trajectory.instruction


def test_empty_prompts_and_completions_rejected(tmp_path: Path) -> None:
    null_chat = {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": None}]}
    empty_answer = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}
    out = tmp_path / "o.jsonl"
    res = run("convert", write_jsonl(tmp_path / "nulls.jsonl", [null_chat, empty_answer]), "-o", out)
    assert res.exit_code == 1 and out.read_text() == ""
    rejects = [json.loads(x) for x in (tmp_path / "o.rejects.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejects] == ["empty_instruction", "empty_completion"]
    assert rejects[1]["pointer"] == "/turns/2/content"
    assert "empty_completion" in {f["code"] for f in rejects[0]["findings"]}


def test_unknown_format_names_the_closest(tmp_path: Path) -> None:
    (rec,) = read_inputs([write_json(tmp_path / "x.json", {"query": "q", "function": []})])
    assert rec.findings[0].code == "unknown_format"
    assert "closest format: toolbench" in rec.findings[0].message and "`answer_generation`" in rec.findings[0].message
    (rec,) = read_inputs([write_json(tmp_path / "y.json", {"tools": [], "functions": [], "id": "a"})])
    assert "closest format: openai" in rec.findings[0].message and "`messages`" in rec.findings[0].message
    (rec,) = read_inputs([write_json(tmp_path / "dataset_info.json", {"d": {"file_name": "d.json"}})])
    assert rec.findings[0].code == "unknown_format" and "LLaMA-Factory dataset_info.json" in rec.findings[0].message


# --- ids ----------------------------------------------------------------------------------------


def answer_file(answer: str) -> dict[str, Any]:
    chain = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
             {"role": "assistant", "content": "done", "function_call": {"name": "Finish", "arguments": json.dumps(
                 {"return_type": "give_answer", "final_answer": answer})}}]
    return {"answer_generation": {"query": "Find x", "function": [TIME], "train_messages": [chain]}}


def test_tooleval_ids_and_prefix(tmp_path: Path) -> None:
    for method, answer in (("gpt4_dfs", "x is 1"), ("toolllama_dfs", "x is one")):
        d = tmp_path / "answers" / method / "G1_instruction"
        d.mkdir(parents=True)
        write_json(d / "10_DFS_woFilter_w2.json", answer_file(answer))
    out = tmp_path / "t.jsonl"
    res = run("convert", tmp_path / "answers", "-o", out, "--id-prefix", "run1:")
    assert res.exit_code == 0, res.output
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert ids == ["run1:gpt4_dfs/G1_instruction/10_DFS_woFilter_w2",
                   "run1:toolllama_dfs/G1_instruction/10_DFS_woFilter_w2"]


# --- exports and round trips --------------------------------------------------------------------


def canonical(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        r.pop("source")
    return rows


def test_round_trips(tmp_path: Path) -> None:
    inputs = {"glaive.json": glaive_like()[:3], "toolllama.json": toolllama_like()}
    write_jsonl(tmp_path / "reason.jsonl", typed_like())
    for name, data in inputs.items():
        write_json(tmp_path / name, data)
    for name in ("glaive.json", "reason.jsonl", "toolllama.json"):
        canon = tmp_path / f"{name}.umi.jsonl"
        assert run("convert", tmp_path / name, "-o", canon).exit_code == 0
        want = canonical(canon)
        for to in ("openai", "sharegpt"):
            if to == "sharegpt" and name != "glaive.json":
                continue  # ShareGPT has no place for thoughts or a step's history
            exported = tmp_path / f"{name}.{to}.jsonl"
            assert run("convert", canon, "-o", exported, "--to", to).exit_code == 0
            back = tmp_path / f"{name}.{to}.back.jsonl"
            res = run("convert", exported, "-o", back)
            assert res.exit_code == 0, res.output
            assert canonical(back) == want, (name, to)
    chats = [json.loads(x) for x in (tmp_path / "glaive.json.openai.jsonl").read_text().splitlines()]
    assert [c["id"] for c in chats] == ["glaive/0", "glaive/1", "glaive/2"]  # each chat once, whole
    assert chats[0]["tools"] == [{"type": "function", "function": AREA}] and len(chats[0]["messages"]) == 10
    assert chats[2]["messages"][1]["tool_calls"][1]["function"] == {"name": "local_time",
                                                                    "arguments": '{"city": "Lima"}'}


def test_sharegpt_export_is_llamafactory_shaped(tmp_path: Path) -> None:
    src = write_json(tmp_path / "in.json", glaive_like()[:3])
    out_dir = tmp_path / "lf"
    out_dir.mkdir()
    write_json(out_dir / "dataset_info.json", {"other": {"file_name": "other.json"}})
    out = out_dir / "tools.json"
    assert run("convert", src, "-o", out, "--to", "sharegpt").exit_code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [x["from"] for x in data[0]["conversations"]][:4] == ["human", "function_call", "observation", "gpt"]
    assert json.loads(data[0]["conversations"][1]["value"]) == {"name": "area",
                                                                "arguments": {"shape": "rectangle", "dims": [5, 3]}}
    assert isinstance(data[0]["tools"], str) and json.loads(data[0]["tools"]) == [AREA]
    info = json.loads((out_dir / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["other"] == {"file_name": "other.json"}  # the user's entries are kept
    assert info["tools"] == {"file_name": "tools.json", "formatting": "sharegpt",
                             "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}
    # a dataset_info.json that cannot be merged into: usage error, nothing written
    (out_dir / "dataset_info.json").write_text("[]")
    res = run("convert", src, "-o", out_dir / "more.json", "--to", "sharegpt")
    assert res.exit_code == 2 and "not touching it" in res.output and not (out_dir / "more.json").exists()


# --- split on look-alikes of the public files ---------------------------------------------------


def test_split_lookalikes(tmp_path: Path) -> None:
    """No --format: only exact duplicates rejected, every call in exactly one caller example,
    no empty prompt or completion."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_json(inputs / "glaive_toolcall_demo.json", glaive_like())
    write_jsonl(inputs / "reason_tool_use_demo.jsonl", typed_like())
    write_json(inputs / "toolllama_G1_dfs.json", toolllama_like())
    out = tmp_path / "out"
    res = run("split", inputs, "-o", out, "--workers", "1", "--dev-ratio", "0")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rejected_by_reason"] == {"duplicate_trajectory": 2}, res.output  # the repeated chat
    rows = {role: [r for f in sorted((out / role).glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
            for role in ("global", "planner", "caller", "summarizer")}
    assert all(r["prompt"].strip() and r["completion"].strip() for rs in rows.values() for r in rs)
    calls = [line for r in rows["caller"] for line in r["completion"].splitlines() if line.startswith("Action: ")]
    # glaive-like: 2 + 2 parallel; reason-like: 2; toolllama-like: 1 (Finish is the planner's)
    assert sorted(calls) == sorted(["Action: area"] * 2 + ["Action: local_time"] * 4 + ["Action: find_for_maps"])
    assert len(rows["summarizer"]) == 3 + 2 + 1 + 1  # one per answered request, none for calls only


# --- docs ---------------------------------------------------------------------------------------


def test_formats_table_is_the_readme() -> None:
    assert {d.name for d in catalog.CATALOG} == set(FORMATS)
    res = run("formats", "--markdown")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    begin = "<!-- formats:begin (generated: umidata formats --markdown) -->\n"
    block = readme.split(begin)[1].split("<!-- formats:end")[0]
    assert block == res.output, "paste `umidata formats --markdown` into the README's Inputs section"
    listed = [line.split(":")[0] for line in run("formats").output.splitlines() if line and not line[0].isspace()]
    assert set(FORMATS) <= set(listed)


def test_one_tool_message_for_parallel_calls(tmp_path: Path) -> None:
    def text(v: str) -> list[dict[str, str]]:
        return [{"type": "text", "value": v}]

    calls = [{"type": "tool_call", "value": json.dumps({"name": "local_time", "arguments": {"city": c}})}
             for c in ("Oslo", "Lima")]
    results = json.dumps([{"tool_call_id": "x1", "name": "local_time", "content": "09:00"},
                          {"tool_call_id": "x2", "name": "local_time", "content": {"t": "03:00"}}])
    rec = {"messages": [{"role": "user", "content": text("Oslo and Lima?")}, {"role": "assistant", "content": calls},
                        {"role": "tool", "content": text(results)}, {"role": "assistant", "content": text("9 and 3.")}],
           "tools": json.dumps([TIME])}
    (t,) = trajectories(write_jsonl(tmp_path / "p.jsonl", [rec]))
    assert [(x.role, x.content, x.name) for x in t.turns[3:5]] == [("observation", "09:00", "local_time"),
                                                                   ("observation", '{"t": "03:00"}', "local_time")]
    from umi_data.trajectory.checks import check

    assert [f.code for f in check(t)] == ["parallel_calls"]  # both calls answered


def test_reader_warnings_go_with_their_request(tmp_path: Path) -> None:
    image = {"type": "image_url", "image_url": {"url": "x.png"}}
    rec = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]},
                        {"role": "assistant", "content": "a cat"}]}
    first, second = read_inputs([write_jsonl(tmp_path / "w.jsonl", [rec])])
    assert first.findings == [] and [(f.code, f.pointer) for f in second.findings] == [
        ("dropped_message", "/messages/2/content/1")]
    assert second.trajectory.instruction == "what is this?" and second.trajectory.id == "w/1#2"


def test_dataset_info_option(tmp_path: Path) -> None:
    rec = {"dialog": [{"role": "me", "content": "Time in Oslo?"},
                      {"role": "call", "content": json.dumps({"name": "local_time", "arguments": {"city": "Oslo"}})}],
           "tools": json.dumps([TIME])}
    (tmp_path / "data").mkdir()
    data = write_jsonl(tmp_path / "data" / "d.jsonl", [rec])
    info = write_json(tmp_path / "elsewhere.json", {"d": {"file_name": "d.jsonl", "formatting": "sharegpt",
                      "columns": {"messages": "dialog"}, "tags": {"role_tag": "role", "content_tag": "content",
                      "user_tag": "me", "function_tag": "call"}}})
    out = tmp_path / "o.jsonl"
    res = run("convert", data, "-o", out, "--dataset-info", info)
    assert res.exit_code == 0, res.output
    (t,) = canonical(out)
    assert t["outcome"] == "calls_only" and t["instruction"] == "Time in Oslo?"
    assert run("convert", data, "-o", out, "--overwrite").exit_code == 1  # without it: not a format umi knows
    split_out = tmp_path / "split"
    assert run("split", data, "-o", split_out, "--dataset-info", info, "--workers", "1").exit_code == 0
    assert json.loads((split_out / "manifest.json").read_text())["options"]["dataset_info"] == str(info)
    info.write_text("[1]")
    assert run("validate", data, "--dataset-info", info).exit_code == 2


def test_requests_of_a_chat_share_a_split(tmp_path: Path) -> None:
    chats = []
    for i in range(8):
        chat = json.loads(json.dumps(glaive_like()[0]).replace("5 by 3", f"{i + 5} by 3"))
        chats.append(chat)
    out = tmp_path / "out"
    assert run("split", write_json(tmp_path / "chats.json", chats), "-o", out, "--dev-ratio", "0.5",
               "--workers", "1").exit_code == 0
    split_of: dict[str, set[str]] = {}
    for split in ("train", "dev"):
        for f in (out / "summarizer").glob(f"{split}-*.parquet"):
            for r in pq.read_table(f).to_pylist():
                split_of.setdefault(r["trajectory_id"].split("#")[0], set()).add(split)
    assert len(split_of) == 8 and all(len(s) == 1 for s in split_of.values())
    assert {s for ss in split_of.values() for s in ss} == {"train", "dev"}


def test_toolbench_and_toolllama_samples_round_trip_through_openai(tmp_path: Path) -> None:
    for name in ("toolbench-example", "toolllama-example"):
        canon = tmp_path / f"{name}.jsonl"
        run("convert", need(SHARED / name), "-o", canon)
        exported, back = tmp_path / f"{name}.openai.jsonl", tmp_path / f"{name}.back.jsonl"
        assert run("convert", canon, "-o", exported, "--to", "openai").exit_code == 0
        assert run("convert", exported, "-o", back).exit_code == 0
        assert canonical(back) == canonical(canon) and len(canonical(canon)) > 10, name


def test_exclude_ids_names_a_whole_chat(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("glaive/0\n")
    out = tmp_path / "out"
    run("split", write_json(tmp_path / "glaive.json", glaive_like()[:2]), "-o", out, "--exclude-ids", ids,
        "--workers", "1")
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejects] == ["excluded"] * 3  # the three requests of chat 0, not chat 1


def test_an_opening_greeting_is_history_not_a_request(tmp_path: Path) -> None:
    """An assistant greeting before the first user message is a plain turn of the first request
    (it was taken as the answer of a request without a question: an extra `empty_instruction`
    reject, and the real request renamed `<id>#2`)."""
    src = write_jsonl(tmp_path / "g.jsonl", [{"id": "g1", "messages": [
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "Q?"},
        {"role": "assistant", "content": "A."}]}])
    (t,) = trajectories(src)
    assert t.id == "g1" and t.instruction == "Q?"
    assert roles_of(t.turns) == [("planner", None), ("user", None), ("planner", "conclude"), ("conclusion", None)]
    assert [e.completion for e in examples(t, "summarizer")] == ["A."]


def test_every_format_has_a_signature_for_closest_format() -> None:
    """A new reader is named as the closest format of a record that almost matches it."""
    from umi_data.readers import _SHAPES, FORMATS, closest_formats

    missing = [f for f in FORMATS if f not in _SHAPES and f not in ("openai-typed", "openai-functions")]
    assert missing == []
    fmts, _ = closest_formats({"traj": "not a list", "task_id": 3, "reward": 1.0})
    assert fmts == ["tau-bench"]
