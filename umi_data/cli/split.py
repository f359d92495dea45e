"""``umidata split``: the command users come for (thin: options → ``pipeline.split``)."""

from __future__ import annotations

import os
import sys
import time

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from umi_cli.terminal import console, interactive
from umi_data.cli.options import allow_empty, check_dataset_info, check_tools_file, read_limits
from umi_data.readers import FORMATS
from umi_data.render.roles import ROLE_NAMES
from umi_data.render.templates import BUILTIN_NAMES
from umi_data.split.pipeline import SplitError, SplitOptions, SplitSummary, read_id_list, split


def _roles(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    roles = tuple(r.strip() for r in value.split(",") if r.strip())
    bad = [r for r in roles if r not in ROLE_NAMES]
    if bad or not roles:
        raise click.BadParameter(f"choose from {', '.join(ROLE_NAMES)} (comma-separated), got {value!r}")
    return roles


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n / 1e3:,.1f} kB"


def summary_table(s: SplitSummary) -> Table:
    t = Table(title=f"umidata split → {s.outdir}", title_justify="left")
    for col in ("role", "train ex.", "dev ex.", "train traj.", "dev traj."):
        t.add_column(col, justify="left" if col == "role" else "right")
    for role, sd in s.roles.items():
        t.add_row(role, str(sd["train"]["examples"]), str(sd["dev"]["examples"]),
                  str(sd["train"]["trajectories"]), str(sd["dev"]["trajectories"]))
    return t


@click.command("split")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "outdir", required=True, type=click.Path(), help="Output directory (OUTDIR).")
@click.option("--roles", default=",".join(ROLE_NAMES), show_default=True, callback=_roles,
              help="Role datasets to write, comma-separated.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Force a reader instead of detecting it.")
@click.option("--template", default="alpha-umi", show_default=True,
              help=f"Built-in template ({', '.join(BUILTIN_NAMES)}): alpha-umi (α-UMi's text prompts, "
                   "byte-identical) or chat (conversations in native chat roles with structured tool calls, for a "
                   "model's own chat template); or a JSON template file (README: 'Custom templates').")
@click.option("--granularity", type=click.Choice(["trajectory", "step"]),
              help="--template chat: one row per trajectory per role [default], or one per α-UMi example.")
@click.option("--system-prompt", "system_prompt", type=click.Choice(["ignore", "prepend"]),
              help="What to do with a record's own system prompt (a policy, a persona): ignore it or prepend it "
                   "to every prompt (chat: it opens the system message). Default: ignore for alpha-umi and text "
                   "templates (the paper's prompts, byte for byte), prepend for chat.")
@click.option("--dev-ratio", default=0.02, show_default=True, type=float,
              help="Share of trajectories (not steps) in the dev split.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the train/dev assignment.")
@click.option("--shard-size", type=click.IntRange(min=1),
              help="Input files/records per shard [default: ~1/16 of the corpus, 500–5000].")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="all cores",
              help="Worker processes (with --engine ray: CPUs of the local Ray runtime); the output is "
                   "byte-identical whatever the count.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine's processes; ray: Ray tasks on a local Ray runtime, or on the cluster "
                   "at --ray-address (pip install 'umi[ray]'). The rows, shards and counts are the same.")
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="A Ray cluster to run on (ray://HOST:10001, or auto); needs --engine ray. Inputs must be "
                   "readable from its nodes: give them as URLs (s3://, gs://, hdfs://) or on a shared filesystem.")
@click.option("--export", "export", type=click.Choice(["glpft-json"]), multiple=True,
              help="Also write the original α-UMi trainer's train_<role>.json files under glpft-json/.")
@click.option("--exclude-ids", "exclude_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Reject trajectories whose id, or ToolBench query id, is listed in this file (JSON list, "
                   "JSON object keys as in ToolBench's test_query_ids/*.json, or one id per line). Repeatable.")
@click.option("--strict", is_flag=True, help="Reject records with warnings too.")
@click.option("--id-prefix", default="", help="Prepend this to every trajectory id (e.g. the system that "
              "wrote the answers: the same query answered by two systems stays two trajectories).")
@click.option("--dataset-info", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A LLaMA-Factory dataset_info.json: ShareGPT role tags and columns for the input files its "
                   "entries name (default: a dataset_info.json beside each file).")
@click.option("--tools", "tools_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Tool definitions for records that carry no tool list: a JSON list (or JSONL) of tools in any "
                   "shape umidata reads (OpenAI, BFCL/xLAM {name, description, parameters}, ToolBench api_list).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty OUTDIR (never one that is, holds or lies "
              "inside an input).")
@read_limits
@allow_empty
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
def split_command(inputs: tuple[str, ...], outdir: str, roles: tuple[str, ...], fmt: str | None, template: str,
                  granularity: str | None, system_prompt: str | None, dev_ratio: float, seed: int,
                  shard_size: int | None, workers: int, engine: str, ray_address: str | None,
                  export: tuple[str, ...], exclude_files: tuple[str, ...], strict: bool, id_prefix: str,
                  dataset_info: str | None, tools_file: str | None, overwrite: bool, max_record_bytes: int,
                  max_ratio: float, allow_empty: bool, quiet: bool) -> None:
    """Split trajectories into the GLPFT role datasets: global, planner, caller, summarizer.

    INPUTS are ToolBench answer trees, files or data.zip, α-UMi stage-2 JSON, ToolLLaMA, ShareGPT,
    Hermes, ToolACE, τ-bench or OpenAI-style chats (JSON/JSONL) or umi trajectories (JSONL/Parquet);
    `umidata formats`.
    Writes OUTDIR/<role>/{train,dev}-*.parquet, manifest.json, README.md and rejects.jsonl.
    Exit 0: all records used; 1: some rejected; 2: usage or I/O error, OUTDIR in use by another
    run, no record read, or a worker process killed; 3: internal error.
    """

    err = console(stderr=True)
    check_dataset_info(dataset_info)
    check_tools_file(tools_file)
    try:
        exclude = frozenset().union(*(read_id_list(f) for f in exclude_files))
        opts = SplitOptions(roles=roles, dev_ratio=dev_ratio, seed=seed, shard_size=shard_size, template=template,
                            format=fmt, strict=strict, export_glpft_json="glpft-json" in export,
                            exclude_ids=exclude, granularity=granularity, system_prompt=system_prompt, workers=workers,
                            engine=engine, ray_address=ray_address,
                            id_prefix=id_prefix, dataset_info=dataset_info, tools=tools_file,
                            max_record_bytes=max_record_bytes, max_ratio=max_ratio, allow_empty=allow_empty)
        if interactive(quiet):
            with Progress(TextColumn("[bold]split"), BarColumn(), TextColumn("{task.fields[rate]}"),
                          TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                          console=err, transient=True) as bar:
                task = bar.add_task("split", total=None, rate="")
                t0 = time.perf_counter()

                def progress(done: int, total: int, records: int) -> None:
                    dt = max(time.perf_counter() - t0, 1e-9)
                    bar.update(task, completed=done, total=total,
                               rate=f"{records} traj · {records / dt:,.0f} traj/s · {done / dt / 1e6:,.1f} MB/s")

                summary = split(list(inputs), outdir, opts, overwrite=overwrite, progress=progress)
        else:
            summary = split(list(inputs), outdir, opts, overwrite=overwrite)
    except SplitError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        sys.exit(2)
    except OSError as e:
        err.print(f"[red]I/O error:[/red] {escape(str(e))}", highlight=False)
        sys.exit(2)
    if not quiet:
        out = console()
        out.print(summary_table(summary))
        reasons = ", ".join(f"{k} {v}" for k, v in summary.rejected_by_reason.items()) or "none"
        warns = ", ".join(f"{k} {v}" for k, v in summary.warnings_by_code.items()) or "none"
        out.print(f"records {summary.records} = accepted {summary.accepted} + rejected {summary.rejected}"
                  f" ({reasons}); rejects in {summary.outdir}/rejects.jsonl", highlight=False)
        out.print(f"warnings kept: {warns}", highlight=False)
        if summary.accepted:
            out.print(f"{_mb(summary.input_bytes)} in → {_mb(summary.output_bytes)} of datasets out "
                      f"in {summary.seconds:.1f} s; see {summary.outdir}/README.md", highlight=False)
        else:
            out.print(f"{_mb(summary.input_bytes)} in → no examples written: every record was rejected "
                      f"({summary.seconds:.1f} s); see {summary.outdir}/rejects.jsonl", highlight=False)
    sys.exit(1 if summary.rejected else 0)
