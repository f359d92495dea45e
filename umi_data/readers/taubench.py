"""τ-bench / APIGen-MT trajectories (``run.py`` results, ``historical_trajectories/*.json``) → trajectories.

Input shape: a JSON list (or JSONL) of one agent run per task::

    {"task_id": 0, "trial": 0, "reward": 1.0,
     "info": {"task": {"user_id": "…", "actions": [{"name": "book_reservation", "kwargs": {…}}], …}, …},
     "traj": [
        {"role": "system", "content": "# Airline Agent Policy\\n…"},
        {"role": "user", "content": "Hi! I'd like to book a flight."},
        {"role": "assistant", "content": "Could you give me your user id?"},
        {"role": "user", "content": "mia_li_3668"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_user_details", "arguments": "{\\"user_id\\": \\"mia_li_3668\\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_user_details", "content": "{…}"},
        {"role": "assistant", "content": "Your flight is booked."},
        {"role": "user", "content": "Thank you! ###STOP###"}]}

``traj`` is an OpenAI chat (read as the ``openai`` format reads ``messages``); its system message
(the domain policy) is the trajectory's ``system``; the user simulator's last line
(``###STOP###``) ends the chat with an ``unanswered_user`` warning. Each request of the chat (a
user message after an answer) is its own trajectory, as for every chat. ``task_id``, ``trial``,
``reward`` and ``info`` (the task and its ground-truth actions) go to ``metadata``. A run that
ends on the result of its last call (``transfer_to_human_agents``: the environment ends the
episode on some actions) ends in that call (outcome ``calls_only``: the call is learned, no
answer is made up), with a ``terminal_action`` warning; the result is kept in
``metadata.umi_final_results``.

The record lists no tools: a ``tools`` field is used when there is one; otherwise the tools are
named from the calls (no description, parameters ``{"type": "object"}`` accepting any argument),
with a ``tools_inferred`` warning and ``metadata.umi_tools_inferred``. The id is
``<file stem>/<index or line>`` (the same task is run in several trials).
"""

from __future__ import annotations

from typing import Any

from umi_data.readers.base import CHAT_ID, Episode, FormatDoc, Reader, Signature
from umi_data.readers.chat import Msg, Reject, build, parse_tools
from umi_data.readers.openai import messages
from umi_data.trajectory import Source, Tool
from umi_data.trajectory.findings import Finding

FORMAT = "tau-bench"
_META = ("task_id", "trial", "reward", "info")
FINAL_RESULTS = "umi_final_results"


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("traj"), list) and "task_id" in obj


def _final_results(msgs: list[Msg]) -> list[Msg]:
    """The tool messages that end the run right after its last call (none when it ends otherwise)."""
    k = len(msgs)
    while k > 0 and msgs[k - 1].role == "tool":
        k -= 1
    return msgs[k:] if k < len(msgs) and k > 0 and msgs[k - 1].role == "assistant" and msgs[k - 1].calls else []


def read(obj: Any, source: Source, traj_id: str) -> list[Episode]:
    findings: list[Finding] = []
    try:
        tools, others = parse_tools(obj.get("tools"), "/tools", source, findings)
        msgs = messages(obj.get("traj"), source, findings, key="traj")
    except Reject as r:
        return r.rejected(findings, source)
    metadata: dict[str, Any] = {k: obj[k] for k in _META if k in obj}
    final = _final_results(msgs)
    if final:
        metadata[FINAL_RESULTS] = [{"call_id": m.call_id, "name": m.name, "content": m.text} for m in final]
        msgs = msgs[: len(msgs) - len(final)]
    if others:
        metadata["other_tools"] = others
    if not tools:
        names = list(dict.fromkeys(c.name for m in msgs for c in m.calls))
        if names:
            tools = [Tool(n, "", {"type": "object", "properties": {}, "additionalProperties": True}) for n in names]
            metadata["umi_tools_inferred"] = True
            findings.append(Finding("tools_inferred", f"the record lists no tools; {len(names)} named from its calls "
                                    f"({', '.join(names[:8])}{', …' if len(names) > 8 else ''}), without descriptions "
                                    "or parameter schemas", source, "/traj"))
    episodes = build(msgs, tools, source, traj_id, findings, metadata, where="/traj")
    if final:  # the last request's warning (its pointer is past the messages build saw)
        episodes[-1][1].append(Finding("terminal_action", f"the run ends on the result of its last call "
                                       f"({final[0].name or '?'}): the environment ended the episode there, so the "
                                       f"trajectory ends in that call (calls_only); the result is kept in "
                                       f"metadata.{FINAL_RESULTS}", source, final[0].pointer))
    return episodes


class TauBenchReader(Reader):
    """``tau-bench`` in the registry: detection order, signature and catalog entry; the module's
    functions do the reading."""

    name = FORMAT
    rank = 60
    tie_rank = 123
    signature = Signature(("traj", "task_id"), ("reward", "info", "trial"))
    doc = FormatDoc(
        "tau-bench",
        "τ-bench / APIGen-MT agent runs (`run.py` results, `historical_trajectories/*.json`): an OpenAI chat in `traj`, no tool list",  # noqa: E501
        ('{"task_id": 3, "trial": 0, "reward": 1.0, "info": {"task": {…}, …}, "traj": [{"role": "system", "content": "# Airline Agent Policy …"}, {"role": "user", …},',  # noqa: E501
         ' {"role": "assistant", "content": null, "tool_calls": […]}, {"role": "tool", "tool_call_id": "…", …}, {"role": "assistant", …}, {"role": "user", "content": "Thanks! ###STOP###"}]}'),  # noqa: E501
        "as `openai`; the policy → `system`; the simulator's last line ends the chat (`unanswered_user`); a run the environment ended on a call's result ends in that call (`terminal_action`); tools named from the calls (`tools_inferred`); `task_id`, `trial`, `reward`, `info` → metadata",  # noqa: E501
        CHAT_ID,
    )

    def sniff(self, obj: Any) -> bool:
        return sniff(obj)

    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        return read(obj, source, traj_id)
