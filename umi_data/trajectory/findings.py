"""Findings and rejects: what is wrong with a record, where, how to fix it — and what was not used.

Every code any umi command emits — umidata's findings and rejects, ``umieval generate``'s steps
that are not evaluated, ``score``'s records that cannot be scored, ``run``'s query rejects and the
agent loop's findings, ``judge``'s rejects — is declared once in ``CODES`` with its default
severity and a description; the documented list in ``docs/findings.md`` is generated from this
table (``umidata codes``), and an undeclared code raises where it is made (:func:`declared`).
Severity ``error`` means the record cannot be used and is rejected; ``warning`` means it is
kept but deserves a look (``--strict`` turns warnings into errors).

A :class:`Reject` is the one shape of a record a command did not use: one line of every rejects
file, ``{source, reason, message, pointer, findings}`` plus the keys a command adds.
"""

# ruff: noqa: E501  (the code table reads best one code per line)
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from umi_data.trajectory import Source

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    severity: Severity
    description: str


_CODES = [
    # Reading: the record cannot be parsed into a trajectory at all.
    Code("io_error", "error", "The file or archive member cannot be read (permissions, missing, broken archive)."),
    Code("encoding", "error", "The bytes are not valid UTF-8 (UTF-8/16/32 with a byte-order mark are decoded; "
         "UTF-16 without one is named, with how to convert it)."),
    Code("not_a_file", "error", "The input is a FIFO, device, socket or the like (also through a symlink), not a "
         "regular file: it is not opened, since reading it could hang or never end."),
    Code("json_syntax", "error", "The text is not valid JSON (the message gives line and column)."),
    Code("empty_input", "error", "The file holds no record at all."),
    Code("no_input", "error", "An input directory or archive holds no file umidata reads (.json, .jsonl, .ndjson, "
         ".parquet, .zip; .gz/.zst compressed), or is empty."),
    Code("too_large", "error", "A file, line or archive member is over --max-record-bytes, or expands more than "
         "--max-ratio times its compressed size (a decompression bomb); it is not read (`umieval score`: a "
         "prediction line over 64 MiB)."),
    Code("too_deep", "error", "The JSON is nested deeper than umidata can process (1024 levels to parse, less for "
         "some fields); the rest of the input is read."),
    Code("internal_error", "error", "umi failed on this record (a bug in umi: please report it with the "
         "record); the rest of the input is read (`umieval run`: the query crashed in the loop or its line could "
         "not be written; it runs again on resume)."),
    Code("unknown_format", "error", "No reader recognises the record; the message names the closest format and the field that did not match (`umidata formats` lists the shapes)."),
    Code("schema", "error", "The record does not have the shape its format requires (missing key, wrong type; "
         "`umieval run`: a query that is not an object, a non-string `instruction`, a bad `tools` list)."),
    Code("no_trajectory", "error", "A ToolBench answer file without `train_messages`: it carries no trajectory."),
    Code("no_ground_truth", "error", "A benchmark question (BFCL) whose expected calls are not available: no "
         "`possible_answer/<same file name>` beside the question file, no entry with its id, or a relevance "
         "question that only expects *some* call."),
    Code("bfcl_multi_turn", "error", "A BFCL multi-turn or agentic question (`involved_classes`, several turns, "
         "memory, web search): its expected calls run against BFCL's simulated APIs, whose results are not in "
         "the data, so it makes no trajectory."),
    Code("bfcl_answer_file", "error", "A BFCL `possible_answer` record given as input: it is read with the "
         "question file of the same name, not on its own."),
    Code("excluded", "error", "`umidata split --exclude-ids`: the trajectory or ToolBench query id is listed (e.g. a test query)."),
    Code("duplicate_id", "error", "Another record already produced this trajectory id (umieval: this step id in a "
         "prediction file, this query id in a query file); the later one is rejected."),
    # Semantics: the record parses; these describe what it says.
    Code("jsonl_in_json", "warning", "A `.json` file holds one JSON record per line (JSONL, as BFCL publishes "
         "its data); it is read line by line."),
    Code("duplicate_key", "warning", "A JSON object repeats a key; JSON readers keep the last value and "
         "ignore the earlier ones."),
    Code("unknown_tool", "warning", "A call names a tool that is not in the tool list (a hallucinated name; "
         "`umieval run`: the observation is ToolBench's `No such function name`)."),
    Code("arguments_not_json", "warning", "A call's arguments are not a JSON object (`umieval run`: they are sent "
         "to the tool as they are)."),
    Code("arguments_missing_required", "warning", "A call omits a parameter the tool's schema requires."),
    Code("arguments_wrong_type", "warning", "A call passes a value whose type the tool's schema does not allow."),
    Code("arguments_unknown_name", "warning", "A call passes a parameter the tool's schema does not declare."),
    Code("call_without_observation", "warning", "A call is not followed by an observation."),
    Code("observation_without_call", "warning", "An observation does not answer any call."),
    Code("decision_without_action", "warning", "A planner decided to call or conclude but no caller/conclusion turn follows."),
    Code("no_terminal_turn", "error", "The trajectory neither concludes nor gives up, nor ends in tool calls: it ends mid-way."),
    Code("empty_instruction", "error", "The trajectory's request (instruction) is empty or blank: there is nothing to condition on."),
    Code("empty_completion", "error", "A turn that makes a training example has an empty target (a blank final answer, a caller turn without a call)."),
    Code("empty_final_answer", "warning", "The conclusion is the placeholder `none` (ToolBench's Finish without an answer): no summarizer example is made from it."),
    Code("duplicate_tool", "warning", "Two tools share a name; the α-UMi prompt cannot tell them apart."),
    Code("duplicate_trajectory", "error", "The same trajectory content (instruction, tools, turns) already appeared in an "
         "earlier record; the later one is rejected (it would leak between train and dev)."),
    Code("no_tools", "warning", "The trajectory offers no tool at all (`umieval run`: a query that lists no tools "
         "while the executor has none is rejected)."),
    Code("plain_assistant", "warning", "An assistant turn carries no decision (no `Next: …`); it only enters histories."),
    Code("turns_after_conclusion", "warning", "Turns follow a conclusion."),
    Code("dropped_message", "warning", "A source message has no α-UMi counterpart and is kept only in metadata."),
    Code("parallel_calls", "warning", "One caller turn holds several calls; α-UMi checkpoints were trained on one call per turn."),
    Code("observation_recovered", "warning", "A tool response was not valid JSON; its text was recovered after `\"response\":`."),
    Code("finish_recovered", "warning", "A Finish call's arguments were not valid JSON; the answer was recovered from the text."),
    Code("non_function_tool", "warning", "A tool that is not a function (e.g. `{\"type\": \"code_interpreter\"}`) cannot be called by name; it is kept in `metadata.other_tools`."),
    Code("arguments_double_encoded", "warning", "A call's arguments were a JSON string holding a JSON object (encoded twice); they are decoded once, so the caller does not learn the double encoding."),
    Code("calls_from_text", "warning", "A chat that declares no tools writes tool calls as assistant text (`<tool_call>` blocks, JSON `{name, arguments}`, a Python call list `[f(a=1)]`): they are read as calls, not as an answer."),
    Code("calls_in_text", "warning", "A chat that declares no tools has assistant text that opens like tool calls but cannot be read as them; it is kept as text (an answer or a plain message): check it."),
    Code("unanswered_user", "warning", "A chat ends with user messages nothing answers (e.g. a user simulator's `###STOP###`): the chat ends before them; their text is kept in `metadata.umi_trailing_user`."),
    Code("tools_inferred", "warning", "The record lists no tools (τ-bench trajectories): tools are named from its calls, without descriptions or parameter schemas; `metadata.umi_tools_inferred` marks them."),
    Code("terminal_action", "warning", "A τ-bench run ends on the result of its last call (the environment ended the episode, e.g. `transfer_to_human_agents`): the trajectory ends in that call (`calls_only`); the result is kept in `metadata.umi_final_results`."),
    Code("tool_schema_invalid", "warning", "A tool's `parameters` is not a usable JSON Schema; calls to it are checked "
         "only for being a JSON object."),
    # umieval generate: a record or a planner turn that makes no evaluation step.
    Code("no_marker", "error", "`umieval generate`: a planner turn has no `Next: …` marker but a caller or "
         "conclusion turn follows it; the turn is not evaluated."),
    Code("reference_missing", "error", "`umieval generate`: a planner turn decides to call or conclude but the "
         "trajectory ends there: the step has no reference and is not evaluated."),
    Code("reference_mismatch", "error", "`umieval generate`: a planner turn decides to call (conclude) but the "
         "next turn is not a caller (conclusion) turn: the step has no reference and is not evaluated."),
    Code("not_found", "error", "`umieval generate`: a trajectory of the split is not in the inputs its manifest "
         "lists (they changed since the split was made)."),
    # umieval score: a prediction record that cannot be scored.
    Code("invalid_json", "error", "`umieval score`: a line of a prediction file is not valid JSON."),
    Code("not_an_object", "error", "`umieval score`: a prediction record is not a JSON object."),
    Code("missing_key", "error", "`umieval score`: a prediction record lacks a key its shape needs (`reference`, "
         "`prediction`/`predictions`, a string `id`)."),
    Code("not_a_string", "error", "`umieval score`: a prediction record's reference or prediction is not a string."),
    Code("bad_tools", "error", "`umieval score`: a prediction record's `tools` is missing or not a list."),
    Code("unknown_mode", "error", "`umieval score`: a prediction record's `mode` is neither `trio` nor `single`."),
    # umieval run: a query that is not run, and the agent loop's findings (metadata.findings of a run).
    Code("model_error", "error", "`umieval run`: a model backend could not complete a prompt (a server error); "
         "the query is not written and runs again on resume."),
    Code("prompt_truncated", "warning", "`umieval run`: a prompt was cut from the left to fit the model's input."),
    Code("planner_empty", "warning", "`umieval run`: the planner's output was empty after every attempt; it "
         "became `none`."),
    Code("planner_no_marker", "warning", "`umieval run`: the planner's output has no `Next: …` marker; it is "
         "routed to the caller."),
    Code("no_decision", "warning", "`umieval run` with one model: the output neither calls a tool nor concludes."),
    Code("empty_answer", "warning", "`umieval run`: the summarizer gave no answer; it became `none`."),
    Code("caller_unparsable", "warning", "`umieval run`: the caller's output holds no call that can be read; the "
         "observation is the original's `No such function name: none`."),
    Code("arguments_schema", "warning", "`umieval run`: a call's arguments violate the tool's JSON Schema; they "
         "are sent to the tool as they are."),
    Code("invalid_arguments", "warning", "`umieval run`: a `python:` tool refused the call's arguments (not JSON, "
         "or against its schema); the observation says why."),
    Code("tool_error", "warning", "`umieval run`: the tool answered with an error (a python tool raised, an HTTP "
         "error, an error recorded in a replayed trajectory)."),
    Code("tool_crashed", "warning", "`umieval run`: a `python:` tool's worker process died (an exit, a crash, the "
         "memory limit); the run goes on."),
    Code("timeout", "warning", "`umieval run`: a tool call took longer than --timeout (after the retries)."),
    Code("unavailable", "warning", "`umieval run`: the tool server could not be reached or answered HTTP 5xx "
         "(after the retries)."),
    Code("no_record", "warning", "`umieval run --tools replay:`: no recorded response for this tool and these "
         "arguments."),
    Code("redirected", "warning", "`umieval run --tools http:`: the tool server redirected to another host; the "
         "redirect is not followed."),
    # umieval judge: an answer that is not judged.
    Code("duplicate_query", "error", "`umieval judge`: a second answer to the same query; only the first is judged."),
]
CODES: dict[str, Code] = {c.code: c for c in _CODES}
Problem = tuple[str, str]  # (a code of CODES, message): a reject before its source is attached


def declared(code: str) -> str:
    """``code``, once it is known to be in :data:`CODES`: every code a command emits is documented
    (``docs/findings.md``), so an undeclared one is a bug caught where it is made."""
    if code not in CODES:
        raise ValueError(f"undeclared finding code {code!r} (declare it in umi_data/trajectory/findings.py)")
    return code


@dataclass(slots=True)
class Finding:
    """One problem: a stable ``code``, where it is (``source`` + JSON ``pointer``) and what to do."""

    code: str
    message: str
    source: Source
    pointer: str = ""
    severity: Severity | None = None

    def __post_init__(self) -> None:
        declared(self.code)
        if self.severity is None:
            self.severity = CODES[self.code].severity

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "source": self.source.to_dict(),
            "pointer": self.pointer,
        }

    def where(self) -> str:
        return self.source.where() + (f"#{self.pointer}" if self.pointer else "")

    def line(self) -> str:
        """One-line rendering for terminals and logs."""
        return f"{self.where()}: {self.severity} [{self.code}] {self.message}"


@dataclass(slots=True)
class Reject:
    """A record (or a part of one) that a command did not use, and why: the one shape of every
    rejects file (``umidata convert`` / ``split``, ``umieval generate`` / ``run`` / ``judge``) and of
    ``umieval score``'s unscorable records. ``reason`` is a code of :data:`CODES`; ``pointer`` says
    where in the record, ``findings`` everything found in it (umidata's checks; empty where a
    command does not check records). ``extra`` holds the keys a command adds after the common ones
    (``generate``: ``trajectory_id`` and ``turn``; ``judge``: ``input``)."""

    source: Source
    reason: str
    message: str
    pointer: str = ""
    findings: list[Finding] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared(self.reason)

    @classmethod
    def of(cls, finding: Finding, findings: Sequence[Finding] = (), source: Source | None = None,
           **extra: Any) -> Reject:
        """The reject for ``finding`` (its code, message and pointer), with everything found in the
        record; ``source`` is the record's (default: the finding's)."""
        return cls(source or finding.source, finding.code, finding.message, finding.pointer, list(findings), extra)

    def to_dict(self) -> dict[str, Any]:
        """One line of a rejects file: ``{source, reason, message, pointer, findings, **extra}``."""
        return {
            "source": self.source.to_dict(),
            "reason": self.reason,
            "message": self.message,
            "pointer": self.pointer,
            "findings": [f.to_dict() for f in self.findings],
            **self.extra,
        }

    def where(self) -> str:
        return self.source.where() + (f"#{self.pointer}" if self.pointer else "")
