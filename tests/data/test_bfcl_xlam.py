"""BFCL and xLAM/APIGen as published, tool definitions in any shape (``--tools``, flat parameter
maps, Python/BFCL type names), JSONL inside a ``.json`` file and the closest-format message.

The fixtures under ``fixtures/bfcl`` and ``fixtures/xlam`` are small files written for these tests
in the published shapes (gorilla's ``bfcl_eval/data`` layout with ``possible_answer/`` beside the
questions; Salesforce's ``xlam_function_calling_60k.json``), never copies of them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main
from umi_data.readers import Record, read_inputs
from umi_data.readers.tool_specs import read_tools_file
from umi_data.render.alpha_umi import tool_doc
from umi_data.trajectory.checks import check
from umi_data.trajectory.param_types import normalise_parameters, type_schema

from .conftest import write_jsonl

FIXTURES = Path(__file__).parent / "fixtures"
BFCL = FIXTURES / "bfcl"
XLAM = FIXTURES / "xlam" / "xlam_function_calling_sample.json"


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def by_id(paths: list[Path]) -> dict[str, Record]:
    return {r.trajectory.id if r.trajectory else f"{r.source.where()}": r for r in read_inputs(paths)}


def calls(rec: Record) -> list[tuple[str, dict[str, Any]]]:
    assert rec.trajectory is not None, [f.message for f in rec.findings]
    turns = rec.trajectory.turns
    return [(c.name, json.loads(c.arguments)) for t in turns if t.role == "caller" for c in t.calls or []]


def codes(rec: Record) -> list[str]:
    return [f.code for f in rec.findings]


def errors(rec: Record) -> list[str]:
    return [f.code for f in rec.findings if f.severity == "error"]


# --- BFCL ---------------------------------------------------------------------------------------


def test_bfcl_calls_take_the_first_acceptable_value_and_leave_out_optional_blanks() -> None:
    recs = by_id([BFCL / "BFCL_v4_parallel_multiple.json"])
    rec = recs["parallel_multiple_0"]
    # "when": ["", "tonight"] is left out; "outdoor": [false, ""] takes false; "rounding": [""] is left out
    assert calls(rec) == [("restaurant.book", {"name": "Nopa", "party": 2, "outdoor": False}),
                          ("fx.convert", {"amount": 30.0, "pair": ["EUR", "USD"]})]
    traj = rec.trajectory
    assert traj is not None and traj.outcome == "calls_only" and traj.metadata["bfcl_category"] == "parallel_multiple"
    assert [t.role for t in traj.turns] == ["user", "planner", "caller"] and traj.turns[1].decision == "call"
    # a dict of acceptable values is resolved key by key (BFCL's dict checker): "pets": ["", 0] left out
    assert calls(recs["parallel_multiple_1"]) == [("waste.estimate", {"household": {"adults": 2, "children": 1},
                                                                     "city": "Oslo"})]


def test_bfcl_types_become_json_schema_and_checks_find_nothing_false() -> None:
    rec = by_id([BFCL / "BFCL_v4_parallel_multiple.json"])["parallel_multiple_0"]
    assert rec.trajectory is not None
    fx = {t.name: t for t in rec.trajectory.tools}["fx.convert"].parameters
    assert fx["type"] == "object"
    assert fx["properties"]["amount"]["type"] == "number"  # float
    assert fx["properties"]["pair"] == {"type": "array", "description": "From and to currency.",
                                        "items": {"type": "string"}}  # tuple
    assert "type" not in fx["properties"]["rounding"]  # any: any value
    found = {f.code for f in check(rec.trajectory)}
    assert not found & {"arguments_wrong_type", "arguments_unknown_name", "arguments_missing_required",
                        "tool_schema_invalid", "unknown_tool"}
    assert tool_doc({t.name: t for t in rec.trajectory.tools}["fx.convert"])["input"]["amount"].startswith("number")


def test_bfcl_live_question_keeps_its_system_message_and_missing_answers_are_rejected() -> None:
    recs = list(read_inputs([BFCL / "BFCL_v4_live_simple.json"]))
    ok, missing = recs
    assert ok.trajectory is not None and ok.trajectory.instruction == "Weather in Bergen in celsius?"
    assert calls(ok) == [("get_weather", {"city": "Bergen", "unit": "celsius"})]
    assert "You help with the weather." in json.dumps(ok.trajectory.to_dict())  # never dropped
    assert missing.trajectory is None and errors(missing) == ["no_ground_truth"]
    assert "live_simple_1-0-1" in missing.findings[0].message and missing.source.line == 2


def test_bfcl_question_without_possible_answer_beside_it_is_rejected_not_silent(tmp_path: Path) -> None:
    shutil.copy(BFCL / "BFCL_v4_parallel_multiple.json", tmp_path)
    recs = list(read_inputs([tmp_path / "BFCL_v4_parallel_multiple.json"]))
    assert len(recs) == 2 and all(r.trajectory is None and errors(r) == ["no_ground_truth"] for r in recs)
    assert str(tmp_path / "possible_answer" / "BFCL_v4_parallel_multiple.json") in recs[0].findings[0].message


def test_bfcl_irrelevance_makes_no_call_and_gives_up() -> None:
    (rec,) = read_inputs([BFCL / "BFCL_v4_irrelevance.json"])
    traj = rec.trajectory
    assert traj is not None, codes(rec)
    assert [(t.role, t.decision, t.thought) for t in traj.turns] == [("user", None, None), ("planner", "give_up", None)]
    assert traj.outcome == "gave_up" and not any(t.role == "caller" for t in traj.turns)
    assert not [f for f in check(traj) if f.severity == "error"]


def test_bfcl_multi_turn_relevance_and_answer_records_have_precise_reasons(tmp_path: Path) -> None:
    (multi,) = read_inputs([BFCL / "BFCL_v4_multi_turn_base.json"])
    assert multi.trajectory is None and errors(multi) == ["bfcl_multi_turn"]
    assert "GorillaFileSystem" in multi.findings[0].message
    answers = list(read_inputs([BFCL / "possible_answer" / "BFCL_v4_parallel_multiple.json"]))
    assert [errors(r) for r in answers] == [["bfcl_answer_file"], ["bfcl_answer_file"]]
    rel = {"id": "live_relevance_0-0-0", "question": [[{"role": "user", "content": "Draw a cat."}]],
           "function": [{"name": "draw", "description": "d", "parameters": {"type": "dict", "properties": {}}}]}
    (r,) = read_inputs([write_jsonl(tmp_path / "BFCL_v4_live_relevance.jsonl", [rel])])
    assert r.trajectory is None and codes(r) == ["no_ground_truth"] and "relevance" in r.findings[0].message


def test_bfcl_reads_inside_a_zip_with_its_answers(tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "bfcl.zip", "w") as z:
        for f in ("BFCL_v4_parallel_multiple.json", "possible_answer/BFCL_v4_parallel_multiple.json"):
            z.write(BFCL / f, f"data/{f}")
    ok = [r for r in read_inputs([tmp_path / "bfcl.zip"]) if r.trajectory is not None]
    assert [r.trajectory.id for r in ok] == ["parallel_multiple_0", "parallel_multiple_1"]  # type: ignore[union-attr]


# --- xLAM ---------------------------------------------------------------------------------------


def test_xlam_rows_become_calls_with_json_schema_tools() -> None:
    recs = by_id([XLAM])
    assert sorted(recs) == ["0", "1", "2"]  # numeric ids kept
    assert calls(recs["0"]) == [("add", {"a": 12, "b": 30}), ("weather", {"city": "Oslo", "units": "metric"})]
    traj = recs["1"].trajectory
    assert traj is not None and traj.outcome == "calls_only"
    params = traj.tools[0].parameters
    assert params["properties"]["numbers"]["type"] == "array"
    assert params["properties"]["numbers"]["items"] == {"type": "number"}
    assert params["properties"]["precision"]["type"] == ["integer", "null"]
    assert params["required"] == ["numbers"]  # defaults and Optional[...] are optional
    weather = {t.name: t for t in recs["0"].trajectory.tools}["weather"].parameters  # type: ignore[union-attr]
    assert weather["required"] == [] and weather["properties"]["units"]["type"] == "string"  # "str, optional"
    for rec in recs.values():
        assert rec.trajectory is not None
        assert not {f.code for f in check(rec.trajectory)} & {"arguments_unknown_name", "arguments_wrong_type",
                                                              "arguments_missing_required", "tool_schema_invalid"}
    assert tool_doc(traj.tools[0])["input"]["numbers"] == "array, The numbers."


def test_xlam_empty_answers_give_up_and_bad_answers_are_located(tmp_path: Path) -> None:
    traj = by_id([XLAM])["2"].trajectory
    assert traj is not None and traj.outcome == "gave_up" and traj.turns[-1].decision == "give_up"
    bad = [{"id": 9, "query": "q", "tools": "[]", "answers": "[{\"arguments\": {}}]"},
           {"id": 10, "query": "q", "tools": "not json", "answers": "[]"}]
    r1, r2 = read_inputs([write_jsonl(tmp_path / "bad.jsonl", bad)])
    assert (codes(r1), r1.findings[0].pointer) == (["schema"], "/answers/0")
    assert (codes(r2), r2.findings[0].pointer) == (["schema"], "/tools")


# --- tool definitions -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "schema", "optional"), [
    ("str", {"type": "string"}, False), ("int", {"type": "integer"}, False), ("float", {"type": "number"}, False),
    ("bool", {"type": "boolean"}, False), ("list", {"type": "array"}, False), ("dict", {"type": "object"}, False),
    ("tuple", {"type": "array"}, False), ("any", {}, False), ("HashMap", {"type": "object"}, False),
    ("List[int]", {"type": "array", "items": {"type": "integer"}}, False),
    ("Dict[str, Any]", {"type": "object"}, False),
    ("Optional[str]", {"type": ["null", "string"]}, True),
    ("str, optional", {"type": "string"}, True),
    ("Union[int, float]", {"type": ["integer", "number"]}, False),
    ("Literal['a', 'b']", {"enum": ["a", "b"]}, False),
    ("Callable[[int], int]", None, False),
    ("__import__('os').system('x')", None, False),  # parsed, never evaluated
])
def test_type_names_become_json_schema(text: str, schema: dict[str, Any] | None, optional: bool) -> None:
    assert type_schema(text) == (schema, optional)


def test_flat_map_in_an_openai_record_is_json_schema_for_docs_and_checks(tmp_path: Path) -> None:
    flat = {"city": {"type": "str", "description": "City."}, "days": {"type": "int", "description": "Days.",
                                                                      "default": 1}}
    rec = {"messages": [{"role": "user", "content": "Forecast for Oslo?"},
                        {"role": "assistant", "content": None, "tool_calls": [
                            {"id": "c", "type": "function",
                             "function": {"name": "forecast", "arguments": "{\"city\": \"Oslo\", \"days\": 2}"}}]}],
           "tools": [{"type": "function", "function": {"name": "forecast", "description": "Forecast.",
                                                       "parameters": flat}}]}
    (r,) = read_inputs([write_jsonl(tmp_path / "c.jsonl", [rec])])
    assert r.trajectory is not None
    doc = tool_doc(r.trajectory.tools[0])
    assert doc["input"] == {"city": "string, City.", "days": "integer, Days."}
    assert not {f.code for f in check(r.trajectory)} & {"arguments_unknown_name", "arguments_wrong_type"}
    assert normalise_parameters(flat)["required"] == ["city"]


TOOL_SHAPES = {
    "openai": [{"type": "function", "function": {"name": "lookup", "description": "Look up.", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}],
    "xlam": [{"name": "lookup", "description": "Look up.", "parameters": {"q": {"type": "str", "description": "Q."}}}],
    "bfcl": [{"name": "lookup", "description": "Look up.", "parameters": {"type": "dict", "properties": {
        "q": {"type": "string"}}, "required": ["q"]}}],
    "toolbench": {"tool_name": "Look Up", "api_list": [{"name": "lookup", "description": "Look up.",
                                                         "required_parameters": [{"name": "q", "type": "STRING"}]}]},
}


@pytest.mark.parametrize("shape", sorted(TOOL_SHAPES))
def test_tools_file_in_any_shape_fills_records_without_tools(tmp_path: Path, shape: str) -> None:
    name = "lookup_for_look_up" if shape == "toolbench" else "lookup"
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOL_SHAPES[shape]), encoding="utf-8")
    chat = {"id": "c1", "messages": [{"role": "user", "content": "find x"},
                                     {"role": "assistant", "content": None, "tool_calls": [
                                         {"id": "a", "type": "function",
                                          "function": {"name": name, "arguments": "{\"q\": \"x\"}"}}]}]}
    own = {**chat, "id": "c2", "tools": [{"type": "function", "function": {"name": "mine", "parameters": {}}}]}
    data = write_jsonl(tmp_path / "chats.jsonl", [chat, own])
    out = tmp_path / "out.jsonl"
    res = run("convert", data, "-o", out, "--tools", tools)
    assert res.exit_code == 0, res.output
    got = {d["id"]: d for d in map(json.loads, out.read_text().splitlines())}
    assert [t["name"] for t in got["c1"]["tools"]] == [name]
    assert got["c1"]["tools"][0]["parameters"]["properties"]["q"]["type"] == "string"
    assert [t["name"] for t in got["c2"]["tools"]] == ["mine"]  # a record's own tools win
    res = run("validate", data, "--tools", tools)
    assert "chats.jsonl:1#" not in res.output  # c1: no finding (the call's tool is known)
    assert "chats.jsonl:1#/turns/2/calls/0/name: warning [unknown_tool]" in run("validate", data).output


def test_tools_file_reaches_split_workers_and_bad_files_are_usage_errors(tmp_path: Path) -> None:
    tools = tmp_path / "tools.json"
    # JSONL in a .json file, as BFCL's multi_turn_func_doc/*.json
    tools.write_text("\n".join(json.dumps(t) for t in TOOL_SHAPES["bfcl"]) + "\n", encoding="utf-8")
    assert [t.name for t in read_tools_file(tools)] == ["lookup"]
    chats = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"find {i}"},
                                          {"role": "assistant", "content": "look", "tool_calls": [
                                              {"id": "a", "type": "function",
                                               "function": {"name": "lookup", "arguments": json.dumps({"q": i})}}]},
                                          {"role": "tool", "tool_call_id": "a", "content": "ok"},
                                          {"role": "assistant", "content": "done"}]} for i in range(4)]
    data = write_jsonl(tmp_path / "chats.jsonl", chats)
    res = run("split", data, "-o", tmp_path / "out", "--tools", tools, "--workers", "2", "--shard-size", "1", "-q")
    assert res.exit_code == 0, res.output
    prompt = pq.read_table(next((tmp_path / "out" / "caller").glob("train-*.parquet"))).column("prompt")[0].as_py()
    assert '"Name": "lookup"' in prompt
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["options"]["tools"] == str(tools)
    (tmp_path / "empty.json").write_text("[]", encoding="utf-8")
    for cmd in (["validate", data], ["convert", data, "-o", tmp_path / "o.jsonl"],
                ["split", data, "-o", tmp_path / "o"]):
        res = run(*cmd, "--tools", tmp_path / "empty.json")
        assert res.exit_code == 2 and "--tools" in res.output and "no tool" in res.output


# --- JSONL in .json, closest format -----------------------------------------------------------------


def test_jsonl_in_a_json_file_is_read_with_a_warning_and_broken_json_stays_a_syntax_error(tmp_path: Path) -> None:
    recs = list(read_inputs([BFCL / "BFCL_v4_parallel_multiple.json"]))
    assert [r.source.line for r in recs] == [1, 2]
    assert all(r.accepted and codes(r) == ["jsonl_in_json"] for r in recs)
    assert "json_syntax" not in {c for r in recs for c in codes(r)}
    (tmp_path / "broken.json").write_text('{\n  "messages": [\n    {"role": "user"\n  ]\n}\n', encoding="utf-8")
    (r,) = read_inputs([tmp_path / "broken.json"])
    assert codes(r) == ["json_syntax"]
    (tmp_path / "mixed.json").write_text('{"messages": []}\nnot json\n', encoding="utf-8")
    a, b = read_inputs([tmp_path / "mixed.json"])
    assert a.accepted is False and codes(a) == ["schema", "jsonl_in_json"]  # `messages: []`: no user message
    assert b.source.line == 2 and codes(b)[0] == "json_syntax"  # a bad line is its own located reject


@pytest.mark.parametrize(("record", "needle"), [
    ({"id": 1, "query": "q", "tools": "[]"}, "closest format: xlam (but it has no `answers`)"),
    ({"id": "x", "function": [], "ground_truth_x": 1, "question_": 2, "involved_classes": []},
     "closest format: bfcl (but it has no `question`)"),
    ({"instruction": "i", "turns": [], "outcome": "answered"}, "closest format: umi (but it has no `format`)"),
    ({"tools": []}, "closest formats, 1 key(s) each: alpha-umi"),
    ({"colour": "red"}, "none of the keys any format is recognised by"),
    ({"name": "f", "description": "d", "parameters": {}}, "--tools FILE"),
])
def test_closest_format_is_the_one_with_most_of_its_keys(tmp_path: Path, record: dict[str, Any], needle: str) -> None:
    (r,) = read_inputs([write_jsonl(tmp_path / "r.jsonl", [record])])
    assert codes(r) == ["unknown_format"] and needle in r.findings[0].message, r.findings[0].message


# --- through split, both templates ----------------------------------------------------------------


@pytest.mark.parametrize("template", ["alpha-umi", "chat"])
@pytest.mark.parametrize("inputs", [["bfcl/BFCL_v4_parallel_multiple.json", "bfcl/BFCL_v4_irrelevance.json"],
                                    ["xlam/xlam_function_calling_sample.json"]])
def test_new_readers_go_through_split(tmp_path: Path, template: str, inputs: list[str]) -> None:
    out = tmp_path / "out"
    res = run("split", *(FIXTURES / i for i in inputs), "-o", out, "--template", template, "--dev-ratio", "0", "-q")
    assert res.exit_code == 0, res.output
    rows = {role: [r for f in sorted((out / role).glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
            for role in ("planner", "caller", "summarizer")}
    assert not rows["summarizer"]  # calls only and give-ups: no answer is made up
    if template == "alpha-umi":
        targets = sorted(r["completion"] for r in rows["caller"])
        first = "Action: add\nAction Input: {\"a\": 12, \"b\": 30}" if "xlam" in inputs[0] else \
            "Action: restaurant.book\nAction Input: {\"name\": \"Nopa\", \"party\": 2, \"outdoor\": false}"
        assert any(t.startswith(first) for t in targets), targets
        assert "Next: give up." in {r["completion"].strip() for r in rows["planner"]}
    else:
        calls_ = [c for r in rows["caller"] for m in map(json.loads, r["messages"]) if m["train"]
                  for c in m.get("tool_calls", [])]
        names = {c["function"]["name"] for c in calls_}
        assert names == ({"add", "weather", "average"} if "xlam" in inputs[0] else
                         {"restaurant.book", "fx.convert", "waste.estimate"})
        assert all(isinstance(c["function"]["arguments"], dict) for c in calls_)
        tools = json.loads(rows["caller"][0]["tools"])
        assert all(p["type"] in ("string", "integer", "number", "boolean", "array", "object", ["integer", "null"])
                   for t in tools for p in t["function"]["parameters"]["properties"].values() if "type" in p)


def test_forcing_the_new_readers_on_other_records_rejects_them_located(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "hi"}]},
                                              {"question": "not a list", "function": []}])
    for fmt, pointer in (("bfcl", "/question"), ("xlam", "/query")):
        recs = list(read_inputs([data], fmt=fmt))
        assert [(errors(r), r.findings[0].pointer) for r in recs] == [(["schema"], pointer)] * 2


def test_bfcl_question_with_an_earlier_exchange_is_one_trajectory_under_its_id(tmp_path: Path) -> None:
    q = {"id": "live_multiple_7-3-0", "question": [[{"role": "user", "content": "Hi"},
                                                     {"role": "assistant", "content": "Hello! How can I help?"},
                                                     {"role": "user", "content": "Order 2 pizzas."}]],
         "function": [{"name": "order", "description": "Order food.", "parameters": {
             "type": "dict", "properties": {"item": {"type": "string"}, "qty": {"type": "integer"}},
             "required": ["item", "qty"]}}]}
    (tmp_path / "possible_answer").mkdir()
    write_jsonl(tmp_path / "possible_answer" / "BFCL_v4_live_multiple.json",
                [{"id": q["id"], "ground_truth": [{"order": {"item": ["pizza"], "qty": [2]}}]}])
    (rec,) = read_inputs([write_jsonl(tmp_path / "BFCL_v4_live_multiple.json", [q])])
    traj = rec.trajectory
    assert traj is not None and traj.id == "live_multiple_7-3-0"
    assert [t.role for t in traj.history] == ["user", "planner", "conclusion", "user"]  # context, never learned
    assert [t.role for t in traj.turns] == ["planner", "caller"] and calls(rec) == [("order", {"item": "pizza",
                                                                                                "qty": 2})]
