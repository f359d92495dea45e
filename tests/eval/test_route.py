"""Post-processing and routing exactly as the original static pipeline (spec §1.4 step 5, §1.5)."""

from __future__ import annotations

import pytest

from umi_eval.generate.route import compose, marker_decision, postprocess, route


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (": Paris is sunny.", "Paris is sunny."),  # leading ": " dropped once
        (": : x", ": x"),  # only once
        ("  ", "none"),
        ("", "none"),
        (".", "none"),
        (" , ", "none"),
        (": ", "none"),
        ("..", ".."),
        ("  keep spaces  ", "  keep spaces  "),  # no other stripping
    ],
)
def test_postprocess(raw: str, want: str) -> None:
    assert postprocess(raw) == want


def test_route_precedence_is_by_kind_not_position() -> None:
    # give up beats conclusion beats caller, wherever they are
    r = route("Try it. Next: caller. Or else Next: give up. trailing")
    assert (r.decision, r.thought, r.name) == ("give_up", "Try it. Next: caller. Or else Next: give up.", "give_up")
    r = route("Next: caller. then Next: conclusion. more")
    assert (r.decision, r.thought) == ("conclude", "Next: caller. then Next: conclusion.")
    # the spec's made-up example: cut right after the first marker
    r = route("The city list failed, try the forecast API. Next: caller. Then conclude.")
    assert r.thought == "The city list failed, try the forecast API. Next: caller." and r.marked


def test_no_marker_or_marker_without_period_goes_to_the_caller() -> None:
    for text in ("I will look it up", "done. Next: conclusion", "Next: give up"):
        r = route(text)
        assert r.decision == "call" and not r.marked
        assert r.thought == text + "Next: caller."  # appended directly, no space
    assert marker_decision("x Next: conclusion") is None


def test_compose() -> None:
    call = route("Look. Next: caller.")
    want = "assistant: Look. Next: caller.</s>caller: Action: a\nAction Input: {}"
    assert compose(call, "Action: a\nAction Input: {}") == want
    conc = route("Done.\n Next: conclusion.")
    assert compose(conc, "It is 21.") == "assistant: Done.\n Next: conclusion.</s>conclusion: It is 21."
    assert compose(route("No.\n Next: give up. extra"), None) == "No.\n Next: give up."
