"""``umidata convert --to openai|sharegpt|alpha-umi``: chats written whole and only when accepted,
ShareGPT roles that LLaMA-Factory accepts, ``dataset_info.json`` entries, metadata kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from umi_data.cli.commands import main
from umi_data.export.convert import convert
from umi_data.export.formats import whole_chats
from umi_data.readers import read_inputs

from .conftest import write_jsonl

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "weather",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def call(cid: str, city: str) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def canonical(path: Path) -> list[dict[str, Any]]:
    rows = lines(path)
    for r in rows:
        r.pop("source")
    return rows


CHAT3 = {"id": "c3", "messages": [{"role": "user", "content": "Q1?"}, {"role": "assistant", "content": "A1."},
                                  {"role": "user", "content": "Q2?"}, {"role": "assistant", "content": ""},
                                  {"role": "user", "content": "Q3?"}, {"role": "assistant", "content": "A3."}]}
PARALLEL = {"id": "p1", "tools": [WEATHER], "messages": [
    {"role": "user", "content": "Weather in Oslo and Bergen?"},
    {"role": "assistant", "content": None, "tool_calls": [call("a", "Oslo"), call("b", "Bergen")]},
    {"role": "tool", "tool_call_id": "a", "content": "4C"}, {"role": "tool", "tool_call_id": "b", "content": "7C"},
    {"role": "assistant", "content": "Oslo 4C, Bergen 7C."}]}


# --- 1. a rejected request never reaches an export; one record per chat id -------------------------


def test_rejected_request_cuts_the_chat(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "chat3.jsonl", [CHAT3])
    for to, suffix in (("openai", "jsonl"), ("sharegpt", "jsonl"), ("alpha-umi", "json")):
        out = tmp_path / f"e3.{to}.{suffix}"
        summary = convert([src], out, to=to)  # type: ignore[arg-type]
        text = out.read_text(encoding="utf-8")
        assert '"Q2?"' not in text and '"Q3?"' not in text, to  # cut before the rejected request 2
        recs = json.loads(text) if suffix == "json" else lines(out)
        assert len(recs) == 1 and summary.accepted == 1 and summary.rejected == 2, to
        if to != "alpha-umi":
            assert recs[0]["id"] == "c3"
            back = tmp_path / f"e3.{to}.back.jsonl"
            res = run("convert", out, "-o", back)
            assert res.exit_code == 0, res.output  # no duplicate_id, nothing empty
            assert [t["id"] for t in lines(back)] == ["c3"]
        rejects = lines(tmp_path / f"e3.{to}.rejects.jsonl")
        assert [r["reason"] for r in rejects] == ["empty_completion", "empty_completion"]
        assert "c3#2" in rejects[1]["message"] and "left out" in rejects[1]["message"]


def test_rejected_first_request_writes_nothing_of_its_chat(tmp_path: Path) -> None:
    chat = json.loads(json.dumps(CHAT3))
    chat["messages"][1]["content"] = ""  # request 1 rejected, request 2 too (empty), request 3 accepted
    src = write_jsonl(tmp_path / "c.jsonl", [chat, PARALLEL])
    out = tmp_path / "o.jsonl"
    summary = convert([src], out, to="openai")
    assert [r["id"] for r in lines(out)] == ["p1"] and summary.accepted == 1 and summary.rejected == 3


def test_whole_chats_leaves_out_requests_after_a_gap(tmp_path: Path) -> None:
    chat = json.loads(json.dumps(CHAT3))
    chat["messages"][3]["content"] = "A2."
    (t1, t2, t3) = [r.trajectory for r in read_inputs([write_jsonl(tmp_path / "c.jsonl", [chat])])]
    assert [(cid, t.id) for cid, t in whole_chats([t1, t2, t3])] == [("c3", "c3#3")]
    assert [(cid, t.id) for cid, t in whole_chats([t1, t3])] == [("c3", "c3")]
    assert list(whole_chats([t2, t3])) == []


# --- 2. ShareGPT roles alternate as LLaMA-Factory requires ---------------------------------------


def alternates(conv: list[dict[str, str]]) -> bool:
    """LLaMA-Factory's rule: human/observation at odd positions, gpt/function_call at even ones,
    an even number of messages."""
    sides = [("human", "observation"), ("gpt", "function_call")]
    return len(conv) % 2 == 0 and all(m["from"] in sides[k % 2] for k, m in enumerate(conv))


def test_sharegpt_parallel_results_are_one_observation(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "par.jsonl", [PARALLEL])
    out = tmp_path / "par.json"
    assert run("convert", src, "-o", out, "--to", "sharegpt").exit_code == 0
    (rec,) = json.loads(out.read_text(encoding="utf-8"))
    assert [m["from"] for m in rec["conversations"]] == ["human", "function_call", "observation", "gpt"]
    assert json.loads(rec["conversations"][2]["value"]) == [{"name": "get_weather", "content": "4C"},
                                                            {"name": "get_weather", "content": "7C"}]
    # read → export → read gives the same trajectories
    canon = tmp_path / "par.umi.jsonl"
    assert run("convert", out, "-o", canon).exit_code == 0
    again = tmp_path / "par2.json"
    assert run("convert", out, "-o", again, "--to", "sharegpt").exit_code == 0
    assert json.loads(again.read_text(encoding="utf-8")) == [rec]
    back = tmp_path / "par2.umi.jsonl"
    assert run("convert", again, "-o", back).exit_code == 0
    assert canonical(back) == canonical(canon)
    assert [t["role"] for t in canonical(back)[0]["turns"]].count("observation") == 2


def test_sharegpt_conversations_always_alternate(tmp_path: Path) -> None:
    look = {"role": "assistant", "content": "Let me check."}  # a plain message, then the call
    reflect = {"role": "user", "content": "Think again."}  # a user prompt after a tool result
    recs = [
        PARALLEL,
        {"id": "plain", "tools": [WEATHER], "messages": [
            {"role": "user", "content": "Oslo?"}, look,
            {"role": "assistant", "content": None, "tool_calls": [call("a", "Oslo")]},
            {"role": "tool", "tool_call_id": "a", "content": "4C"}, reflect,
            {"role": "assistant", "content": "4C."}]},
        {"id": "two", "messages": [{"role": "user", "content": "Q?"}, {"role": "user", "content": "Quick!"},
                                   {"role": "assistant", "content": "A."}]},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "sg.json"
    summary = convert([src], out, to="sharegpt")
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [r["id"] for r in data] == ["p1", "plain", "two"]
    assert all(alternates(r["conversations"]) for r in data), [[m["from"] for m in r["conversations"]] for r in data]
    assert summary.counts_by_code["dropped_message"] == 3  # each repair is a warning in the summary
    assert [m["value"] for m in data[1]["conversations"] if m["from"] == "human"] == ["Oslo?"]
    assert data[2]["conversations"][0]["value"] == "Q?\n\nQuick!"
    # under --strict a repaired record is rejected instead (its only warning is the repair)
    two = write_jsonl(tmp_path / "two.jsonl", [{**recs[2], "tools": [WEATHER]}])
    strict = convert([two], tmp_path / "strict.json", to="sharegpt", strict=True)
    assert json.loads((tmp_path / "strict.json").read_text(encoding="utf-8")) == [] and strict.rejected == 1
    assert [r["reason"] for r in lines(tmp_path / "strict.rejects.jsonl")] == ["dropped_message"]


# --- 3. dataset_info.json: one entry per file, never another file's -------------------------------


def test_dataset_info_entries_do_not_collide(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [PARALLEL])
    sg = tmp_path / "sg"
    sg.mkdir()
    for name in ("train.v1.json", "train.v2.json"):
        assert run("convert", src, "-o", sg / name, "--to", "sharegpt").exit_code == 0
    info = json.loads((sg / "dataset_info.json").read_text(encoding="utf-8"))
    assert {e["file_name"] for e in info.values()} == {"train.v1.json", "train.v2.json"}
    # an input x.json with custom tags beside the output x.jsonl keeps its entry
    custom = {"file_name": "x.json", "formatting": "sharegpt", "tags": {"role_tag": "role"}}
    (sg / "dataset_info.json").write_text(json.dumps({"x": custom}), encoding="utf-8")
    assert run("convert", src, "-o", sg / "x.jsonl", "--to", "sharegpt").exit_code == 0
    info = json.loads((sg / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["x"] == custom and info["x.jsonl"]["file_name"] == "x.jsonl"
    # re-exporting a file replaces its own entry, whatever its key
    assert run("convert", src, "-o", sg / "x.jsonl", "--to", "sharegpt", "--overwrite").exit_code == 0
    assert json.loads((sg / "dataset_info.json").read_text(encoding="utf-8")).keys() == {"x", "x.jsonl"}
    # both keys taken by other files: usage error, nothing written
    taken = {"y": {"file_name": "a.json"}, "y.json": {"file_name": "b.json"}}
    (sg / "dataset_info.json").write_text(json.dumps(taken), encoding="utf-8")
    res = run("convert", src, "-o", sg / "y.json", "--to", "sharegpt")
    assert res.exit_code == 2 and "describe other files" in res.output and not (sg / "y.json").exists()
    assert json.loads((sg / "dataset_info.json").read_text(encoding="utf-8")) == taken


def test_export_named_dataset_info_is_refused(tmp_path: Path) -> None:
    """The sidecar is an output of the same command: an export named (or linked to) it would be
    replaced by the 203-byte entry; refused with exit 2 before anything is written."""
    src = write_jsonl(tmp_path / "in.jsonl", [PARALLEL])
    lf = tmp_path / "lf"
    lf.mkdir()
    res = run("convert", src, "-o", lf / "dataset_info.json", "--to", "sharegpt")
    assert res.exit_code == 2 and "would be written twice" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not list(lf.iterdir())
    (tmp_path / "elsewhere").mkdir()
    (lf / "dataset_info.json").write_text("{}", encoding="utf-8")
    (tmp_path / "elsewhere" / "dataset_info.json").symlink_to(lf / "dataset_info.json")
    res = run("convert", src, "-o", tmp_path / "elsewhere" / "dataset_info.json", "--to", "sharegpt", "--overwrite")
    assert res.exit_code == 2 and (lf / "dataset_info.json").read_text(encoding="utf-8") == "{}"
    # the same name is fine for the other targets, which write no sidecar
    assert run("convert", src, "-o", lf / "dataset_info.json", "--to", "openai", "--overwrite").exit_code == 0


# --- 4. a record's own `episode`/`episodes` metadata is kept ----------------------------------------


def test_user_episode_metadata_round_trips(tmp_path: Path) -> None:
    rec = {"id": "m1", "metadata": {"episode": 17, "episodes": 40}, "tools": [WEATHER], "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "look", "tool_calls": [call("a", "Oslo")], "weight": 0},
        {"role": "tool", "tool_call_id": "a", "content": "4C"},
        {"role": "assistant", "content": "4C in Oslo", "reasoning_content": "done"}]}
    src = write_jsonl(tmp_path / "meta.jsonl", [rec])
    canon = tmp_path / "meta.umi.jsonl"
    assert run("convert", src, "-o", canon).exit_code == 0
    assert canonical(canon)[0]["metadata"] == {"episode": 17, "episodes": 40}
    out = tmp_path / "meta.openai.jsonl"
    assert run("convert", canon, "-o", out, "--to", "openai").exit_code == 0
    back = tmp_path / "back.jsonl"
    assert run("convert", out, "-o", back).exit_code == 0
    assert canonical(back) == canonical(canon)


# --- 5. α-UMi: a chat is one conversation ---------------------------------------------------------


def test_alpha_umi_writes_each_chat_once(tmp_path: Path) -> None:
    chat = json.loads(json.dumps(CHAT3))
    chat["messages"][3]["content"] = "A2."
    src = write_jsonl(tmp_path / "c.jsonl", [chat])
    out = tmp_path / "au.json"
    assert run("convert", src, "-o", out, "--to", "alpha-umi").exit_code == 0
    (item,) = json.loads(out.read_text(encoding="utf-8"))
    values = [m["value"] for m in item["conversations"] if m["from"] == "user"]
    assert values == ["Q1?", "Q2?", "Q3?"]


def test_a_multi_request_chat_keeps_its_own_episode_metadata(tmp_path: Path) -> None:
    """umi's request markers are reserved keys (`umi_episode`/`umi_episodes`): a chat of several
    requests whose own metadata says `episode: 1, episodes: 2` (an RL log) keeps those values on
    every request, and the export folds the chat back exactly (the markers used to overwrite them)."""
    rec = {"id": "r1", "metadata": {"episode": 1, "episodes": 2}, "tools": [WEATHER], "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "look", "tool_calls": [call("a", "Oslo")]},
        {"role": "tool", "tool_call_id": "a", "content": "4C"},
        {"role": "assistant", "content": "4C in Oslo"},
        {"role": "user", "content": "And in Rome?"},
        {"role": "assistant", "content": "look", "tool_calls": [call("b", "Rome")]},
        {"role": "tool", "tool_call_id": "b", "content": "20C"},
        {"role": "assistant", "content": "20C in Rome"}]}
    src = write_jsonl(tmp_path / "rl.jsonl", [rec])
    canon = tmp_path / "rl.umi.jsonl"
    assert run("convert", src, "-o", canon).exit_code == 0
    first, second = canonical(canon)
    assert (first["id"], second["id"]) == ("r1", "r1#2")
    for t in (first, second):
        assert (t["metadata"]["episode"], t["metadata"]["episodes"]) == (1, 2)
    assert (second["metadata"]["umi_episode"], second["metadata"]["umi_episodes"]) == (2, 2)
    out = tmp_path / "rl.openai.jsonl"
    assert run("convert", canon, "-o", out, "--to", "openai").exit_code == 0
    (chat,) = lines(out)
    assert chat["id"] == "r1" and chat["metadata"] == {"episode": 1, "episodes": 2}
    back = tmp_path / "back.jsonl"
    assert run("convert", out, "-o", back).exit_code == 0
    assert canonical(back) == canonical(canon)
