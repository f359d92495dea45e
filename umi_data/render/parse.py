"""Parse role outputs (model generations or role targets) back into canonical pieces.

This is the exact inverse of the role targets of :mod:`umi_data.render.roles`: parsing a rendered
target gives back the canonical turn(s) it was rendered from (``clean`` is then true), and the
marker logic is that of :mod:`umi_data.render.alpha_umi` (``parse_planner``/``parse_calls``), not a
second copy. Model generations are noisier, so every parser also accepts:

- a trailing end-of-sequence token (``</s>``, possibly repeated) and trailing white space;
- (planner) a decision marker that is not at the very end, or not preceded by a newline;
- (caller) text before the first ``Action:`` line.

Any such repair sets ``clean=False``; what cannot be read raises :class:`ParseError` with a
message that says what is missing.

Global (GLPFT stage 1) targets merge the planner thought with the call or the conclusion:
``"<thought stripped>\\nAction: x\\nAction Input: {…}"``, ``"<thought>\\nconclusion: <answer>"``
and ``"<thought>\\nconclusion: give up."``. The merge strips the thought, so the global parse
returns ``thought.strip()`` (``None`` when empty); a conclusion whose answer is literally
``give up.`` cannot be told apart from a give-up (the format has no way to say it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from umi_data.render import alpha_umi
from umi_data.trajectory import Call

EOS = "</s>"
DECISIONS = ("call", "conclude", "give_up")

# "Next: caller." etc. anywhere (tolerant planner parse); the markers are alpha_umi.MARKERS.
_ANY_MARKER_RE = re.compile(
    r"\s*(?P<m>" + "|".join(re.escape(m.strip()) for m in alpha_umi.MARKERS.values()) + ")"
)
_MARKER_DECISION = {m.strip(): d for d, m in alpha_umi.MARKERS.items()}
_LINE_START = r"(?:^|(?<=\n))"
_ACTION_RE = re.compile(_LINE_START + r"Action: ")
_CONCLUSION_RE = re.compile(_LINE_START + r"conclusion: ")
_GIVE_UP_TAIL = "conclusion: give up."


class ParseError(ValueError):
    """A role output that cannot be read; the message says what is wrong."""


@dataclass(slots=True)
class ParsedCall(Call):
    """A :class:`Call` plus ``valid_json``: whether ``arguments`` (kept byte for byte, never
    re-serialised) decodes as JSON."""

    valid_json: bool = False

    def as_call(self) -> Call:
        return Call(self.name, self.arguments, self.id)


@dataclass(frozen=True, slots=True)
class PlannerOutput:
    thought: str | None
    decision: str | None  # call / conclude / give_up; None for a plain message
    clean: bool = True  # the text was exactly a canonical planner value


@dataclass(frozen=True, slots=True)
class GlobalOutput:
    thought: str | None  # the planner thought, stripped (the global target strips it)
    decision: str | None  # call / conclude / give_up; None when no call or conclusion was found
    calls: list[ParsedCall] | None = None  # for decision == "call"
    answer: str | None = None  # for decision == "conclude"
    clean: bool = True


def _snippet(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "…")


def strip_eos(text: str) -> tuple[str, bool]:
    """``text`` without trailing ``</s>`` tokens (and the white space around them);
    the flag says whether anything was removed."""
    out = text
    while out.rstrip().endswith(EOS):
        out = out.rstrip()[: -len(EOS)]
    if out is text:
        return text, False
    return out.rstrip(), True


def _valid_json(arguments: str) -> bool:
    try:
        json.loads(arguments)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply for the decoder
        return False
    return True


def _parsed(calls: list[Call]) -> list[ParsedCall]:
    return [ParsedCall(c.name, c.arguments, c.id, _valid_json(c.arguments)) for c in calls]


# --- planner -------------------------------------------------------------------------------


def parse_planner(text: str) -> PlannerOutput:
    """``"<thought>\\n Next: caller."`` → ``PlannerOutput("<thought>", "call")``.

    A canonical value (what :func:`alpha_umi.planner_text` renders) parses with
    ``clean=True``. Noise is repaired with ``clean=False``: ``</s>`` and white space at the
    end, a marker without the newline before it, a marker followed by more text (the first
    marker wins, what follows is dropped). Text without any marker is a plain message
    (``decision=None``, the text is the thought) and never clean: a planner output must end
    in a decision marker, so a caller of this parser (evaluation, an agent loop) must not take
    it for a well-formed step."""
    body, noisy = strip_eos(text)
    trimmed = body.rstrip()
    noisy = noisy or trimmed != body
    thought, decision, canonical = alpha_umi.parse_planner(trimmed)
    if decision is not None:
        return PlannerOutput(thought, decision, canonical and not noisy)
    m = _ANY_MARKER_RE.search(trimmed)
    if m is None:  # a plain message: kept as it is, less the end-of-sequence token; no decision
        return PlannerOutput(body, None, False)
    span = trimmed[: m.start()]
    return PlannerOutput(span if span.strip() else None, _MARKER_DECISION[m["m"]], False)


# --- caller --------------------------------------------------------------------------------


def _caller(text: str, strict: bool) -> tuple[list[ParsedCall], bool]:
    body, noisy = strip_eos(text)
    calls = alpha_umi.parse_calls(body)
    if calls is not None and not (strict and noisy):
        return _parsed(calls), not noisy
    if calls is None and not strict:
        # Text before the first "Action:" line (a model that adds a thought), or junk between
        # calls: take every well-formed pair in order.
        calls = [Call(m["name"], m["args"]) for m in alpha_umi._CALL_RE.finditer(body)]
    if calls:
        if strict:
            raise ParseError(f"caller output is not exactly 'Action: …\\nAction Input: …': {_snippet(text)}")
        return _parsed(calls), False
    if "Action:" not in body:
        raise ParseError(f"no 'Action:' in caller output {_snippet(text)}")
    if "Action Input:" not in body:
        raise ParseError(f"'Action:' without 'Action Input:' in caller output {_snippet(text)}")
    raise ParseError(
        "caller output has 'Action:' and 'Action Input:' but not as "
        f"'Action: <name>\\nAction Input: <arguments>' (one line each): {_snippet(text)}"
    )


def parse_caller(text: str, strict: bool = False) -> list[ParsedCall]:
    """``"Action: x\\nAction Input: {…}"`` (parallel calls one after the other) → calls.

    Arguments are the exact text after ``Action Input: ``; ``valid_json`` tells whether it
    decodes. ``strict=True`` accepts only the canonical text (:func:`alpha_umi.call_text`),
    otherwise ``</s>``, trailing white space and text before the first ``Action:`` line are
    tolerated. Raises :class:`ParseError` when there is no call to read."""
    return _caller(text, strict)[0]


def parse_caller_clean(text: str) -> tuple[list[ParsedCall], bool]:
    """:func:`parse_caller` plus whether the text was canonical (no repair needed)."""
    return _caller(text, False)


# --- summarizer ----------------------------------------------------------------------------


def parse_summarizer(text: str) -> str:
    """The final answer: the text itself, without a trailing ``</s>``."""
    return strip_eos(text)[0]


# --- global --------------------------------------------------------------------------------


def _thought(span: str) -> str | None:
    span = span.strip()
    return span or None


def _call_split(text: str) -> tuple[int, list[Call]] | None:
    """The earliest line-start ``Action: `` from which the rest is exactly call text."""
    for m in _ACTION_RE.finditer(text):
        calls = alpha_umi.parse_calls(text[m.start() :])
        if calls is not None:
            return m.start(), calls
    return None


def parse_global(text: str) -> GlobalOutput:
    """Inverse of the global target (see the module docstring).

    A give-up is recognised by its ``conclusion: give up.`` ending; otherwise the earliest of
    the call (a line-start ``Action: `` from which the rest is call text) and the conclusion
    (a line-start ``conclusion: ``) decides. A call part that only the tolerant caller parse
    can read is accepted with ``clean=False``; a text with neither is a plain message
    (``decision=None``)."""
    body, noisy = strip_eos(text)
    clean = not noisy
    tail = body.rstrip()
    if tail == _GIVE_UP_TAIL or tail.endswith("\n" + _GIVE_UP_TAIL):
        return GlobalOutput(_thought(tail[: -len(_GIVE_UP_TAIL)]), "give_up", clean=clean and tail == body)
    split = _call_split(body)
    conc = _CONCLUSION_RE.search(body)
    if conc is not None and (split is None or conc.start() < split[0]):
        return GlobalOutput(
            _thought(body[: conc.start()]), "conclude", answer=body[conc.end() :], clean=clean
        )
    if split is not None:
        return GlobalOutput(_thought(body[: split[0]]), "call", calls=_parsed(split[1]), clean=clean)
    first = _ACTION_RE.search(body)
    if first is not None:
        try:
            calls = parse_caller(body[first.start() :])
        except ParseError:
            pass
        else:
            return GlobalOutput(_thought(body[: first.start()]), "call", calls=calls, clean=False)
    # No call and no conclusion: a plain message, or a planner-style output.
    planner = parse_planner(body)
    if planner.decision is not None:
        return GlobalOutput(_thought(planner.thought or ""), planner.decision, clean=False)
    return GlobalOutput(_thought(body), None, clean=clean)


def parse(role: str, text: str) -> PlannerOutput | list[ParsedCall] | str | GlobalOutput:
    """Dispatch on the role name (``global`` / ``planner`` / ``caller`` / ``summarizer``)."""
    parsers = {
        "global": parse_global,
        "planner": parse_planner,
        "caller": parse_caller,
        "summarizer": parse_summarizer,
    }
    if role not in parsers:
        raise ValueError(f"unknown role {role!r} (expected one of {', '.join(parsers)})")
    return parsers[role](text)
