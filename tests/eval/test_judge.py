"""``umieval judge`` against a scripted judge server on 127.0.0.1 (started here): fixed verdicts,
malformed replies, time-outs, position bias; pass and win rates computed by hand."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_data.trajectory import Call, Source, Trajectory, Turn, derive_outcome
from umi_eval.cli.commands import main
from umi_eval.score.judge import parse_preference, parse_status, query_key

from .agent_helpers import serving

MAX_REQUESTS = 400
KEY = "sk-test-secret-123"


@contextmanager
def judge_server(answer: Callable[[str, dict], object]) -> Iterator[tuple[str, list[dict]]]:
    """``POST /v1/chat/completions``; ``answer(user_text, body)`` returns the reply text, a float
    (sleep that long, then reply "Solved"), or ``("raw", bytes)`` (an HTTP body that is not an
    OpenAI answer). Yields the base URL and every request seen (with its headers)."""
    seen: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                n = len(seen)
            user = body["messages"][-1]["content"]
            got = answer(user, body) if n <= MAX_REQUESTS else ("raw", b"too many")
            if isinstance(got, float):
                time.sleep(got)
                got = '{"answer_status": "Solved"}'
            status = 200
            if isinstance(got, tuple):
                data = got[1]
                status = got[2] if len(got) > 2 else 200
            else:
                data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": got}}],
                                   "usage": {"prompt_tokens": 100, "completion_tokens": 10}}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.block_on_close = False  # a handler still sleeping (a time-out test) must not hold the test
    with serving(httpd) as url:
        yield f"{url}/v1", seen


# --- fixtures: candidate runs (umi run files) and a reference answer tree (ToolEval layout) ----------


def _traj(qid: str, instruction: str, answer: str | None, line: int) -> dict:
    turns = [Turn("user", content=instruction),
             Turn("planner", thought="look it up", decision="call"),
             Turn("caller", calls=[Call("lookup_for_tool", '{"q": 1}')]),
             Turn("observation", content='{"value": 42}', name="lookup_for_tool")]
    if answer is None:
        turns.append(Turn("planner", thought="cannot", decision="give_up"))
    else:
        turns += [Turn("planner", thought="done", decision="conclude"), Turn("conclusion", content=answer)]
    t = Trajectory(qid, Source("umi-run", "queries.json", index=line), instruction, [], turns, derive_outcome(turns),
                   {"end": "answered" if answer else "gave_up"})
    return t.to_dict()


def write_runs(path: Path, items: list[tuple[str, str, str | None]]) -> Path:
    path.write_text("".join(json.dumps(_traj(q, ins, ans, i)) + "\n" for i, (q, ins, ans) in enumerate(items)))
    return path


def write_ref(root: Path, group: str, qid: str, instruction: str, answer: str | None) -> None:
    d = root / "chatgpt_cot" / group
    d.mkdir(parents=True, exist_ok=True)
    msgs = [{"role": "system", "content": "You are AutoGPT"}, {"role": "user", "content": instruction}]
    if answer is None:
        args = {"return_type": "give_up_and_restart"}
    else:
        args = {"return_type": "give_answer", "final_answer": answer}
    msgs.append({"role": "assistant", "content": "finish", "function_call": {"name": "Finish",
                                                                              "arguments": json.dumps(args)}})
    obj = {"answer_generation": {"query": instruction, "function": [{"name": "Finish", "parameters": {}}],
                                 "valid_data": True, "finish_type": "give_answer" if answer else "give_up",
                                 "train_messages": [msgs]}}
    (d / f"{qid}_CoT@1.json").write_text(json.dumps(obj))


def status_reply(user: str, body: dict) -> object:
    """Verdicts from markers in the prompt: the final answer says what the judge decides."""
    process = "Steps:" in user and "Check the final answer against the steps" in user
    answer = user.rsplit("Final answer:\n<<<\n", 1)[-1]
    if "[solved]" in answer:
        return 'The answer is complete.\n{"answer_status": "Solved"}'
    if "[unsolved]" in answer:
        return 'Sorry message.\n```json\n{"answer_status": "Unsolved"}\n```'
    if "[unsure-then-solved]" in answer:
        return '{"answer_status": "Solved"}' if process else 'Cannot tell.\n{"answer_status": "Unsure"}'
    if "[split]" in answer:  # samples 0 and 1 say solved, sample 2 unsolved
        return '{"answer_status": "Solved"}' if body["seed"] < 2 else '{"answer_status": "Unsolved"}'
    if "[garbage]" in answer:
        return "I think it is probably fine, more or less."
    if "[slow]" in answer:
        return 2.0
    return '{"answer_status": "Unsolved"}'


CANDIDATES = [
    ("G1_instruction/1", "Q1 weather?", "It is 21 degrees [solved]"),
    ("G1_instruction/2", "Q2 rates?", "Sorry, I could not [unsolved]"),
    ("G1_instruction/3", "Q3 stock?", "The price is 42 [unsure-then-solved]"),
    ("G1_instruction/4", "Q4 secret?", None),  # gave up: failed without asking
    ("G2_category/5", "Q5 news?", "Headlines [split]"),
    ("G2_category/6", "Q6 jokes?", "A joke [garbage]"),
]


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env={"JUDGE_KEY": KEY, **(env or {})})


def base_args(url: str, out: Path, *extra: str) -> list[str]:
    return ["-o", str(out), "--judge-url", url, "--judge-model", "judge-1", "--api-key-env", "JUDGE_KEY",
            "--samples", "3", "--bootstrap", "200", "--backoff", "0", *extra]


def test_pass_rate_by_hand_and_reruns_cost_nothing(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs.jsonl", CANDIDATES)
    out = tmp_path / "judged.jsonl"
    with judge_server(status_reply) as (url, seen):
        res = invoke("judge", str(runs), *base_args(url, out, "--json", "--price-in", "2", "--price-out", "10"))
        assert res.exit_code == 0, res.output
        s = json.loads(res.stdout)
        # G1: 1 + 0 + 1 (unsure, then solved from the steps) + 0 (gave up) = 2/4; G2: 1 (2 of 3) + 0.5 (unparsable)
        g = s["groups"]
        assert g["G1_instruction"]["pass_rate"]["rate"] == pytest.approx(0.5)
        assert g["G2_category"]["pass_rate"]["rate"] == pytest.approx(0.75)
        assert g["average"]["pass_rate"]["rate"] == pytest.approx(0.625)
        assert list(g) == ["G1_instruction", "G2_category", "average"]
        assert g["average"]["label"] == "Average" and g["G1_instruction"]["label"] == "I1-Inst."
        lo, hi = g["G1_instruction"]["pass_rate"]["ci"]
        assert 0.0 <= lo <= 0.5 <= hi <= 1.0 and lo < hi
        # 5 answered × 3 samples answer-based + 3 process-based re-asks (Q3); Q4 never asked
        assert len(seen) == 18 and not any("Q4 secret" in r["messages"][-1]["content"] for r in seen)
        assert all(r["path"] == "/v1/chat/completions" and r["model"] == "judge-1" for r in seen)
        assert {r["seed"] for r in seen} == {0, 1, 2} and all(r["temperature"] == 0.2 for r in seen)
        assert all(r["auth"] == f"Bearer {KEY}" for r in seen)
        assert s["pass_votes"] == {"no_answer": 3, "solved": 8, "unparsable": 3, "unsolved": 4}
        assert s["judge"]["asked"] == 18 and s["judge"]["cached"] == 0
        assert s["judge"]["tokens"] == {"prompt": 1800, "completion": 180}
        assert s["judge"]["cost"] == pytest.approx((1800 * 2 + 180 * 10) / 1e6)
        first = out.read_bytes()
        rows = [json.loads(x) for x in first.splitlines()]
        assert rows[0]["umi_judged"] == 1 and rows[0]["judge"] == f"judge-1@{url}"
        by_id = {r["id"]: r for r in rows[1:]}
        assert by_id["G1_instruction/4"]["pass"]["reason"] == "gave_up"
        assert by_id["G2_category/6"]["pass"]["label"] == "tie"
        assert [x["vote"] for x in by_id["G2_category/5"]["pass"]["samples"]] == ["solved", "solved", "unsolved"]
        assert by_id["G1_instruction/3"]["pass"]["samples"][0]["process_status"] == "solved"

        # rerun: every reply comes from the cache, the output is the same bytes
        n = len(seen)
        res = invoke("judge", str(runs), *base_args(url, out, "--json"))
        assert res.exit_code == 0, res.output
        assert len(seen) == n
        s2 = json.loads(res.stdout)
        assert s2["judge"]["asked"] == 0 and s2["judge"]["cached"] == 18 and s2["judge"]["cost"] is None
        assert out.read_bytes() == first
        # another base seed is another prompt: asked again
        res = invoke("judge", str(runs), *base_args(url, out, "--json", "--judge-seed", "5"))
        assert json.loads(res.stdout)["judge"]["cached"] == 0 and {r["seed"] for r in seen[n:]} == {5, 6, 7}
    cache = (tmp_path / "judged.judge-cache.jsonl").read_text()
    assert KEY not in cache and KEY not in first.decode() and KEY not in res.output


def test_table_is_shaped_like_the_paper_and_says_comparable(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs.jsonl", CANDIDATES)
    with judge_server(status_reply) as (url, _seen):
        res = invoke("judge", str(runs), *base_args(url, tmp_path / "new" / "j.jsonl", "--price-in", "1"))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "new" / "j.judge-cache.jsonl").is_file()
    assert "| Method | I1-Inst. P | I2-Cat. P | Average P |" in res.stdout
    assert "| umi | 50.0 | 75.0 | 62.5 |" in res.stdout
    assert "comparable to ToolEval" in res.stdout and "not identical" in res.stdout
    assert "cost now: $0.0018" in res.stdout
    assert KEY not in res.output


def preference_reply(user: str, body: dict) -> object:
    if "Assistant A, steps" not in user:
        return status_reply(user, body)
    a = user.split("Assistant A, final answer:", 1)[1].split("Assistant B, steps", 1)[0]
    if "Q13" in user:  # prefers the candidate in both orders
        return '{"better": "A"}' if "[cand]" in a else 'B is better.\n{"better": "B"}'
    if "Q14" in user:  # position bias: always the first one shown
        return '{"better": "A"}'
    if "Q15" in user:  # prefers the reference in both orders
        return '{"better": "B"}' if "[cand]" in a else '{"better": "A"}'
    return "no idea"


def test_win_rate_by_hand(tmp_path: Path) -> None:
    cands = [
        ("G1_instruction/11", "Q11?", "done [cand] [solved]"),  # passed vs failed reference: win by labels
        ("G1_instruction/12", "Q12?", "no [cand] [unsolved]"),  # failed vs passed reference: loss by labels
        ("G1_instruction/13", "Q13?", "good [cand] [solved]"),  # both pass, judge prefers candidate: win
        ("G1_instruction/14", "Q14?", None),  # both fail, judge only position-biased: tie
        ("G1_tool/15", "Q15?", "meh [cand] [solved]"),  # both pass, judge prefers reference: loss
        ("G1_tool/16", "Q16?", "same [solved]"),  # no reference answer: win (ToolEval)
    ]
    runs = write_runs(tmp_path / "runs.jsonl", cands)
    ref = tmp_path / "ref"
    write_ref(ref, "G1_instruction", "11", "Q11?", "nothing [unsolved]")
    write_ref(ref, "G1_instruction", "12", "Q12?", "fine [solved]")
    write_ref(ref, "G1_instruction", "13", "Q13?", "ok [solved]")
    write_ref(ref, "G1_instruction", "14", "Q14?", None)
    write_ref(ref, "G1_tool", "15", "Q15?", "better [solved]")
    write_ref(ref, "G1_tool", "99", "Q99?", "only in the reference [solved]")
    out = tmp_path / "judged.jsonl"
    with judge_server(preference_reply) as (url, seen):
        res = invoke("judge", str(runs), "--against", str(ref / "chatgpt_cot"), *base_args(url, out, "--json"))
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    g = s["groups"]
    # G1_instruction: win, loss, win, tie → 2/4 wins, 1/4 ties; G1_tool: loss, win → 1/2
    assert g["G1_instruction"]["win_rate"]["rate"] == pytest.approx(0.5)
    assert g["G1_instruction"]["tie_rate"]["rate"] == pytest.approx(0.25)
    assert g["G1_tool"]["win_rate"]["rate"] == pytest.approx(0.5)
    assert g["average"]["win_rate"]["rate"] == pytest.approx(0.5)
    assert list(g) == ["G1_instruction", "G1_tool", "average"]
    assert s["win"]["decided_by"] == {"judge": 3, "no_reference_answer": 1, "pass_labels": 2}
    assert s["win"]["outcomes"] == {"loss": 2, "tie": 1, "win": 3}
    assert s["win"]["reference_only"] == 1
    # position bias: the two orders disagree in every sample of Q14
    assert s["win"]["votes"] == {"candidate": 3, "position_disagreement": 3, "reference": 3}
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines()[1:])}
    assert rows["G1_instruction/14"]["win"]["votes"] == {"position_disagreement": 3}
    assert rows["G1_instruction/11"]["win"]["reference"]["pass"]["label"] == "failed"
    # each judged sample is asked in both orders
    prefs = [r for r in seen if "Assistant A, steps" in r["messages"][-1]["content"]]
    assert len(prefs) == 3 * 3 * 2


def test_time_outs_are_counted_and_another_judge_reuses_nothing(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs.jsonl", [("G1_tool/1", "Q1?", "yes [solved]"), ("G1_tool/2", "Q2?", "x [slow]")])
    out = tmp_path / "j.jsonl"
    with judge_server(status_reply) as (url, seen):
        t0 = time.monotonic()
        res = invoke("judge", str(runs), *base_args(url, out, "--json", "--timeout", "0.3", "--retries", "1"))
        assert time.monotonic() - t0 < 20
    assert res.exit_code == 1, res.output  # unanswered requests are findings
    assert len(seen) == 3 + 3 * 2  # Q1's samples, Q2's each tried twice (--retries 1)
    s = json.loads(res.stdout)
    assert s["judge"]["errors"] == 3 and s["pass_votes"]["error"] == 3
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines()[1:])}
    assert rows["G1_tool/2"]["pass"]["label"] == "tie" and "TimeoutError" in rows["G1_tool/2"]["pass"]["samples"][0][
        "error"]
    # the server is fast now: only the three missing samples are asked
    with judge_server(lambda u, b: '{"answer_status": "Unsolved"}' if "[slow]" in u else status_reply(u, b)) as (
            url2, seen2):
        res = invoke("judge", str(runs), *base_args(url, out, "--json", "--judge-url", url2, "--cache",
                                                    str(tmp_path / "j.judge-cache.jsonl")))
    # another URL is another judge: nothing of the first is reused
    assert json.loads(res.stdout)["judge"]["cached"] == 0 and len(seen2) == 6


def test_time_out_resume_on_the_same_judge(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs.jsonl", [("G1_tool/1", "Q1?", "yes [solved]"), ("G1_tool/2", "Q2?", "x [slow]")])
    out = tmp_path / "j.jsonl"
    slow = {"on": True}

    def reply(user: str, body: dict) -> object:
        if "[slow]" in user and not slow["on"]:
            return '{"answer_status": "Unsolved"}'
        return status_reply(user, body)

    with judge_server(reply) as (url, seen):
        res = invoke("judge", str(runs), *base_args(url, out, "--timeout", "0.3", "--retries", "0"))
        assert res.exit_code == 1
        slow["on"] = False
        n = len(seen)
        res = invoke("judge", str(runs), *base_args(url, out, "--json"))
        assert res.exit_code == 0, res.output
        assert len(seen) - n == 3  # only Q2's samples, Q1's come from the cache
    s = json.loads(res.stdout)
    assert s["judge"]["cached"] == 3 and s["groups"]["G1_tool"]["pass_rate"]["rate"] == pytest.approx(0.5)


def test_malformed_http_answers_exit_2_when_the_judge_answers_nothing(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs.jsonl", [("G1_tool/1", "Q1?", "yes [solved]")])
    with judge_server(lambda u, b: ("raw", b"<html>gateway</html>")) as (url, seen):
        res = invoke("judge", str(runs), *base_args(url, tmp_path / "j.jsonl", "--retries", "1"))
    assert res.exit_code == 2, res.output
    assert "answered none of 3" in res.output and "malformed response" in res.output
    assert len(seen) == 6  # each request retried once
    assert not (tmp_path / "j.jsonl").exists()


def test_a_refused_key_is_never_printed(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs.jsonl", [("G1_tool/1", "Q1?", "yes [solved]")])
    with judge_server(lambda u, b: ("raw", f"invalid key {KEY}".encode(), 401)) as (url, seen):
        res = invoke("judge", str(runs), *base_args(url, tmp_path / "j.jsonl", "--retries", "2"))
    assert res.exit_code == 2 and "HTTP 401" in res.output and "***" in res.output
    assert KEY not in res.output
    assert len(seen) == 3  # a 4xx is not retried


def test_rejects_exit_1_with_their_source_and_unanswered_tree_files_count_as_failed(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs.jsonl", [("G1_tool/1", "Q1?", "yes [solved]"),
                                                ("G1_tool/1", "Q1 again?", "dup [solved]")])
    with open(runs, "a") as f:
        f.write("{not json\n")
    tree = tmp_path / "tree" / "G1_tool"
    tree.mkdir(parents=True)
    (tree / "7_DFS_woFilter_w2.json").write_text(json.dumps({"answer_generation": {
        "query": "Q7?", "valid_data": False, "finish_type": "give_up", "train_messages": []}}))
    out = tmp_path / "j.jsonl"
    with judge_server(status_reply) as (url, _seen):
        res = invoke("judge", str(runs), str(tmp_path / "tree"), *base_args(url, out, "--json"))
    assert res.exit_code == 1, res.output
    s = json.loads(res.stdout)
    assert s["rejected_by_reason"] == {"duplicate_query": 1, "json_syntax": 1}
    assert s["groups"]["G1_tool"]["pass_rate"]["rate"] == pytest.approx(0.5)  # Q1 passed, Q7 (no chain) failed
    rejects = [json.loads(x) for x in (tmp_path / "j.rejects.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in rejects} == {"duplicate_query", "json_syntax"}
    assert any(r["source"]["file"].endswith("runs.jsonl") and r["source"]["line"] == 3 for r in rejects)
    assert all(list(r) == ["source", "reason", "message", "pointer", "findings", "input"] for r in rejects)
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines()[1:])}
    assert rows["G1_tool/7"]["pass"]["reason"] == "no_trajectory"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs.jsonl", CANDIDATES[:1])
    url = "http://127.0.0.1:9/v1"
    assert invoke("judge", str(tmp_path / "missing.jsonl"), *base_args(url, tmp_path / "j.jsonl")).exit_code == 2
    res = invoke("judge", str(runs), *base_args(url, runs))
    assert res.exit_code == 2 and "destroy the input" in res.output
    assert runs.read_text().count("\n") == 1
    res = invoke("judge", str(runs), *base_args(url, tmp_path / "j.jsonl", "--cache", str(runs)))
    assert res.exit_code == 2
    other = tmp_path / "notes.txt"
    other.write_text("my notes\n")
    res = invoke("judge", str(runs), *base_args(url, other))
    assert res.exit_code == 2 and "not a umieval judge file" in res.output and other.read_text() == "my notes\n"
    assert invoke("judge", str(runs), *base_args("ftp://x", tmp_path / "j.jsonl")).exit_code == 2
    ref = tmp_path / "ref"
    write_ref(ref, "G2_category", "500", "Q500?", "x")
    res = invoke("judge", str(runs), "--against", str(ref), *base_args(url, tmp_path / "j.jsonl"))
    assert res.exit_code == 2 and "ids do not match" in res.output
    bad_groups = tmp_path / "g.json"
    bad_groups.write_text("[1, 2]")
    assert invoke("judge", str(runs), *base_args(url, tmp_path / "j.jsonl", "--groups", str(bad_groups))
                  ).exit_code == 2


def test_a_locked_output_is_refused(tmp_path: Path) -> None:
    from umi_data.output.guard import output_lock

    runs = write_runs(tmp_path / "runs.jsonl", CANDIDATES[:1])
    out = tmp_path / "j.jsonl"
    with output_lock(tmp_path / "j.judge-cache.jsonl"):
        res = invoke("judge", str(runs), *base_args("http://127.0.0.1:9/v1", out))
    assert res.exit_code == 2 and "is writing" in res.output


def test_groups_file_and_compare_of_judged_files(tmp_path: Path) -> None:
    a = write_runs(tmp_path / "a.jsonl", [("q1", "Q1?", "x [solved]"), ("q2", "Q2?", "x [unsolved]"),
                                          ("q3", "Q3?", "x [unsolved]"), ("q4", "Q4?", "x [solved]")])
    b = write_runs(tmp_path / "b.jsonl", [("q1", "Q1?", "y [solved]"), ("q2", "Q2?", "y [solved]"),
                                          ("q3", "Q3?", "y [solved]"), ("q4", "Q4?", "y [solved]")])
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"q1": "easy", "q2": "easy", "q3": "hard", "q4": "hard", "q9": "unused"}))
    with judge_server(status_reply) as (url, _seen):
        for f in (a, b):
            res = invoke("judge", str(f), *base_args(url, tmp_path / f"{f.stem}.judged.jsonl", "--groups",
                                                     str(groups), "--cache", str(tmp_path / "shared-cache.jsonl")))
            assert res.exit_code == 0, res.output
    res = invoke("compare", str(tmp_path / "a.judged.jsonl"), str(tmp_path / "b.judged.jsonl"), "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    # easy: A 1/2, B 2/2; hard: A 1/2, B 2/2; average diff 0.5
    easy = r["groups"]["easy"]["pass_rate"]
    assert (easy["a"], easy["b"], easy["diff"]) == pytest.approx((0.5, 1.0, 0.5))
    assert easy["ci"] == [0.0, 1.0]  # paired differences of 0 and 1 resampled
    assert r["groups"]["average"]["pass_rate"]["diff"] == pytest.approx(0.5)
    lo, hi = r["groups"]["average"]["pass_rate"]["ci"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0
    res = invoke("compare", str(tmp_path / "a.judged.jsonl"), str(tmp_path / "b.judged.jsonl"))
    assert res.exit_code == 0 and "pass rate" in res.stdout and "+50.0" in res.stdout
    # queries without a group beside grouped ones are "other"
    c = write_runs(tmp_path / "c.jsonl", [("q1", "Q1?", "x [solved]"), ("free", "Qf?", "x [solved]")])
    with judge_server(status_reply) as (url, _seen):
        res = invoke("judge", str(c), *base_args(url, tmp_path / "c.judged.jsonl", "--groups", str(groups), "--json"))
    assert list(json.loads(res.stdout)["groups"]) == ["easy", "other", "average"]
    res = invoke("compare", str(tmp_path / "a.judged.jsonl"), str(tmp_path / "b.judged.jsonl"), "--json",
                 "--bootstrap", "0")
    assert json.loads(res.stdout)["groups"]["average"]["pass_rate"]["ci"] is None
    # a judged file and a plain run file cannot be compared
    res = invoke("compare", str(tmp_path / "a.judged.jsonl"), str(a))
    assert res.exit_code == 2


@pytest.mark.parametrize(("run_id", "key", "group"), [
    ("G1_instruction/10", "G1_instruction/10", "G1_instruction"),
    ("chatgpt_cot/G1_instruction/10160_CoT@1", "G1_instruction/10160", "G1_instruction"),
    ("G2_category/77_DFS_woFilter_w2", "G2_category/77", "G2_category"),
    ("my-query", "my-query", None),
    ("G1_answer/10_ChatGPT_DFS_woFilter_w2", "G1_answer/10", "G1_answer"),
    ("runs/G4_answer/10_x", "runs/G4_answer/10_x", None),
])
def test_query_keys_match_runs_and_answer_trees(run_id: str, key: str, group: str | None) -> None:
    assert query_key(run_id) == (key, group)


def test_reply_parsing() -> None:
    assert parse_status('blah\n{"answer_status": "Solved"}') == "solved"
    assert parse_status('{"answer_status": "Unsure"} then {"answer_status": "unsolved"}') == "unsolved"
    assert parse_status("answer_status: Unsolved") == "unsolved"
    assert parse_status('{"answer_status": "Maybe"}') is None
    assert parse_status("") is None
    assert parse_preference('```json\n{"better": "b"}\n```') == "B"
    assert parse_preference('{"better": "C"}') is None


def test_ctrl_c_exits_130_and_keeps_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import umi_eval.score.judge as judge_mod

    runs = write_runs(tmp_path / "runs.jsonl", CANDIDATES[:2])
    out = tmp_path / "j.jsonl"
    real = judge_mod.judge_pass

    def interrupted(answers, judge, samples):  # the first batch is answered, then Ctrl-C
        real(answers[:1], judge, samples)
        raise KeyboardInterrupt

    monkeypatch.setattr(judge_mod, "judge_pass", interrupted)
    with judge_server(status_reply) as (url, seen):
        res = invoke("judge", str(runs), *base_args(url, out))
        assert res.exit_code == 130 and "rerun the same command to resume" in res.output
        assert not out.exists() and not (tmp_path / ".j.jsonl.lock").exists()
        monkeypatch.setattr(judge_mod, "judge_pass", real)
        n = len(seen)
        res = invoke("judge", str(runs), *base_args(url, out, "--json"))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["judge"]["cached"] == 3 and len(seen) - n == 3
