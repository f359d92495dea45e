"""Terminal rendering of a score report and of a comparison (rich tables, ×100 like the paper).

Piped or captured output gets a fixed width so that tables do not wrap at 80 columns.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from umi_eval.score.metrics import METRICS, PLANS, QUIRKS
from umi_eval.score.scoring import ScoreReport

LABELS = {
    "plan_acc": "Plan ACC", "act_em": "Act. EM", "hallu": "Hallu. ↓", "arg_f1": "Arg. F1",
    "arg_f1_easy": "  Arg. F1 easy ({} ref.)", "arg_f1_hard": "  Arg. F1 hard", "rouge_l": "R-L",
}
DENOMINATORS = {
    "plan_acc": "all steps", "act_em": "reference call steps", "hallu": "all steps",
    "arg_f1": "reference calls with JSON args", "arg_f1_easy": "wrong action or {} reference",
    "arg_f1_hard": "wrong action or non-{} reference", "rouge_l": "reference finish steps",
}
PIPE_WIDTH = 120
SHOWN_REJECTS = 10


def console() -> Console:
    out = Console()
    return out if out.is_terminal else Console(width=PIPE_WIDTH)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{round(100 * v, 2) + 0.0:.2f}"  # + 0.0: no "-0.00"


def _ci(ci: list[float] | None) -> str:
    return "-" if ci is None else f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def _one_line(text: str, width: int = 60) -> str:
    """``text`` as one line of at most ``width`` characters: white space (newlines, indentation)
    collapsed to single spaces, other control characters escaped. A model's junk "tool name" can
    be a multi-line JSON fragment; the table shows it as one clipped line, not as ``{\\n  " "…``."""
    flat = " ".join(text.split()) if text.strip() else repr(text)
    flat = flat.encode("unicode_escape").decode("ascii") if not flat.isprintable() else flat
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _print_titled(out: Console, table: Table, title: str, caption: str | None = None) -> None:
    """A table with its title above and caption below as plain lines: rich pads a table's own
    title and caption to the table's width, which leaves trailing spaces on every piped line."""
    out.print(title, style="table.title", markup=False, highlight=False, soft_wrap=True)
    out.print(table)
    for line in (caption or "").splitlines():
        out.print(line, style="table.caption", markup=False, highlight=False, soft_wrap=True)


def render_report(report: ScoreReport, out: Console | None = None) -> None:
    """The metrics table, the plan confusion matrix, top wrong/hallucinated tools, quirks, rejects."""
    out = out or console()
    c = report.counts
    boot = c.get("bootstrap", {})
    title = f"umieval score {c.get('file', '')} ({c.get('shape', 'records')}): {c['steps']} steps"
    caption = (f"×100; 95 % CI: bootstrap over {boot.get('conversations', 0)} conversations, "
               f"{boot.get('resamples', 0)} resamples, seed {boot.get('seed')}")
    table = Table()
    for name, justify in (("metric", "left"), ("score", "right"), ("95 % CI", "right"),
                          ("numerator", "right"), ("denominator", "right"), ("over", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for m in METRICS:
        num, den = c[m]["numerator"], c[m]["denominator"]
        table.add_row(LABELS[m], _pct(report.metrics[m]), _ci(report.ci.get(m)),
                      f"{num:g}", str(den), DENOMINATORS[m])
    _print_titled(out, table, title, caption)

    conf = Table()
    conf.add_column("reference \\ predicted")
    for p in PLANS:
        conf.add_column(p, justify="right")
    conf.add_column("total", justify="right")
    for r in PLANS:
        conf.add_row(r, *(str(c["confusion"][r][p]) for p in PLANS), str(c["reference_plans"][r]))
    conf.add_row("total", *(str(c["predicted_plans"][p]) for p in PLANS), str(c["steps"]))
    _print_titled(out, conf, "plan decisions (rows: reference, columns: prediction)")

    tool_tables = (("wrong_tools", "most frequent wrong tools (a tool of the step, not the reference's)"),
                   ("hallucinated_tools", "most frequent hallucinated tools (not in the step's tools)"))
    for key, title in tool_tables:
        if c[key]:
            t = Table()
            t.add_column("predicted action")
            t.add_column("steps", justify="right")
            for name, n in c[key]:  # a model's junk "name" can be long or hold newlines: one short line
                t.add_row(escape(_one_line(name)), str(n))
            _print_titled(out, t, title)

    if c["quirks"]:
        t = Table()
        t.add_column("case")
        t.add_column("steps", justify="right")
        t.add_column("what umi does")
        for code, n in c["quirks"].items():
            base = code.removeprefix("reference_").removeprefix("prediction_") if code not in QUIRKS else code
            t.add_row(code, str(n), QUIRKS.get(base, ""))
        _print_titled(out, t, "cases the original script crashes on or treats specially (counted)")
    if c["empty_subsets"]:
        out.print(f"empty subsets (scored 0, as the original): {', '.join(c['empty_subsets'])}")
    out.print(f"failed steps: {c['failed_steps']} of {c['steps']} (write them with --cases)")
    if report.rejects:
        out.print(f"[bold]records that could not be scored: {len(report.rejects)}[/bold] of {c['records']}")
        for rej in report.rejects[:SHOWN_REJECTS]:
            out.print(f"  {rej.where()}: {rej.reason}: {rej.message}", markup=False, highlight=False)
        if len(report.rejects) > SHOWN_REJECTS:
            out.print(f"  … {len(report.rejects) - SHOWN_REJECTS} more (all in --cases)")


def render_comparison(result: dict[str, Any], out: Console | None = None) -> None:
    """Per metric: A, B, B − A and its paired 95 % interval, ×100."""
    out = out or console()
    boot = result["bootstrap"]
    caption = (f"A = {result['a']}\nB = {result['b']}\n"
               f"×100; paired bootstrap, {boot['resamples']} resamples, seed {boot['seed']}; an interval that "
               "excludes 0 marks a difference beyond resampling noise (Hallu.: lower is better)")
    table = Table()
    for name, justify in (("metric", "left"), ("A", "right"), ("B", "right"), ("B − A", "right"),
                          ("95 % CI of B − A", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for m in METRICS:
        r = result["metrics"][m]
        table.add_row(LABELS[m], _pct(r["a"]), _pct(r["b"]), f"{100 * r['diff']:+.2f}", _ci(r["ci"]))
    _print_titled(out, table, f"umieval compare: {result['steps']} steps, {result['conversations']} conversations",
                  caption)
