"""The demo's agent (``examples/agent``, last step of ``pipelines/demo.sh``): the README's own tools,
three trajectories a tiny trio memorises, and the queries it then runs. These checks need no
training: they prove that a trio which reproduces its training targets (what memorising means)
makes exactly the recorded calls, gets exactly the recorded observations from the real tools and
ends as recorded — so the demo's output depends only on the memorisation, which the slow tests
(test_agent_e2e.py, the same recipe) check."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from umi_data.readers import read_inputs
from umi_data.render.alpha_umi import tool_docs
from umi_data.trajectory import Tool, Trajectory
from umi_eval.agent.loop import LoopConfig, Models, run
from umi_eval.agent.queries import Query, read_queries
from umi_eval.agent.tools import call_tool, make_executor
from umi_train.glpft import load_pipeline

from .test_agent_tools import _Golden, _shape

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "examples" / "agent"
TOOLS = f"python:{AGENT / 'my_tools.py'}"


def _trajectories():
    recs = list(read_inputs([str(AGENT / "trajectories.json")]))
    assert all(r.trajectory is not None and not r.findings for r in recs)  # clean: nothing to warn about
    return [r.trajectory for r in recs]


def test_the_tools_file_is_the_readme_example() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    code = readme.split("### The agent loop: `umieval run`", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert (AGENT / "my_tools.py").read_text(encoding="utf-8") == code


def test_trajectories_match_the_tools_and_the_queries() -> None:
    ex = make_executor(TOOLS)
    trajs = _trajectories()
    for t in trajs:  # the prompts list the tools exactly as the run will (α-UMi tool docs)
        assert tool_docs(t.tools) == tool_docs(list(ex.tools or []))
        for i, turn in enumerate(t.turns):
            for call in turn.calls or []:  # every recorded observation is what the real tool answers
                obs, _ = call_tool(ex, Tool(call.name), call.arguments)
                assert obs.content == t.turns[i + 1].content, (t.id, call)
    queries = [q for q in read_queries([str(AGENT / "queries.jsonl")]) if isinstance(q, Query)]
    assert [q.instruction for q in queries] == [t.instruction for t in trajs]
    assert all(q.tools is None for q in queries)  # the executor's own tools, as the README shows


def test_a_trio_that_memorised_them_calls_the_tools_and_ends_as_recorded(tmp_path: Path) -> None:
    trajs = _trajectories()
    model = _Golden(trajs)
    out = tmp_path / "runs.jsonl"
    queries = [q for q in read_queries([str(AGENT / "queries.jsonl")]) if isinstance(q, Query)]
    summary = run(queries, Models(model, model, model), make_executor(TOOLS), out, LoopConfig(max_steps=12))
    assert model.unknown == 0  # every prompt of the loop is a training prompt, byte for byte
    assert dict(summary.ends) == {"answered": 2, "gave_up": 1} and summary.calls == 3
    spec = importlib.util.spec_from_file_location("show_runs", AGENT / "show_runs.py")
    assert spec is not None and spec.loader is not None
    show = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(show)
    lines = show.show(str(out))
    assert lines[:6] == [
        "paris-f (answered): How warm is it in Paris, in Fahrenheit?",
        "  planner      I need the weather in Paris in Fahrenheit. → caller",
        '  caller       get_weather {"city": "Paris", "unit": "F"}',
        '  observation  {"city": "Paris", "temp": 69.8, "unit": "F"}',
        "  planner      The tool says 69.8 F. → conclusion",
        "  conclusion   It is 69.8 °F in Paris.",
    ]
    assert "  observation  error: KeyError: \"unknown city 'Atlantis'\"" in lines
    runs = [Trajectory.from_dict(json.loads(x)) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [_shape(r.turns) for r in runs] == [_shape(t.turns) for t in trajs]


def test_the_memorise_pipeline_trains_the_trio_on_the_tiny_model() -> None:
    model, _, _, stages = load_pipeline(REPO / "pipelines" / "tiny-memorise.yaml")
    assert model == "tiny" and [r for r, _ in stages] == ["global", "planner", "caller", "summarizer"]
    assert all(opts["scheduler"] == "constant_with_warmup" and opts["max_steps"] <= 100 for _, opts in stages)
