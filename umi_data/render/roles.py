"""Role rules: which turns of a trajectory make which training examples (GLPFT datasets).

One engine (:func:`examples`) walks the α-UMi conversation of a trajectory once per role,
growing the history string turn by turn; each role is a small declarative :class:`RoleRule`
saying where it emits an example, what the target is, and how a turn enters its history.
The rules are ``docs/alpha-umi-format.md`` §3; the decisions are read from the same text
markers the original scripts used so prompts and targets stay byte-identical.

Deviations from the original scripts (each deliberate, see the README's "Fixes" section):
- global give-up examples get the prompt of *their own* step (the original reused an earlier
  step's prompt);
- an assistant turn at the end of a trajectory that is not a give-up makes no example
  (the original crashed);
- slots are filled in one pass (``templates``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from umi_data.render.alpha_umi import conversation, tool_docs
from umi_data.render.templates import ALPHA_UMI, Template
from umi_data.trajectory import Trajectory

HALLUCINATED = "invalid_hallucination_function_name"
GIVE_UP = "Next: give up."
ROLE_NAMES = ("global", "planner", "caller", "summarizer")

Conv = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Example:
    """One rendered example with its lineage (trajectory, step, source turn)."""

    id: str
    trajectory_id: str
    step: int  # index of the planner turn this example belongs to
    turn: int  # index of the turn the example was emitted at
    role: str
    prompt: str
    completion: str
    decision: str | None  # the planner decision behind the example (call / conclude / give_up)


def _next_from(conv: Conv, i: int) -> str | None:
    return conv[i + 1]["from"] if i + 1 < len(conv) else None


def _decision(conv: Conv, i: int) -> str | None:
    """The decision an assistant value expresses, as the original scripts read it."""
    value = conv[i]["value"]
    if GIVE_UP in value:
        return "give_up"
    nxt = _next_from(conv, i)
    return {"caller": "call", "conclusion": "conclude"}.get(nxt or "")


def _default_entry(conv: Conv, i: int) -> str | None:
    item = conv[i]
    if item["from"] == "observation":
        return "observation: " + item["value"]  # observations are not closed by </s>
    return f"{item['from']}: {item['value']}</s>"


def _hallucinated_call(conv: Conv, i: int) -> bool:
    return conv[i]["from"] == "caller" and HALLUCINATED in conv[i]["value"]


# --- planner ---------------------------------------------------------------------------------


def _planner_emits(conv: Conv, i: int) -> bool:
    if conv[i]["from"] != "assistant" or _decision(conv, i) is None:
        return False
    return not (i + 1 < len(conv) and _hallucinated_call(conv, i + 1))


# --- caller ----------------------------------------------------------------------------------


def _caller_emits(conv: Conv, i: int) -> bool:
    return conv[i]["from"] == "caller" and not _hallucinated_call(conv, i)


def _caller_entry(conv: Conv, i: int) -> str | None:
    return None if _hallucinated_call(conv, i) else _default_entry(conv, i)


# --- summarizer ------------------------------------------------------------------------------


def _summarizer_emits(conv: Conv, i: int) -> bool:
    return conv[i]["from"] == "conclusion" and conv[i]["value"] != "none"


def _summarizer_entry(conv: Conv, i: int) -> str | None:
    if conv[i]["from"] == "conclusion" and conv[i]["value"] == "none":
        return None
    return _default_entry(conv, i)


# --- global (GLPFT stage 1: one model plays every role) ----------------------------------------


def _global_emits(conv: Conv, i: int) -> bool:
    # Unlike the planner, the original keeps examples whose call is hallucinated.
    return conv[i]["from"] == "assistant" and _decision(conv, i) is not None


def _global_target(conv: Conv, i: int) -> str:
    value = conv[i]["value"]
    decision = _decision(conv, i)
    if decision == "give_up":
        return value.replace(GIVE_UP, "").strip() + "\nconclusion: give up."
    if decision == "call":
        return value.replace("Next: caller.", "").strip() + "\n" + conv[i + 1]["value"]
    if decision == "conclude":
        return value.replace("Next: conclusion.", "").strip() + "\nconclusion: " + conv[i + 1]["value"]
    return value


def _global_entry(conv: Conv, i: int) -> str | None:
    kind = conv[i]["from"]
    if kind == "assistant":
        return "assistant: " + _global_target(conv, i) + "</s>"
    if kind in ("caller", "conclusion"):
        return None  # merged into the assistant turn before them
    return _default_entry(conv, i)


def _value(conv: Conv, i: int) -> str:
    return conv[i]["value"]


def _previous_value(conv: Conv, i: int) -> dict[str, str]:
    return {"thought": conv[i - 1]["value"] if i > 0 else ""}


def _no_slots(conv: Conv, i: int) -> dict[str, str]:
    return {}


@dataclass(frozen=True, slots=True)
class RoleRule:
    role: str
    emits: Callable[[Conv, int], bool]
    target: Callable[[Conv, int], str]
    entry: Callable[[Conv, int], str | None]
    slots: Callable[[Conv, int], dict[str, str]] = _no_slots
    step_offset: int = 0  # where the owning planner turn is, relative to the emitting turn


RULES: dict[str, RoleRule] = {
    "global": RoleRule("global", _global_emits, _global_target, _global_entry),
    "planner": RoleRule("planner", _planner_emits, _value, _default_entry),
    "caller": RoleRule("caller", _caller_emits, _value, _caller_entry, _previous_value, step_offset=-1),
    "summarizer": RoleRule("summarizer", _summarizer_emits, _value, _summarizer_entry, step_offset=-1),
}


@dataclass(frozen=True, slots=True)
class Prepared:
    """What every role of one trajectory shares: its α-UMi conversation (history turns first)
    and tool slots; ``start`` is where the trajectory's own turns begin: history turns enter
    the prompts' history but emit no example, so a step shared by several trajectories (the
    episodes of a multi-turn chat) is learned once."""

    conv: Conv
    docs: list[dict]
    slots: dict[str, str]
    start: int = 0


def prepare(traj: Trajectory) -> Prepared:
    conv = conversation(traj.history + traj.turns) if traj.history else conversation(traj.turns)
    docs = tool_docs(traj.tools)
    slots = {
        # Python json.dumps defaults (", "/": " separators, ASCII escapes), as the original.
        "doc": "".join(json.dumps(d) + "\n" for d in docs),
        "tool_names": ", ".join(d["Name"] for d in docs),
    }
    return Prepared(conv, docs, slots, len(traj.history))


def examples(
    traj: Trajectory, role: str, template: Template = ALPHA_UMI, prepared: Prepared | None = None
) -> Iterator[Example]:
    """All examples of one role for one trajectory, in turn order (pass ``prepared`` to share
    the conversation and tool docs between roles). ``step`` and ``turn`` index the conversation
    with the history turns first."""
    rule = RULES[role]
    p = prepared or prepare(traj)
    conv = p.conv
    history: list[str] = []
    for i in range(len(conv)):
        if i >= p.start and rule.emits(conv, i):
            slots = rule.slots(conv, i)
            owner = i + rule.step_offset
            step = owner if owner >= 0 and conv[owner]["from"] == "assistant" else i
            yield Example(
                id=f"{traj.id}/{role}/{i}",
                trajectory_id=traj.id,
                step=step,
                turn=i,
                role=role,
                prompt=render(p, role, "".join(history), template, slots.get("thought")),
                completion=rule.target(conv, i),
                decision=_decision(conv, step) if conv[step]["from"] == "assistant" else None,
            )
        entry = rule.entry(conv, i)
        if entry is not None:
            history.append(entry)


# --- inference: the same rules and template, for a prefix the caller chooses -------------------


def history(conv: Conv, role: str, stop: int | None = None) -> str:
    """The history string ``role`` sees before turn ``stop`` (all turns when ``None``): each turn
    enters by the role's own rule, exactly as when :func:`examples` reaches ``stop``.

    Inference (``umi_eval``) builds test prompts with this and :func:`render`, so a test prompt
    is the training prompt of the same step, not a second rendering of it."""
    entry = RULES[role].entry
    end = len(conv) if stop is None else stop
    return "".join(e for i in range(end) if (e := entry(conv, i)) is not None)


def render(
    prepared: Prepared, role: str, history: str, template: Template = ALPHA_UMI, thought: str | None = None
) -> str:
    """The model input of ``role`` for a given history (and, for the caller, the planner thought)."""
    slots = {**prepared.slots, "history": history}
    if thought is not None:
        slots["thought"] = thought
    return template.render(role, slots)
