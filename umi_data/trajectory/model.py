"""The canonical trajectory: the one shape every reader produces and every renderer consumes.

A trajectory is an instruction, the tools it may use (full JSON-Schema parameters), and an
ordered list of turns. There is one turn type, :class:`Turn`, discriminated by ``role``
(like torchtune's single ``Message``); each role uses the fields listed in ``ROLE_FIELDS``.
``to_dict``/``from_dict`` are the only (de)serialisers, so the JSON written by ``umidata
convert`` and ``schemas/trajectory.schema.json`` describe the same thing.

Why a planner turn and a caller turn instead of one "assistant" message: α-UMi trains the
rationale (planner) and the exact call (caller) as separate models, so the split is the
canonical unit; a single OpenAI assistant message with tool calls becomes both.

``history`` holds turns the agent saw *before* this trajectory's request (earlier requests of a
multi-turn chat, or the earlier steps of a ToolLLaMA "Step N" record): they enter the prompts'
conversation history but make no training example themselves, so every step is learned once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FORMAT_VERSION = "umi.trajectory/v1"

Role = Literal["user", "planner", "caller", "observation", "conclusion"]
Decision = Literal["call", "conclude", "give_up"]
Outcome = Literal["answered", "gave_up", "calls_only", "incomplete"]

ROLES: tuple[str, ...] = ("user", "planner", "caller", "observation", "conclusion")
DECISIONS: tuple[str, ...] = ("call", "conclude", "give_up")

# Fields (besides ``role``) that a turn of each role may carry; the rest stay ``None``.
ROLE_FIELDS: dict[str, tuple[str, ...]] = {
    "user": ("content",),
    "planner": ("thought", "decision", "raw"),
    "caller": ("calls", "raw"),
    "observation": ("content", "error", "call_id", "name", "raw"),
    "conclusion": ("content",),
}


@dataclass(slots=True)
class Call:
    """One tool call. ``arguments`` is the raw string the model emitted, never re-serialised,
    because the caller is trained to reproduce it byte for byte."""

    name: str
    arguments: str
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "arguments": self.arguments}
        if self.id is not None:
            d["id"] = self.id
        return d


@dataclass(slots=True)
class Turn:
    """One step of a trajectory.

    - ``user``: ``content``.
    - ``planner``: ``thought`` (``None`` when the model gave none) and ``decision``
      (``call`` / ``conclude`` / ``give_up``; ``None`` for a plain message that decides nothing).
      ``raw`` keeps the exact α-UMi text when it does not follow the canonical spelling.
    - ``caller``: ``calls`` (one or more; parallel calls are kept together, in order).
    - ``observation``: ``content`` (the tool's response text), ``error``, ``call_id``, ``name``;
      ``raw`` keeps the original message when ``content`` had to be recovered from broken JSON.
    - ``conclusion``: ``content`` (the final answer).
    """

    role: Role
    content: str | None = None
    thought: str | None = None
    decision: Decision | None = None
    calls: list[Call] | None = None
    error: str | None = None
    call_id: str | None = None
    name: str | None = None
    raw: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role}
        for key in ROLE_FIELDS[self.role]:
            value = getattr(self, key)
            if key == "calls":
                d["calls"] = [c.to_dict() for c in value or []]
            elif key in ("thought", "decision", "content") or value is not None:
                d[key] = value
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Turn:
        role = d["role"]
        kwargs = {k: d.get(k) for k in ROLE_FIELDS[role] if k != "calls"}
        turn = Turn(role=role, **kwargs)
        if role == "caller":
            turn.calls = [Call(c["name"], c["arguments"], c.get("id")) for c in d.get("calls", [])]
        return turn


@dataclass(slots=True)
class Tool:
    """A tool as the agent saw it: ``parameters`` is the full JSON Schema (ToolBench keeps
    extra keys such as ``optional`` and ``example_value``; they are carried as they are)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Tool:
        return Tool(d["name"], d.get("description", ""), d.get("parameters") or {})


@dataclass(slots=True)
class Source:
    """Where a record came from: enough to find it again (file, record index or line)."""

    format: str
    file: str
    index: int | None = None
    line: int | None = None
    member: str | None = None  # path inside an archive

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("format", "file", "index", "line", "member")}

    def where(self) -> str:
        """Human-readable location, e.g. ``data.zip!G1_answer/1.json`` or ``chats.jsonl:12``."""
        loc = self.file + (f"!{self.member}" if self.member else "")
        if self.line is not None:
            return f"{loc}:{self.line}"
        if self.index is not None:
            return f"{loc}[{self.index}]"
        return loc


@dataclass(slots=True)
class Trajectory:
    id: str
    source: Source
    instruction: str
    tools: list[Tool]
    turns: list[Turn]
    outcome: Outcome = "incomplete"
    metadata: dict[str, Any] = field(default_factory=dict)
    history: list[Turn] = field(default_factory=list)  # context only: no example is made from it

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "id": self.id,
            "source": self.source.to_dict(),
            "instruction": self.instruction,
            "tools": [t.to_dict() for t in self.tools],
        }
        if self.history:  # absent when empty: single-request trajectories keep their exact bytes
            d["history"] = [t.to_dict() for t in self.history]
        d["turns"] = [t.to_dict() for t in self.turns]
        d["outcome"] = self.outcome
        d["metadata"] = self.metadata
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Trajectory:
        s = d["source"]
        return Trajectory(
            id=d["id"],
            source=Source(s["format"], s["file"], s.get("index"), s.get("line"), s.get("member")),
            instruction=d["instruction"],
            tools=[Tool.from_dict(t) for t in d["tools"]],
            turns=[Turn.from_dict(t) for t in d["turns"]],
            outcome=d.get("outcome", "incomplete"),
            metadata=d.get("metadata") or {},
            history=[Turn.from_dict(t) for t in d.get("history") or []],
        )


def record_id(traj: Trajectory) -> str:
    """The id of the record a trajectory came from: request k ≥ 2 of a multi-turn chat is
    ``<record id>#k`` (``metadata["umi_episode"] == k``), every other trajectory is its record."""
    k = traj.metadata.get("umi_episode")
    if isinstance(k, int) and k > 1 and traj.id.endswith(f"#{k}"):
        return traj.id[: -len(f"#{k}")]
    return traj.id


def ends_in_calls(turns: list[Turn]) -> bool:
    """The trajectory's last turn is a planner's ``call`` and its caller turn: the most common
    public function-calling shape (xLAM, BFCL, OpenAI's fine-tuning cookbook) stops at the
    calls, with no result and no answer. (A trajectory that ends on a tool *result* stopped
    mid-way: that is ``incomplete``.)"""
    return (len(turns) >= 2 and turns[-1].role == "caller" and turns[-2].role == "planner"
            and turns[-2].decision == "call")


def derive_outcome(turns: list[Turn]) -> Outcome:
    """``answered`` if the last decision concluded with an answer, ``gave_up`` if it gave up,
    ``calls_only`` if the trajectory ends in tool calls (see :func:`ends_in_calls`)."""
    for turn in reversed(turns):
        if turn.role == "planner" and turn.decision is not None:
            if turn.decision == "give_up":
                return "gave_up"
            if turn.decision == "conclude":
                return "answered"
            return "calls_only" if ends_in_calls(turns) else "incomplete"
    return "incomplete"
