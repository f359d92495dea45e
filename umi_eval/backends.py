"""Model backends: one small interface that ``generate`` and the agent loop both call.

A backend turns prompt strings into completions. Prompts are built by umi_data's renderer (the code
that built the training prompts), never here; post-processing of the text (spec §1.4 step 5) and
routing are the caller's business, so a scripted stand-in model is just another backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Decoding:
    """Decoding settings. ``temperature == 0`` means greedy (the default; the original sampled)."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 42
    max_input_tokens: int = 3750  # longer prompts keep their last tokens (left truncation, spec §1.4)


@dataclass(frozen=True, slots=True)
class Generation:
    """One completion: the decoded new text (special tokens skipped) and what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: bool = False  # the prompt was cut from the left to fit ``max_input_tokens``


class Backend(Protocol):
    """Anything that completes prompts: a local checkpoint, an OpenAI-compatible server, a script."""

    name: str

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]: ...
