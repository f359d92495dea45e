"""Chat rows (``umidata split --template chat``) → token ids + labels, with the model's own template.

Each conversation is rendered by the tokenizer's chat template with its ``tools``; the labels are
exactly the tokens of the messages flagged ``train`` (their turn's end token included), found

- from the template's ``{% generation %}`` markers when it has them (transformers'
  ``return_assistant_tokens_mask``), restricted to the spans of the ``train`` messages — for the
  families TRL knows, its *training* variant of the template (``get_training_chat_template``:
  same text, prefix-preserving, with markers) is used;
- else by rendering prefixes and diffing: a message's supervised text is what rendering the
  conversation up to it adds after the generation prompt.

Either way every message boundary comes from rendering the conversation's prefixes, and each one
must be a prefix of the whole rendering (the template is *prefix-preserving*): that is what makes
one sample per trajectory equal, token for token, to one sample per step. What is refused, with a
message naming the problem, instead of trained on silently: no chat template; a template that
drops tool calls, tool messages or ``tools`` (TRL's ``supports_tool_calling`` + a tools probe); a
conversation whose prefixes do not render as prefixes; a sample with no supervised token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from umi_train import UserError

IGNORE_INDEX = -100
CHAT_COLUMNS = ("id", "messages", "tools")
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "umi_probe_tool_5c1d",
        "description": "umi probe",
        "parameters": {"type": "object", "properties": {"umi_probe_arg_9e2a": {"type": "string"}}},
    },
}


class ChatTemplateError(UserError):
    """A chat template or a conversation that cannot be trained on correctly."""


@dataclass(frozen=True)
class ChatPlan:
    """How conversations are tokenized: the template text and how labels are found."""

    template: str
    markers: bool  # {% generation %} markers present: labels from the assistant mask
    origin: str  # for the run summary: which template, and why

    def key(self) -> str:
        """Part of the tokenization cache key: the template decides every id and label."""
        import hashlib

        return hashlib.sha256(f"{self.markers}|{self.template}".encode()).hexdigest()[:16]


def plan(tokenizer) -> ChatPlan:
    """Pick the template to train with and check that it can carry tool-calling conversations."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers, supports_tool_calling

    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        raise ChatTemplateError(
            "the tokenizer has no chat template; chat data (umidata split --template chat) is rendered with the "
            "model's own template — use an instruct model's tokenizer or set tokenizer.chat_template"
        )
    if not supports_tool_calling(tokenizer):
        raise ChatTemplateError(
            "the chat template drops tool calls or tool messages (a rendered call's name/arguments or a tool "
            "response is missing): training on it would teach the model nothing about calling tools"
        )
    origin = "the tokenizer's chat template"
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError:  # a family TRL has no training variant for: prefix diffs, verified per sample
        patched = None
    if patched is not None:
        template, origin = patched, "TRL's training variant of the tokenizer's chat template"
    markers = has_generation_markers(template)
    probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    text = _render(tokenizer, template, probe, [_PROBE_TOOL])
    if "umi_probe_tool_5c1d" not in text or "umi_probe_arg_9e2a" not in text:
        raise ChatTemplateError(
            "the chat template ignores `tools`: the tool schemas would never reach the model, so it would learn "
            "to call tools it was never shown"
        )
    how = "{% generation %} markers" if markers else "prefix diffs"
    return ChatPlan(template, markers, f"{origin}, labels from {how}")


def _render(tokenizer, template: str, messages: list[dict], tools: list[dict] | None, gen: bool = False) -> str:
    return tokenizer.apply_chat_template(
        messages, tools=tools or None, chat_template=template, tokenize=False, add_generation_prompt=gen
    )


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as a template expects them: no ``train`` flag, no null keys (some templates test
    ``'tool_calls' in message``)."""
    return [{k: v for k, v in m.items() if k != "train" and v is not None} for m in messages]


def supervised_spans(
    tokenizer, p: ChatPlan, messages: list[dict[str, Any]], tools: list[dict] | None
) -> tuple[str, list[tuple[int, int, int]]]:
    """The whole rendering and, per ``train`` message, ``(start, after generation prompt, end)``
    character offsets; raises :class:`ChatTemplateError` when the template is not prefix-preserving."""
    msgs = template_messages(messages)
    try:
        full = _render(tokenizer, p.template, msgs, tools)
        spans = []
        for k, m in enumerate(messages):
            if not m.get("train"):
                continue
            if m.get("role") != "assistant":
                raise ChatTemplateError(f"message {k} is flagged train but is a {m.get('role')!r} message")
            start = _render(tokenizer, p.template, msgs[:k], tools)
            head = _render(tokenizer, p.template, msgs[:k], tools, gen=True)
            end = _render(tokenizer, p.template, msgs[: k + 1], tools) if k + 1 < len(msgs) else full
            for what, text in (("the conversation before it", start), ("its generation prompt", head),
                               ("the conversation up to it", end)):
                if not full.startswith(text):
                    at = next((i for i, (a, b) in enumerate(zip(text, full, strict=False)) if a != b), len(full))
                    raise ChatTemplateError(
                        f"the chat template is not prefix-preserving: at message {k}, rendering {what} is not a "
                        f"prefix of the whole conversation (they differ at {full[max(0, at - 20):at + 20]!r}); "
                        "use a prefix-preserving (training) template"
                    )
            spans.append((len(start), len(head), len(end)))
    except ChatTemplateError:
        raise
    except Exception as exc:  # jinja raise_exception, e.g. Llama 3.1 refusing parallel calls
        raise ChatTemplateError(f"the chat template cannot render this conversation: {exc}") from None
    return full, spans


def encode(
    tokenizer, p: ChatPlan, messages: list[dict[str, Any]], tools: list[dict] | None
) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one conversation; labels are IGNORE_INDEX outside the supervised
    tokens. Raises :class:`ChatTemplateError` when nothing is supervised."""
    full, spans = supervised_spans(tokenizer, p, messages, tools)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if p.markers:
        out = tokenizer.apply_chat_template(
            template_messages(messages), tools=tools or None, chat_template=p.template, tokenize=True,
            return_dict=True, return_assistant_tokens_mask=True,
        )
        if list(out["input_ids"]) != list(ids):
            raise ChatTemplateError("tokenizing the rendered conversation does not give apply_chat_template's ids")
        mask = out["assistant_masks"]
        keep = [bool(mask[i]) and any(s <= a and b <= e for s, _, e in spans) for i, (a, b) in enumerate(offsets)]
    else:
        keep = [any(h <= a < e for _, h, e in spans) for a, _ in offsets]
    labels = [t if k else IGNORE_INDEX for t, k in zip(ids, keep, strict=True)]
    if not any(keep):
        raise ChatTemplateError(
            "no supervised token: the train messages render to nothing the "
            + ("{% generation %} markers cover" if p.markers else "template adds after its generation prompt")
        )
    return list(ids), labels


def encode_batch(batch: dict[str, list], tokenizer, p: ChatPlan, max_length: int) -> dict[str, list]:
    """Batched ``datasets.map``: the columns ``data._encode`` returns, for chat rows. A conversation
    is never cut (a cut could drop the very turns it supervises): longer ones are dropped."""
    out: dict[str, list] = {"input_ids": [], "labels": [], "length": [], "n_completion": [], "status": []}
    for rid, messages, tools in zip(batch["id"], batch["messages"], batch["tools"], strict=True):
        if isinstance(tools, str):
            tools = json.loads(tools)
        try:
            ids, labels = encode(tokenizer, p, messages, tools)
        except ChatTemplateError as exc:
            raise ChatTemplateError(f"{rid}: {exc}") from None
        n = sum(1 for x in labels if x != IGNORE_INDEX)
        status = "ok" if len(ids) <= max_length else "dropped_overlong"
        if status != "ok":
            ids, labels = [], []
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["length"].append(len(ids))
        out["n_completion"].append(n)
        out["status"].append(status)
    return out
