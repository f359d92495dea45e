"""A scripted model for the generate tests: it answers each gold prompt with the gold completion."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from umi_eval.generate.backends import Decoding, Generation
from umi_eval.generate.steps import Prompts, load_steps


class Oracle:
    """A scripted model that answers each gold prompt with the gold completion (and counts calls)."""

    def __init__(self, answers: dict[str, str], name: str = "oracle") -> None:
        self.answers, self.name, self.prompts = answers, name, []

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
        self.prompts.extend(prompts)
        return [Generation(self.answers.get(p, "???"), len(p), 1) for p in prompts]


def oracles(path: Path, style: str = "umi") -> dict[str, Oracle]:
    answers: dict[str, dict[str, str]] = {"planner": {}, "caller": {}, "summarizer": {}, "model": {}}
    pr = Prompts(style)
    for s in load_steps([path]).steps:
        t = s.gold_thought
        answers["planner"][pr.planner(s)] = t
        answers["model"][pr.single(s)] = s.reference_single
        nxt = s.prepared.conv[s.step + 1]["value"] if s.decision != "give_up" else None
        if s.decision == "call":
            answers["caller"][pr.caller(s, t)] = nxt
        elif s.decision == "conclude":
            answers["summarizer"][pr.summarizer(s, t)] = nxt
    return {role: Oracle(a, role) for role, a in answers.items()}
