"""Chat rows under real chat templates (TRL's qwen2_5, qwen3, llama3_1) on a tiny tokenizer that
knows their special tokens: labels are exactly the train messages, the gold call parses back
with the family's tool-call parser, one sample per trajectory equals one per step, and broken
templates are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main as umidata
from umi_data.readers import read_inputs
from umi_data.render.chat import calls_from_response, prompt_messages
from umi_train.chat import ChatTemplateError, encode, plan, template_messages
from umi_train.data import IGNORE_INDEX
from umi_train.tiny import build_tiny_model, chat_template_text, chat_texts, train_tiny_tokenizer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAMILIES = ("qwen2_5", "qwen3", "llama3_1")
ROLES = ("global", "planner", "caller", "summarizer")


SOURCES = [str(EXAMPLES / "toolbench-mini" / "answer"), str(EXAMPLES / "openai-chats.jsonl")]


def _split(out: Path, *extra: str) -> Path:
    res = CliRunner().invoke(umidata, ["split", *SOURCES, "-o", str(out), "--template", "chat", "--dev-ratio", "0",
                                       "--workers", "1", "-q", *extra])
    assert res.exit_code in (0, 1), res.output
    return out


def _rows(out: Path, role: str) -> list[dict]:
    import datasets

    files = sorted(str(f) for f in (out / role).glob("*.parquet"))
    return list(datasets.load_dataset("parquet", data_files=files, split="train"))


def _parallel(row: dict) -> bool:
    return any(len(m.get("tool_calls") or []) > 1 for m in row["messages"])


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("chat")
    return {"traj": _split(base / "traj"), "step": _split(base / "step", "--granularity", "step")}


@pytest.fixture(scope="module")
def tokenizers(splits: dict[str, Path]) -> dict[str, object]:
    files = sorted((splits["traj"] / "global").glob("*.parquet"))
    out = {}
    for family in FAMILIES:
        tables = (pq.read_table(f, columns=["messages", "tools"]) for f in files)
        out[family] = train_tiny_tokenizer(chat_texts(tables), vocab_size=500, family=family)
    return out


def _usable(family: str, row: dict) -> bool:
    return not (family == "llama3_1" and _parallel(row))  # Llama 3.1's template: one call per turn


def _runs(labels: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    prev = False
    for t in labels:
        if t != IGNORE_INDEX:
            if not prev:
                runs.append([])
            runs[-1].append(t)
        prev = t != IGNORE_INDEX
    return runs


def _expected_texts(tok, p, row: dict) -> list[str]:
    """Per train message, what the template renders for it: its {% generation %} text (found by
    transformers at character level) or, without markers, what rendering it adds after the
    generation prompt."""
    from transformers.utils.chat_template_utils import render_jinja_template

    msgs, tools = template_messages(row["messages"]), row["tools"] or None
    kw = {"tools": tools, "chat_template": p.template, "bos_token": tok.bos_token, "eos_token": tok.eos_token}

    def render(ms, gen=False):
        return render_jinja_template([ms], add_generation_prompt=gen, **kw)[0][0]

    full, gen_spans = None, []
    if p.markers:
        rendered, indices = render_jinja_template([msgs], return_assistant_tokens_mask=True, **kw)
        full, gen_spans = rendered[0], indices[0]
    out = []
    for k, m in enumerate(row["messages"]):
        if not m["train"]:
            continue
        start, end = len(render(msgs[:k])), len(render(msgs[: k + 1]))
        if p.markers:
            out.append("".join(full[max(a, start):min(b, end)] for a, b in gen_spans if a < end and b > start))
        else:
            out.append(render(msgs[: k + 1])[len(render(msgs[:k], gen=True)):])
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("role", ROLES)
def test_labels_are_exactly_the_train_messages(splits, tokenizers, family: str, role: str) -> None:
    tok = tokenizers[family]
    p = plan(tok)
    assert p.markers == (family != "llama3_1")  # TRL ships training variants for the Qwen families only
    checked = 0
    for row in _rows(splits["traj"], role):
        if not _usable(family, row):
            continue
        ids, labels = encode(tok, p, row["messages"], row["tools"])
        runs = _runs(labels)
        want = _expected_texts(tok, p, row)
        assert [tok.decode(r) for r in runs] == want, row["id"]
        assert all(lab in (IGNORE_INDEX, t) for t, lab in zip(ids, labels, strict=True))
        checked += 1
    assert checked >= 5


def _canonical_calls(row: dict, k: int) -> list[tuple[str, dict]]:
    return [(c["function"]["name"], c["function"]["arguments"]) for c in row["messages"][k]["tool_calls"]]


@pytest.mark.parametrize("family", FAMILIES)
def test_inference_round_trip_parses_the_gold_call(splits, tokenizers, family: str) -> None:
    """The serving prompt (the model's own template, add_generation_prompt=True) is the start of
    the training sequence (Qwen2.5, Llama 3.1), and the supervised caller turn after it parses
    back with TRL's parser for the family to the canonical name and arguments."""
    from trl.chat_template_utils import add_response_schema, parse_response

    tok = add_response_schema(tokenizers[family])
    p = plan(tok)
    trajs = {r.trajectory.id: r.trajectory for r in read_inputs(SOURCES) if r.trajectory is not None}
    checked = 0
    for row in _rows(splits["traj"], "caller"):
        if not _usable(family, row):
            continue
        ids, labels = encode(tok, p, row["messages"], row["tools"])
        msgs = template_messages(row["messages"])
        for k, m in enumerate(row["messages"]):
            if not m["train"]:
                continue
            prompt = tok.apply_chat_template(msgs[:k], tools=row["tools"], chat_template=p.template,
                                             add_generation_prompt=True, tokenize=True, return_dict=False)
            serving = tok.apply_chat_template(msgs[:k], tools=row["tools"], add_generation_prompt=True,
                                              tokenize=True, return_dict=False)
            assert ids[: len(prompt)] == list(prompt)
            if family != "qwen3":  # TRL's Qwen3 training variant keeps <think></think> in history
                assert list(serving) == list(prompt)
            end = max(i for i in range(len(labels)) if labels[i] != IGNORE_INDEX
                      and i < len(tok.apply_chat_template(msgs[: k + 1], tools=row["tools"], chat_template=p.template,
                                                          tokenize=True, return_dict=False)))
            # no tools=: schema-typed parsing would "fix" the data's own wrong-typed arguments
            parsed = parse_response(tok, ids[len(prompt): end + 1], prefix=list(prompt))
            got = [(c["function"]["name"], c["function"]["arguments"]) for c in parsed.get("tool_calls") or []]
            assert got == _canonical_calls(row, k), (row["id"], k, parsed)
            # the inference helpers give the same prompt and the canonical calls back
            traj = trajs[row["trajectory_id"]]
            assert prompt_messages(traj, "caller", k - 1) == (msgs[:k], row["tools"])
            gold = next(t for i, t in enumerate(traj.turns) if i == k - 1).calls
            assert [(c.name, json.loads(c.arguments)) for c in calls_from_response(parsed)] == \
                [(c.name, json.loads(c.arguments)) for c in gold]
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("family", FAMILIES)
def test_trajectory_sample_losses_equal_step_sample_losses(splits, tokenizers, family: str) -> None:
    import torch

    tok = tokenizers[family]
    p = plan(tok)
    model = build_tiny_model(tok, seed=0, hidden=32, layers=2, heads=2).eval()

    def losses(ids: list[int], labels: list[int]) -> dict[int, float]:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        ce = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
        return {i: ce[i - 1].item() for i in range(1, len(ids)) if labels[i] != IGNORE_INDEX}

    steps: dict[tuple[str, str], list[dict]] = {}
    for role in ("global", "caller"):
        for r in _rows(splits["step"], role):
            steps.setdefault((role, r["trajectory_id"]), []).append(r)
    compared = 0
    for role in ("global", "caller"):
        shortest = sorted(_rows(splits["traj"], role), key=lambda r: len(json.dumps(r["messages"])))
        for row in shortest[:2]:
            if not _usable(family, row):
                continue
            ids, labels = encode(tok, p, row["messages"], row["tools"])
            whole = losses(ids, labels)
            covered: set[int] = set()
            for s in steps[(role, row["trajectory_id"])]:
                s_ids, s_labels = encode(tok, p, s["messages"], s["tools"])
                assert s_ids == ids[: len(s_ids)]
                part = losses(s_ids, s_labels)
                assert part and set(part) <= set(whole)
                for i, v in part.items():
                    assert abs(v - whole[i]) <= 1e-5, (row["id"], i)
                covered |= set(part)
                compared += 1
            assert covered == set(whole)  # every supervised token of the trajectory is some step's
    assert compared >= 3


def _tok_with(template: str, family: str = "qwen2_5"):
    tok = train_tiny_tokenizer(["hello world " * 20], vocab_size=300, family=family)
    tok.chat_template = template
    return tok


ROW = {
    "messages": [
        {"role": "system", "content": "s", "train": False},
        {"role": "user", "content": "weather in Oslo?", "train": False},
        {"role": "assistant", "content": "", "train": True, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                                                "parameters": {"type": "object", "properties": {}}}}],
}
_LOOP = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% for c in m.tool_calls or [] %}" \
        "{{ c.function.name }}{{ c.function.arguments | tojson }}{% endfor %}|{% endfor %}"


@pytest.mark.parametrize(("template", "needle"), [
    (None, "has no chat template"),
    (chat_template_text("llama3"), "drops tool calls"),
    (_LOOP, "ignores `tools`"),
    ("{% for t in tools or [] %}{{ t | tojson }}{% endfor %}"  # marks the last message: not prefix-preserving
     + _LOOP.replace("|{% endfor %}", "|{% if loop.last %}<last>{% endif %}{% endfor %}"), "not prefix-preserving"),
    ("{% for t in tools or [] %}{{ t | tojson }}{% endfor %}{% for m in messages %}<{{ m.role }}>{{ m.content }}"
     "{% for c in m.tool_calls or [] %}{{ c.function.name }}{{ c.function.arguments | tojson }}{% endfor %}"
     "{% generation %}{% endgeneration %}|{% endfor %}", "no supervised token"),
])
def test_broken_templates_are_refused_naming_the_problem(template, needle: str) -> None:
    tok = _tok_with(template)
    with pytest.raises(ChatTemplateError, match=needle):
        encode(tok, plan(tok), ROW["messages"], ROW["tools"])


def test_llama3_1_refuses_parallel_calls_with_its_own_message(splits, tokenizers) -> None:
    tok = tokenizers["llama3_1"]
    row = next(r for r in _rows(splits["traj"], "caller") if _parallel(r))
    with pytest.raises(ChatTemplateError, match="single tool-calls"):
        encode(tok, plan(tok), row["messages"], row["tools"])


def test_rows_load_as_json_objects(splits) -> None:
    row = _rows(splits["traj"], "caller")[0]
    assert isinstance(row["tools"], list) and json.dumps(row["tools"])
    assert all("train" in m for m in row["messages"])
