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

FORMAT = "openai-functions"
read = openai.read


def sniff(obj: Any) -> bool:
    if not openai.sniff(obj):
        return False
    if "functions" in obj:
        return True
    msgs = obj["messages"] if isinstance(obj["messages"], list) else []
    return any(isinstance(m, dict) and ("function_call" in m or m.get("role") == "function") for m in msgs)
