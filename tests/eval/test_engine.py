"""The request engine: same answers as the fixed-batch path, requests of the trio in flight together,
continuous batching on the transformers backend, the agent's queries batched together, and the
vllm backend (missing package; adapter logic against a fake ``vllm`` module)."""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from click.testing import CliRunner

from umi_eval.cli.commands import main
from umi_eval.generate.backends import Backend, Decoding, Generation, TransformersBackend
from umi_eval.generate.predict import GenerateOptions, _base, _cost, generate
from umi_eval.generate.route import compose, postprocess, route
from umi_eval.generate.steps import Prompts, load_steps

from .conftest import TRAJECTORIES, Memorised
from .oracle import Oracle, oracles

TRIO = ("planner", "caller", "summarizer")
MISSING = "--backend vllm needs the vllm package: pip install 'umi[vllm]'"


def fixed_batch_rows(data: Path, backends: dict[str, Backend], decoding: Decoding, chunk: int) -> list[bytes]:
    """The prediction lines as `umieval generate` wrote them before the engine: the planner on a
    whole chunk, then that chunk's caller and summarizer batches (the old ``_Runner.chunk``)."""
    pr, lines = Prompts(), []
    steps = load_steps([data]).steps
    for start in range(0, len(steps), chunk):
        part = steps[start : start + chunk]
        planned = backends["planner"].generate([pr.planner(s) for s in part], decoding)
        routes = [route(postprocess(g.text)) for g in planned]
        second: dict[int, Generation] = {}
        for role, decision in (("caller", "call"), ("summarizer", "conclude")):
            idx = [i for i, r in enumerate(routes) if r.decision == decision]
            if not idx:
                continue
            build = pr.caller if role == "caller" else pr.summarizer
            second.update(zip(idx, backends[role].generate([build(part[i], routes[i].thought) for i in idx],
                                                           decoding), strict=True))
        for i, s in enumerate(part):
            r, g2 = routes[i], second.get(i)
            row = {**_base(s, "trio"), "prediction": compose(r, postprocess(g2.text) if g2 else None),
                   "route": r.name, "planner_prediction": planned[i].text}
            if g2 is not None:
                row["caller_prediction" if r.decision == "call" else "summarizer_prediction"] = g2.text
            _cost(row, planned[i], g2)
            lines.append(orjson.dumps(row))
    return lines


def _same_as_fixed_batches(data: Path, models: dict[str, str], tmp: Path, decoding: Decoding) -> set[str]:
    loaded: dict[str, TransformersBackend] = {}
    for m in set(models.values()):
        loaded[m] = TransformersBackend(m, device="cpu", batch_size=4, batching="static")
    static = {r: loaded[models[r]] for r in TRIO}
    old = fixed_batch_rows(data, static, decoding, chunk=8)
    headers = set()
    for batching in ("static", "continuous"):
        out = tmp / f"{batching}.jsonl"
        opts = GenerateOptions("trio", dict(models), decoding=decoding, chunk_size=6,
                               backend_options={"batch_size": 4, "device": "cpu", "batching": batching})
        generate([str(data)], out, opts)
        lines = out.read_bytes().splitlines()
        assert lines[1:] == old, batching  # byte-identical predictions, in step order
        headers.add(lines[0].decode())
    assert len(headers) == 1  # the batching mode does not change the file (resume works across it)
    return {json.loads(x)["route"] for x in old}


def test_engine_predictions_are_byte_identical_to_fixed_batches_untrained(tmp_path: Path) -> None:
    """An untrained tiny model (near-flat logits, outputs to the token limit) on every route the
    planner takes: the engine's static and continuous paths write what fixed batches wrote."""
    from umi_train.tiny import build_tiny_model, train_tiny_tokenizer

    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    pr = Prompts()
    tok = train_tiny_tokenizer([pr.planner(s) for s in load_steps([data]).steps], vocab_size=400)
    build_tiny_model(tok, hidden=32, layers=2, heads=2).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    m = str(tmp_path / "m")
    routes = _same_as_fixed_batches(data, dict.fromkeys(TRIO, m), tmp_path, Decoding(max_new_tokens=12))
    assert routes == {"caller"}
    # sampling: each request is seeded on its own (seed, step, role), so the file does not depend on
    # what was batched with what, and steps do not share their random draws
    sampled = []
    for batch in (1, 4):
        out = tmp_path / f"sampled-{batch}.jsonl"
        opts = GenerateOptions("single", {"model": m}, decoding=Decoding(max_new_tokens=8, temperature=1.0),
                               backend_options={"batch_size": batch, "device": "cpu"})
        generate([str(data)], out, opts)
        sampled.append(out.read_bytes().splitlines()[1:])
    assert sampled[0] == sampled[1]
    assert len({json.loads(x)["prediction"] for x in sampled[0]}) > 1


def test_engine_predictions_are_byte_identical_to_fixed_batches_memorised(memorised: Memorised,
                                                                           tmp_path: Path) -> None:
    models = {r: memorised.models[r] for r in TRIO}
    routes = _same_as_fixed_batches(memorised.data, models, tmp_path, Decoding())
    assert routes == {"caller", "conclusion", "give_up"}


def test_continuous_batching_backend_matches_static_and_samples_statically(memorised: Memorised) -> None:
    steps = load_steps([memorised.data]).steps
    prompts = [Prompts().planner(s) for s in steps]
    static = TransformersBackend(memorised.models["planner"], device="cpu", batching="static")
    cont = TransformersBackend(memorised.models["planner"], device="cpu", batching="continuous", batch_size=3)
    try:
        d = Decoding(max_input_tokens=200)  # some prompts cut from the left
        a, b = static.generate(prompts, d), cont.generate(prompts, d)
        assert a == b and any(g.truncated for g in b) and [g.text for g in b] == [s.gold_thought for s in steps]
        assert cont._cb is not None  # greedy requests really went to the continuous manager
        assert cont.submit(prompts[0], Decoding(temperature=1.0)) is None  # sampling: the static path
        assert static.submit(prompts[0], d) is None
    finally:
        cont.close()
    assert cont._cb is None


class _Gated(Oracle):
    """A planner that will not answer its second prompt before the caller or the summarizer has had
    a request (with the old chunked flow it would wait for ever: 10 s, then ``overlapped`` is False)."""

    def __init__(self, answers: dict[str, str], caller_called: threading.Event) -> None:
        super().__init__(answers, "planner")
        self.caller_called = caller_called
        self.overlapped = False

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
        if self.prompts:  # a later planner batch: the first step's routed request must already run
            self.overlapped = self.caller_called.wait(timeout=10)
        return super().generate(prompts, decoding)


class _Signalling(Oracle):
    def __init__(self, answers: dict[str, str], name: str, event: threading.Event) -> None:
        super().__init__(answers, name)
        self.event = event

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
        self.event.set()
        return super().generate(prompts, decoding)


def test_a_steps_routed_request_runs_while_other_planner_requests_wait(tmp_path: Path) -> None:
    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    gold = oracles(data)
    called = threading.Event()
    models = {"planner": _Gated(gold["planner"].answers, called),
              "caller": _Signalling(gold["caller"].answers, "caller", called),
              "summarizer": _Signalling(gold["summarizer"].answers, "summarizer", called)}
    out = tmp_path / "p.jsonl"
    names = {"planner": "p", "caller": "c", "summarizer": "s"}
    opts = GenerateOptions("trio", names, backend_options={"batch_size": 1})
    generate([str(data)], out, opts, open_backend_fn=lambda role, _m: models[role])
    assert models["planner"].overlapped
    whole = tmp_path / "whole.jsonl"
    generate([str(data)], whole, opts, open_backend_fn=lambda role, _m: gold[role])
    assert out.read_bytes() == whole.read_bytes()


def test_agent_queries_in_flight_share_the_models_batches(tmp_path: Path) -> None:
    from umi_eval.agent.loop import LoopConfig, Models, run
    from umi_eval.agent.tools import make_executor

    from .agent_helpers import write_tools
    from .test_agent import read_queries_from

    class Slow:
        name = "scripted"

        def __init__(self) -> None:
            self.batches: list[int] = []

        def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
            self.batches.append(len(prompts))
            time.sleep(0.2)  # the other queries' requests queue up meanwhile
            return [Generation("No api can do this.\n Next: give up.", 1, 1) for _ in prompts]

    model = Slow()
    ex = make_executor(f"python:{write_tools(tmp_path)}")
    queries = list(read_queries_from([{"id": f"q{i}", "instruction": f"weather {i}"} for i in range(6)], tmp_path))
    s = run(queries, Models(model, model, model), ex, tmp_path / "r.jsonl", LoopConfig(), concurrency=6)
    assert s.ran == 6 and s.ends["gave_up"] == 6
    assert max(model.batches) > 1 and sum(model.batches) == 6


# --- vllm ---------------------------------------------------------------------------------------


def test_backend_vllm_missing_is_a_one_line_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` fails as when it is not installed
    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    for args in (["generate", str(data), "-o", str(tmp_path / "o.jsonl"), "--model", "m", "--backend", "vllm"],
                 ["run", str(data), "-o", str(tmp_path / "r.jsonl"), "--model", "m", "--backend", "vllm",
                  "--tools", f"replay:{data}"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, res.output
        msg = [line for line in res.output.splitlines() if line.strip()]
        assert len(msg) == 1 and msg[0].endswith(f"error: {MISSING}")
    assert not list(tmp_path.glob("o*")) and not list(tmp_path.glob("r*"))


class _FakeLLM:
    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kw: Any) -> None:
        self.kw = kw
        _FakeLLM.made.append(kw)
        self.calls: list[tuple[list[Any], Any]] = []

    def generate(self, prompts: list[Any], params: Any, use_tqdm: bool = True) -> list[Any]:
        self.calls.append((prompts, params))
        outs = []
        for p in prompts:  # echo the last 3 prompt tokens, then EOS, then one token after it
            ids = [*list(p["prompt_token_ids"])[-3:], _FAKE_EOS[0], 7]
            outs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=ids, text="ignored")]))
        return outs


_FAKE_EOS = [0]


class _FakeParams:
    def __init__(self, **kw: Any) -> None:
        self.kw = kw


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    mod = types.ModuleType("vllm")
    mod.LLM = _FakeLLM  # type: ignore[attr-defined]
    mod.SamplingParams = _FakeParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", mod)
    _FakeLLM.made = []
    return mod


def _tiny(tmp: Path) -> str:
    from umi_train.tiny import build_tiny_model, train_tiny_tokenizer

    tok = train_tiny_tokenizer(["hello world, the weather in Paris"] * 20, vocab_size=300)
    build_tiny_model(tok, hidden=16, layers=1, heads=2).save_pretrained(tmp / "m")
    tok.save_pretrained(tmp / "m")
    return str(tmp / "m")


def test_vllm_adapter_same_tokens_stop_rule_and_greedy(tmp_path: Path, fake_vllm: types.ModuleType) -> None:
    from umi_eval.generate.backends import VLLMBackend

    m = _tiny(tmp_path)
    b = VLLMBackend(m, dtype="float32", gpu_memory_utilization=0.3)
    _FAKE_EOS[0] = b.eos_id
    assert _FakeLLM.made[0]["model"] == m and _FakeLLM.made[0]["gpu_memory_utilization"] == 0.3
    assert _FakeLLM.made[0]["trust_remote_code"] is False
    ref = TransformersBackend(m, device="cpu")
    prompts = ["hello world", "the weather in Paris " * 5]
    d = Decoding(max_new_tokens=9, max_input_tokens=12)
    got = b.generate(prompts, d)
    sent, params = b.llm.calls[0]
    want = ref._encode(prompts, 12)
    assert [p["prompt_token_ids"] for p in sent] == [ids for ids, _ in want]  # same tokens, left-truncated
    assert [g.truncated for g in got] == [t for _, t in want] == [False, True]
    k = params.kw
    assert (k["temperature"], k["top_k"], k["top_p"], k["max_tokens"], k["stop_token_ids"]) == (0.0, -1, 1.0, 9,
                                                                                                   [b.eos_id])
    assert k["skip_special_tokens"] is True and k["seed"] is None
    for (ids, _), g in zip(want, got, strict=True):  # cut after EOS, decoded like the transformers backend
        assert g.text == ref.tokenizer.decode(ids[-3:], skip_special_tokens=True)
        assert g.completion_tokens == len(ids[-3:]) + 1  # the EOS counts, the token after it does not
        assert g.prompt_tokens == len(ids)
    sampled = b.params(Decoding(temperature=0.7, top_k=50, top_p=0.9, seed=3)).kw
    assert (sampled["temperature"], sampled["top_k"], sampled["top_p"], sampled["seed"]) == (0.7, 50, 0.9, 3)


def test_generate_backend_vllm_end_to_end_with_a_fake_vllm(tmp_path: Path, fake_vllm: types.ModuleType) -> None:
    m = _tiny(tmp_path)
    data = tmp_path / "d.json"
    data.write_text(json.dumps(TRAJECTORIES))
    _FAKE_EOS[0] = TransformersBackend(m, device="cpu").eos_id
    out = tmp_path / "p.jsonl"
    res = CliRunner().invoke(main, ["generate", str(data), "-o", str(out), "--backend", "vllm", "--planner", m,
                                    "--caller", m, "--summarizer", m, "--quiet"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["backend"] == "vllm" and len(lines) == 1 + 5
    assert [x["gpu_memory_utilization"] for x in _FakeLLM.made] == [0.85]  # one model dir, loaded once


def test_run_with_continuous_batching_leaves_no_thread_behind(tmp_path: Path) -> None:
    """`umieval run` closes its models: the continuous-batching manager's (non-daemon) generation
    thread would otherwise keep the process from exiting after the run."""
    from .agent_helpers import write_tools

    m = _tiny(tmp_path)
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"id": "q1", "instruction": "weather in Paris"}) + "\n")
    before = {t.ident for t in threading.enumerate()}
    res = CliRunner().invoke(main, ["run", str(queries), "-o", str(tmp_path / "r.jsonl"), "--model", m,
                                    "--tools", f"python:{write_tools(tmp_path)}", "--device", "cpu",
                                    "--batching", "continuous", "--max-steps", "1", "--max-new-tokens", "4",
                                    "--quiet"])
    assert res.exit_code in (0, 1), res.output
    assert json.loads((tmp_path / "r.jsonl").read_text())["metadata"]["steps"] == 1
    left = [t for t in threading.enumerate() if t.ident not in before and not t.daemon and t.is_alive()]
    if left:  # stop them, so that this failure does not also hang the test session at exit
        import gc

        from transformers.generation.continuous_batching import ContinuousBatchingManager

        for obj in gc.get_objects():
            if isinstance(obj, ContinuousBatchingManager) and obj.is_running():
                obj.stop(block=True, timeout=10)
    assert not left, left
