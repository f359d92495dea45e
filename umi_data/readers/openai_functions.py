"""Legacy OpenAI function-calling chats (``functions`` / ``function_call`` / role ``function``).

Input shape (OpenAI's API before ``tools``, and many datasets built with it)::

    {"messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": null,
         "function_call": {"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}},
        {"role": "function", "name": "get_weather", "content": "{\\"temp_c\\": 4}"},
        {"role": "assistant", "content": "4 °C in Oslo."}],
     "functions": [{"name": "get_weather", "description": "…", "parameters": {JSON Schema}}]}

``function_call`` is the caller's one call (no call id: the ``function`` message that follows
answers the oldest call waiting for a result); ``function`` messages are observations (``name``
kept). ``functions`` are the tools (``tools`` is read too). Everything else is the ``openai``
reader's rules (``readers/chat.py``).
"""

from __future__ import annotations

from typing import Any

from umi_data.readers import openai
from umi_data.readers.base import CHAT_ID, Episode, FormatDoc, Reader
from umi_data.trajectory import Source

FORMAT = "openai-functions"
read = openai.read


def sniff(obj: Any) -> bool:
    if not openai.sniff(obj):
        return False
    if "functions" in obj:
        return True
    msgs = obj["messages"] if isinstance(obj["messages"], list) else []
    return any(isinstance(m, dict) and ("function_call" in m or m.get("role") == "function") for m in msgs)


class OpenAIFunctionsReader(Reader):
    """``openai-functions`` in the registry: detection order, signature and catalog entry; the module's
    functions do the reading."""

    name = FORMAT
    rank = 90
    signature = None  # a variant of openai: never named as the closest format
    doc = FormatDoc(
        "openai-functions",
        "legacy OpenAI function calling (`functions`, `function_call`, role `function`)",
        ('{"messages": [{"role": "user", …}, {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{…}"}},',  # noqa: E501
         ' {"role": "function", "name": "f", "content": "…"}, {"role": "assistant", "content": "…"}], "functions": [{"name": "f", …}]}'),  # noqa: E501
        "`content` → planner thought; `function_call` → caller; `function` → observation; a request's last assistant message → conclusion",  # noqa: E501
        CHAT_ID,
    )

    def sniff(self, obj: Any) -> bool:
        return sniff(obj)

    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        return read(obj, source, traj_id)
