"""Post-processing and routing of model outputs (spec §1.4 step 5, §1.5).

The original static pipeline routes on plain substring tests of the three planner markers
(period included), with a fixed precedence — give up, then conclusion, then caller, which is
also the default — whatever their position. This is deliberately *not* the tolerant
:func:`umi_data.render.parse.parse_planner` (first marker by position): the metrics must mean what the
paper's mean, so a planner output is routed exactly as the original routed it. The marker
strings themselves are umi_data's (``alpha_umi.MARKERS``).
"""

from __future__ import annotations

from dataclasses import dataclass

from umi_data.render.alpha_umi import MARKERS

EOS = "</s>"
# Precedence of the original pipeline: the first marker *kind* present wins, not the first position.
PRECEDENCE = ("give_up", "conclude", "call")
MARKER = {d: MARKERS[d].strip() for d in PRECEDENCE}  # "Next: give up." …
ROUTE_OF = {"give_up": "give_up", "conclude": "conclusion", "call": "caller"}
ASSISTANT = "assistant: "


def postprocess(text: str) -> str:
    """Spec §1.4 step 5: drop a leading ``": "``; a blank, ``.`` or ``,`` output becomes ``none``."""
    if text.startswith(": "):
        text = text[2:]
    if text.strip() in ("", ".", ","):
        return "none"
    return text


def marker_decision(text: str) -> str | None:
    """The decision a planner text states by the original's substring rule; ``None`` without marker."""
    for decision in PRECEDENCE:
        if MARKER[decision] in text:
            return decision
    return None


@dataclass(frozen=True, slots=True)
class Route:
    """Where a (post-processed) planner output goes: ``decision`` and the thought ``T`` handed on
    (cut right after the deciding marker; ``Next: caller.`` appended when no marker was given)."""

    decision: str  # call / conclude / give_up
    thought: str
    marked: bool  # the planner wrote the marker itself (False: routed to the caller by default)

    @property
    def name(self) -> str:
        return ROUTE_OF[self.decision]


def route(planner_text: str) -> Route:
    """Spec §1.5: give-up beats conclusion beats caller; no marker means caller."""
    decision = marker_decision(planner_text)
    if decision is None:
        return Route("call", planner_text + MARKER["call"], False)
    marker = MARKER[decision]
    cut = planner_text.index(marker) + len(marker)
    return Route(decision, planner_text[:cut], True)


def compose(r: Route, second: str | None) -> str:
    """The stored prediction: the cut give-up text alone, or ``assistant: T</s>caller: C`` /
    ``assistant: T</s>conclusion: S``. (The original writes the label ``asssitant: ``; no metric
    reads it, so umi writes the reference's spelling.)"""
    if r.decision == "give_up":
        return r.thought
    label = "caller: " if r.decision == "call" else "conclusion: "
    return f"{ASSISTANT}{r.thought}{EOS}{label}{second if second is not None else ''}"
