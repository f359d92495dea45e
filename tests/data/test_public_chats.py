"""Hermes, ToolACE and τ-bench records (fixtures in ``fixtures/``, written for these tests in each
published shape), system prompts as data, and the small mismatches mended with a warning:
double-encoded arguments, trailing unanswered user lines, calls written as text in a chat that
declares no tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main
from umi_data.readers import read_inputs
from umi_data.readers.textcalls import CallSyntax, calls_in_text, double_encoded, python_calls, tagged_calls
from umi_data.render.chat import SYSTEM
from umi_data.render.roles import examples, prepare
from umi_data.trajectory import Trajectory

from .conftest import chat, tcall, write_jsonl

FIXTURES = Path(__file__).parent / "fixtures"
HERMES = FIXTURES / "hermes-function-calling.json"
TOOLACE = FIXTURES / "toolace.json"
TAU = FIXTURES / "tau-bench-retail.json"


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read(path: Path):
    return list(read_inputs([path]))


def codes(rec) -> list[str]:
    return [f.code for f in rec.findings]


def turns(t: Trajectory) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for x in t.turns:
        if x.role == "caller":
            out.append(("caller", [(c.name, json.loads(c.arguments)) for c in x.calls or []]))
        elif x.role == "planner":
            out.append(("planner", x.decision))
        else:
            out.append((x.role, x.content))
    return out


# --- the three readers, detected without --format ----------------------------------------------


def test_hermes() -> None:
    recs = read(HERMES)
    assert {r.source.format for r in recs} == {"hermes"} and all(r.accepted for r in recs)
    quote, thanks, parallel, calls_only = (r.trajectory for r in recs)
    # tools from a Python-literal <tools> block; the prose around it is the system prompt
    assert [t.name for t in quote.tools] == ["get_quote"] and quote.tools[0].parameters["required"] == ["symbol"]
    assert quote.system.startswith("You are a function calling AI model.") and "get_quote" not in quote.system
    assert turns(quote) == [("user", "What does a share of ACME cost right now?"), ("planner", "call"),
                            ("caller", [("get_quote", {"symbol": "ACME"})]),
                            ("observation", '{"symbol": "ACME", "usd": 12.5}'), ("planner", "conclude"),
                            ("conclusion", "One ACME share costs $12.50.")]
    assert quote.turns[3].name == "get_quote" and quote.metadata["category"] == "Finance"
    assert thanks.id == "hermes-quote#2" and thanks.instruction == "Thanks, that is all."
    # JSON tools; two <tool_call> blocks are parallel calls, the text before them the thought
    assert [t.name for t in parallel.tools] == ["get_quote", "get_news"]
    assert parallel.turns[1].thought == "Let me look both up."
    assert turns(parallel)[2] == ("caller", [("get_quote", {"symbol": "ACME"}),
                                             ("get_news", {"company": "ACME", "limit": 2})])
    assert [(t.name, t.content) for t in parallel.turns[3:5]] == [("get_quote", '{"usd": 12.5}'),
                                                                  ("get_news", '["ACME ships rockets", "ACME hires"]')]
    # one tool per line in the block; a chat that ends in a call is calls_only
    assert [t.name for t in calls_only.tools] == ["get_quote", "get_news"] and calls_only.outcome == "calls_only"
    assert turns(calls_only)[-1] == ("caller", [("get_news", {"company": "Initech", "limit": 3})])


def test_hermes_unreadable_call_is_a_located_reject(tmp_path: Path) -> None:
    rec = json.loads(HERMES.read_text())[0]
    rec["conversations"][2]["value"] = ("<tool_call>\n{'name': 'get_quote', 'arguments': {'symbol': __import__('os')}}"
                                        "\n</tool_call>")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([rec]))
    (bad,) = read(path)
    assert not bad.accepted and bad.findings[-1].code == "schema"
    assert bad.findings[-1].pointer == "/conversations/2/value" and "<tool_call>" in bad.findings[-1].message


def test_toolace() -> None:
    recs = read(TOOLACE)
    assert {r.source.format for r in recs} == {"toolace"} and all(r.accepted for r in recs)
    wallet, tides, ask = (r.trajectory for r in recs)
    assert [t.name for t in wallet.tools] == ["newAddress"] and wallet.tools[0].parameters["type"] == "dict"
    assert "newAddress" not in wallet.system and "you can invoke:\nShould you decide" in wallet.system
    assert turns(wallet)[2] == ("caller", [("newAddress", {"password": "tr0ub4dor&3"})])
    assert turns(wallet)[3] == ("observation", '{"address": "0x5e1f00d"}') and wallet.outcome == "answered"
    # a tool name with spaces, parallel calls, Python literals (True, single quotes), one result each
    day = {"date": "2024-06-01", "metric": True}
    assert turns(tides)[2] == ("caller", [("Tide Table API", {"harbour": "Bergen", **day}),
                                          ("Tide Table API", {"harbour": "Oslo", **day})])
    assert [t.content for t in tides.turns[3:5]] == ['{"high": 1.2}', '{"high": 0.4}']
    assert turns(ask)[-1] == ("conclusion", "The function newAddress needs a password; please provide one.")


def test_toolace_call_that_is_not_literal_stays_text_with_a_warning(tmp_path: Path) -> None:
    rec = json.loads(TOOLACE.read_text())[2]
    rec["conversations"][1]["value"] = "[newAddress(password=open('/etc/passwd').read())]"
    path = tmp_path / "t.json"
    path.write_text(json.dumps([rec]))
    (r,) = read(path)
    assert r.accepted and "calls_in_text" in codes(r)
    assert turns(r.trajectory)[-1] == ("conclusion", "[newAddress(password=open('/etc/passwd').read())]")


def test_tau_bench() -> None:
    recs = read(TAU)
    assert {r.source.format for r in recs} == {"tau-bench"} and all(r.accepted for r in recs)
    ask, cancel_check, cancel, single, transfer = (r.trajectory for r in recs)
    assert [t.id for t in (ask, cancel_check, cancel, single, transfer)] == [
        "tau-bench-retail/0", "tau-bench-retail/0#2", "tau-bench-retail/0#3", "tau-bench-retail/1",
        "tau-bench-retail/2"]
    assert ask.system.startswith("# Retail agent policy") and ask.metadata["task_id"] == 3
    assert ask.metadata["reward"] == 1.0 and ask.metadata["info"]["task"]["user_id"] == "ada_9"
    # no tool list: named from the record's calls, with a warning and a mark
    assert [t.name for t in ask.tools] == ["get_user", "cancel_order"] and ask.metadata["umi_tools_inferred"] is True
    assert "tools_inferred" in codes(recs[0])
    # the simulator's ###STOP### line ends the chat: a warning on the last request, text kept
    assert cancel.outcome == "answered" and cancel.metadata["umi_trailing_user"] == ["Great, thanks! ###STOP###"]
    assert "unanswered_user" in codes(recs[2]) and "umi_trailing_user" not in ask.metadata
    assert turns(single) == [("user", "Where is my order #W7? My user id is bo_2."), ("planner", "call"),
                             ("caller", [("get_order", {"order_id": "#W7"})]),
                             ("observation", '{"order_id": "#W7", "status": "in transit"}'),
                             ("planner", "conclude"), ("conclusion", "Order #W7 is in transit.")]
    # the environment ended the run on the transfer's result: the run ends in the call, result kept
    assert transfer.outcome == "calls_only" and turns(transfer)[-1][1][0][0] == "transfer_to_human_agents"
    assert transfer.metadata["umi_final_results"] == [{"call_id": "call_c1", "name": "transfer_to_human_agents",
                                                       "content": "Transfer successful"}]
    assert "terminal_action" in codes(recs[4]) and "terminal_action" not in codes(recs[0])


def test_new_readers_round_trip_through_exports(tmp_path: Path) -> None:
    """Reading an export back gives the same trajectories (ShareGPT: for records without what it
    cannot carry: thoughts, call ids, metadata, trailing user lines)."""
    for src, targets in ((HERMES, ("openai",)), (TOOLACE, ("openai", "sharegpt")), (TAU, ("openai",))):
        canon = tmp_path / f"{src.stem}.umi.jsonl"
        assert run("convert", src, "-o", canon).exit_code == 0
        want = [{k: v for k, v in json.loads(x).items() if k != "source"} for x in canon.read_text().splitlines()]
        assert all("system" in w for w in want)
        for to in targets:
            exported = tmp_path / f"{src.stem}.{to}.jsonl"
            assert run("convert", canon, "-o", exported, "--to", to).exit_code == 0
            back = tmp_path / f"{src.stem}.{to}.back.jsonl"
            res = run("convert", exported, "-o", back)
            assert res.exit_code == 0, res.output
            got = [{k: v for k, v in json.loads(x).items() if k != "source"} for x in back.read_text().splitlines()]
            assert got == want, (src.name, to)
    chats = [json.loads(x) for x in (tmp_path / "tau-bench-retail.openai.jsonl").read_text().splitlines()]
    policy = json.loads(TAU.read_text())[0]["traj"][0]["content"]
    assert chats[0]["messages"][0] == {"role": "system", "content": policy}
    assert chats[0]["messages"][-1] == {"role": "user", "content": "Great, thanks! ###STOP###"}


@pytest.mark.parametrize("src", [HERMES, TOOLACE, TAU], ids=lambda p: p.stem)
def test_new_readers_split_both_renderings(tmp_path: Path, src: Path) -> None:
    for template in ("alpha-umi", "chat"):
        out = tmp_path / template
        res = run("split", src, "-o", out, "--workers", "1", "--dev-ratio", "0", "--template", template)
        assert res.exit_code == 0, res.output
        rows = {role: [r for f in sorted((out / role).glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
                for role in ("planner", "caller", "summarizer")}
        assert rows["caller"] and rows["planner"] and rows["summarizer"]
        if template == "chat":
            for r in rows["caller"]:
                msgs = [json.loads(m) for m in r["messages"]]
                assert msgs[0]["content"].endswith(SYSTEM["caller"]) and msgs[-1]["tool_calls"]
        else:
            assert all(r["completion"].startswith("Action: ") for r in rows["caller"])


# --- system prompts -------------------------------------------------------------------------------


def test_system_prompt_renderings(tmp_path: Path) -> None:
    (rec, *_) = read(TAU)
    t = rec.trajectory
    assert t.system
    policy = t.system
    default = [e.prompt for e in examples(t, "planner", prepared=prepare(t))]
    assert default and all(policy not in p for p in default)  # α-UMi default: the paper's prompt only
    prepended = [e.prompt for e in examples(t, "planner", prepared=prepare(t, "prepend"))]
    assert prepended == [policy + "\n\n" + p for p in default]
    for mode, want in (("alpha-umi", "ignore"), ("chat", "prepend")):
        out = tmp_path / mode
        assert run("split", TAU, "-o", out, "--workers", "1", "--dev-ratio", "0", "--template", mode).exit_code == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["options"]["system_prompt"] == want
    row = pq.read_table(next((tmp_path / "chat" / "planner").glob("*.parquet"))).to_pylist()[0]
    assert json.loads(row["messages"][0])["content"] == policy + "\n\n" + SYSTEM["planner"]
    out = tmp_path / "ignored"
    assert run("split", TAU, "-o", out, "--workers", "1", "--dev-ratio", "0", "--template", "chat",
               "--system-prompt", "ignore").exit_code == 0
    row = pq.read_table(next((out / "planner").glob("*.parquet"))).to_pylist()[0]
    assert json.loads(row["messages"][0])["content"] == SYSTEM["planner"]
    out = tmp_path / "prepended"
    res = run("split", TAU, "-o", out, "--workers", "1", "--dev-ratio", "0", "--system-prompt", "prepend")
    assert res.exit_code == 0
    rows = pq.read_table(next((out / "planner").glob("*.parquet"))).to_pylist()
    assert all(r["prompt"].startswith(policy + "\n\nYou have assess to the following apis:") for r in rows)


def test_canonical_system_field_is_backwards_compatible(tmp_path: Path) -> None:
    canon = tmp_path / "c.jsonl"
    assert run("convert", TAU, "-o", canon).exit_code == 0
    line = json.loads(canon.read_text().splitlines()[-1])
    old = {k: v for k, v in line.items() if k != "system"}
    old["metadata"] = {**line["metadata"], "system": line["system"]}  # how files before the field kept it
    none = {k: v for k, v in line.items() if k != "system"}
    write_jsonl(tmp_path / "old.jsonl", [old, {**none, "id": "no-system"}])
    lifted, plain = (r.trajectory for r in read(tmp_path / "old.jsonl"))
    assert lifted.system == line["system"] and "system" not in lifted.metadata
    assert plain.system is None and "system" not in plain.to_dict()
    assert Trajectory.from_dict(line).to_dict() == line


# --- small mismatches ---------------------------------------------------------------------------


def test_double_encoded_arguments_are_decoded(tmp_path: Path) -> None:
    twice = json.dumps(json.dumps({"q": "drone", "n": 2}))
    rec = chat({"role": "system", "content": "You fly drones."}, {"role": "user", "content": "find drone"},
               {"role": "assistant", "content": None, "tool_calls": [tcall("c1", "lookup", twice)]})
    (r,) = read(write_jsonl(tmp_path / "c.jsonl", [rec]))
    assert r.accepted and codes(r) == ["arguments_double_encoded"] and r.findings[0].pointer == "/messages/2"
    assert r.trajectory.turns[-1].calls[0].arguments == '{"q": "drone", "n": 2}'
    assert r.trajectory.system == "You fly drones." and "system" not in r.trajectory.metadata


def test_trailing_user_line_ends_the_chat(tmp_path: Path) -> None:
    rec = chat({"role": "user", "content": "find x"},
               {"role": "assistant", "content": None, "tool_calls": [tcall("c1", "lookup", '{"q": "x"}')]},
               {"role": "tool", "tool_call_id": "c1", "content": "x is 1"},
               {"role": "assistant", "content": "x is 1."}, {"role": "user", "content": "###STOP###"})
    (r,) = read(write_jsonl(tmp_path / "c.jsonl", [rec]))
    assert r.accepted and codes(r) == ["unanswered_user"] and r.findings[0].pointer == "/messages/4"
    assert r.trajectory.outcome == "answered" and r.trajectory.metadata["umi_trailing_user"] == ["###STOP###"]
    only_user = chat({"role": "user", "content": "hello?"})
    (bad,) = read(write_jsonl(tmp_path / "u.jsonl", [only_user]))
    # nothing answered at all: the lone request is kept as it is, and checks reject it as unfinished
    assert bad.trajectory.outcome == "incomplete" and "unanswered_user" not in codes(bad)


@pytest.mark.parametrize(("text", "calls"), [
    ('<tool_call>\n{"name": "lookup", "arguments": {"q": "x"}}\n</tool_call>', [("lookup", {"q": "x"})]),
    ('[{"name": "lookup", "arguments": {"q": "x"}}, {"name": "lookup", "arguments": {"q": "y"}}]',
     [("lookup", {"q": "x"}), ("lookup", {"q": "y"})]),
    ('[lookup(q="x", n=2)]', [("lookup", {"q": "x", "n": 2})]),
])
def test_text_calls_in_a_chat_without_tools_are_calls(tmp_path: Path, text: str, calls: list) -> None:
    rec = chat({"role": "user", "content": "find x"}, {"role": "assistant", "content": text}, tools=[])
    (r,) = read(write_jsonl(tmp_path / "c.jsonl", [rec]))
    assert r.accepted and "calls_from_text" in codes(r)
    assert r.trajectory.outcome == "calls_only" and turns(r.trajectory)[-1] == ("caller", calls)


def test_unreadable_text_calls_are_kept_with_a_warning(tmp_path: Path) -> None:
    rec = chat({"role": "user", "content": "find x"}, {"role": "assistant", "content": "[lookup(q=x_value)]"}, tools=[])
    prose = chat({"role": "user", "content": "hi"}, {"role": "assistant", "content": "[Hello] there"}, tools=[])
    r, p = read(write_jsonl(tmp_path / "c.jsonl", [rec, prose]))
    assert r.accepted and "calls_in_text" in codes(r) and turns(r.trajectory)[-1][0] == "conclusion"
    assert p.accepted and not {"calls_in_text", "calls_from_text"} & set(codes(p))  # prose is just an answer
    with_tools = chat({"role": "user", "content": "find x"}, {"role": "assistant", "content": "[lookup(q='x')]"})
    (w,) = read(write_jsonl(tmp_path / "w.jsonl", [with_tools]))
    assert turns(w.trajectory)[-1][0] == "conclusion" and "calls_from_text" not in codes(w)  # declared tools: as is


# --- the text-call parsers ----------------------------------------------------------------------


def test_text_call_parsers_never_evaluate() -> None:
    assert tagged_calls("no calls") is None and python_calls("[1, 2]") is None and calls_in_text("Sure!") is None
    thought, calls = tagged_calls("Plan.\n<tool_call>{'name': 'f', 'arguments': {'a': [1, (2, 3)]}}</tool_call>")
    assert thought == "Plan." and [(c.name, c.arguments) for c in calls] == [("f", '{"a": [1, [2, 3]]}')]
    assert [c.arguments for c in python_calls('[f(s="a, b(c)]", d={"k": null}, n=-1.5)]')] == [
        '{"s": "a, b(c)]", "d": {"k": null}, "n": -1.5}']
    for bad in ("[f(1)]", "[f(a=g())]", "[f(a=__import__('os').system('true'))]", "[f(**k)]", "[f(a={1, 2})]"):
        with pytest.raises(CallSyntax):
            python_calls(bad)
    with pytest.raises(CallSyntax):
        tagged_calls("<tool_call>not a call</tool_call>")
    assert double_encoded(json.dumps('{"a": 1}')) == '{"a": 1}'
    assert double_encoded('{"a": 1}') is None and double_encoded(json.dumps("plain")) is None


def test_llamafactory_sharegpt_is_not_taken_for_hermes_or_toolace(tmp_path: Path) -> None:
    """Structured ShareGPT calls stay the sharegpt reader's, even with a tool list or a
    ``<tool_call>`` mention in the system text."""
    tools = [{"name": "area", "description": "Area", "parameters": {"type": "object", "properties": {}}}]
    rec = {"system": f"Functions you can invoke:\n{json.dumps(tools)}\nAnswer in <tool_call> tags.",
           "conversations": [{"from": "human", "value": "Area?"},
                             {"from": "function_call", "value": json.dumps({"name": "area", "arguments": {}})},
                             {"from": "observation", "value": "1"}, {"from": "gpt", "value": "It is 1."}]}
    hermes_like = {"conversations": [{"from": "system", "value": "<tools>[]</tools>"}, *rec["conversations"]]}
    a, b = read(write_jsonl(tmp_path / "lf.jsonl", [rec, hermes_like]))
    assert (a.source.format, b.source.format) == ("sharegpt", "sharegpt") and a.accepted and b.accepted


def test_deeply_nested_text_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    deep = "[" * 5000 + "]" * 5000
    hermes = json.loads(HERMES.read_text())[2]
    hermes["conversations"][2]["value"] = f'<tool_call>{{"name": "get_news", "arguments": {{"a": {deep}}}}}</tool_call>'
    toolace = json.loads(TOOLACE.read_text())[0]
    toolace["conversations"][1]["value"] = f"[newAddress(password={deep})]"
    toolace["conversations"][2]["value"] = deep
    twice = json.dumps(json.dumps("x"))
    no_tools = chat({"role": "user", "content": "q"}, {"role": "assistant", "content": twice + deep},
                    {"role": "assistant", "content": '{"name": "f", "arguments": ' + deep + "}"}, tools=[])
    recs = read(write_jsonl(tmp_path / "deep.jsonl", [hermes, toolace, no_tools]))
    assert all("internal_error" not in codes(r) for r in recs), [r.findings for r in recs]


def test_tau_bench_terminal_action_warns_on_the_last_request(tmp_path: Path) -> None:
    rec = json.loads(TAU.read_text())[0]
    rec["traj"][-1] = {"role": "user", "content": "Actually, get me a human."}
    rec["traj"] += [{"role": "assistant", "content": None, "tool_calls": [tcall("call_t", "transfer_to_human_agents",
                                                                               '{"summary": "wants a human"}')]},
                    {"role": "tool", "tool_call_id": "call_t", "name": "transfer_to_human_agents",
                     "content": "Transfer successful"}]
    recs = read(write_jsonl(tmp_path / "t.jsonl", [rec]))
    assert [r.trajectory.id for r in recs][-1] == "t/1#4" and recs[-1].trajectory.outcome == "calls_only"
    assert [("terminal_action" in codes(r)) for r in recs] == [False, False, False, True]


def test_umieval_prompts_follow_the_splits_system_prompt(tmp_path: Path) -> None:
    """``umieval`` builds a split's test prompts as the split rendered them, system prompt included."""
    from umi_eval.generate.steps import Prompts, load_steps

    out = tmp_path / "alpha"
    assert run("split", TAU, "-o", out, "--workers", "1", "--dev-ratio", "0", "--system-prompt", "prepend",
               "--roles", "planner").exit_code == 0
    rows = {(r["trajectory_id"], r["step"]): r["prompt"]
            for f in (out / "planner").glob("*.parquet") for r in pq.read_table(f).to_pylist()}
    steps = load_steps([out], split="train").steps
    assert steps and {(s.trajectory_id, s.step): Prompts().planner(s) for s in steps} == rows
    assert all(p.startswith("# Retail agent policy") for p in rows.values())
    for extra, want in (((), "prepend"), (("--system-prompt", "ignore"), "ignore")):
        out = tmp_path / f"chat-{want}"
        assert run("split", TAU, "-o", out, "--workers", "1", "--dev-ratio", "0", "--template", "chat",
                   *extra).exit_code == 0
        chat_steps = load_steps([out], split="train").steps
        assert {s.system_prompt for s in chat_steps} == {want}
        assert all(not s.prepared.prefix for s in chat_steps)  # α-UMi references stay the paper's


def test_hermes_tools_without_tags_or_as_a_literal_column(tmp_path: Path) -> None:
    rec = json.loads(HERMES.read_text())[0]
    spec = {"name": "get_quote", "description": "Latest price", "parameters": {"type": "object", "properties": {}}}
    prompt = "You can use these functions -\n" + json.dumps(spec, indent=2) + "\n\nAnswer briefly."
    glaive = {**rec, "conversations": [{"from": "system", "value": prompt}, *rec["conversations"][1:]]}
    column = {**rec, "tools": repr([spec]), "conversations": [{"from": "system", "value": "Be brief."},
                                                             *rec["conversations"][1:]]}
    a, b = (r.trajectory for r in read(write_jsonl(tmp_path / "h.jsonl", [glaive, column]))[::2])
    assert [t.name for t in a.tools] == ["get_quote"] and a.system == "You can use these functions -\nAnswer briefly."
    assert [t.name for t in b.tools] == ["get_quote"] and b.system == "Be brief."
