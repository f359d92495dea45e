"""The input formats as users see them: shape, a two-line example, the mapping to α-UMi's roles
and the id rule — each reader's ``doc``, listed here in one table, printed by ``umidata formats``
and pasted in the README's input section (``umidata formats --markdown``; a test keeps the two
equal). Each reader module's docstring has the full shape and rules."""

from __future__ import annotations

from umi_data.readers.base import FormatDoc
from umi_data.readers.registry import READERS, catalog_order

CATALOG: tuple[FormatDoc, ...] = tuple(r.doc for r in sorted(READERS.values(), key=catalog_order))

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
