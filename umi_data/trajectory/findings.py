"""Findings: what is wrong with an input record, where, and how to fix it.

Every code is declared once in ``CODES`` with its default severity and a description; the
documented list in ``docs/findings.md`` is generated from this table (``umidata codes``).
Severity ``error`` means the record cannot be used and is rejected; ``warning`` means it is
kept but deserves a look (``--strict`` turns warnings into errors).
"""

# ruff: noqa: E501  (the code table reads best one code per line)
from __future__ import annotations

from dataclasses import dataclass
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
    Code("json_syntax", "error", "The text is not valid JSON (the message gives line and column)."),
    Code("empty_input", "error", "The file holds no record at all."),
    Code("no_input", "error", "An input directory or archive holds no file umidata reads (.json, .jsonl, .ndjson, "
         ".parquet, .zip; .gz/.zst compressed), or is empty."),
    Code("too_large", "error", "A file, line or archive member is over --max-record-bytes, or expands more than "
         "--max-ratio times its compressed size (a decompression bomb); it is not read."),
    Code("too_deep", "error", "The JSON is nested deeper than umidata can process (1024 levels to parse, less for "
         "some fields); the rest of the input is read."),
    Code("internal_error", "error", "umidata failed on this record (a bug in umidata: please report it with the "
         "record); the rest of the input is read."),
    Code("unknown_format", "error", "No reader recognises the record; the message names the closest format and the field that did not match (`umidata formats` lists the shapes)."),
    Code("schema", "error", "The record does not have the shape its format requires (missing key, wrong type)."),
    Code("no_trajectory", "error", "A ToolBench answer file without `train_messages`: it carries no trajectory."),
    Code("excluded", "error", "`umidata split --exclude-ids`: the trajectory or ToolBench query id is listed (e.g. a test query)."),
    Code("duplicate_id", "error", "Another record already produced this trajectory id; the later one is rejected."),
    # Semantics: the record parses; these describe what it says.
    Code("duplicate_key", "warning", "A JSON object repeats a key; JSON readers keep the last value and "
         "ignore the earlier ones."),
    Code("unknown_tool", "warning", "A call names a tool that is not in the tool list (a hallucinated name)."),
    Code("arguments_not_json", "warning", "A call's arguments are not a JSON object."),
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
    Code("no_tools", "warning", "The trajectory offers no tool at all."),
    Code("plain_assistant", "warning", "An assistant turn carries no decision (no `Next: …`); it only enters histories."),
    Code("turns_after_conclusion", "warning", "Turns follow a conclusion."),
    Code("dropped_message", "warning", "A source message has no α-UMi counterpart and is kept only in metadata."),
    Code("parallel_calls", "warning", "One caller turn holds several calls; α-UMi checkpoints were trained on one call per turn."),
    Code("observation_recovered", "warning", "A tool response was not valid JSON; its text was recovered after `\"response\":`."),
    Code("finish_recovered", "warning", "A Finish call's arguments were not valid JSON; the answer was recovered from the text."),
    Code("non_function_tool", "warning", "A tool that is not a function (e.g. `{\"type\": \"code_interpreter\"}`) cannot be called by name; it is kept in `metadata.other_tools`."),
    Code("tool_schema_invalid", "warning", "A tool's `parameters` is not a usable JSON Schema; calls to it are checked "
         "only for being a JSON object."),
]
CODES: dict[str, Code] = {c.code: c for c in _CODES}


@dataclass(slots=True)
class Finding:
    """One problem: a stable ``code``, where it is (``source`` + JSON ``pointer``) and what to do."""

    code: str
    message: str
    source: Source
    pointer: str = ""
    severity: Severity | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"undeclared finding code {self.code!r}")
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
