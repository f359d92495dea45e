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
