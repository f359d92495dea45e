"""LLaMA-Factory's OpenAI-like chats with typed content parts → canonical trajectories.

Input shape (e.g. LLaMA-Factory ``data/reason_tool_use_demo_50.jsonl``): one object per record::

    {"messages": [
        {"role": "system", "content": [{"type": "text", "value": "You are …"}]},
        {"role": "user", "content": [{"type": "text", "value": "Area of a circle of radius 2?"}]},
        {"role": "assistant", "content": [
            {"type": "reasoning", "value": "I should call circle_area."},
            {"type": "tool_call", "value": "{\\"name\\": \\"circle_area\\", \\"arguments\\": {\\"radius\\": 2}}"}]},
        {"role": "tool", "content": [{"type": "text", "value": "{\\"area\\": 12.57}"}]},
        {"role": "assistant", "content": [{"type": "reasoning", "value": "Report it."},
                                          {"type": "text", "value": "About 12.57."}]}],
     "tools": "[{\\"type\\": \\"function\\", \\"function\\": {…}}]"}     # a JSON string (or a list)

``reasoning`` parts are the planner's thought (α-UMi's own split: rationale apart from the call
or the answer); ``tool_call`` parts are the caller's calls (``arguments`` objects are written
as JSON text, ``json.dumps(…, ensure_ascii=False)``, as LLaMA-Factory does); ``text`` parts of an
answer are the conclusion. Other parts (images, …) are dropped with a ``dropped_message``
warning. Everything else is the ``openai`` reader's rules (``readers/chat.py``).
"""

from __future__ import annotations

from typing import Any

from umi_data.readers import openai
from umi_data.readers.base import CHAT_ID, Episode, FormatDoc, Reader
from umi_data.trajectory import Source

FORMAT = "openai-typed"
read = openai.read


def sniff(obj: Any) -> bool:
    """Messages whose content parts carry their text under ``value`` (or are typed ``reasoning``
    / ``tool_call``), which plain OpenAI content parts never do."""
    if not openai.sniff(obj) or not isinstance(obj["messages"], list):
        return False
    return any(
        isinstance(part, dict) and ("value" in part or part.get("type") in ("reasoning", "tool_call"))
        for m in obj["messages"] if isinstance(m, dict) and isinstance(m.get("content"), list)
        for part in m["content"]
    )


class OpenAITypedReader(Reader):
    """``openai-typed`` in the registry: detection order, signature and catalog entry; the module's
    functions do the reading."""

    name = FORMAT
    rank = 80
    signature = None  # a variant of openai: never named as the closest format
    doc = FormatDoc(
        "openai-typed",
        "LLaMA-Factory's OpenAI-like chats with typed content parts (e.g. `reason_tool_use_demo_50.jsonl`)",
        ('{"messages": [{"role": "user", "content": [{"type": "text", "value": "…"}]}, {"role": "assistant", "content": [{"type": "reasoning", "value": "…"},',  # noqa: E501
         ' {"type": "tool_call", "value": "{\\"name\\": \\"f\\", \\"arguments\\": {…}}"}]}, {"role": "tool", …}, …], "tools": "[…]"}'),  # noqa: E501
        "`reasoning` → planner thought; `tool_call` parts → caller; `tool` → observation; `text` of a request's last assistant message → conclusion",  # noqa: E501
        CHAT_ID,
    )

    def sniff(self, obj: Any) -> bool:
        return sniff(obj)

    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        return read(obj, source, traj_id)
