"""ShareGPT chats with tool calls (LLaMA-Factory's ``sharegpt`` formatting) → canonical trajectories.

Input shape (e.g. LLaMA-Factory ``data/glaive_toolcall_en_demo.json``): a JSON list (or JSONL) of::

    {"conversations": [
        {"from": "human", "value": "Area of a 5 x 3 rectangle?"},
        {"from": "function_call", "value": "{\\"name\\": \\"area\\", \\"arguments\\": {\\"w\\": 5, \\"h\\": 3}}"},
        {"from": "observation", "value": "{\\"area\\": 15}"},
        {"from": "gpt", "value": "It is 15 square units."}],
     "system": "…",                                   # optional
     "tools": "[{\\"name\\": \\"area\\", \\"description\\": \\"…\\", \\"parameters\\": {…}}]"}  # JSON string or list

``human`` → user; ``function_call`` → the caller's call(s) (JSON ``{name, arguments}`` or a list
of them for parallel calls; ``arguments`` objects become JSON text, ``json.dumps(…,
ensure_ascii=False)``, as LLaMA-Factory renders them), decided by a planner turn without a
thought; ``observation`` → observation; ``gpt`` → the answer of its request (or a plain planner
turn when no user message follows it); ``system`` → the trajectory's ``system``. The rest are the chat
rules of ``readers/chat.py`` (one trajectory per request, ``calls_only``).

Custom role tags and column names are read as LLaMA-Factory reads them: from the entry whose
``file_name`` is this file's name in ``--dataset-info FILE``, else in a ``dataset_info.json``
beside the input file (``columns``: messages/system/tools; ``tags``: role_tag, content_tag,
user_tag, assistant_tag, observation_tag, function_tag, system_tag). A messages column named in
``--dataset-info`` is detected; one named only beside the file needs ``--format sharegpt``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from umi_data.readers.base import CHAT_ID, Episode, FormatDoc, Reader, Signature
from umi_data.readers.bounded_io import ReadLimitExceeded, read_regular
from umi_data.readers.chat import Msg, Reject, build, parse_tools
from umi_data.trajectory import Call, Source
from umi_data.trajectory.findings import Finding

FORMAT = "sharegpt"
DEFAULT_TAGS = {
    "role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
    "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system",
}
DEFAULT_COLUMNS = {"messages": "conversations", "system": "system", "tools": "tools"}
_NONE: Mapping[str, Any] = MappingProxyType({})


def _message_columns(given: Mapping[str, Any]) -> set[str]:
    cols = {"conversations"}
    for entry in given.values():
        col = (entry.get("columns") or {}).get("messages")
        if isinstance(col, str) and col != "messages":  # `messages` stays the OpenAI readers'
            cols.add(col)
    return cols


def sniff(obj: Any, given: Mapping[str, Any] = _NONE) -> bool:
    """``given``: the ``--dataset-info`` entries (``ReaderConfig.dataset_info``), whose messages
    columns are recognised too."""
    return isinstance(obj, dict) and any(isinstance(obj.get(c), list) for c in _message_columns(given))


_INFO_LIMIT = 64 << 20  # a dataset_info.json describes datasets: a few KiB; read no more than this

@lru_cache(maxsize=64)
def _dataset_info(directory: str) -> dict[str, Any]:
    try:
        data = json.loads(read_regular(Path(directory) / "dataset_info.json", _INFO_LIMIT).decode("utf-8"))
    except (OSError, ValueError, ReadLimitExceeded):  # a FIFO or device there is never opened
        return {}
    return data if isinstance(data, dict) else {}


def layout(source: Source, given: Mapping[str, Any] = _NONE) -> tuple[dict[str, str], dict[str, str]]:
    """(columns, tags) for a file: LLaMA-Factory's defaults, overridden by the entry that names
    this file in the ``--dataset-info`` file, else in a ``dataset_info.json`` beside it."""
    columns, tags = dict(DEFAULT_COLUMNS), dict(DEFAULT_TAGS)
    name = Path(source.member or source.file).name
    infos = [given]
    if source.member is None:
        infos.append(_dataset_info(os.fspath(Path(source.file).parent.resolve())))
    entry = next((e for info in infos for e in info.values() if isinstance(e, dict) and e.get("file_name") == name),
                 None)
    if entry is not None:
        columns.update({k: v for k, v in (entry.get("columns") or {}).items() if k in columns and isinstance(v, str)})
        tags.update({k: v for k, v in (entry.get("tags") or {}).items() if k in tags and isinstance(v, str)})
    return columns, tags


def calls_from_json(value: str, pointer: str) -> list[Call]:
    """A ``function_call`` value: JSON ``{name, arguments}`` or a list of them."""
    try:
        data = json.loads(value)
    except ValueError as e:
        raise Reject(pointer, f"a function_call value must be JSON {{name, arguments}} ({e})") from None
    calls = []
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise Reject(pointer, "a function_call value must be JSON {name, arguments} (or a list of them)")
        args = item.get("arguments", {})
        calls.append(Call(item["name"], args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)))
    return calls


def read(obj: Any, source: Source, traj_id: str, given: Mapping[str, Any] = _NONE) -> list[Episode]:
    findings: list[Finding] = []
    columns, tags = layout(source, given)
    key = columns["messages"]
    roles = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["observation_tag"]: "tool",
             tags["function_tag"]: "call", tags["system_tag"]: "system"}
    try:
        tools, others = parse_tools(obj.get(columns["tools"]), f"/{columns['tools']}", source, findings)
        convs = obj.get(key)
        if not isinstance(convs, list):
            raise Reject(f"/{key}", f"`{key}` must be a list of {{{tags['role_tag']}, {tags['content_tag']}}}")
        msgs: list[Msg] = []
        system = obj.get(columns["system"])
        if isinstance(system, str) and system:
            msgs.append(Msg("system", f"/{columns['system']}", text=system))
        for i, item in enumerate(convs):
            where = f"/{key}/{i}"
            tag = item.get(tags["role_tag"]) if isinstance(item, dict) else None
            role = roles.get(tag) if isinstance(tag, str) else None
            value = item.get(tags["content_tag"]) if isinstance(item, dict) else None
            if role is None:
                got = item.get(tags["role_tag"]) if isinstance(item, dict) else item
                raise Reject(f"{where}/{tags['role_tag']}", f"unknown role {got!r} (expected one of "
                             f"{', '.join(roles)}; other tags: a dataset_info.json beside the file)")
            if not isinstance(value, str):
                raise Reject(f"{where}/{tags['content_tag']}", f"`{tags['content_tag']}` must be a string")
            if role == "call":
                msgs.append(Msg("assistant", where, calls=calls_from_json(value, f"{where}/{tags['content_tag']}")))
            else:
                msgs.append(Msg(role, where, text=value))  # type: ignore[arg-type]
    except Reject as r:
        return r.rejected(findings, source)
    metadata: dict[str, Any] = {"other_tools": others} if others else {}
    return build(msgs, tools, source, traj_id, findings, metadata, where=f"/{key}")


class ShareGptReader(Reader):
    """``sharegpt`` in the registry: detection order, signature and catalog entry; the module's
    functions do the reading."""

    name = FORMAT
    rank = 70
    signature = Signature(("conversations",), ("tools", "system"))
    doc = FormatDoc(
        "sharegpt",
        "ShareGPT chats with tools (LLaMA-Factory `sharegpt`, e.g. `glaive_toolcall_en_demo.json`); custom role tags and columns from a `dataset_info.json` beside the file or `--dataset-info FILE`",  # noqa: E501
        ('{"conversations": [{"from": "human", "value": "…"}, {"from": "function_call", "value": "{\\"name\\": \\"f\\", \\"arguments\\": {…}}"},',  # noqa: E501
         ' {"from": "observation", "value": "…"}, {"from": "gpt", "value": "…"}], "system": "…", "tools": "[{\\"name\\": \\"f\\", …}]"}'),  # noqa: E501
        "`function_call` → planner (no thought) + caller; `observation` → observation; `gpt` ending a request → conclusion (else a plain planner turn)",  # noqa: E501
        CHAT_ID,
    )

    def sniff(self, obj: Any) -> bool:
        return sniff(obj, self.config.dataset_info)

    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        return read(obj, source, traj_id, self.config.dataset_info)
