"""The agent loop with a scripted stand-in model: every branch of spec §3.3 and its findings,
canonical output that umidata validates and splits, resumable and deterministic run files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main as umidata
from umi_data.render.roles import examples
from umi_data.trajectory import Trajectory
from umi_eval.agent.loop import LoopConfig, Models, run, run_query
from umi_eval.agent.queries import Query, read_queries
from umi_eval.agent.tools import make_executor

from .agent_helpers import Scripted, role_of, write_tools

CALL = 'Action: get_weather\nAction Input: {"city": "Paris"}'


@pytest.fixture
def executor(tmp_path: Path):
    return make_executor(f"python:{write_tools(tmp_path)}")


def query(qid: str = "q1", text: str = "What is the weather in Paris?") -> Query:
    return next(q for q in read_queries_from([{"id": qid, "instruction": text}]))


def read_queries_from(rows: list[dict], tmp: Path | None = None):
    import tempfile

    d = Path(tmp or tempfile.mkdtemp())
    path = d / "queries.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return read_queries([str(path)])


def trio(model: Scripted) -> Models:
    return Models(model, model, model)


def codes(traj: Trajectory) -> list[str]:
    return [f["code"] for f in traj.metadata["findings"]]


def validate(path: Path) -> tuple[int, str]:
    res = CliRunner().invoke(umidata, ["validate", str(path), "--json"])
    return res.exit_code, res.output


def run_one(model: Scripted, executor, tmp_path: Path, cfg: LoopConfig | None = None, **q) -> Trajectory:
    """Run one query through ``run`` (the file path users get) and read its trajectory back."""
    out = tmp_path / "runs.jsonl"
    out.unlink(missing_ok=True)
    summary = run([query(**q)], trio(model) if model.name != "single" else Models(single=model), executor,
                  out, cfg or LoopConfig())
    assert summary.ran == 1 and summary.rejected == 0
    (line,) = out.read_text(encoding="utf-8").splitlines()
    return Trajectory.from_dict(json.loads(line))


def test_call_observation_conclusion_prompts_equal_training_prompts(executor, tmp_path):
    model = Scripted(planner=["Look it up.\n Next: caller.", "I know it now.\n Next: conclusion."],
                     caller=[CALL], summarizer=["It is 21 C in Paris."])
    traj = run_one(model, executor, tmp_path)
    assert [t.role for t in traj.turns] == ["user", "planner", "caller", "observation", "planner", "conclusion"]
    assert traj.outcome == "answered" and traj.metadata["end"] == "answered"
    assert json.loads(traj.turns[3].content) == {"city": "Paris", "temp": 21, "unit": "C"}
    assert traj.turns[3].error is None and traj.turns[3].name == "get_weather"
    assert traj.turns[5].content == "It is 21 C in Paris."
    assert traj.metadata["calls"] == 1 and traj.metadata["steps"] == 2 and codes(traj) == []
    assert traj.source.format == "umi-run" and traj.metadata["run"]["models"]["planner"] == "scripted"
    # Every prompt the loop sent is the training prompt of the same step (same renderer).
    trained = [(e.role, e.prompt) for r in ("planner", "caller", "summarizer") for e in examples(traj, r)]
    assert sorted(model.prompts) == sorted(trained)
    code, out = validate(tmp_path / "runs.jsonl")
    assert code == 0, out


def test_give_up(executor, tmp_path):
    traj = run_one(Scripted(planner=["Nothing fits.\n Next: give up."]), executor, tmp_path)
    assert traj.outcome == "gave_up" and traj.metadata["end"] == "gave_up"
    assert [t.role for t in traj.turns] == ["user", "planner"] and traj.turns[1].decision == "give_up"
    assert validate(tmp_path / "runs.jsonl")[0] == 0


def test_unknown_tool_is_a_finding_and_an_error_observation(executor, tmp_path):
    model = Scripted(planner=["Call.\n Next: caller.", "Stop.\n Next: give up."],
                     caller=['Action: get_wether\nAction Input: {"city": "Paris"}'])
    traj = run_one(model, executor, tmp_path)
    obs = traj.turns[3]
    assert json.loads(obs.content)["error"] == obs.error == "No such function name: get_wether"
    assert codes(traj) == ["unknown_tool"]
    assert traj.turns[2].calls[0].name == "get_wether"  # the history keeps what the model wrote
    code, out = validate(tmp_path / "runs.jsonl")
    assert code == 0 and '"unknown_tool"' in out  # umidata sees the same hallucination (a warning)


def test_unparsable_call(executor, tmp_path):
    model = Scripted(planner=["Call.\n Next: caller.", "Stop.\n Next: give up."], caller=["I would call get_weather"])
    traj = run_one(model, executor, tmp_path)
    assert traj.turns[2].calls == [] and traj.turns[2].raw == "I would call get_weather"
    assert json.loads(traj.turns[3].content)["error"] == "No such function name: none"
    assert codes(traj) == ["caller_unparsable"]
    assert validate(tmp_path / "runs.jsonl")[0] == 0


@pytest.mark.parametrize(
    ("arguments", "finding"),
    [('{"city": "Paris"', "arguments_not_json"), ('{"town": "Paris"}', "arguments_schema"),
     ('{"city": 3}', "arguments_schema")],
)
def test_invalid_arguments(executor, tmp_path, arguments, finding):
    model = Scripted(planner=["Call.\n Next: caller.", "Stop.\n Next: give up."],
                     caller=[f"Action: get_weather\nAction Input: {arguments}"])
    traj = run_one(model, executor, tmp_path)
    assert traj.turns[2].calls[0].arguments == arguments  # never re-serialised
    assert traj.turns[3].error.startswith("Invalid arguments")  # the python executor refuses before calling
    assert codes(traj) == [finding, "invalid_arguments"]
    assert validate(tmp_path / "runs.jsonl")[0] == 0


def test_tool_exception_becomes_error_observation(executor, tmp_path):
    model = Scripted(planner=["Call.\n Next: caller.", "Stop.\n Next: give up."],
                     caller=['Action: get_weather\nAction Input: {"city": "Atlantis"}'])
    traj = run_one(model, executor, tmp_path)
    assert traj.turns[3].error == "KeyError: 'no such city'" and "KeyError" in traj.turns[3].content
    assert codes(traj) == ["tool_error"]


def test_tool_timeout(executor, tmp_path):
    model = Scripted(planner=["Call.\n Next: caller.", "Stop.\n Next: give up."],
                     caller=['Action: slow\nAction Input: {"seconds": 1.5}'])
    traj = run_one(model, executor, tmp_path, LoopConfig(timeout=0.1, retries=1))
    assert traj.turns[3].error.startswith("Timeout: no answer within 0.1 s")
    assert codes(traj) == ["timeout"]


def test_step_limit(executor, tmp_path):
    model = Scripted(planner=["Again.\n Next: caller."], caller=[CALL])
    traj = run_one(model, executor, tmp_path, LoopConfig(max_steps=3))
    assert traj.metadata["end"] == "step_limit" and traj.outcome == "incomplete"
    assert traj.metadata["steps"] == 3 and traj.metadata["calls"] == 3
    code, out = validate(tmp_path / "runs.jsonl")
    # A run that never ended is schema-valid but teaches no ending: umidata rejects it for training.
    assert code == 1
    report = json.loads(out)
    assert {f["code"] for f in report["findings"] if f["severity"] == "error"} == {"no_terminal_turn"}


def test_planner_without_marker_goes_to_the_caller(executor, tmp_path):
    model = Scripted(planner=["I should check the weather", "Done.\n Next: give up."], caller=[CALL])
    traj = run_one(model, executor, tmp_path)
    assert traj.turns[1].decision == "call" and traj.turns[1].thought == "I should check the weather"
    assert codes(traj) == ["planner_no_marker"]
    assert traj.metadata["raw_outputs"][0]["text"] == "I should check the weather"


def test_marker_precedence_and_cut(executor, tmp_path):
    # give up beats conclusion beats caller, whatever the order; text after the marker is dropped
    model = Scripted(planner=["Maybe Next: caller. or rather\n Next: give up. trailing words"])
    traj = run_one(model, executor, tmp_path)
    assert traj.turns[1].decision == "give_up" and traj.turns[1].thought == "Maybe Next: caller. or rather"


def test_empty_planner_output_becomes_none(executor, tmp_path):
    model = Scripted(planner=[": ", "Stop.\n Next: give up."], caller=[CALL])
    traj = run_one(model, executor, tmp_path)
    assert traj.turns[1].thought == "none" and codes(traj)[:2] == ["planner_empty", "planner_no_marker"]


def test_single_model_global_prompt(executor, tmp_path):
    model = Scripted("single", planner=[f"Look it up.\n{CALL}", "Done.\nconclusion: 21 C."])
    traj = run_one(model, executor, tmp_path)
    assert [t.role for t in traj.turns] == ["user", "planner", "caller", "observation", "planner", "conclusion"]
    assert traj.turns[5].content == "21 C." and traj.metadata["run"]["models"] == {"global": "single"}
    assert sorted(p for _, p in model.prompts) == sorted(e.prompt for e in examples(traj, "global"))


def test_dfsdt_backtracks_with_a_diversity_message(executor, tmp_path):
    # root → A (call) → A gives up: A is abandoned; root's second child (after the diversity
    # message listing A's call) concludes.
    model = Scripted(planner=["Try.\n Next: caller.", "No.\n Next: give up.", "Other way.\n Next: conclusion."],
                     caller=[CALL], summarizer=["21 C."])
    traj = run_one(model, executor, tmp_path, LoopConfig(search="dfsdt", width=2))
    assert [t.role for t in traj.turns] == ["user", "user", "planner", "conclusion"]
    diversity = traj.turns[1].content
    assert diversity.startswith("This is not the first time you try this task")
    assert '"name": "get_weather"' in diversity and "Paris" in diversity
    assert traj.metadata["end"] == "answered" and traj.metadata["steps"] == 3 and traj.metadata["branches"] == 1
    assert validate(tmp_path / "runs.jsonl")[0] == 0


def test_dfsdt_depth_limit_then_exhausted(executor, tmp_path):
    model = Scripted(planner=["Again.\n Next: caller."], caller=[CALL])
    traj = run_one(model, executor, tmp_path, LoopConfig(search="dfsdt", width=2, max_depth=2, max_steps=50))
    # width 2, depth 2: 2 children of the root, each with 2 children = 6 steps, then nothing is left
    assert traj.metadata["steps"] == 6 and traj.metadata["end"] == "exhausted"
    # the last path explored: root -(diversity)- 2nd child -(diversity)- its 2nd child
    users = [t.content for t in traj.turns if t.role == "user"]
    assert len(users) == 3 and traj.outcome == "incomplete"
    assert "again, your former observation" not in users[1]  # the root state has no observation
    assert "again, your former observation: {" in users[2]


def test_resume_concurrency_and_determinism(executor, tmp_path):
    rows = [{"id": f"q{i}", "instruction": f"weather {i}"} for i in range(6)]

    def model() -> Scripted:
        return Scripted(planner=["Look.\n Next: caller.", "Done.\n Next: conclusion."], caller=[CALL],
                        summarizer=["21 C."])

    def fresh(path: Path, conc: int):
        # a new model per query keeps the scripted outputs independent of thread order
        return run(list(read_queries_from(rows, tmp_path)), _PerQuery(model), executor, path, concurrency=conc)

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    fresh(a, 1)
    fresh(b, 3)
    assert a.read_bytes() == b.read_bytes()
    assert [json.loads(x)["id"] for x in a.read_text().splitlines()] == [r["id"] for r in rows]
    # a crash mid-line: the partial line is cut and its query runs again; the others are skipped
    lines = a.read_bytes().splitlines(keepends=True)
    a.write_bytes(b"".join(lines[:3]) + lines[3][:40])
    s = fresh(a, 2)
    assert (s.resumed, s.ran) == (3, 3)
    assert a.read_bytes() == b.read_bytes()


class _PerQuery(Models):
    """Models whose scripted backend is fresh for each planner prompt of a new query."""

    def __init__(self, factory) -> None:
        backend = _Dispatch(factory)
        super().__init__(backend, backend, backend)


class _Dispatch:
    name = "scripted"
    thread_safe = True

    def __init__(self, factory) -> None:
        self.factory = factory
        self.by_query: dict[str, Scripted] = {}

    def generate(self, prompts, decoding):
        import re

        out = []
        for p in prompts:
            key = re.search(r"user: (weather \d+)", p).group(1)
            out += self.by_query.setdefault(key, self.factory()).generate([p], decoding)
        return out


def test_run_file_splits_into_role_datasets(executor, tmp_path):
    model = Scripted(planner=["Look it up.\n Next: caller.", "I know it now.\n Next: conclusion."],
                     caller=[CALL], summarizer=["It is 21 C in Paris."])
    run_one(model, executor, tmp_path)
    out = tmp_path / "split"
    res = CliRunner().invoke(umidata, ["split", str(tmp_path / "runs.jsonl"), "-o", str(out), "--dev-ratio", "0"])
    assert res.exit_code == 0, res.output
    import datasets

    planner = datasets.load_dataset("parquet", data_dir=str(out / "planner"))["train"]
    assert planner["completion"] == ["Look it up.\n Next: caller.", "I know it now.\n Next: conclusion."]


def test_run_query_without_tools_is_rejected(tmp_path):
    ex = make_executor(f"replay:{_one_trajectory(tmp_path)}")
    s = run(list(read_queries_from([{"id": "x", "instruction": "hi"}], tmp_path)), trio(Scripted(planner=["a"])),
            ex, tmp_path / "r.jsonl")
    assert s.rejected == 1 and s.reject_codes == {"no_tools": 1}
    reject = json.loads((tmp_path / "r.rejects.jsonl").read_text())
    assert reject["reason"] == "no_tools" and reject["source"]["line"] == 1
    assert list(reject) == ["source", "reason", "message", "pointer", "findings"]  # the one reject shape


def _one_trajectory(tmp: Path) -> Path:
    model = Scripted(planner=["Nothing.\n Next: give up."])
    traj = run_query(query(), trio(model), make_executor(f"python:{write_tools(tmp)}"), LoopConfig())
    path = tmp / "one.jsonl"
    path.write_text(json.dumps(traj.to_dict()) + "\n", encoding="utf-8")
    return path


def test_readme_python_tools_example(tmp_path):
    """The README's own-tools example, taken from the README text, runs through the loop."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The agent loop: `umieval run`", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 20
    (tmp_path / "my_tools.py").write_text(code, encoding="utf-8")
    ex = make_executor(f"python:{tmp_path / 'my_tools.py'}")
    assert [t.name for t in ex.tools] == ["get_weather", "convert"]  # WEATHER/RATES are not tools
    assert ex.tools[1].parameters["properties"] == {"amount": {"type": "number"}, "to": {"type": "string"}}
    model = Scripted(planner=["Weather first.\n Next: caller.", "Try Atlantis.\n Next: caller.",
                              "Enough.\n Next: conclusion."],
                     caller=['Action: get_weather\nAction Input: {"city": "Paris", "unit": "F"}',
                             'Action: get_weather\nAction Input: {"city": "Atlantis"}'],
                     summarizer=["69.8 F in Paris."])
    traj = run_one(model, ex, tmp_path, text="How warm is it in Paris, in Fahrenheit?")
    assert json.loads(traj.turns[3].content) == {"city": "Paris", "temp": 69.8, "unit": "F"}
    assert traj.turns[6].error == "KeyError: \"unknown city 'Atlantis'\""
    assert traj.outcome == "answered" and codes(traj) == ["tool_error"]


def test_model_error_rejects_the_query_and_resume_reruns_it(executor, tmp_path):
    class Broken(Scripted):
        def generate(self, prompts, decoding):
            from umi_eval.generate.backends import Generation

            return [Generation("", error="HTTP 503: overloaded") for _ in prompts]

    out = tmp_path / "runs.jsonl"
    s = run([query()], trio(Broken(planner=["x"])), executor, out)
    assert (s.ran, s.failed, s.rejected) == (0, 1, 1) and s.reject_codes == {"model_error": 1}
    assert out.read_text() == "" and (tmp_path / "runs.rejects.jsonl").exists()
    s = run([query()], trio(Scripted(planner=["Stop.\n Next: give up."])), executor, out)
    assert (s.ran, s.resumed, s.rejected) == (1, 0, 0) and not (tmp_path / "runs.rejects.jsonl").exists()


def test_several_action_pairs_are_parallel_calls(executor, tmp_path):
    two = CALL + '\nAction: get_weather\nAction Input: {"city": "Oslo"}'
    model = Scripted(planner=["Both.\n Next: caller.", "Stop.\n Next: give up."], caller=[two])
    traj = run_one(model, executor, tmp_path)
    assert [c.arguments for c in traj.turns[2].calls] == ['{"city": "Paris"}', '{"city": "Oslo"}']
    assert [json.loads(t.content)["city"] for t in traj.turns[3:5]] == ["Paris", "Oslo"]
    assert traj.metadata["calls"] == 2 and codes(traj) == []
    code, out = validate(tmp_path / "runs.jsonl")
    assert code == 0 and '"parallel_calls"' in out


# --- found in review ---------------------------------------------------------------------------------


def test_tool_output_that_is_not_valid_unicode_is_written(tmp_path):
    # os.listdir gives a non-UTF-8 name with surrogateescape: a lone surrogate orjson cannot write
    tools = tmp_path / "fs_tools.py"
    tools.write_text('def read_name(x: str) -> str:\n    "A file name."\n'
                     '    return b"caf\\xe9.txt".decode("utf-8", "surrogateescape") + "\\ud800"\n')
    ex = make_executor(f"python:{tools}")
    model = Scripted(planner=["List.\n Next: caller.", "Done.\n Next: conclusion."],
                     caller=['Action: read_name\nAction Input: {"x": "."}'], summarizer=["ok"])
    traj = run_one(model, ex, tmp_path)
    assert traj.turns[3].content == "caf\ufffd.txt\ufffd"
    assert validate(tmp_path / "runs.jsonl")[0] == 0


def test_a_line_that_cannot_be_written_rejects_that_query_only(executor, tmp_path, monkeypatch):
    from umi_data.output.writers import JsonlAppender

    write = JsonlAppender.write

    def broken(self, obj):
        if obj["id"] == "q1":
            raise TypeError("str is not valid UTF-8: surrogates not allowed")
        write(self, obj)

    monkeypatch.setattr(JsonlAppender, "write", broken)
    rows = [{"id": f"q{i}", "instruction": f"weather {i}"} for i in range(3)]
    out = tmp_path / "runs.jsonl"
    model = trio(Scripted(planner=["Stop.\n Next: give up."]))
    s = run(list(read_queries_from(rows, tmp_path)), model, executor, out)
    assert (s.ran, s.failed, s.reject_codes) == (2, 1, {"internal_error": 1})
    (reject,) = [json.loads(x) for x in (tmp_path / "runs.rejects.jsonl").read_text().splitlines()]
    assert reject["source"]["line"] == 2 and "surrogates" in reject["message"]
    monkeypatch.setattr(JsonlAppender, "write", write)
    s = run(list(read_queries_from(rows, tmp_path)), model, executor, out)  # resume runs q1 only
    assert (s.ran, s.resumed, s.rejected) == (1, 2, 0)
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["q0", "q1", "q2"]


def test_resume_refuses_an_id_that_now_names_another_query(executor, tmp_path):
    from umi_eval.agent.loop import RunError

    qfile, out = tmp_path / "qs.jsonl", tmp_path / "runs.jsonl"
    model = trio(Scripted(planner=["Stop.\n Next: give up."]))
    qfile.write_text('{"instruction": "weather in Paris"}\n{"instruction": "weather in Rome"}\n')
    assert run(read_queries([str(qfile)]), model, executor, out).ran == 2
    before = out.read_bytes()
    assert run(read_queries([str(qfile)]), model, executor, out).resumed == 2  # unchanged: all done
    # a query inserted at the top: the ids from line numbers move (qs/1 is now Oslo, qs/2 Paris)
    qfile.write_text('{"instruction": "weather in Oslo"}\n' + qfile.read_text())
    with pytest.raises(RunError, match=r"query id 'qs/1' \(.*qs.jsonl:1\).*2 such id"):
        run(read_queries([str(qfile)]), model, executor, out)
    assert out.read_bytes() == before  # nothing ran, nothing was rewritten
    # a run file from before digests were recorded resumes by id as it did
    lines = [json.loads(x) for x in before.decode().splitlines()]
    for d in lines:
        del d["metadata"]["query_digest"]
    out.write_text("".join(json.dumps(d) + "\n" for d in lines))
    s = run(read_queries([str(qfile)]), model, executor, out)
    assert (s.ran, s.resumed) == (1, 2)


def test_single_model_caller_decision_without_a_call_is_unparsable(executor, tmp_path):
    model = Scripted("single", planner=["I should look it up Next: caller.", "Done.\nconclusion: 21 C."])
    traj = run_one(model, executor, tmp_path)
    assert [t.role for t in traj.turns] == ["user", "planner", "caller", "observation", "planner", "conclusion"]
    assert traj.turns[2].calls == [] and traj.turns[2].raw == "I should look it up Next: caller."
    assert json.loads(traj.turns[3].content)["error"] == "No such function name: none"
    assert codes(traj) == ["caller_unparsable"]
    code, out = validate(tmp_path / "runs.jsonl")
    assert code == 0, out


def test_deeply_nested_arguments_are_not_json(executor, tmp_path):
    deep = "[" * 5000 + "]" * 5000
    model = Scripted(planner=["Call.\n Next: caller.", "Stop.\n Next: give up."],
                     caller=[f"Action: get_weather\nAction Input: {deep}"])
    traj = run_one(model, executor, tmp_path)
    assert codes(traj) == ["arguments_not_json", "invalid_arguments"]
    assert "nested too deeply" in traj.turns[3].error and traj.metadata["end"] == "gave_up"


def test_dfsdt_gives_each_search_step_its_own_seed(executor, tmp_path):
    from umi_eval.generate.backends import Decoding

    def seeds(search: str) -> list[int]:
        class Seeds(Scripted):
            def generate(self, prompts, decoding):
                got.append((role_of(prompts[0]), decoding.seed))
                return super().generate(prompts, decoding)

        got: list[tuple[str, int]] = []
        model = Seeds(planner=["Try.\n Next: caller."], caller=["I would call get_weather"])
        run_query(query(), trio(model), executor, LoopConfig(search=search, max_depth=1, max_steps=3,
                                                             decoding=Decoding(temperature=0.5, seed=7)))
        return [s for r, s in got if r == "planner"]

    # the second child of a child without a call sees the same prompt: a new seed, not a repeat
    assert seeds("dfsdt") == [7, 12] == seeds("dfsdt")  # deterministic: seed + 5 attempts per step
    assert seeds("plain") == [7, 7, 7]  # one chain: prompts differ, the seed stays


def test_a_failed_write_leaves_whole_lines(tmp_path, monkeypatch):
    from umi_data.output import writers

    path = tmp_path / "runs.jsonl"
    app = writers.JsonlAppender(path)
    app.write({"id": "a"})
    real = writers.os.write
    monkeypatch.setattr(writers.os, "write", lambda fd, data: real(fd, data[:5]))  # disk full mid-line
    with pytest.raises(OSError, match="short write"):
        app.write({"id": "b"})
    monkeypatch.undo()
    app.write({"id": "c"})
    app.close()
    assert path.read_text() == '{"id":"a"}\n{"id":"c"}\n'
