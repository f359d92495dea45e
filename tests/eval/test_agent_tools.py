"""Tool executors (python, replay, http), query readers, and the loop replaying recorded
trajectories exactly with a model that answers every training prompt with its training target."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from umi_data.readers import read_inputs
from umi_data.render.roles import examples
from umi_data.trajectory import Tool, Trajectory
from umi_data.trajectory.checks import check
from umi_eval.agent.loop import LoopConfig, Models, run
from umi_eval.agent.queries import Query, Reject, read_queries, standardize
from umi_eval.agent.tools import (
    HttpExecutor,
    PythonExecutor,
    ReplayExecutor,
    ToolSpecError,
    call_tool,
    load_module,
    make_executor,
)
from umi_eval.cli.commands import main as umieval
from umi_eval.generate.backends import Decoding, Generation

from .agent_helpers import EXAMPLES, SHARED, need, role_of, serving, write_tools

TOOLBENCH = SHARED / "toolbench-example"


# --- python ------------------------------------------------------------------------------------


def test_python_tools_from_typed_signatures(tmp_path):
    ex = make_executor(f"python:{write_tools(tmp_path)}")
    weather = next(t for t in ex.tools if t.name == "get_weather")
    assert weather.description == "Current weather of a city."
    # a default stays in the schema (the model sees what an omitted argument means); not required
    assert weather.parameters["properties"] == {"city": {"type": "string"}, "unit": {"type": "string", "default": "C"}}
    assert weather.parameters["required"] == ["city"]
    ok, attempts = call_tool(ex, weather, '{"city": "Oslo", "unit": "F"}')
    assert json.loads(ok.content) == {"city": "Oslo", "temp": 21, "unit": "F"} and ok.code is None
    assert attempts == 1
    bad = ex.execute(weather, '{"city": "Oslo", "extra": 1}', {})
    assert bad.code == "invalid_arguments" and "extra" in bad.content


def test_python_tool_defaults_are_kept_when_json_can_hold_them(tmp_path):
    path = tmp_path / "defaults.py"
    path.write_text(
        "SENTINEL = object()\n"
        "def search(q: str, limit: int = 5, exact: bool = False, tags: list = [], lang: str | None = None,\n"
        "           ratio: float = 0.5, marker=SENTINEL, pair: tuple = (1, 2), nan: float = float('nan')):\n"
        "    return q\n",
        encoding="utf-8",
    )
    (search,) = PythonExecutor(load_module(str(path))).tools
    props = search.parameters["properties"]
    assert {k: v.get("default", "-") for k, v in props.items()} == {
        "q": "-", "limit": 5, "exact": False, "tags": [], "lang": None, "ratio": 0.5,
        "marker": "-", "pair": "-", "nan": "-",  # no JSON for these: the default is left out, not mangled
    }
    assert search.parameters["required"] == ["q"]
    json.dumps(search.parameters, allow_nan=False)  # the schema itself stays valid JSON


def test_python_tools_from_a_json_schema_list(tmp_path):
    path = tmp_path / "shop.py"
    path.write_text(
        "tools = [{'type': 'function', 'function': {'name': 'price', 'description': 'Price of an item.',\n"
        "          'parameters': {'type': 'object', 'properties': {'item': {'type': 'string', 'enum': ['tea']}},\n"
        "                         'required': ['item']}}}]\n"
        "def price(item):\n    return 3\n"
        "def _helper():\n    pass\n",
        encoding="utf-8",
    )
    ex = PythonExecutor(load_module(str(path)))
    (price,) = ex.tools
    assert ex.execute(price, '{"item": "tea"}', {}).content == "3"
    refused = ex.execute(price, '{"item": "coffee"}', {})  # the full schema (enum) is enforced
    assert refused.code == "invalid_arguments" and "'coffee' is not one of ['tea']" in refused.content


def test_bad_tool_specs_are_usage_errors(tmp_path):
    for spec in ("python:no_such_module_xyz", "replay:/nonexistent.jsonl", "ftp:x", "python"):
        with pytest.raises(ToolSpecError):
            make_executor(spec)
    (tmp_path / "empty.py").write_text("X = 1\n")
    with pytest.raises(ToolSpecError, match="no public function"):
        make_executor(f"python:{tmp_path / 'empty.py'}")


# --- replay --------------------------------------------------------------------------------------


def test_replay_answers_recorded_calls_from_chain_and_tree():
    ex = make_executor(f"replay:{need(TOOLBENCH / 'answer')}")
    assert isinstance(ex, ReplayExecutor)
    # the final chain of G1_answer/10: transitaires_for_transitaires with "{}", answered with the
    # observation exactly as umidata reads it (the training data's text)
    (rec,) = read_inputs([str(TOOLBENCH / "answer" / "G1_answer" / "10_ChatGPT_DFS_woFilter_w2.json")])
    assert rec.trajectory.turns[2].calls[0].arguments == "{}"
    tool = Tool("transitaires_for_transitaires")
    hit = ex.execute(tool, " { } ", {})  # normalised arguments match
    assert hit.content == rec.trajectory.turns[3].content and "EKVF" in hit.content
    # every recorded (name, arguments) answers, including failed branches of the answer trees
    trees = 0
    for f in sorted((TOOLBENCH / "answer").glob("*/*.json")):
        obj = json.loads(f.read_text(encoding="utf-8"))
        stack = [obj["tree"]["tree"]]
        while stack:
            n = stack.pop()
            stack += n.get("children", [])
            for c in n.get("children", []):
                if n.get("node_type") == "Action" and c.get("node_type") == "Action Input" and \
                        c.get("observation") and n["description"] != "Finish":
                    assert ex.execute(Tool(n["description"]), c["description"], {}).code != "no_record"
                    trees += 1
    assert trees > 30
    miss = ex.execute(tool, '{"nothing": 1}', {})
    assert miss.code == "no_record" and "no recorded response" in miss.content and ex.misses == 1


class _Golden:
    """A perfect memoriser: the training target of every training prompt of the given
    trajectories (what a model that memorised them generates)."""

    name = "golden"

    def __init__(self, trajectories: list[Trajectory]) -> None:
        self.answers = {e.prompt: e.completion for t in trajectories
                        for r in ("planner", "caller", "summarizer") for e in examples(t, r)}
        self.unknown = 0

    def generate(self, prompts, decoding: Decoding):
        out = []
        for p in prompts:
            text = self.answers.get(p)
            self.unknown += text is None
            out.append(Generation(text if text is not None else "Give up.\n Next: give up."))
        return out


def _plain_chain(t: Trajectory) -> bool:
    """What the plain loop can reproduce: no extra user turns (DFSDT reflections), no dropped or
    plain assistant messages, every call to a listed tool, no empty answer."""
    names = {x.name for x in t.tools}
    return (
        sum(x.role == "user" for x in t.turns) == 1
        and not t.metadata.get("dropped_messages")
        and all(x.decision is not None and x.raw is None for x in t.turns if x.role == "planner")
        and all(c.name in names for x in t.turns if x.role == "caller" for c in x.calls or [])
        and all(x.raw is None for x in t.turns if x.role == "caller")
        and all((x.content or "none") != "none" for x in t.turns if x.role == "conclusion")
        and all(len(x.content or "") <= 1024 for x in t.turns if x.role == "observation")
    )


def _shape(turns):
    return [(t.role, t.content, t.thought, t.decision, [(c.name, c.arguments) for c in t.calls or []])
            for t in turns]


@pytest.mark.parametrize("inputs", [[EXAMPLES / "toolbench-mini"], [TOOLBENCH / "answer"]], ids=["bundled", "shared"])
def test_loop_replays_recorded_trajectories_exactly(tmp_path, inputs):
    paths = [str(need(p)) for p in inputs]
    gold = [r.trajectory for r in read_inputs(paths) if r.trajectory is not None]
    chains = [t for t in gold if _plain_chain(t)]
    assert len(chains) >= 3
    model = _Golden(gold)
    out = tmp_path / "runs.jsonl"
    ex = make_executor("replay:" + ",".join(paths))
    queries = [q for q in read_queries(paths) if isinstance(q, Query)]
    summary = run(queries, Models(model, model, model), ex, out, LoopConfig(max_steps=20))
    assert summary.ran == len(gold) and summary.rejected == 0
    runs = {json.loads(x)["id"]: Trajectory.from_dict(json.loads(x)) for x in out.read_text().splitlines()}
    for t in chains:
        assert _shape(runs[t.id].turns) == _shape(t.turns), t.id
        assert runs[t.id].outcome == t.outcome
        # the only findings are the recorded tools' own errors (with their recorded text) and the
        # argument violations umidata's checks see in the same calls
        found = {f["code"] for f in runs[t.id].metadata["findings"]}
        assert found <= {"tool_error", "arguments_schema", "arguments_not_json"}
        checked = {f.code for f in check(t) if f.code.startswith("arguments_")}
        assert ("arguments_schema" in found) == bool(checked - {"arguments_not_json"})
        assert [x.error for x in runs[t.id].turns] == [x.error for x in t.turns]
    assert ex.misses == 0 or len(chains) < len(gold)


# --- http ----------------------------------------------------------------------------------------


class _ToolServer(ThreadingHTTPServer):
    """A StableToolBench-style server on 127.0.0.1: answers, errors, 500s and a slow path."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_first = 0
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _ToolServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        if body["api_name"] == "boom" and self.server.fail_first > 0:
            self.server.fail_first -= 1
            self.send_response(500)
            self.end_headers()
            return
        if body["api_name"] == "slow":
            import time

            time.sleep(1.0)
        answer = ({"error": "Unsubscribed error...", "response": ""} if body["api_name"] == "locked"
                  else {"error": "", "response": f"echo {body['tool_input']}"})
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    srv = _ToolServer()
    with serving(srv):
        yield srv


def test_http_executor(server):
    url = f"http://127.0.0.1:{server.server_address[1]}/virtual"
    ex = make_executor(url, timeout=0.5)
    assert isinstance(ex, HttpExecutor)
    routes = {"get_x_for_my_tool": {"category": "Data", "tool_name": "my_tool", "api_name": "get_x"}}
    obs, _ = call_tool(ex, Tool("get_x_for_my_tool"), '{"a": 1}', {"routes": routes})
    assert obs.content == 'echo {"a": 1}' and obs.code is None  # the raw response text, not re-encoded
    assert server.requests[-1] == {"category": "Data", "tool_name": "my_tool", "api_name": "get_x",
                                   "tool_input": '{"a": 1}', "strip": "truncate", "toolbench_key": ""}
    obs, _ = call_tool(ex, Tool("locked_for_t"), "{}")  # no route: split from <api>_for_<tool>
    assert obs.code == "tool_error" and "Unsubscribed" in obs.content
    assert server.requests[-1]["tool_name"] == "t" and server.requests[-1]["api_name"] == "locked"
    server.fail_first = 1  # a 500 is retried once, then answered
    obs, attempts = call_tool(ex, Tool("boom_for_t"), "{}", retries=1, backoff=0)
    assert attempts == 2 and obs.content == "echo {}"
    server.fail_first = 5
    obs, attempts = call_tool(ex, Tool("boom_for_t"), "{}", retries=2, backoff=0)
    assert attempts == 3 and obs.code == "unavailable"
    obs, attempts = call_tool(ex, Tool("slow_for_t"), "{}", timeout=5, retries=0)
    assert obs.code == "timeout" and attempts == 1  # the executor's own socket time-out (0.5 s)


def test_http_unreachable_is_unavailable():
    ex = make_executor("http://127.0.0.1:9/none")  # discard port: nothing listens
    obs, attempts = call_tool(ex, Tool("a_for_b"), "{}", retries=1, backoff=0)
    assert obs.code == "unavailable" and attempts == 2


# --- queries ---------------------------------------------------------------------------------------


def test_toolbench_query_files():
    items = list(read_queries([str(need(TOOLBENCH / "instruction" / "G1_query.json"))]))
    qs = [q for q in items if isinstance(q, Query)]
    assert len(qs) == len(items) == 5 and qs[0].id == "G1_query/1"
    names = [t.name for t in qs[0].tools]
    assert names == ["checkhealth_for_squake", "projects_for_squake"]
    assert qs[0].routes["projects_for_squake"] == {"category": "Logistics", "tool_name": "squake",
                                                    "api_name": "projects"}
    assert qs[0].tools[0].description == 'This is the subfunction for tool "squake", you can use this tool.'
    many = qs[4]
    assert all(len(t.name) <= 64 for t in many.tools)
    assert all(set(t.parameters) == {"type", "properties", "required", "optional"} for t in many.tools)


def test_standardize_matches_toolbench_names():
    assert standardize("Get 5-Day Forecast!") == "get_5_day_forecast"
    assert standardize("123 go") == "get_123_go"
    assert standardize("__A  b__") == "a_b"


def test_query_rejects_keep_their_source(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "instruction": "x", "tools": []}\nnot json\n{"id": "b", "instruction": 3}\n')
    items = list(read_queries([str(path)]))
    assert isinstance(items[0], Query)
    assert [(r.reason, r.source.line) for r in items[1:] if isinstance(r, Reject)] == [("json_syntax", 2),
                                                                                     ("schema", 3)]


# --- the command ---------------------------------------------------------------------------------------


def test_cli_usage_errors_and_help(tmp_path):
    r = CliRunner()
    assert r.invoke(umieval, ["run", "--help"]).exit_code == 0
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "a", "instruction": "x"}\n')
    common = ["-o", str(tmp_path / "o.jsonl"), "--tools", f"python:{write_tools(tmp_path)}"]
    assert r.invoke(umieval, ["run", "missing.jsonl", "--model", "m", *common]).exit_code == 2
    assert r.invoke(umieval, ["run", str(q), "--planner", "p", *common]).exit_code == 2  # trio incomplete
    assert r.invoke(umieval, ["run", str(q), "--model", "m", "-o", "o", "--tools", "nope:x"]).exit_code == 2
    res = r.invoke(umieval, ["run", str(q), "--model", str(tmp_path / "no-model"), *common])
    assert res.exit_code == 2 and "model directory not found" in res.output


def test_role_of_matches_template_cues():
    assert role_of("x caller: ") == "caller" and role_of("x conclusion: ") == "summarizer"


def test_trajectory_files_are_queries_too(tmp_path):
    # an α-UMi stage-2 file has `instruction` and `tools` but is a trajectory: umidata's reader
    # reads it (tools rebuilt from the α-UMi docs), not the bare-query rule
    path = tmp_path / "stage2.json"
    doc = {"Name": "get_weather_for_meteo", "function": "Weather.", "input": {"city": "string, city name"}}
    path.write_text(json.dumps([{"tools": [doc], "instruction": "Weather?", "conversations": [
        {"from": "user", "value": "Weather?"}, {"from": "assistant", "value": "No.\n Next: give up."}]}]))
    (q,) = read_queries([str(path)])
    assert isinstance(q, Query) and q.id == "stage2/0" and q.instruction == "Weather?"
    assert q.tools[0].name == "get_weather_for_meteo"
    assert q.tools[0].parameters["properties"] == {"city": {"type": "string", "description": "city name"}}


class _Completions(ThreadingHTTPServer):
    """An OpenAI-compatible completions server on 127.0.0.1 playing a scripted trio: call the
    weather tool, then conclude once an observation is in the history."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CompletionsHandler)


class _CompletionsHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["prompt"]
        role = role_of(prompt)
        text = {"caller": 'Action: get_weather\nAction Input: {"city": "Paris"}', "summarizer": "21 C."}.get(
            role, "Done.\n Next: conclusion." if "observation: " in prompt else "Look.\n Next: caller.")
        data = json.dumps({"choices": [{"text": text}], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args) -> None:
        pass


def test_cli_run_against_an_openai_compatible_server(tmp_path):
    with serving(_Completions()) as base:
        q = tmp_path / "q.jsonl"
        q.write_text("".join(json.dumps({"id": f"w{i}", "instruction": f"Weather {i}?"}) + "\n" for i in range(3)))
        out = tmp_path / "runs.jsonl"
        args = ["run", str(q), "-o", str(out), "--tools", f"python:{write_tools(tmp_path)}", "--backend", "openai",
                "--base-url", f"{base}/v1", "--planner", "p", "--caller", "c",
                "--summarizer", "s", "--concurrency", "2"]
        res = CliRunner().invoke(umieval, args)
        assert res.exit_code == 0, res.output
        assert "answered 3, gave up 0, step limit 0" in res.output
        assert "per query: 2.0 steps, 1.0 calls, 40 tokens" in res.output  # 4 requests × (7 + 3)
        runs = [json.loads(x) for x in out.read_text().splitlines()]
        assert [r["id"] for r in runs] == ["w0", "w1", "w2"]
        assert runs[0]["metadata"]["run"]["models"]["planner"].startswith("p@http://127.0.0.1")
        res = CliRunner().invoke(umieval, args)  # resumed: nothing left to do
        assert res.exit_code == 0 and "ran 0 + already done 3" in res.output
        out.write_text("not json\n")
        res = CliRunner().invoke(umieval, args)
        assert res.exit_code == 2 and "is not a run file line" in res.output


def test_cli_run_model_at_url_needs_no_base_url(tmp_path):
    # `umieval run` opens its models as `generate` does (open_backend): NAME@URL names the server
    with serving(_Completions()) as base:
        q = tmp_path / "q.jsonl"
        q.write_text(json.dumps({"id": "w0", "instruction": "Weather?"}) + "\n")
        out = tmp_path / "runs.jsonl"
        url = f"{base}/v1"
        args = ["run", str(q), "-o", str(out), "--tools", f"python:{write_tools(tmp_path)}", "--backend", "openai",
                "--model", f"m@{url}"]
        res = CliRunner().invoke(umieval, args)
        assert res.exit_code == 0, res.output
        assert "answered 1, gave up 0, step limit 0" in res.output
        (traj,) = [json.loads(x) for x in out.read_text().splitlines()]
        assert traj["metadata"]["run"]["models"] == {"global": f"m@{url}"}
    res = CliRunner().invoke(umieval, ["run", str(q), "-o", str(tmp_path / "other.jsonl"), "--tools",
                                       f"python:{write_tools(tmp_path)}", "--backend", "openai", "--model", "m"])
    assert res.exit_code == 2 and "needs --base-url (or MODEL@URL)" in res.output, res.output
    assert not (tmp_path / "other.jsonl").exists()


def test_python_module_problems_are_usage_errors(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no config')\n")
    with pytest.raises(ToolSpecError, match=r"importing .* failed: RuntimeError: no config"):
        make_executor(f"python:{broken}")
    lazy = tmp_path / "lazy.py"  # postponed annotations naming a type that does not exist
    lazy.write_text("from __future__ import annotations\n\ndef f(a: int, b: Missing) -> str:\n    return 'x'\n")
    (f,) = make_executor(f"python:{lazy}").tools
    assert f.parameters["properties"] == {"a": {"type": "integer"}, "b": {}}


def test_http_sends_the_toolbench_key(server, monkeypatch):
    monkeypatch.setenv("TOOLBENCH_KEY", "k-123")
    ex = make_executor(f"http:http://127.0.0.1:{server.server_address[1]}/virtual", key_hosts=["127.0.0.1"])
    call_tool(ex, Tool("a_for_b"), "{}")
    assert server.requests[-1]["toolbench_key"] == "k-123"


# --- found in review ---------------------------------------------------------------------------------


def test_observations_are_valid_unicode(server):
    from umi_eval.agent.tools import valid_text

    assert valid_text("a\ud800b\udce9c\ud83d\ude00") == "a\ufffdb\ufffdc\U0001f600"
    assert valid_text("plain é") == "plain é"
    ex = make_executor(f"http://127.0.0.1:{server.server_address[1]}/virtual")
    obs, _ = call_tool(ex, Tool("x_for_t"), "bad \ud800")  # the server echoes "\ud800" back as JSON
    assert obs.content == "echo bad \ufffd" and obs.content.encode("utf-8")


def test_deeply_nested_json_is_invalid_json_not_a_crash():
    from umi_data.render.parse import parse_caller
    from umi_eval.agent.tools import decode_arguments, normalise_arguments

    deep = "[" * 5000 + "]" * 5000
    (call,) = parse_caller(f"Action: a\nAction Input: {deep}")
    assert call.arguments == deep and not call.valid_json
    assert decode_arguments(deep) == (None, "arguments are not valid JSON (nested too deeply)")
    assert normalise_arguments(deep) == deep


@pytest.mark.parametrize("spec", ["http:localhost:8080", "http:127.0.0.1:8080/virtual", "http://",
                                  "http:ftp://h/x", "http:http://h:port/x"])
def test_http_spec_needs_a_scheme_and_a_host(spec, tmp_path):
    with pytest.raises(ToolSpecError):
        make_executor(spec)
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "a", "instruction": "x"}\n')
    res = CliRunner().invoke(umieval, ["run", str(q), "--model", "m", "-o", str(tmp_path / "o"), "--tools", spec])
    assert res.exit_code == 2 and ("scheme and host" in res.output or "Port" in res.output)
    assert make_executor("http:http://127.0.0.1:8080/v").url == "http://127.0.0.1:8080/v"
