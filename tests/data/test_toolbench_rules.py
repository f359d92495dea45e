"""ToolBench message rules (docs/alpha-umi-format.md §1) on constructed answer files: recovery
of broken Finish arguments and tool responses, dropped messages, and the tool-doc cuts."""

from __future__ import annotations

import json

import pytest

from umi_data.readers import toolbench
from umi_data.render.alpha_umi import conversation, tool_doc
from umi_data.trajectory import Source, Tool

SRC = Source("toolbench", "G1_answer/1_x.json")


def _answer(steps: list[dict]) -> dict:
    chain = [{"role": "system", "content": "You are AutoGPT"}, {"role": "user", "content": "\nQ?\nBegin!\n"}, *steps]
    return {"answer_generation": {
        "query": "Q?", "finish_type": "give_answer", "query_count": 3,
        "function": [{"name": "lookup_for_x", "description": "d", "parameters": {"type": "object", "properties": {}}},
                     {"name": "Finish", "description": "f", "parameters": {}}],
        "train_messages": [chain[:2], chain]}}


def _call(name: str, arguments: str, content: str | None = "thinking") -> dict:
    return {"role": "assistant", "content": content, "function_call": {"name": name, "arguments": arguments}}


def test_recoveries_and_dropped_messages() -> None:
    steps = [
        {"role": "assistant", "content": "I only talk.", "function_call": None},
        _call("lookup_for_x", '{"q": 1}', content=None),
        {"role": "function", "name": "lookup_for_x", "content": '{"error": "", "response": "cut off'},
        {"role": "function", "name": "lookup_for_x", "content": "no json and no key"},
        _call("Finish", '{"return_type": "give_answer", "final_answer": "The answer is 4."} trailing'),
    ]
    traj, findings = toolbench.read(_answer(steps), SRC, "G1_answer/1_x")
    assert traj is not None
    codes = [(f.code, f.pointer) for f in findings]
    assert codes == [
        ("dropped_message", "/answer_generation/train_messages/1/2"),
        ("observation_recovered", "/answer_generation/train_messages/1/4/content"),
        ("observation_recovered", "/answer_generation/train_messages/1/5/content"),
        ("finish_recovered", "/answer_generation/train_messages/1/6/function_call"),
    ]
    assert traj.metadata["dropped_messages"][0]["index"] == 2
    assert traj.metadata["finish_type"] == "give_answer" and traj.metadata["query_count"] == 3
    assert conversation(traj.turns) == [
        {"from": "user", "value": "Q?"},
        {"from": "assistant", "value": " Next: caller."},  # null content: empty span
        {"from": "caller", "value": 'Action: lookup_for_x\nAction Input: {"q": 1}'},
        {"from": "observation", "value": ' "cut off'},  # the raw text after "response":
        {"from": "observation", "value": ""},
        {"from": "assistant", "value": "thinking\n Next: conclusion."},
        {"from": "conclusion", "value": "The answer is 4.\"} trailing"},
    ]
    # The broken original is kept beside the recovered text.
    assert traj.turns[3].raw == '{"error": "", "response": "cut off'
    assert traj.outcome == "answered"


@pytest.mark.parametrize(
    ("arguments", "decision", "answer"),
    [
        ('{"return_type": "give_up_and_restart"}', "give_up", None),
        ('{"return_type": "give_answer"}', "conclude", "none"),
        ("return_type: give_up_and_restart, oops", "give_up", None),
        ("totally broken", "conclude", "thinking"),  # falls back to the message content
        ({"return_type": "give_answer", "final_answer": "obj"}, "conclude", "obj"),  # arguments as an object
    ],
)
def test_finish_rules(arguments: str | dict, decision: str, answer: str | None) -> None:
    got = toolbench.finish_decision(arguments, "thinking")
    assert got[:2] == (decision, answer)
    assert toolbench.finish_decision("totally broken", None)[1] == "none"


def test_tool_doc_cuts() -> None:
    tool = Tool("n" * 70 + "_tail", "d" * 300, {"type": "object", "properties": {
        "long": {"type": "string", "description": "x" * 10 + "y" * 256},
        "plain": {"type": "integer"},
        "untyped": {"description": "free"},
    }})
    doc = tool_doc(tool)
    assert doc["Name"] == tool.name[-64:] and len(doc["Name"]) == 64
    assert doc["function"] == "d" * 256
    assert doc["input"] == {"long": "string, " + "y" * 256, "plain": "integer", "untyped": "any, free"}
    assert json.dumps(doc).startswith('{"Name": ')  # key order as the original's dict


def test_schema_problems_are_rejects_with_pointers() -> None:
    bad = _answer([])
    bad["answer_generation"]["function"] = "nope"
    traj, findings = toolbench.read(bad, SRC, "x")
    assert traj is None and [(f.code, f.pointer) for f in findings] == [("schema", "/answer_generation/function")]
    empty = _answer([])
    del empty["answer_generation"]["train_messages"]
    traj, findings = toolbench.read(empty, SRC, "x")
    assert traj is None and findings[0].code == "no_trajectory"
