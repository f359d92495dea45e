"""Prompt templates and the one engine that fills them.

A template is, per role, a text with ``{slot}`` placeholders plus the role cue appended after
it (`` assistant: ``, `` caller: ``, `` conclusion: ``). Slots are filled in **one pass**
(a single regex substitution over the template text), so a tool description or a history that
happens to contain ``{history}`` is never expanded again — the original scripts' successive
``str.replace`` did exactly that (``docs/alpha-umi-format.md`` §4).

The built-in ``alpha-umi`` template is byte-identical to the prompts the published α-UMi
checkpoints were trained on. A custom template is a JSON file
``{"name": …, "prompts": {role: text}, "cues": {role: cue}}`` (``--template FILE``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

SLOTS = ("doc", "tool_names", "history", "thought")
_SLOT_RE = re.compile(r"\{(" + "|".join(SLOTS) + r")\}")

_HEAD = "You have assess to the following apis:\n{doc}\nThe conversation history is:\n{history}\n"
_ACTION = (
    "Action: the name of api that should be called in this step, should be exactly in [{tool_names}],\n"
    "Action Input: the api call request."
)

ALPHA_UMI_PROMPTS: dict[str, str] = {
    "global": _HEAD
    + "You should answer the action of next step in the following format:\nThe thought to solve the question,\n"
    + _ACTION
    + "\nOnce you think the question is finished, output conclusion: the final answer of the question "
    "or give up if you think you cannot answer this question.\n",
    "planner": _HEAD
    + "You are the assistant to plan what to do next and whether is caller's or conclusion's turn to answer.\n"
    "Answer with a following format:\nThe thought of the next step, followed by Next: caller or conclusion or give up.",
    "caller": _HEAD
    + "The thought of this step is:\n{thought}\nBase on the thought make an api call in the following format:\n"
    + _ACTION,
    "summarizer": "Make a conclusion based on the conversation history:\n{history}",
}
ALPHA_UMI_CUES: dict[str, str] = {
    "global": " assistant: ",
    "planner": " assistant: ",
    "caller": " caller: ",
    "summarizer": " conclusion: ",
}


@dataclass(frozen=True)
class Template:
    name: str
    prompts: dict[str, str]
    cues: dict[str, str]

    def render(self, role: str, slots: dict[str, str]) -> str:
        """The model input for ``role``: the template with every slot filled, then the cue."""
        return _SLOT_RE.sub(lambda m: slots.get(m.group(1), m.group(0)), self.prompts[role]) + self.cues[role]


ALPHA_UMI = Template("alpha-umi", ALPHA_UMI_PROMPTS, ALPHA_UMI_CUES)
BUILTIN: dict[str, Template] = {ALPHA_UMI.name: ALPHA_UMI}
# Every name `umidata split --template` accepts: the text templates, and `chat`, the conversational
# rendering of umi_data.render.chat (messages for the model's own chat template, not a text template).
BUILTIN_NAMES: tuple[str, ...] = (*sorted(BUILTIN), "chat")


def load_template(name_or_path: str) -> Template:
    """A built-in template by name, or a JSON template file."""
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(
            f"not a built-in template ({', '.join(BUILTIN_NAMES)}) nor a JSON template file "
            "(format: README, 'Custom templates')"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"template {name_or_path}: not a JSON file ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"template {name_or_path}: expected a JSON object with `prompts` and `cues`")
    roles = set(ALPHA_UMI_PROMPTS)
    if set(data.get("prompts", {})) != roles or set(data.get("cues", {})) != roles:
        raise ValueError(f"template {name_or_path}: `prompts` and `cues` must each have exactly {sorted(roles)}")
    return Template(str(data.get("name", Path(name_or_path).stem)), dict(data["prompts"]), dict(data["cues"]))
