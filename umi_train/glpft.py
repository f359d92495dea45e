"""GLPFT from one pipeline file: stage 1 on ``global``, then planner/caller/summarizer from its result.

The recipe defaults (α-UMi paper / released scripts) live in ``RECIPE``; a pipeline YAML and
``--set`` overrides refine them. Each stage is an ordinary ``train_role`` run in its own directory,
so a re-run skips finished stages and resumes an interrupted one from its last checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from umi_train import UserError
from umi_train.runstate import write_json_atomic
from umi_train.train import CONFIG_KEYS, MODEL_DIR, TrainConfig, format_summary, parse_lora, train_role

log = logging.getLogger("umi_train")

STAGE2_ROLES = ("planner", "caller", "summarizer")
COMMON = {"max_length": 4096, "bf16": True, "gradient_checkpointing": True, "scheduler": "cosine"}
RECIPE: dict[str, dict[str, Any]] = {
    "global": {"epochs": 2, "lr": 5e-5, "warmup_ratio": 0.4, "weight_decay": 0.0},
    "planner": {"epochs": 1, "lr": 1e-5, "warmup_ratio": 0.2, "weight_decay": 0.01},
    "caller": {"epochs": 1, "lr": 1e-5, "warmup_ratio": 0.2, "weight_decay": 0.01},
    "summarizer": {"epochs": 2, "lr": 1e-5, "warmup_ratio": 0.4, "weight_decay": 0.01},
}
TOP_KEYS = {"model", "data", "output_dir", "common", "stage1", "stage2", "lora"}
STAGE_KEYS = CONFIG_KEYS - {"data", "role", "output_dir", "model", "callbacks", "overwrite"}


def recipe_defaults(role: str) -> dict[str, Any]:
    """Published GLPFT hyper-parameters for ``role`` (stage 1 for ``global``, stage 2 otherwise)."""
    return {**COMMON, **RECIPE[role]}


def _check_block(block: Any, where: str) -> dict[str, Any]:
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise UserError(f"{where}: expected a mapping, got {type(block).__name__}")
    unknown = sorted(set(block) - STAGE_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(STAGE_KEYS))})")
    out = {k: _coerce(k, v, where) for k, v in block.items()}
    if "lora" in out:
        out["lora"] = parse_lora(out["lora"])
    return out


_NUMERIC = {f.name: type(f.default) for f in fields(TrainConfig) if type(f.default) in (int, float)}


def _coerce(key: str, value: Any, where: str) -> Any:
    """YAML reads ``1e-5`` (no dot) as a string; accept it for numeric keys, refuse other junk clearly."""
    kind = _NUMERIC.get(key)
    if kind is None or value is None or isinstance(value, bool):
        return value
    try:
        number = float(value)
        return (
            int(number) if kind is int and number.is_integer() else (number if kind is float else int(value))
        )
    except (TypeError, ValueError):
        raise UserError(f"{where}.{key}: expected a number, got {value!r}") from None


def _set(doc: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set a.b.c=value`` (value parsed as YAML) to the pipeline document."""
    import yaml

    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UserError(f"--set: expected KEY=VALUE, got {assignment!r}")
    parts = key.strip().split(".")
    node = doc
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {key}: {p!r} is not a mapping")
    node[parts[-1]] = yaml.safe_load(raw)


def load_pipeline(path: Path, overrides: dict[str, Any] | None = None, sets: tuple[str, ...] = ()):
    """Read and validate a pipeline file; return ``(model, data, output_dir, stages)``.

    ``stages`` is a list of ``(role, options)`` with stage 1 first; options already merge recipe
    defaults < ``common`` < stage block (< ``stage2.common`` < ``stage2.<role>``).
    """
    import yaml

    if not path.is_file():
        raise UserError(f"pipeline file not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    for s in sets:
        _set(doc, s)
    for key, value in (overrides or {}).items():
        if value is not None:
            doc[key] = value
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})")
    for required in ("model", "data", "output_dir"):
        if not doc.get(required):
            raise UserError(
                f"{path}: missing {required!r} (set it in the file or with --{required.replace('_', '-')})"
            )
    common = _check_block(doc.get("common"), "common")
    if doc.get("lora") is not None:
        common["lora"] = parse_lora(doc["lora"])
    stage1 = dict(doc.get("stage1") or {})
    if stage1.pop("role", "global") != "global":
        raise UserError(f"{path}: stage1 trains the 'global' role")
    stages = [("global", {**recipe_defaults("global"), **common, **_check_block(stage1, "stage1")})]
    stage2 = doc.get("stage2") or {}
    if not isinstance(stage2, dict):
        raise UserError(f"{path}: stage2 must be a mapping")
    bad = sorted(set(stage2) - {"common", *STAGE2_ROLES})
    if bad:
        raise UserError(f"{path}: stage2: unknown key {bad[0]!r} (known: common, {', '.join(STAGE2_ROLES)})")
    s2_common = _check_block(stage2.get("common"), "stage2.common")
    listed = [r for r in STAGE2_ROLES if r in stage2] or list(STAGE2_ROLES)
    for role in listed:
        opts = {
            **recipe_defaults(role),
            **common,
            **s2_common,
            **_check_block(stage2.get(role), f"stage2.{role}"),
        }
        stages.append((role, opts))
    return str(doc["model"]), Path(doc["data"]), Path(doc["output_dir"]), stages


def run_glpft(
    path: Path,
    overrides: dict[str, Any] | None = None,
    sets: tuple[str, ...] = (),
    stage_overrides: dict[str, Any] | None = None,
    echo=print,
) -> dict[str, Any]:
    """Run both GLPFT stages; returns ``{"stages": [summary, ...], "output_dir": ...}``."""
    model, data, out, stages = load_pipeline(path, overrides, sets)
    extra = {k: v for k, v in (stage_overrides or {}).items() if v is not None}
    summaries: list[dict[str, Any]] = []
    stage1_dir = out / "stage1-global"
    for role, opts in stages:
        stage = 1 if role == "global" else 2
        run_dir = stage1_dir if stage == 1 else out / f"stage2-{role}"
        init = model if stage == 1 else str(stage1_dir / MODEL_DIR)
        stage_opts = {**opts, **extra}
        if stage_opts.get("run_name"):  # one tracker run per stage
            stage_opts["run_name"] = f"{stage_opts['run_name']}-{role}"
        cfg = TrainConfig(data=data, role=role, output_dir=run_dir, model=init, **stage_opts)
        log.info("GLPFT stage %d: %s -> %s (init %s)", stage, role, run_dir, init)
        summary = train_role(cfg, init_from=init)
        if summary:
            echo(f"[stage {stage}] " + format_summary(summary))
        summaries.append(summary)
    result = {"pipeline": str(path), "output_dir": str(out), "stages": summaries}
    if all(summaries):
        write_json_atomic(out / "glpft-summary.json", result)
    return result


def format_glpft(result: dict[str, Any]) -> str:
    rows = [
        "GLPFT done: " + result["output_dir"],
        f"  {'role':<11}{'steps':>6}{'final loss':>12}{'loss tok':>10}  model",
    ]
    for s in result["stages"]:
        if not s:
            continue
        fl = s.get("final_loss")
        rows.append(
            f"  {s['role']:<11}{s['steps']:>6}{(f'{fl:.4f}' if fl is not None else 'n/a'):>12}"
            f"{s['examples']['train']['loss_share']:>10.1%}  {s['model_dir']}"
            + ("  (skipped: done)" if s.get("skipped") else "")
        )
    return "\n".join(rows)
