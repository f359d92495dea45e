"""`umieval generate --prompts chat`: a model trained on chat rows is prompted with its own chat
template over the training conversation, and its native tool calls are read back as α-UMi Action
lines, so the same metrics score it. A scripted model answers every prompt with the gold turn as
the template renders it (TRL's qwen2_5 and llama3_1): the scores must be perfect."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from umi_data.render.chat import messages_of, prompt_messages
from umi_eval.generate.backends import Decoding, Generation
from umi_eval.generate.chat_prompts import ChatPrompts, load_chat_tokenizer
from umi_eval.generate.predict import GenerateOptions, generate
from umi_eval.generate.route import postprocess, route
from umi_eval.generate.steps import load_steps
from umi_train.tiny import chat_texts, train_tiny_tokenizer

ANSWERS = Path(__file__).resolve().parents[2] / "examples" / "toolbench-mini" / "answer"
END = {"qwen2_5": "<|im_end|>\n", "llama3_1": "<|eot_id|>"}


class Gold:
    """Completes each prompt with the rendering of the gold turn that follows it (EOS cut off and
    special tokens dropped, as a backend decodes)."""

    name = "gold"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
        return [Generation(self.answers[p]) for p in prompts]


def _tokenizer_dir(tmp: Path, family: str) -> str:
    import pyarrow as pa

    msgs = [json.dumps({"content": "Action Input thought Next: caller. conclusion"})]
    tok = train_tiny_tokenizer(chat_texts([pa.table({"messages": [msgs], "tools": ["[]"]})]), 300, family)
    tok.save_pretrained(tmp / family)
    return str(tmp / family)


def _gold_answers(steps, cp: ChatPrompts, family: str) -> dict[str, str]:
    answers: dict[str, str] = {}
    for s in steps:
        turns = [("planner", s.step)]
        if s.decision != "give_up":
            turns.append(("caller" if s.decision == "call" else "summarizer", s.step + 1))
        thought = None
        for who, stop in turns:
            role = who
            prompt = cp.planner(s) if who == "planner" else getattr(cp, who)(s, thought)
            tok = cp.tokenizers[who]
            messages, tools = prompt_messages(s.trajectory, role, stop, thought)
            gold = messages_of(s.trajectory)[0][stop]  # the turn the model must produce
            full = tok.apply_chat_template([*messages, gold], tools=tools or None, tokenize=False)
            if tok.bos_token and full.startswith(tok.bos_token) and not prompt.startswith(tok.bos_token):
                full = full[len(tok.bos_token):]
            assert full.startswith(prompt), (s.id, who)
            answers[prompt] = full[len(prompt):].removesuffix(END[family])
            if who == "planner":  # what generate hands the caller / summarizer: the routed planner output
                thought = route(postprocess(cp.output("planner", s, answers[prompt]))).thought
    return answers


@pytest.mark.parametrize("family", ["qwen2_5", "llama3_1"])
def test_chat_prompts_and_native_calls_score_perfectly(tmp_path: Path, family: str) -> None:
    from umi_eval.score.scoring import score_file

    model = _tokenizer_dir(tmp_path, family)
    steps = load_steps([str(ANSWERS)]).steps
    trio = {r: model for r in ("planner", "caller", "summarizer")}
    cp = ChatPrompts({r: load_chat_tokenizer(model) for r in trio})
    answers = _gold_answers(steps, cp, family)
    assert any("<tool_call>" in a or '"parameters"' in a for a in answers.values())  # native calls, not Action lines
    out = tmp_path / f"{family}.jsonl"
    summary = generate([str(ANSWERS)], out, GenerateOptions("trio", trio, prompts="chat"),
                       open_backend_fn=lambda _r, _m: Gold(answers))
    assert summary.generated == len(steps) and summary.errors == 0
    preds = [json.loads(x) for x in out.read_text().splitlines()[1:]]
    assert any(p["route"] == "caller" for p in preds)
    for p in preds:
        if p["route"] == "caller":
            assert "Action: " in p["prediction"] and "<tool_call>" not in p["prediction"]
    m = score_file(str(out)).metrics
    for key in ("plan_acc", "act_em", "arg_f1", "rouge_l"):
        assert m[key] == pytest.approx(1.0, abs=1e-6), key
    # the same scores as the α-UMi references themselves (the gold data calls one unknown tool)
    lines = out.read_text().splitlines()
    ref = tmp_path / "ref.jsonl"
    rows = [json.loads(x) for x in lines[1:]]
    for r in rows:
        r["prediction"] = r["reference"] if r["route"] == "give_up" else r["reference"].removesuffix("</s>")
    ref.write_text("\n".join([lines[0], *map(json.dumps, rows)]) + "\n")
    assert m == pytest.approx(score_file(str(ref)).metrics)


def test_chat_prompts_need_a_local_tokenizer(tmp_path: Path) -> None:
    from umi_eval.generate.predict import GenerateError

    opts = GenerateOptions("trio", dict.fromkeys(("planner", "caller", "summarizer"), str(tmp_path / "nope")),
                           prompts="chat")
    with pytest.raises(GenerateError, match="--prompts chat needs each model's tokenizer"):
        generate([str(ANSWERS)], tmp_path / "o.jsonl", opts, open_backend_fn=lambda _r, _m: Gold({}))


def test_a_chat_split_needs_chat_prompts(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from umi_data.cli.commands import main as umidata
    from umi_eval.generate.predict import GenerateError

    split = tmp_path / "split"
    res = CliRunner().invoke(umidata, ["split", str(ANSWERS), "-o", str(split), "--template", "chat",
                                       "--dev-ratio", "0.5", "--workers", "1", "-q"])
    assert res.exit_code in (0, 1), res.output
    steps = load_steps([str(split)])
    assert steps.chat_split and steps.steps and all(s.trajectory is not None for s in steps.steps)
    opts = GenerateOptions("trio", dict.fromkeys(("planner", "caller", "summarizer"), "m"))
    with pytest.raises(GenerateError, match="--prompts chat"):
        generate([str(split)], tmp_path / "o.jsonl", opts, open_backend_fn=lambda _r, _m: Gold({}))
    assert not (tmp_path / "o.jsonl").exists()
