"""The template engine fills every slot in one pass (the original's successive str.replace
injected the history into any tool description that contained ``{history}``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umi_data.render.alpha_umi import tool_docs
from umi_data.render.roles import examples
from umi_data.render.templates import ALPHA_UMI, load_template
from umi_data.trajectory import Call, Source, Tool, Trajectory, Turn


def _trajectory(description: str, thought: str) -> Trajectory:
    turns = [
        Turn("user", content="Find the {doc} of x"),
        Turn("planner", thought=thought, decision="call"),
        Turn("caller", calls=[Call("lookup", '{"q": "{history}"}')]),
        Turn("observation", content="found {tool_names}"),
        Turn("planner", thought="Done.", decision="conclude"),
        Turn("conclusion", content="It is {thought}."),
    ]
    tools = [Tool("lookup", description, {"type": "object", "properties": {"q": {"type": "string"}}})]
    return Trajectory("t/1", Source("umi", "mem"), "Find the {doc} of x", tools, turns, "answered")


@pytest.mark.parametrize("role", ["global", "planner", "caller"])
def test_slot_text_in_data_is_never_expanded(role: str) -> None:
    traj = _trajectory("Looks things up; returns {history} and {thought} verbatim.", "I call {tool_names}.")
    doc = json.dumps(tool_docs(traj.tools)[0])
    first, *_ = examples(traj, role)
    # The tool doc and the history stand exactly as the data wrote them: nothing was injected.
    head = (f"You have assess to the following apis:\n{doc}\n\n"
            "The conversation history is:\nuser: Find the {doc} of x</s>")
    assert first.prompt.startswith(head), first.prompt[:300]
    assert first.prompt.count("The conversation history is:") == 1
    if role != "planner":  # the planner template has no {tool_names}
        assert "[lookup]" in first.prompt  # the template's own {tool_names} is filled


def test_summarizer_history_keeps_placeholders() -> None:
    traj = _trajectory("d", "I call {tool_names}.")
    (ex,) = examples(traj, "summarizer")
    assert ex.prompt == (
        "Make a conclusion based on the conversation history:\nuser: Find the {doc} of x</s>"
        "assistant: I call {tool_names}.\n Next: caller.</s>caller: Action: lookup\nAction Input: "
        '{"q": "{history}"}</s>observation: found {tool_names}assistant: Done.\n Next: conclusion.</s>'
        " conclusion: "
    )


def test_caller_thought_slot_holds_the_planner_text() -> None:
    traj = _trajectory("Looks things up.", "I call {history} now.")
    (ex,) = examples(traj, "caller")
    assert "The thought of this step is:\nI call {history} now.\n Next: caller.\nBase on the thought" in ex.prompt


def test_custom_template_file(tmp_path: Path) -> None:
    spec = {"name": "mine", "prompts": {r: f"[{r}] {{history}}" for r in ALPHA_UMI.prompts},
            "cues": dict(ALPHA_UMI.cues)}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(spec))
    template = load_template(str(path))
    (ex,) = examples(_trajectory("d", "t"), "summarizer", template)
    assert ex.prompt.startswith("[summarizer] user: Find the {doc} of x</s>")
    assert ex.prompt.endswith(" conclusion: ")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"prompts": {"planner": "x"}, "cues": {}}))
    with pytest.raises(ValueError, match="prompts"):
        load_template(str(bad))
