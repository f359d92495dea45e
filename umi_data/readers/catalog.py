"""The input formats as users see them: shape, a two-line example, the mapping to α-UMi's roles
and the id rule. One table, printed by ``umidata formats`` and pasted in the README's input
section (``umidata formats --markdown``; a test keeps the two equal). Each reader module's
docstring has the full shape and rules."""

# ruff: noqa: E501  (examples read best one per line)
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FormatDoc:
    name: str
    shape: str
    example: tuple[str, str]
    mapping: str
    id: str


_CHAT_ID = "the record's `id`, else `<file stem>/<index or line>`; request k ≥ 2 of a chat: `<id>#k`"

CATALOG: tuple[FormatDoc, ...] = (
    FormatDoc(
        "toolbench",
        "ToolBench answer files (`answer_generation.train_messages`): a tree, single files, or `data.zip` read in place",
        ('{"answer_generation": {"query": "…", "function": [{"name": "f", "parameters": {…}}, {"name": "Finish", …}],',
         ' "train_messages": [[…, {"role": "assistant", "content": "thought", "function_call": {"name": "f", "arguments": "{…}"}}, {"role": "function", …}]]}}'),
        "assistant `content` → planner thought; `function_call` → caller (`Finish` → conclusion or give-up); `function` → observation",
        "`G1_answer/<file stem>`; ToolEval trees (`<method>/G1_instruction/…`): `<method>/G1_instruction/<file stem>`",
    ),
    FormatDoc(
        "alpha-umi",
        "α-UMi stage-2 conversations (`raw_data_stage_2.json`, α-UMi's test sets)",
        ('{"instruction": "…", "tools": [{"Name": "f", "function": "…", "input": {…}}],',
         ' "conversations": [{"from": "user", …}, {"from": "assistant", "value": "… Next: caller."}, {"from": "caller", "value": "Action: f\\nAction Input: {…}"}, …]}'),
        "`assistant` → planner (`Next: …` is the decision); `caller` → caller; `observation` → observation; `conclusion` → conclusion",
        "`<file stem>/<index>`",
    ),
    FormatDoc(
        "toolllama",
        "ToolBench's ToolLLaMA training conversations (`toolllama_G123_dfs_train.json`): one record per step of a search",
        ('{"id": "Step 4: …", "conversations": [{"from": "system", "value": "… following APIs: [{\'name\': \'f\', …}]"}, {"from": "user", …},',
         ' {"from": "assistant", "value": "\\nThought: …\\nAction: f\\nAction Input: {…}"}, {"from": "function", "value": "{\\"error\\": \\"\\", \\"response\\": …}"}, …]}'),
        "tools ← the system prompt's function list; `Thought:` → planner; `Action`/`Action Input` → caller (`Finish` → conclusion or give-up); `function` → observation; only the last step makes examples (the steps before it are history)",
        "the record's `id`",
    ),
    FormatDoc(
        "hermes",
        "Hermes function-calling chats (NousResearch `hermes-function-calling-v1`): ShareGPT with ChatML text calls; tools in the system prompt's `<tools>` block (JSON or a Python literal, never executed)",
        ('{"conversations": [{"from": "system", "value": "… <tools> [{\'type\': \'function\', \'function\': {\'name\': \'f\', …}}] </tools> …"}, {"from": "human", …},',
         ' {"from": "gpt", "value": "<tool_call>\\n{\'arguments\': {…}, \'name\': \'f\'}\\n</tool_call>"}, {"from": "tool", "value": "<tool_response>\\n{\\"name\\": \\"f\\", \\"content\\": …}\\n</tool_response>"}, {"from": "gpt", …}]}'),
        "tools ← the `<tools>` block (the rest of the prompt → `system`); text around `<tool_call>` blocks → planner thought; each block → a call (several: parallel); each `<tool_response>` → observation; `gpt` ending a request → conclusion",
        _CHAT_ID,
    ),
    FormatDoc(
        "toolace",
        "ToolACE-style chats (Team-ACE `ToolACE`): tools as a JSON list in the `system` text, calls as a Python call list parsed with `ast` (literal values only, never executed)",
        ('{"system": "… Here is a list of functions in JSON format that you can invoke:\\n[{\\"name\\": \\"f\\", …}]. …", "conversations": [{"from": "user", …},',
         ' {"from": "assistant", "value": "[f(a=1, b=\\"x\\"), g()]"}, {"from": "tool", "value": "[{\\"name\\": \\"f\\", \\"results\\": {…}}, …]"}, {"from": "assistant", …}]}'),
        "tools ← the system text's function list (the rest → `system`); `[f(…), g(…)]` → planner (no thought) + caller (parallel calls together); each result item → observation; other assistant text ending a request → conclusion",
        _CHAT_ID,
    ),
    FormatDoc(
        "tau-bench",
        "τ-bench / APIGen-MT agent runs (`run.py` results, `historical_trajectories/*.json`): an OpenAI chat in `traj`, no tool list",
        ('{"task_id": 3, "trial": 0, "reward": 1.0, "info": {"task": {…}, …}, "traj": [{"role": "system", "content": "# Airline Agent Policy …"}, {"role": "user", …},',
         ' {"role": "assistant", "content": null, "tool_calls": […]}, {"role": "tool", "tool_call_id": "…", …}, {"role": "assistant", …}, {"role": "user", "content": "Thanks! ###STOP###"}]}'),
        "as `openai`; the policy → `system`; the simulator's last line ends the chat (`unanswered_user`); a run the environment ended on a call's result ends in that call (`terminal_action`); tools named from the calls (`tools_inferred`); `task_id`, `trial`, `reward`, `info` → metadata",
        _CHAT_ID,
    ),
    FormatDoc(
        "sharegpt",
        "ShareGPT chats with tools (LLaMA-Factory `sharegpt`, e.g. `glaive_toolcall_en_demo.json`); custom role tags and columns from a `dataset_info.json` beside the file or `--dataset-info FILE`",
        ('{"conversations": [{"from": "human", "value": "…"}, {"from": "function_call", "value": "{\\"name\\": \\"f\\", \\"arguments\\": {…}}"},',
         ' {"from": "observation", "value": "…"}, {"from": "gpt", "value": "…"}], "system": "…", "tools": "[{\\"name\\": \\"f\\", …}]"}'),
        "`function_call` → planner (no thought) + caller; `observation` → observation; `gpt` ending a request → conclusion (else a plain planner turn)",
        _CHAT_ID,
    ),
    FormatDoc(
        "openai-typed",
        "LLaMA-Factory's OpenAI-like chats with typed content parts (e.g. `reason_tool_use_demo_50.jsonl`)",
        ('{"messages": [{"role": "user", "content": [{"type": "text", "value": "…"}]}, {"role": "assistant", "content": [{"type": "reasoning", "value": "…"},',
         ' {"type": "tool_call", "value": "{\\"name\\": \\"f\\", \\"arguments\\": {…}}"}]}, {"role": "tool", …}, …], "tools": "[…]"}'),
        "`reasoning` → planner thought; `tool_call` parts → caller; `tool` → observation; `text` of a request's last assistant message → conclusion",
        _CHAT_ID,
    ),
    FormatDoc(
        "openai-functions",
        "legacy OpenAI function calling (`functions`, `function_call`, role `function`)",
        ('{"messages": [{"role": "user", …}, {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{…}"}},',
         ' {"role": "function", "name": "f", "content": "…"}, {"role": "assistant", "content": "…"}], "functions": [{"name": "f", …}]}'),
        "`content` → planner thought; `function_call` → caller; `function` → observation; a request's last assistant message → conclusion",
        _CHAT_ID,
    ),
    FormatDoc(
        "openai",
        "OpenAI chats (`messages` with `tool_calls` / `tool`, `tools` a list or a JSON string), JSON or JSONL",
        ('{"id": "c1", "messages": [{"role": "user", …}, {"role": "assistant", "content": "…", "tool_calls": [{"id": "a", "type": "function", "function": {…}}]},',
         ' {"role": "tool", "tool_call_id": "a", "content": "…"}, {"role": "assistant", "content": "…"}], "tools": [{"type": "function", "function": {…}}]}'),
        "`content` (or `reasoning_content`) → planner thought; `tool_calls` → caller (parallel calls together); `tool` → observation; a request's last assistant message → conclusion",
        _CHAT_ID,
    ),
    FormatDoc(
        "bfcl",
        "Berkeley Function-Calling Leaderboard questions (gorilla `bfcl_eval/data/BFCL_v4_*.json`, JSONL in a `.json` file), joined by `id` with `possible_answer/<same file name>` beside them",
        ('{"id": "parallel_0", "question": [[{"role": "user", "content": "…"}]], "function": [{"name": "f", "parameters": {"type": "dict", "properties": {…}}}]}',
         ' possible_answer: {"id": "parallel_0", "ground_truth": [{"f": {"a": [1], "b": ["", 2]}}, {"f": {"a": [3]}}]}'),
        "the question's messages; the ground-truth calls → planner (no thought) + ONE caller turn (first acceptable value of each parameter; `\"\"` first: left out); irrelevance questions → `give_up`, no call; no ground truth → `no_ground_truth`; multi-turn → `bfcl_multi_turn`",
        "the record's `id`",
    ),
    FormatDoc(
        "xlam",
        "xLAM / APIGen function-calling rows (`xlam-function-calling-60k`): `tools` and `answers` JSON strings (or lists), flat parameter maps with Python types",
        ('{"id": 7, "query": "…", "tools": "[{\"name\": \"f\", \"parameters\": {\"a\": {\"type\": \"int\", \"description\": \"…\"}}}]",',
         ' "answers": "[{\"name\": \"f\", \"arguments\": {\"a\": 5}}]"}'),
        "`query` → instruction; `answers` → planner (no thought) + ONE caller turn (several: parallel); `answers: []` → `give_up`",
        "the record's `id` (a number too), else `<file stem>/<index or line>`",
    ),
    FormatDoc(
        "umi",
        "canonical trajectories written by `umidata convert` (JSONL or Parquet)",
        ('{"format": "umi.trajectory/v1", "id": "c1", "source": {…}, "instruction": "…", "tools": [{"name": "f", …}],',
         ' "turns": [{"role": "user", …}, {"role": "planner", "thought": "…", "decision": "call"}, {"role": "caller", …}, …], "outcome": "answered", "metadata": {}}'),
        "its own turns",
        "its own",
    ),
)

RULES = """\
Every chat format shares one rule set (`umi_data/readers/chat.py`):

- **Calls only.** A chat that ends in tool calls (xLAM, BFCL, the OpenAI fine-tuning cookbook) is
  a trajectory with outcome `calls_only`: planner and caller examples, no summarizer example (no
  answer is made up). One that stops on a tool result is `incomplete` and rejected.
- **One trajectory per request.** A user message after an answer (or a give-up) starts a new
  request. Each request is its own trajectory: its first user message is the instruction, its
  answer the conclusion, and every earlier turn is its `history` — in the prompts, never an
  example again, so each step is learned once. The first request keeps the record's id, request
  k ≥ 2 is `<id>#k`. User messages while the agent is still working stay in the request. Each
  request counts as one record in `records read = accepted + rejected`.
- **Nothing empty.** A trajectory with a blank instruction (`empty_instruction`) or a turn whose
  example would have an empty target (`empty_completion`) is rejected, never written.
- **Ids.** `--id-prefix P` puts `P` before every id (e.g. the system that wrote the answers).
- **Tools** may be given as a JSON string; a tool that is not a function
  (`{"type": "code_interpreter"}`) is kept in `metadata.other_tools` with a warning. Flat
  parameter maps (`{"p": {"type": "str", …}}`) and type names that are not JSON Schema's (BFCL's
  `dict`/`float`/`tuple`/`any`, Java's, Python's `List[int]`, `Optional[str]`) become JSON Schema.
  `--tools FILE` (a JSON list of tools in any of these shapes, OpenAI, BFCL/xLAM or ToolBench)
  gives tools to the records that carry none.
- **JSONL in a `.json` file** is read line by line, each record with a `jsonl_in_json` warning.
- **System prompts** are data: the record's own system text is the trajectory's `system` (a tool
  list parsed out of it excluded); chat rows open their system message with it, α-UMi prompts
  ignore it unless `umidata split --system-prompt prepend`, exports write it back.
- **Small mismatches are mended, with a warning, not rejected:** call arguments encoded twice (a
  JSON string holding a JSON object) are decoded once (`arguments_double_encoded`); user lines
  nothing answers at a chat's end (a simulator's `###STOP###`) end the chat there
  (`unanswered_user`, text kept in `metadata.umi_trailing_user`, written back by `--to openai`);
  in a chat that declares no tools, assistant text that is calls in a known syntax
  (`<tool_call>` blocks, JSON `{name, arguments}`, a Python call list `[f(a=1)]`) is read as
  calls (`calls_from_text`), and text that opens like calls but cannot be read stays text with a
  `calls_in_text` warning — never silently an answer.
"""


def markdown() -> str:
    """The README's input table and rules."""
    lines = ["| format | shape, and a two-line example | maps to planner / caller / observation / conclusion | id |",
             "| --- | --- | --- | --- |"]
    for d in CATALOG:
        example = "<br>".join(f"`{line.strip()}`" for line in d.example).replace("|", "\\|")
        lines.append(f"| `{d.name}` | {d.shape}<br>{example} | {d.mapping} | {d.id} |")
    return "\n".join(lines) + "\n\n" + RULES


def text() -> str:
    """The same, for a terminal."""
    out = []
    for d in CATALOG:
        out += [f"{d.name}: {d.shape}", *(f"    {line}" for line in d.example), f"  maps: {d.mapping}",
                f"  id:   {d.id}", ""]
    return "\n".join(out) + RULES
