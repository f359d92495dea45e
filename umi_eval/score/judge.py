"""``umieval judge``: the paper's real-time metrics — pass rate and win rate — from a judge model.

The procedure follows ToolBench's ToolEval (the judge that produced α-UMi's Table 2), in umi's own
prompt wording, so numbers are comparable to ToolEval's, not identical:

- **Pass rate.** A run without a final answer (gave up, hit the step limit, empty answer, or an
  answer file with no chain) is *unsolved* without asking the judge, as ToolEval does. Otherwise
  each of ``samples`` judge samples first labels the query + final answer (answer-based:
  solved / unsolved / unsure); an *unsure* sample is asked again with the whole trajectory
  (process-based). Per query, solved votes are compared with unsolved votes: more solved → passed
  (1), more unsolved → failed (0), a tie → 0.5, the expectation of ToolEval's coin flip. Unsure
  votes, unparsable replies and samples the judge never answered are neutral (ToolEval flips a
  coin for an unsure, which leaves the expected comparison unchanged); all are counted.
  ToolEval's extra "is the task solvable at all" check is not made: every query counts as
  solvable (StableToolBench's *solvable pass rate*).
- **Win rate** against a reference set (e.g. ToolBench's ChatGPT-ReACT answers). Queries whose
  pass labels differ (passed vs failed) are decided by them, as ToolEval's ``--use_pass_rate``
  does; identical answers tie; otherwise each sample asks for a preference twice, the candidate
  shown first and then second, and a sample counts only when both orders agree (a disagreement is
  position bias: a tie for that sample). More candidate votes → win, fewer → loss, equal → tie;
  the win rate is wins / queries, ties counted in the denominator but not as wins (ToolEval's
  ``eval_preference``). A candidate query without a reference answer is a win, as in ToolEval.

Every judge reply is cached on disk by (judge URL and model, prompt digest, sample index), so a
rerun or a resumed run asks only what is not cached. Rates are reported per group (ToolBench's
six test sets, from the query ids or a ``--groups`` file) and as the mean over groups (the paper's
"Average"), each with a 95 % bootstrap interval over queries (stratified by group for the mean).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from umi_cli.errors import UsageError
from umi_data.output.guard import UnsafeOutput, check_output
from umi_data.output.writers import JsonlAppender, rejects_path, write_jsonl
from umi_data.readers import READERS, Unit, read_inputs, toolbench
from umi_data.trajectory import Source, Trajectory
from umi_data.trajectory.findings import Reject
from umi_eval.generate.backends import Decoding, Generation, OpenAIBackend
from umi_eval.score.scoring import DEFAULT_RESAMPLES, DEFAULT_SEED, _percentiles, _resample_weights

HEADER_KEY = "umi_judged"
PROMPT_VERSION = "umi-judge/1"
STATUSES = ("solved", "unsolved", "unsure")
# ToolBench's six test sets, in the order of the paper's Table 2, with its column names.
GROUPS = {"G1_instruction": "I1-Inst.", "G1_tool": "I1-Tool", "G1_category": "I1-Cat.",
          "G2_instruction": "I2-Inst.", "G2_category": "I2-Cat.", "G3_instruction": "I3-Inst."}
DEFAULT_GROUP = "all"  # no query has a group
OTHER_GROUP = "other"  # the queries without a group, beside others that have one
OBSERVATION_CHARS = 800  # a tool response is cut to this many characters in the judge's prompt
_GROUP_DIR = re.compile(r"G[1-3]_(?:instruction|category|tool|answer)")  # test sets; G1_answer: ToolBench's data
_LEADING_ID = re.compile(r"^(\d+)(?:_|$)")


class JudgeError(UsageError):
    """A problem the user can fix: no input, an output over an input, a judge that answers nothing."""


# --- inputs --------------------------------------------------------------------------------------


def query_key(run_id: str) -> tuple[str, str | None]:
    """``(key, group)`` of a run id, so that one query answered by several systems matches:
    ``G1_instruction/10`` (umi runs of ToolBench query files), ``chatgpt/G1_instruction/10_CoT@1``
    and ``G1_category/10_DFS_woFilter_w2`` (ToolEval/StableToolBench answer trees) all give
    ``G1_…/10`` (also ToolBench's ``G1_answer/10_ChatGPT_DFS_woFilter_w2``). Other ids are their
    own key, without a group."""
    parts = run_id.replace("\\", "/").split("/")
    for i, part in enumerate(parts[:-1]):
        if _GROUP_DIR.fullmatch(part):
            tail = parts[i + 1]
            m = _LEADING_ID.match(tail)
            return f"{part}/{m.group(1) if m else tail}", part
    return run_id, None


@dataclass(slots=True)
class Answer:
    """One system's answer to one query, as the judge sees it."""

    key: str
    group: str
    run_id: str
    source: str
    instruction: str
    final_answer: str | None  # None: no answer (gave up, step limit, no chain)
    steps_text: str
    steps: int  # planner decisions (ToolEval's total_steps)
    why_unanswered: str | None = None

    def same_as(self, other: Answer) -> bool:
        return (self.final_answer, self.steps_text) == (other.final_answer, other.steps_text)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" …[{len(text) - limit} characters cut]"


def render_steps(t: Trajectory, max_chars: int) -> str:
    """The trajectory as numbered steps (thought, call, response) for the process-based prompt."""
    lines: list[str] = []
    n = 0
    for turn in t.turns[1:] if t.turns and t.turns[0].role == "user" else t.turns:
        if turn.role == "planner":
            n += 1
            decision = {"call": "calls a tool", "conclude": "gives the final answer",
                        "give_up": "gives up"}.get(turn.decision or "", "decides nothing")
            lines.append(f"Step {n}. Thought: {(turn.thought or '').strip() or '(none)'} → {decision}")
        elif turn.role == "caller":
            for c in turn.calls or []:
                lines.append(f"  Call: {c.name} with arguments {_cut(c.arguments, OBSERVATION_CHARS)}")
        elif turn.role == "observation":
            err = f" (error: {_cut(turn.error, 200)})" if turn.error else ""
            lines.append(f"  Response{err}: {_cut(turn.content or '', OBSERVATION_CHARS)}")
        elif turn.role == "conclusion":
            lines.append(f"  Final answer: {turn.content or ''}")
        elif turn.role == "user":
            lines.append(f"  (Message to the assistant: {_cut(turn.content or '', 300)})")
    text = "\n".join(lines) or "(no step)"
    if len(text) > max_chars:  # keep the beginning and the end, where the answer is
        head = max_chars // 3
        text = text[:head] + f"\n…[{len(text) - max_chars} characters cut]…\n" + text[-(max_chars - head):]
    return text


def _answer_of(t: Trajectory, key: str, group: str, max_chars: int) -> Answer:
    final = None
    if t.outcome == "answered":
        final = next((x.content for x in reversed(t.turns) if x.role == "conclusion"), None)
    why = None
    if final is None or not final.strip():
        why = {"gave_up": "gave_up", "incomplete": "no_final_answer", "calls_only": "no_final_answer"}.get(
            t.outcome, "empty_final_answer")
        final = None
    elif "give_up_and_restart" in final:  # ToolEval: such an "answer" is a give-up
        why, final = "gave_up", None
    steps = sum(1 for x in t.turns if x.role == "planner")
    return Answer(key, group, t.id, t.source.where(), t.instruction, final, render_steps(t, max_chars), steps, why)


@dataclass(slots=True)
class AnswerSet:
    answers: dict[str, Answer] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)


def load_answers(paths: Sequence[str], groups: dict[str, str] | None = None, max_chars: int = 12000) -> AnswerSet:
    """Every answer of ``paths`` (umi run files, ToolEval/StableToolBench answer trees, anything
    umidata reads), keyed by :func:`query_key`. A ToolBench answer file with no chain is an
    unanswered query (ToolEval counts it as failed); other unreadable records and second answers
    to a query are rejects with their source and reason."""
    out = AnswerSet(inputs=list(paths))
    groups = groups or {}
    for rec in read_inputs(paths):
        where = rec.source.where()
        if rec.trajectory is None:
            f = rec.findings[0]
            if f.code == "no_trajectory":  # the id the reader gives an answer file that has a chain
                name = Unit(rec.source.file, rec.source.member).name
                key, g = query_key(READERS[toolbench.FORMAT].traj_id(None, name, None))
                ans = Answer(key, "", key, where, "", None, "(no step)", 0, "no_trajectory")
                _add(out, ans, groups.get(key) or g, rec.source)
            else:
                out.rejects.append(Reject.of(f, rec.findings, rec.source))
            continue
        t = rec.trajectory
        key, g = query_key(t.id)
        _add(out, _answer_of(t, key, "", max_chars), groups.get(t.id) or groups.get(key) or g, rec.source)
    if {a.group for a in out.answers.values()} - {DEFAULT_GROUP}:  # "all" would mislead beside real groups
        for a in out.answers.values():
            if a.group == DEFAULT_GROUP:
                a.group = OTHER_GROUP
    return out


def _add(out: AnswerSet, ans: Answer, group: str | None, source: Source) -> None:
    ans.group = group or DEFAULT_GROUP
    first = out.answers.get(ans.key)
    if first is not None:
        out.rejects.append(Reject(source, "duplicate_query", f"a second answer to query {ans.key!r} (first: "
                                  f"{first.source}); only the first is judged"))
        return
    out.answers[ans.key] = ans


def read_groups(path: str) -> dict[str, str]:
    """A ``--groups`` file: a JSON object ``{query id: group}`` (ids as in the runs, or keys)."""
    try:
        obj = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as e:
        raise JudgeError(f"--groups {path}: not JSON ({e})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, str) and v for v in obj.values()):
        raise JudgeError(f"--groups {path}: expected a JSON object mapping query ids to group names")
    return {str(k): v for k, v in obj.items()}


# --- prompts (umi's own wording of ToolEval's criteria) -------------------------------------------

SYSTEM = ("You evaluate the work of AI assistants that answer user requests by calling external tools (APIs). "
          "You are careful, impartial and brief.")

ANSWER_PROMPT = """An assistant was given the request below. It could call tools, and it ended with the final answer below.

Decide whether the final answer solves the request:
- "Unsolved": the answer apologises, refuses, says it could not finish, asks the user for more input, or does not respond to what was asked (or to every part of it).
- "Solved": the answer responds directly and specifically to every part of the request, and you are confident that it does.
- "Unsure": the answer looks like a direct response, but the answer alone does not show whether it is correct and complete (for example, it reports data that only a tool could have provided).

Request:
<<<
{query}
>>>

Final answer:
<<<
{answer}
>>>

Give one or two sentences of reasoning, then a last line with only this JSON: {{"answer_status": "Solved"}}, "Unsolved" or "Unsure"."""  # noqa: E501

PROCESS_PROMPT = """An assistant was given the request below. It could call tools. Below are the steps it took (its thoughts, each tool call with its arguments, each tool response) and its final answer.

Check the final answer against the steps:
- "Unsolved": every tool call failed or returned an error; or the final answer states things that the tool responses contradict or do not contain (invented data); or part of the request is left unanswered.
- "Solved": tool calls succeeded, their responses support the final answer, and the final answer covers every part of the request.
- "Unsure": the steps do not let you verify whether the final answer is true.

Request:
<<<
{query}
>>>

Steps:
<<<
{steps}
>>>

Final answer:
<<<
{answer}
>>>

Give one or two sentences of reasoning, then a last line with only this JSON: {{"answer_status": "Solved"}}, "Unsolved" or "Unsure"."""  # noqa: E501

PREFERENCE_PROMPT = """Two assistants, A and B, worked on the same request with the same tools. Decide which one did better.

First compare their final answers:
- Completeness: does it give everything the request asks for?
- Faithfulness: does it report correctly what was done, what was found and what failed?
- Explanation: if the request was not solved, does it say clearly why?
If the final answers are equally good, compare how they worked:
- fewer failed or repeated tool calls, and fewer steps;
- more parts of the request actually achieved;
- useful exploration: successful calls to different tools or with different arguments.
Which assistant is shown first says nothing about its quality.

Request:
<<<
{query}
>>>

Assistant A, steps:
<<<
{steps_a}
>>>
Assistant A, final answer:
<<<
{answer_a}
>>>

Assistant B, steps:
<<<
{steps_b}
>>>
Assistant B, final answer:
<<<
{answer_b}
>>>

Give one or two sentences of reasoning, then a last line with only this JSON: {{"better": "A"}} or {{"better": "B"}}."""  # noqa: E501


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def answer_messages(a: Answer) -> list[dict[str, str]]:
    return _messages(ANSWER_PROMPT.format(query=a.instruction, answer=a.final_answer or ""))


def process_messages(a: Answer) -> list[dict[str, str]]:
    return _messages(PROCESS_PROMPT.format(query=a.instruction, steps=a.steps_text, answer=a.final_answer or ""))


def preference_messages(query: str, a: Answer, b: Answer) -> list[dict[str, str]]:
    none = "(no final answer)"
    return _messages(PREFERENCE_PROMPT.format(query=query, steps_a=a.steps_text, answer_a=a.final_answer or none,
                                              steps_b=b.steps_text, answer_b=b.final_answer or none))


_OBJECT = re.compile(r"\{[^{}]*\}")


def _field(text: str, key: str) -> str | None:
    """The value of ``key`` in the last JSON object of a reply that has it, else from a
    ``key: value`` line; ``None`` when the reply holds neither."""
    for m in reversed(list(_OBJECT.finditer(text))):
        try:
            obj = orjson.loads(m.group(0))
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get(key), str):
            return obj[key]
    m2 = re.findall(rf'"?{key}"?\s*[:=]\s*"?([A-Za-z]+)', text)
    return m2[-1] if m2 else None


def parse_status(text: str) -> str | None:
    """``solved`` / ``unsolved`` / ``unsure`` from a pass reply, ``None`` when unparsable."""
    value = _field(text, "answer_status")
    value = value.strip().lower() if value else None
    return value if value in STATUSES else None


def parse_preference(text: str) -> str | None:
    """``A`` / ``B`` from a preference reply, ``None`` when unparsable."""
    value = _field(text, "better")
    value = value.strip().upper() if value else None
    return value if value in ("A", "B") else None


# --- the judge and its cache ---------------------------------------------------------------------


def prompt_digest(messages: list[dict[str, str]], decoding: Decoding) -> str:
    """What a reply depends on besides the judge and the sample index: the messages and the
    decoding (the base seed too: sample i is sent with seed + i)."""
    data = orjson.dumps({"messages": messages, "temperature": decoding.temperature, "top_p": decoding.top_p,
                         "max_tokens": decoding.max_new_tokens, "seed": decoding.seed},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()


def cache_key(judge: str, digest: str, sample: int) -> str:
    return hashlib.sha256(f"{judge}\0{digest}\0{sample}".encode()).hexdigest()


class JudgeCache:
    """Judge replies, one JSON line each, appended (one write, fsynced) as they arrive: a killed
    run leaves at most a torn last line, cut on the next open. Only answered requests are stored,
    so a time-out is asked again next time. Holds no key or secret: the judge's URL and model, the
    prompt digest, the sample index, the reply text and its token counts."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self.appender: JsonlAppender | None = None
        if self.path.exists():
            data = self.path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with open(self.path, "r+b") as f:
                    f.truncate(end)
            for n, line in enumerate(data[:end].splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                    self.entries[obj["key"]] = obj
                except (orjson.JSONDecodeError, KeyError, TypeError) as e:
                    raise JudgeError(f"{self.path}:{n} is not a judge cache line ({e}); choose another --cache"
                                     ) from None

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def add(self, entries: Iterable[dict[str, Any]]) -> None:
        if self.appender is None:
            self.appender = JsonlAppender(self.path, 0o644)
        self.appender.write_rows(entries)
        for e in entries:
            self.entries[e["key"]] = e

    def close(self) -> None:
        if self.appender is not None:
            self.appender.close()
            self.appender = None


@dataclass(slots=True)
class Reply:
    text: str
    cached: bool
    error: str | None = None


@dataclass
class Usage:
    """Requests and tokens: asked now, and reused from the cache."""

    asked: int = 0
    cached: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    last_error: str = ""

    def cost(self, price_in: float | None, price_out: float | None) -> float | None:
        if price_in is None and price_out is None:
            return None
        return (self.prompt_tokens * (price_in or 0.0) + self.completion_tokens * (price_out or 0.0)) / 1e6


class Judge:
    """Asks an OpenAI-compatible chat server, through the cache. ``name`` (model@url) is what
    cached replies are keyed by; the API key never is."""

    def __init__(self, backend: OpenAIBackend, decoding: Decoding, cache: JudgeCache, chunk: int = 64) -> None:
        self.backend, self.decoding, self.cache = backend, decoding, cache
        self.name = f"{backend.model}@{backend.base_url}"
        self.usage = Usage()
        self.chunk = max(1, chunk)

    def _redact(self, text: str) -> str:
        key = self.backend.api_key
        return text.replace(key, "***") if key else text

    def ask(self, requests: Sequence[tuple[list[dict[str, str]], int]]) -> list[Reply]:
        """One reply per ``(messages, sample)``; cached ones cost nothing, and the same request
        twice in one batch (two identical answers) is asked once."""
        out: list[Reply | None] = [None] * len(requests)
        todo: dict[str, tuple[list[int], str]] = {}
        for i, (messages, sample) in enumerate(requests):
            digest = prompt_digest(messages, self.decoding)
            key = cache_key(self.name, digest, sample)
            hit = self.cache.get(key)
            if hit is not None:
                out[i] = Reply(str(hit.get("reply", "")), True)
                self.usage.cached += 1
                self.usage.cached_prompt_tokens += int(hit.get("prompt_tokens") or 0)
                self.usage.cached_completion_tokens += int(hit.get("completion_tokens") or 0)
            elif key in todo:
                todo[key][0].append(i)
            else:
                todo[key] = ([i], digest)
        pending = list(todo.items())
        for start in range(0, len(pending), self.chunk):
            part = pending[start : start + self.chunk]
            gens: list[Generation] = self.backend.chat(
                [(requests[ix[0]][0], self.decoding.seed + requests[ix[0]][1]) for _, (ix, _) in part], self.decoding)
            fresh = []
            for (key, (ix, digest)), g in zip(part, gens, strict=True):
                self.usage.asked += 1
                if g.error is not None:
                    self.usage.errors += 1
                    self.usage.last_error = self._redact(g.error)
                    reply = Reply("", False, self.usage.last_error)
                else:
                    self.usage.prompt_tokens += g.prompt_tokens
                    self.usage.completion_tokens += g.completion_tokens
                    fresh.append({"key": key, "judge": self.name, "prompt_digest": digest,
                                  "sample": requests[ix[0]][1], "reply": g.text, "prompt_tokens": g.prompt_tokens,
                                  "completion_tokens": g.completion_tokens})
                    reply = Reply(g.text, False)
                for i in ix:
                    out[i] = reply
            self.cache.add(fresh)
        return [r for r in out if r is not None]


# --- pass rate -----------------------------------------------------------------------------------


def _pass_label(votes: Counter[str]) -> tuple[float, str]:
    if votes["solved"] > votes["unsolved"]:
        return 1.0, "passed"
    if votes["solved"] < votes["unsolved"]:
        return 0.0, "failed"
    return 0.5, "tie"


def judge_pass(answers: Sequence[Answer], judge: Judge, samples: int) -> dict[str, dict[str, Any]]:
    """Per query key: ``score`` (1, 0.5, 0), ``label``, ``votes`` and each sample's verdicts."""
    result: dict[str, dict[str, Any]] = {}
    asked = [a for a in answers if a.final_answer is not None]
    for a in answers:
        if a.final_answer is None:
            result[a.key] = {"score": 0.0, "label": "failed", "votes": {"no_answer": samples},
                             "reason": a.why_unanswered, "samples": []}
    first = judge.ask([(answer_messages(a), s) for a in asked for s in range(samples)])
    stage1: dict[tuple[str, int], tuple[str | None, Reply]] = {}
    for k, reply in enumerate(first):
        a, s = asked[k // samples], k % samples
        stage1[(a.key, s)] = (None if reply.error else parse_status(reply.text), reply)
    unsure = [(a, s) for a in asked for s in range(samples) if stage1[(a.key, s)][0] == "unsure"]
    second = judge.ask([(process_messages(a), s) for a, s in unsure])
    stage2 = {(a.key, s): (None if r.error else parse_status(r.text), r) for (a, s), r in zip(unsure, second,
                                                                                                 strict=True)}
    for a in asked:
        votes: Counter[str] = Counter()
        rows = []
        for s in range(samples):
            status, reply = stage1[(a.key, s)]
            row: dict[str, Any] = {"answer_status": status, "answer_reply": reply.text}
            if reply.error:
                row["error"] = reply.error
            if (a.key, s) in stage2:
                status, reply = stage2[(a.key, s)]
                row.update(process_status=status, process_reply=reply.text)
                if reply.error:
                    row["error"] = reply.error
            vote = "error" if reply.error else (status or "unparsable")
            row["vote"] = vote
            votes[vote] += 1
            rows.append(row)
        score, label = _pass_label(votes)
        result[a.key] = {"score": score, "label": label, "votes": dict(sorted(votes.items())), "samples": rows}
    return result


# --- win rate ------------------------------------------------------------------------------------


def judge_win(cands: Sequence[Answer], refs: dict[str, Answer], cand_pass: dict[str, dict[str, Any]],
              ref_pass: dict[str, dict[str, Any]], judge: Judge, samples: int
              ) -> dict[str, dict[str, Any]]:
    """Per candidate query key: ``outcome`` (win / tie / loss), ``by`` (what decided it), votes."""
    result: dict[str, dict[str, Any]] = {}
    asked: list[tuple[Answer, Answer]] = []
    for c in cands:
        r = refs.get(c.key)
        if r is None:
            result[c.key] = {"outcome": "win", "by": "no_reference_answer"}
            continue
        pc, pr = cand_pass[c.key]["score"], ref_pass[r.key]["score"]
        if (pc, pr) == (1.0, 0.0):
            result[c.key] = {"outcome": "win", "by": "pass_labels"}
        elif (pc, pr) == (0.0, 1.0):
            result[c.key] = {"outcome": "loss", "by": "pass_labels"}
        elif c.same_as(r):
            result[c.key] = {"outcome": "tie", "by": "identical_answers"}
        else:
            asked.append((c, r))
    requests = []
    for c, r in asked:
        query = c.instruction or r.instruction
        for s in range(samples):
            requests.append((preference_messages(query, c, r), s))  # candidate shown as A
            requests.append((preference_messages(query, r, c), s))  # candidate shown as B
    replies = judge.ask(requests)
    for n, (c, _r) in enumerate(asked):
        votes: Counter[str] = Counter()
        rows = []
        for s in range(samples):
            first, second = replies[2 * (n * samples + s)], replies[2 * (n * samples + s) + 1]
            p1 = None if first.error else parse_preference(first.text)
            p2 = None if second.error else parse_preference(second.text)
            picks = ({"A": "candidate", "B": "reference"}.get(p1 or ""),
                     {"A": "reference", "B": "candidate"}.get(p2 or ""))
            if first.error or second.error:
                vote = "error"
            elif picks[0] is None or picks[1] is None:
                vote = "unparsable"
            elif picks[0] == picks[1]:
                vote = picks[0]
            else:
                vote = "position_disagreement"
            votes[vote] += 1
            row: dict[str, Any] = {"candidate_first": p1, "reference_first": p2, "vote": vote,
                                   "candidate_first_reply": first.text, "reference_first_reply": second.text}
            if first.error or second.error:
                row["error"] = first.error or second.error
            rows.append(row)
        outcome = ("win" if votes["candidate"] > votes["reference"]
                   else "loss" if votes["candidate"] < votes["reference"] else "tie")
        result[c.key] = {"outcome": outcome, "by": "judge", "votes": dict(sorted(votes.items())), "samples": rows}
    return result


# --- rates, intervals ----------------------------------------------------------------------------


def group_order(groups: Iterable[str]) -> list[str]:
    """The paper's column order for ToolBench's test sets, then any other group by name."""
    known = [g for g in GROUPS if g in set(groups)]
    return known + sorted(set(groups) - set(GROUPS))


def group_label(group: str) -> str:
    return GROUPS.get(group, group)


def rates(groups: Sequence[str], values: np.ndarray, resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """Per group and ``average`` (mean of the group rates, as the paper's Average): ``rate``,
    ``queries`` and a 95 % bootstrap interval over queries (``ci``; stratified by group for the
    average). ``values``: one row per query, one column per metric → each entry a list per column."""
    order = group_order(groups)
    garr = np.array(groups, dtype=object)
    out: dict[str, dict[str, Any]] = {}
    means, samples = [], []
    for k, g in enumerate(order):
        v = values[garr == g]
        mean = v.mean(axis=0)
        means.append(mean)
        boot = []
        if resamples > 0:
            for w in _resample_weights(len(v), resamples, seed + k):
                boot.append(w @ v / len(v))
        s = np.concatenate(boot) if boot else np.empty((0, values.shape[1]))
        samples.append(s)
        out[g] = {"queries": len(v), "rate": mean.tolist(),
                  "ci": [_percentiles(s[:, j], float(mean[j]), False) for j in range(values.shape[1])]
                  if resamples > 0 else None}
    if order:
        avg = np.mean(means, axis=0)
        pooled = np.mean(samples, axis=0)  # resample r of the average = mean of the groups' resample r
        out["average"] = {"queries": len(groups), "rate": avg.tolist(),
                          "ci": [_percentiles(pooled[:, j], float(avg[j]), False) for j in range(values.shape[1])]
                          if resamples > 0 else None}
    return out


# --- the whole command ---------------------------------------------------------------------------


@dataclass(slots=True)
class JudgeOptions:
    samples: int = 7
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    max_chars: int = 12000
    price_in: float | None = None
    price_out: float | None = None


@dataclass
class JudgeReport:
    header: dict[str, Any]
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    rejects: list[Reject]  # each with ``extra={"input": "runs" | "against"}``

    @property
    def findings(self) -> bool:
        return bool(self.rejects) or self.summary["judge"]["errors"] > 0

    def to_json(self) -> dict[str, Any]:
        return self.summary


def _metric_table(rows: list[dict[str, Any]], with_win: bool, opts: JudgeOptions) -> dict[str, Any]:
    names = ["pass_rate"] + (["win_rate", "tie_rate", "loss_rate"] if with_win else [])
    if not rows:
        return {"metrics": names, "groups": {}}
    values = np.zeros((len(rows), len(names)))
    for i, row in enumerate(rows):
        values[i, 0] = row["pass"]["score"]
        if with_win:
            o = row["win"]["outcome"]
            values[i, 1:] = (o == "win", o == "tie", o == "loss")
    table = rates([r["group"] for r in rows], values, opts.resamples, opts.seed)
    groups = {g: {"label": "Average" if g == "average" else group_label(g), "queries": t["queries"],
                  **{m: {"rate": t["rate"][j], "ci": t["ci"][j] if t["ci"] else None} for j, m in enumerate(names)}}
              for g, t in table.items()}
    return {"metrics": names, "groups": groups}


def run_judge(runs: Sequence[str], judge: Judge, opts: JudgeOptions, *, against: Sequence[str] = (),
              groups: dict[str, str] | None = None, output: str | None = None,
              on_phase: Callable[[str], None] | None = None) -> JudgeReport:
    """Judge ``runs`` (and their win rate against ``against``); write the per-query file
    ``output`` and its rejects beside it."""
    say = on_phase or (lambda _m: None)
    cand = load_answers(runs, groups, opts.max_chars)
    ref = load_answers(against, groups, opts.max_chars) if against else AnswerSet()
    if not cand.answers:
        raise JudgeError(f"no answer to judge in {', '.join(runs)}"
                         + (f" ({len(cand.rejects)} record(s) rejected)" if cand.rejects else ""))
    answers = list(cand.answers.values())
    if against and not set(cand.answers) & set(ref.answers):
        raise JudgeError(f"no query of RUNS has an answer in --against: the ids do not match (e.g. "
                         f"{next(iter(cand.answers))!r} vs {next(iter(ref.answers), None)!r}); answers are matched "
                         "by <group>/<query id> (G1_instruction/10) or by the whole id")
    say(f"pass rate: {len(answers)} queries × {opts.samples} samples")
    cand_pass = judge_pass(answers, judge, opts.samples)
    win = None
    ref_pass: dict[str, dict[str, Any]] = {}
    if against:
        shared = [r for r in ref.answers.values() if r.key in cand.answers]
        say(f"reference pass rate: {len(shared)} queries; preferences")
        ref_pass = judge_pass(shared, judge, opts.samples)
        win = judge_win(answers, ref.answers, cand_pass, ref_pass, judge, opts.samples)
    if judge.usage.asked and judge.usage.errors == judge.usage.asked and not judge.usage.cached:
        raise JudgeError(f"the judge answered none of {judge.usage.asked} request(s) ({judge.name}); last error: "
                         f"{judge.usage.last_error}")
    order = {g: i for i, g in enumerate(group_order({a.group for a in answers}))}
    rows = []
    for a in sorted(answers, key=lambda x: (order[x.group], x.key)):
        row: dict[str, Any] = {"id": a.key, "group": a.group, "run_id": a.run_id, "source": a.source,
                               "final_answer": a.final_answer, "steps": a.steps, "pass": cand_pass[a.key]}
        if win is not None:
            r = ref.answers.get(a.key)
            row["win"] = {**win[a.key], "reference": None if r is None else {
                "run_id": r.run_id, "source": r.source, "pass": ref_pass[r.key]}}
        rows.append(row)
    rejects = [replace(r, extra={**r.extra, "input": side}) for side, answers_of in (("runs", cand), ("against", ref))
               for r in answers_of.rejects]
    header = {HEADER_KEY: 1, "prompt_version": PROMPT_VERSION, "judge": judge.name,
              "decoding": {"temperature": judge.decoding.temperature, "top_p": judge.decoding.top_p,
                           "max_tokens": judge.decoding.max_new_tokens, "seed": judge.decoding.seed},
              "samples": opts.samples, "runs": list(runs), "against": list(against)}
    u = judge.usage
    votes: Counter[str] = Counter()
    for row in rows:
        votes.update(row["pass"]["votes"])
    outcomes = Counter(row["win"]["outcome"] for row in rows) if win is not None else Counter()
    decided = Counter(row["win"]["by"] for row in rows) if win is not None else Counter()
    pref_votes: Counter[str] = Counter()
    for row in rows:
        if win is not None:
            pref_votes.update(row["win"].get("votes") or {})
    summary: dict[str, Any] = {
        **_metric_table(rows, win is not None, opts),
        "queries": len(rows),
        "unanswered": sum(1 for a in answers if a.final_answer is None),
        "pass_votes": dict(sorted(votes.items())),
        "rejected": len(rejects),
        "rejected_by_reason": dict(sorted(Counter(r.reason for r in rejects).items())),
        "judge": {"name": judge.name, "samples": opts.samples, "requests": u.asked + u.cached, "asked": u.asked,
                  "cached": u.cached, "errors": u.errors,
                  "tokens": {"prompt": u.prompt_tokens, "completion": u.completion_tokens},
                  "cached_tokens": {"prompt": u.cached_prompt_tokens, "completion": u.cached_completion_tokens},
                  "cost": u.cost(opts.price_in, opts.price_out),
                  "price_per_million": {"in": opts.price_in, "out": opts.price_out}},
        "bootstrap": {"resamples": opts.resamples, "seed": opts.seed},
        "comparable": "comparable to ToolEval's numbers, not identical: umi's own prompt wording and your judge model",
    }
    if win is not None:
        summary["win"] = {"outcomes": dict(sorted(outcomes.items())), "decided_by": dict(sorted(decided.items())),
                          "votes": dict(sorted(pref_votes.items())),
                          "reference_only": len(set(ref.answers) - set(cand.answers))}
    if output:
        summary["output"] = output
        write_jsonl(output, [header, *rows])
        rpath = rejects_path(output)
        if rejects:
            write_jsonl(rpath, [r.to_dict() for r in rejects])
            summary["rejects_file"] = str(rpath)
        else:
            rpath.unlink(missing_ok=True)
    return JudgeReport(header, rows, summary, rejects)


def check_outputs(outputs: Sequence[str], inputs: Sequence[str]) -> None:
    """Every file ``judge`` writes is checked against every input before anything is read."""
    try:
        for out in outputs:
            check_output(out, inputs)
    except UnsafeOutput as e:
        raise JudgeError(str(e)) from None
    if len({os.path.realpath(o) for o in outputs}) < len(outputs):
        raise JudgeError("the judged file, its rejects file and the cache must be different files")


# --- compare two judged files --------------------------------------------------------------------


def is_judged_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts with a ``umieval judge`` header line."""
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
        obj = orjson.loads(first)
    except (OSError, orjson.JSONDecodeError):
        return False
    return isinstance(obj, dict) and obj.get(HEADER_KEY) == 1


def read_judged(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = [ln for ln in Path(path).read_bytes().splitlines() if ln.strip()]
    try:
        header = orjson.loads(lines[0])
        rows = [orjson.loads(ln) for ln in lines[1:]]
        for r in rows:
            _ = (r["id"], r["group"], r["pass"]["score"])  # the fields compare needs
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError) as e:
        raise JudgeError(f"{path}: not a umieval judge file ({e})") from None
    return header, rows


def compare_judged(a: str, b: str, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
                   ) -> dict[str, Any]:
    """Paired comparison of two judged files on the same queries: per group and on average, the
    pass rate (and win rate when both have one) of A and B, B − A and a 95 % paired bootstrap
    interval (the same queries resampled for both; stratified by group for the average)."""
    from umi_eval.score.scoring import StepMismatch

    (ha, ra), (hb, rb) = read_judged(a), read_judged(b)
    ia, ib = {r["id"]: r for r in ra}, {r["id"]: r for r in rb}
    if set(ia) != set(ib):
        only_a, only_b = sorted(set(ia) - set(ib)), sorted(set(ib) - set(ia))
        raise StepMismatch(f"the files are not on the same queries: {len(only_a)} only in A (e.g. {only_a[:3]}), "
                           f"{len(only_b)} only in B (e.g. {only_b[:3]})")
    keys = [r["id"] for r in ra]
    names = ["pass_rate"] + (["win_rate"] if all("win" in r for r in ra + rb) else [])

    def vals(rows: dict[str, dict[str, Any]]) -> np.ndarray:
        v = np.zeros((len(keys), len(names)))
        for i, k in enumerate(keys):
            v[i, 0] = rows[k]["pass"]["score"]
            if len(names) > 1:
                v[i, 1] = rows[k]["win"]["outcome"] == "win"
        return v

    groups = [ia[k]["group"] for k in keys]
    va, vb = vals(ia), vals(ib)
    both = rates(groups, np.hstack([va, vb, vb - va]), resamples, seed)
    m = len(names)
    table = {}
    for g, t in both.items():
        cols = {name: {"a": t["rate"][j], "b": t["rate"][m + j], "diff": t["rate"][2 * m + j],
                       "ci": t["ci"][2 * m + j] if t["ci"] else None} for j, name in enumerate(names)}
        table[g] = {"label": "Average" if g == "average" else group_label(g), "queries": t["queries"], **cols}
    return {"a": str(a), "b": str(b), "judges": {"a": ha.get("judge"), "b": hb.get("judge")},
            "queries": len(keys), "metrics": names, "groups": table,
            "bootstrap": {"resamples": resamples, "seed": seed},
            "comparable": "comparable to ToolEval's numbers, not identical: umi's own prompt wording and the judge "
                          "models named here"}
