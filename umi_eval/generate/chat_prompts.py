"""``--prompts chat``: test prompts for models trained on ``umidata split --template chat`` rows.

A chat model is prompted with its own chat template over the same conversation it was trained on
(``umi_data.render.chat.prompt_messages``: the training prefix of the step, the role's system message and
tools), with ``add_generation_prompt=True``. Its outputs are read back with the family's response
parser (TRL's ``add_response_schema`` + transformers' ``parse_response``) and turned into the α-UMi
text the metrics read — the caller's native tool calls into ``Action: …\\nAction Input: …`` — so
chat-rendered and α-UMi-rendered models are scored by the same code on the same steps.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from umi_data.render.alpha_umi import call_text
from umi_data.render.chat import calls_from_response, prompt_messages
from umi_eval.generate.steps import Step


def load_chat_tokenizer(path: str, trust_remote_code: bool = False) -> Any:  # a transformers tokenizer
    """The tokenizer of a chat checkpoint, with the response parser of its family when TRL has one."""
    from transformers import AutoTokenizer
    from trl.chat_template_utils import add_response_schema

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if not tok.chat_template:
        raise ValueError(f"{path}: the tokenizer has no chat template; --prompts chat needs one")
    with contextlib.suppress(ValueError):  # unknown family: outputs read as plain text, calls not recognised
        add_response_schema(tok)
    return tok


@dataclass
class ChatPrompts:
    """Same interface as ``steps.Prompts``; ``tokenizers`` maps role (or ``model``) to tokenizer."""

    tokenizers: dict[str, Any]
    style: str = "chat"
    _last: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    def _render(self, who: str, role: str, s: Step, stop: int, thought: str | None = None) -> str:
        if s.trajectory is None:
            raise ValueError(f"step {s.id} has no trajectory; chat prompts need one")
        tok = self.tokenizers[who]
        messages, tools = prompt_messages(s.trajectory, role, stop, thought, s.system_prompt)
        text = tok.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True, tokenize=False)
        bos = tok.bos_token
        if bos and text.startswith(bos) and tok("x", add_special_tokens=True)["input_ids"][:1] == [tok.bos_token_id]:
            text = text[len(bos):]  # the backend tokenizes with add_special_tokens=True: one BOS, not two
        self._last[(who, s.id)] = text
        return text

    def planner(self, s: Step) -> str:
        return self._render("planner", "planner", s, s.step)

    def single(self, s: Step) -> str:
        return self._render("model", "global", s, s.step)

    def caller(self, s: Step, thought: str) -> str:
        return self._render("caller", "caller", s, s.step + 1, thought)

    def summarizer(self, s: Step, thought: str) -> str:
        return self._render("summarizer", "summarizer", s, s.step + 1, thought)

    def output(self, who: str, s: Step, text: str) -> str:
        """A generation as α-UMi text: the content (reasoning dropped), a native call as
        ``Action:``/``Action Input:`` lines. Unparseable output is kept as it is."""
        tok = self.tokenizers[who]
        if getattr(tok, "response_template", None) is None and getattr(tok, "response_schema", None) is None:
            return text
        eos = tok.eos_token or ""
        try:  # backends decode without special tokens; some parsers (Llama 3) close a call on the EOS
            parsed = tok.parse_response(text if text.endswith(eos) else text + eos,
                                        prefix=self._last.get((who, s.id), ""))
        except Exception:  # a model's malformed output must not stop the run
            return text
        if not isinstance(parsed, dict):
            return text
        calls = calls_from_response(parsed)
        if calls:
            return call_text(calls)
        content = parsed.get("content")
        return content if isinstance(content, str) else text
