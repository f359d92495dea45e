"""``umieval judge RUNS… [--against REF…]``: argument handling and tables; the work is
:func:`umi_eval.score.judge.run_judge`.

Exit codes: 0 ok; 1 findings (input records that could not be judged, listed in the rejects file;
judge requests that got no answer after the retries — rerun to ask only those); 2 usage or I/O
error (missing input, an output over an input, a cache held by another run, a judge that answered
nothing); 3 internal error; 130 interrupted (every reply received so far is in the cache).
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from umi_cli.errors import EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from umi_data.output.guard import UnsafeOutput, output_lock

COMPARABLE = ("Numbers are comparable to ToolEval's (the paper's Table 2), not identical: umi's own prompt "
              "wording of ToolEval's criteria and your judge model.")


def _fail(message: str) -> None:
    click.echo(f"umieval judge: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{round(100 * v, 1) + 0.0:.1f}"


def _ci(ci: list[float] | None) -> str:
    return "-" if ci is None else f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def default_cache(output: str) -> str:
    p = Path(output)
    return str(p.with_name(f"{p.stem}.judge-cache.jsonl"))


@click.command("judge")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--against", "against", multiple=True, type=click.Path(path_type=str),
              help="Reference answers for the win rate (repeatable), e.g. ToolBench's ChatGPT-ReACT answer tree.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Per-query judgments (JSONL, atomic): what `umieval compare` reads.")
@click.option("--judge-url", required=True, help="OpenAI-compatible server, e.g. https://api.openai.com/v1.")
@click.option("--judge-model", required=True, help="Served model name of the judge, e.g. gpt-4o-mini.")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="Environment variable holding the judge's API key (never printed or stored).")
@click.option("--samples", default=7, show_default=True, type=click.IntRange(1),
              help="Judge samples per query (majority); the paper's ToolEval used 7.")
@click.option("--temperature", default=0.2, show_default=True, type=click.FloatRange(0),
              help="Judge sampling temperature (ToolEval: 0.2); sample i uses seed --judge-seed + i.")
@click.option("--max-tokens", default=512, show_default=True, type=click.IntRange(1), help="Per judge reply.")
@click.option("--judge-seed", default=0, show_default=True, type=int)
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds per judge request.")
@click.option("--retries", default=3, show_default=True, type=click.IntRange(0),
              help="More attempts on a time-out, connection error, HTTP 429/5xx or malformed response.")
@click.option("--backoff", default=1.0, show_default=True, type=click.FloatRange(0),
              help="Seconds before the first retry (doubled each time).")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1), help="Requests in flight.")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Judge replies (JSONL; reruns and resumes ask only what is missing). "
                   "Default: OUTPUT stem + .judge-cache.jsonl; share one between runs to reuse the reference's.")
@click.option("--groups", "groups_file", type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="JSON object {query id: group}; default: ToolBench's test sets from the ids (G1_instruction …).")
@click.option("--max-trajectory-chars", default=12000, show_default=True, type=click.IntRange(200),
              help="Steps shown to the judge are cut (middle first) to this many characters.")
@click.option("--price-in", type=click.FloatRange(0), help="Price per 1M prompt tokens (for the cost line).")
@click.option("--price-out", type=click.FloatRange(0), help="Price per 1M completion tokens.")
@click.option("--bootstrap", "resamples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for the 95 % intervals (0: none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def judge_cmd(runs: tuple[str, ...], against: tuple[str, ...], output: str, judge_url: str, judge_model: str,
              api_key_env: str, samples: int, temperature: float, max_tokens: int, judge_seed: int, timeout: float,
              retries: int, backoff: float, concurrency: int, cache_path: str | None, groups_file: str | None,
              max_trajectory_chars: int, price_in: float | None, price_out: float | None, resamples: int, seed: int,
              as_json: bool, quiet: bool) -> None:
    """Judge agent runs like ToolEval: the pass rate of RUNS and, with --against, their win rate
    against a reference set, per ToolBench test group and on average, with 95 % bootstrap intervals.

    RUNS and REF: `umieval run` files, ToolEval/StableToolBench answer trees (directories of
    <group>/<query id>_<method>.json), or anything `umidata` reads; answers to the same query are
    matched by query id (G1_instruction/10 …). The judge is any OpenAI-compatible chat server.
    Numbers are comparable to ToolEval's, not identical (umi's prompt wording, your judge).

    Exit codes: 0 ok; 1 records that could not be judged (OUTPUT stem .rejects.jsonl) or judge
    requests left unanswered (rerun: cached replies are reused); 2 usage or I/O error; 3 internal
    error; 130 interrupted (rerun to resume)."""
    from umi_eval.generate.backends import Decoding, OpenAIBackend
    from umi_eval.score.judge import (
        Judge,
        JudgeCache,
        JudgeOptions,
        check_outputs,
        is_judged_file,
        read_groups,
        run_judge,
    )

    missing = [p for p in (*runs, *against) if not os.path.lexists(p)]
    if missing:
        _fail(f"no such input: {', '.join(missing)}")
    if not judge_url.startswith(("http://", "https://")):
        _fail(f"--judge-url {judge_url!r}: expected an http(s):// URL such as http://127.0.0.1:8000/v1")
    cache_path = cache_path or default_cache(output)
    from umi_data.output.writers import rejects_path

    check_outputs([output, str(rejects_path(output)), cache_path], [*runs, *against])
    if os.path.isfile(output) and os.path.getsize(output) and not is_judged_file(output):
        _fail(f"{output} exists and is not a umieval judge file; not touching it (choose another -o)")
    groups = read_groups(groups_file) if groups_file else None
    backend = OpenAIBackend(judge_url, judge_model, api_key=os.environ.get(api_key_env) or "", timeout=timeout,
                            retries=retries, concurrency=concurrency, backoff=backoff)
    decoding = Decoding(max_new_tokens=max_tokens, temperature=temperature, seed=judge_seed)
    opts = JudgeOptions(samples=samples, resamples=resamples, seed=seed, max_chars=max_trajectory_chars,
                        price_in=price_in, price_out=price_out)

    def phase(message: str) -> None:
        if not quiet and not as_json:
            click.echo(f"umieval judge: {message}", err=True)

    for path in (output, cache_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        try:
            stack.enter_context(output_lock(output))
            stack.enter_context(output_lock(cache_path))
        except UnsafeOutput as e:
            _fail(str(e))
        cache = JudgeCache(cache_path)
        stack.callback(cache.close)
        judge = Judge(backend, decoding, cache, chunk=4 * concurrency)
        try:
            report = run_judge(runs, judge, opts, against=against, groups=groups, output=output, on_phase=phase)
        except KeyboardInterrupt:  # the requests in flight have ended (the thread pool waits for them)
            click.echo("\numieval judge: interrupted; every judge reply received so far is cached in "
                       f"{cache_path}: rerun the same command to resume", err=True)
            sys.exit(EXIT_INTERRUPTED)  # after the cache is closed and the locks are released
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        render_judgment(report.summary)
    sys.exit(EXIT_FINDINGS if report.findings else EXIT_OK)


def _cell(entry: dict[str, Any]) -> str:
    return f"{_pct(entry['rate'])} {_ci(entry['ci'])}"


def render_judgment(s: dict[str, Any]) -> None:
    """Per group and Average: pass rate (and win / tie rates) with intervals, then the paper-shaped
    row, the vote counts, the judge's requests, tokens and cost."""
    from rich.markup import escape
    from rich.table import Table

    from umi_eval.score.tables import console

    out = console()
    win = "win_rate" in s["metrics"]
    j = s["judge"]
    boot = s["bootstrap"]
    table = Table(title=escape(f"umieval judge: {s['queries']} queries, judge {j['name']}, {j['samples']} samples"),
                  title_justify="left",
                  caption=f"×100; 95 % CI: bootstrap over queries ({boot['resamples']} resamples, seed "
                          f"{boot['seed']}; stratified by group for the Average = mean of the groups).\n"
                          + COMPARABLE, caption_justify="left")
    table.add_column("group")
    table.add_column("queries", justify="right")
    table.add_column("pass rate [95 % CI]", justify="right")
    if win:
        table.add_column("win rate [95 % CI]", justify="right")
        table.add_column("tie", justify="right")
        table.add_column("loss", justify="right")
    for g in s["groups"].values():
        row = [g["label"], str(g["queries"]), _cell(g["pass_rate"])]
        if win:
            row += [_cell(g["win_rate"]), _pct(g["tie_rate"]["rate"]), _pct(g["loss_rate"]["rate"])]
        table.add_row(*row)
    out.print(table)
    groups = s["groups"]
    head = " | ".join(f"{g['label']} {'P/W' if win else 'P'}" for g in groups.values())
    cells = " | ".join(_pct(g["pass_rate"]["rate"]) + (f"/{_pct(g['win_rate']['rate'])}" if win else "")
                       for g in groups.values())
    out.print(f"as a row of the paper's Table 2:\n| Method | {head} |\n| umi | {cells} |", markup=False,
              highlight=False)
    votes = ", ".join(f"{k} {v}" for k, v in s["pass_votes"].items())
    out.print(f"pass votes: {votes}; unanswered queries (failed without asking): {s['unanswered']}", markup=False)
    if win:
        w = s["win"]
        out.print("win decided by: " + ", ".join(f"{k} {v}" for k, v in w["decided_by"].items())
                  + "; preference votes: " + (", ".join(f"{k} {v}" for k, v in w["votes"].items()) or "none")
                  + (f"; reference-only queries (not compared) {w['reference_only']}" if w["reference_only"] else ""),
                  markup=False)
    tok, ctok = j["tokens"], j["cached_tokens"]
    line = (f"judge requests {j['requests']} = asked {j['asked']} + cached {j['cached']}"
            + (f"; unanswered {j['errors']} (rerun to ask them again)" if j["errors"] else "")
            + f"; tokens now: prompt {tok['prompt']}, completion {tok['completion']} (cached replies: prompt "
            f"{ctok['prompt']}, completion {ctok['completion']}, cost nothing)")
    out.print(line, markup=False)
    if j["cost"] is not None:
        p = j["price_per_million"]
        out.print(f"cost now: ${j['cost']:.4f} (at ${p['in'] or 0:g} / ${p['out'] or 0:g} per 1M prompt / "
                  "completion tokens)", markup=False)
    if s["rejected"]:
        codes = ", ".join(f"{k} {v}" for k, v in s["rejected_by_reason"].items())
        out.print(f"rejected records (not judged): {s['rejected']} ({codes}); see {s.get('rejects_file')}",
                  markup=False)
    if s.get("output"):
        out.print(f"→ {s['output']}", markup=False)


def render_judged_comparison(result: dict[str, Any]) -> None:
    """Per group and Average: A, B, B − A and its paired interval, for each judged metric."""
    from rich.markup import escape
    from rich.table import Table

    from umi_eval.score.tables import console

    out = console()
    boot = result["bootstrap"]
    caption = (escape(f"A = {result['a']} (judge {result['judges']['a']})\nB = {result['b']} (judge "
                      f"{result['judges']['b']})\n")
               + f"×100; paired bootstrap over queries, {boot['resamples']} resamples, seed {boot['seed']}; an "
               "interval that excludes 0 marks a difference beyond resampling noise.\n" + COMPARABLE)
    table = Table(title=f"umieval compare: {result['queries']} judged queries", title_justify="left",
                  caption=caption, caption_justify="left")
    for name, justify in (("group", "left"), ("metric", "left"), ("A", "right"), ("B", "right"),
                          ("B − A", "right"), ("95 % CI of B − A", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for g in result["groups"].values():
        for m in result["metrics"]:
            r = g[m]
            table.add_row(g["label"], m.replace("_", " "), _pct(r["a"]), _pct(r["b"]), f"{100 * r['diff']:+.1f}",
                          _ci(r["ci"]))
    out.print(table)
