"""α-UMi stage-2 conversations → canonical trajectories.

Input shape (``raw_data_stage_2.json``, also the shape of α-UMi's published test sets): a JSON
list of::

    {"tools": [{"Name": "…", "function": "…", "input": {"param": "string, description"}}],
     "instruction": "Can you …?",
     "conversations": [{"from": "user", "value": "Can you …?"},
                       {"from": "assistant", "value": "I should call …\\n Next: caller."},
                       {"from": "caller", "value": "Action: tool\\nAction Input: {…}"},
                       {"from": "observation", "value": "…"},
                       {"from": "assistant", "value": "…\\n Next: conclusion."},
                       {"from": "conclusion", "value": "final answer"}]}

Tools carry only the cut-down docs, so canonical tools are rebuilt from them
(``alpha_umi.tool_from_doc``; re-rendering gives the same docs).
"""

from __future__ import annotations

from typing import Any

from umi_data.render.alpha_umi import FROM_TO_TURN, tool_from_doc, turn_from_item
from umi_data.trajectory import Source, Trajectory, derive_outcome
from umi_data.trajectory.findings import Finding

FORMAT = "alpha-umi"


def sniff(obj: Any) -> bool:
    """``conversations`` with α-UMi's ``instruction`` beside them (ShareGPT and ToolLLaMA
    records have ``conversations`` too, never an ``instruction``)."""
    if not isinstance(obj, dict) or "conversations" not in obj:
        return False
    convs = obj["conversations"] if isinstance(obj["conversations"], list) else []
    return "instruction" in obj or any(isinstance(c, dict) and c.get("from") in ("caller", "conclusion") for c in convs)


def read(obj: Any, source: Source, traj_id: str) -> tuple[Trajectory | None, list[Finding]]:
    problems: list[tuple[str, str]] = []
    if not isinstance(obj.get("instruction"), str):
        problems.append(("/instruction", "`instruction` must be a string"))
    tools = obj.get("tools")
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("Name"), str) and isinstance(t.get("input") or {}, dict)
        and isinstance(t.get("function", ""), str) for t in tools
    ):
        problems.append(("/tools", "`tools` must be a list of {Name, function, input} docs"))
    convs = obj.get("conversations")
    if not isinstance(convs, list):
        problems.append(("/conversations", "`conversations` must be a list"))
        convs = []
    for i, item in enumerate(convs):
        if not isinstance(item, dict) or not isinstance(item.get("from"), str) or item["from"] not in FROM_TO_TURN \
                or not isinstance(item.get("value"), str):
            problems.append((f"/conversations/{i}", "each item needs `from` in user/assistant/caller/observation/"
                             "conclusion and a string `value`"))
    if problems:
        return None, [Finding("schema", msg, source, ptr) for ptr, msg in problems]
    turns = [turn_from_item(item["from"], item["value"]) for item in convs]
    traj = Trajectory(traj_id, source, obj["instruction"], [tool_from_doc(t) for t in tools], turns,
                      derive_outcome(turns), {})
    return traj, []
