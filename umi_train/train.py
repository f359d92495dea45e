"""Fine-tune one model on one role dataset with transformers' Trainer (accelerate underneath).

Works unchanged under ``accelerate launch`` (DDP / FSDP / DeepSpeed): the Trainer picks the
distributed setup up from the environment; only rank 0 writes the run summary.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from umi_cli.terminal import interactive
from umi_train import ROLES, UserError, __version__
from umi_train.data import OVERLONG_POLICIES, TokenStats, role_shards, tokenize_role
from umi_train.models import TINY, model_key, resolve_model
from umi_train.runstate import (
    RUN_FILE,
    atomic_dir,
    clear_run,
    complete_checkpoint,
    decide,
    identity,
    last_complete_checkpoint,
    write_json_atomic,
)
from umi_train.throughput import count_params, cuda_device, flops_per_token, mfu, peak_memory_gb
from umi_train.tracking import REPORT_TO, attach, check_report_to, tracking_callback
from umi_train.verify import located_read_errors, verify_data

log = logging.getLogger("umi_train")

SUMMARY = "summary.json"
MODEL_DIR = "model"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainConfig:
    """One role's run. Field names are also the YAML keys of a pipeline stage."""

    data: Path
    role: str
    output_dir: Path
    model: str = "tiny"
    epochs: float = 2.0
    lr: float = 5e-5
    warmup_ratio: float = 0.4
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_length: int = 4096
    batch_size: int = 4
    grad_accum: int = 1
    tokens_per_step: int | None = None  # token-budget steps (whole examples) instead of batch_size x grad_accum
    tokens_per_batch: int | None = None  # micro-batch budget per device [tokens_per_step / processes]
    chunked_loss: bool = True  # lm_head + cross-entropy in chunks of label tokens (never all logits at once)
    max_steps: int = -1
    bf16: bool = True
    gradient_checkpointing: bool = True
    packing: bool = True
    overlong: str = "drop"
    resume: str = "auto"
    save_steps: int = 500
    save_total_limit: int = 2
    logging_steps: int = 10
    seed: int = 42
    lora: dict[str, Any] | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    num_proc: int | None = None
    tiny_vocab: int = 2000
    quiet: bool = False
    report_to: str = "none"  # tensorboard | wandb | mlflow | none (transformers' integrations)
    run_name: str | None = None  # tracker run name [RUNDIR's name]
    overwrite: bool = False  # replace a run trained from different data / model / options
    callbacks: list[Any] = field(default_factory=list)  # library use only (tests, notebooks)

    def __post_init__(self) -> None:
        self.data, self.output_dir = Path(self.data), Path(self.output_dir)
        if self.role not in ROLES:
            raise UserError(f"unknown role {self.role!r}: expected one of {', '.join(ROLES)}")
        if self.overlong not in OVERLONG_POLICIES:
            raise UserError(f"unknown --overlong {self.overlong!r}: expected one of {', '.join(OVERLONG_POLICIES)}")
        if not (self.resume in ("auto", "never") or Path(self.resume).is_dir()):
            raise UserError(f"--resume must be auto, never or a checkpoint directory, got {self.resume!r}")
        if self.max_length < 8:
            raise UserError(f"--max-length {self.max_length} is too small")
        for name in ("tokens_per_step", "tokens_per_batch"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 8):
                raise UserError(f"--{name.replace('_', '-')} must be a whole number of tokens >= 8, got {value!r}")
        if self.tokens_per_batch is not None and self.tokens_per_step is None:
            raise UserError("--tokens-per-batch sets the micro-batch of --tokens-per-step; give --tokens-per-step too")
        if self.report_to not in REPORT_TO:
            raise UserError(f"--report-to {self.report_to!r}: expected one of {', '.join(REPORT_TO)}")


CONFIG_KEYS = frozenset(f.name for f in fields(TrainConfig)) - {"callbacks"}


def parse_lora(spec: str | dict[str, Any] | bool | None) -> dict[str, Any] | None:
    """``"r=16,alpha=32,dropout=0.05,target=q_proj+v_proj"`` (or a YAML mapping) -> LoRA options."""
    if spec is None or spec == "" or spec is False:
        return None
    if isinstance(spec, dict):
        items = dict(spec)
    else:
        items = {}
        for part in str(spec).split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise UserError(f"--lora: expected key=value, got {part!r}")
            items[key.strip()] = value.strip()
    known = {"r", "alpha", "dropout", "target"}
    unknown = set(items) - known
    if unknown:
        raise UserError(f"lora: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    target = items.get("target", "all-linear")
    if isinstance(target, str) and target != "all-linear":
        target = [t for t in target.replace("+", " ").split() if t]
    try:
        return {
            "r": int(items.get("r", 16)),
            "alpha": int(items.get("alpha", 32)),
            "dropout": float(items.get("dropout", 0.05)),
            "target": target,
        }
    except ValueError as exc:
        raise UserError(f"lora: {exc}") from None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else None


def _load_model_and_tokenizer(cfg: TrainConfig, model_path: str, bf16: bool, local_only: bool = True):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code, "local_files_only": local_only}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, use_fast=True, **kwargs)
        mkw: dict[str, Any] = {"dtype": torch.float32, **kwargs}
        if cfg.attn_implementation:
            mkw["attn_implementation"] = cfg.attn_implementation
        model = AutoModelForCausalLM.from_pretrained(model_path, **mkw)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load model {model_path!r}: {first}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"{model_path}: a fast tokenizer is required (tokenizer.json)")
    if tokenizer.eos_token_id is None:
        raise UserError(f"{model_path}: the tokenizer has no EOS token")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # only used for padding; labels are padded with -100
    # umi drops or trims over-long examples itself and says so in the summary: transformers'
    # "Token indices sequence length is longer than …" warning would only repeat it, less precisely
    tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
    return model, tokenizer


class _DropMessages(logging.Filter):
    """Library log lines that umi handles or that carry nothing for the user."""

    NOISE = ("mtime may not be reliable",)  # checkpoint rotation on a fast run: harmless fallback

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in self.NOISE)


def _quiet_library_logs() -> None:
    flt = _DropMessages()
    for name in ("transformers.trainer_utils", "transformers.trainer"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(flt)


def _checkpointing_args(args_cls, on: bool) -> dict[str, Any]:
    """Activation checkpointing under whichever name this transformers version uses (renamed in 5.x)."""
    prefix = "activation" if "activation_checkpointing" in args_cls.__dataclass_fields__ else "gradient"
    return {
        f"{prefix}_checkpointing": on,
        f"{prefix}_checkpointing_kwargs": {"use_reentrant": False} if on else None,
    }


def _set_library_progress(on: bool) -> None:
    """transformers/datasets draw their own bars (weight loading, shard writing): follow our setting."""
    import datasets
    from transformers.utils import logging as hf_logging

    if on:
        hf_logging.enable_progress_bar()
        datasets.enable_progress_bars()
    else:
        hf_logging.disable_progress_bar()
        datasets.disable_progress_bars()


class _RunClock:
    """Trainer callback: where the session started (resume step) and how many real tokens it saw."""

    def __init__(self) -> None:
        self.start_step = 0
        self.start_tokens = 0
        self.t0 = 0.0
        self.seconds = 0.0
        self.tokens = 0

    def on_train_begin(self, args, state, control, **kw):
        self.start_step, self.start_tokens, self.t0 = (
            state.global_step,
            state.num_input_tokens_seen,
            time.time(),
        )

    def on_train_end(self, args, state, control, **kw):
        self.seconds = time.time() - self.t0
        self.tokens = state.num_input_tokens_seen - self.start_tokens


def _as_callback(clock: _RunClock):
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        on_train_begin = clock.on_train_begin
        on_train_end = clock.on_train_end

    return Clock()


CLEARED = (CHECKPOINTS, MODEL_DIR, SUMMARY, RUN_FILE, "data-report.json", "data-manifest.json", "adapter", "init")


@dataclass
class _Plan:
    """What a run does with its directory, decided once (by the main process) for every rank."""

    action: str  # skip | resume | fresh | clear
    previous: dict[str, Any] | None  # the finished run's summary (for a skip)
    last_ckpt: str | None  # the checkpoint to resume from


def _plan_run(cfg: TrainConfig, ident: dict[str, Any], run_doc: dict[str, Any]) -> _Plan:
    """Decide skip / resume / fresh / clear for ``cfg.output_dir`` and prepare it: clear what a
    different run left, record this run's identity in run.json. The main process alone runs this."""
    out = cfg.output_dir
    previous = read_summary(out)
    finished = bool(previous and previous.get("status") == "done")
    ckpt_root = out / CHECKPOINTS
    if cfg.resume == "never":
        action = "clear" if out.exists() else "fresh"
    elif cfg.resume == "auto":
        has_ckpt = ckpt_root.is_dir() and any(ckpt_root.glob("checkpoint-*"))
        action = decide(out, ident, finished, has_ckpt, cfg.overwrite)
    else:
        if not complete_checkpoint(Path(cfg.resume)):
            raise UserError(f"--resume {cfg.resume}: not a complete checkpoint (no readable trainer_state.json)")
        action = "resume"
    if action == "skip":
        return _Plan(action, previous, None)
    if action == "clear":  # before anything of this run is written
        clear_run(out, CLEARED)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / RUN_FILE, {**run_doc, "identity": ident})
    last_ckpt: str | None = None
    if cfg.resume == "auto":
        last_ckpt = last_complete_checkpoint(ckpt_root)
    elif cfg.resume != "never":
        last_ckpt = cfg.resume
    return _Plan(action, previous, last_ckpt)


def _world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _shared_plan(plan) -> _Plan:
    """Run ``plan()`` on the main process only and hand its result to every rank: the others never
    look at the run directory while the main process clears it or rewrites run.json (a rank that
    decided for itself could skip while the others train, and hang them, or resume a cleared
    checkpoint). A refusal on the main process is raised on every rank, so none is left waiting."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return plan()
    payload: list[Any] = [None]
    failure: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            payload[0] = ("ok", plan())
        except UserError as exc:
            payload[0] = ("user_error", str(exc))
        except BaseException as exc:  # said to the other ranks, then raised here
            failure = exc
            payload[0] = ("error", f"{type(exc).__name__}: {exc}")
    dist.broadcast_object_list(payload, src=0)
    if failure is not None:
        raise failure
    kind, value = payload[0]
    if kind == "user_error":
        raise UserError(value)
    if kind == "error":
        raise RuntimeError(f"the main process failed while preparing the run directory ({value})")
    return value


NEW_OPTION_DEFAULTS = {"tokens_per_step": None, "tokens_per_batch": None, "chunked_loss": True}


@dataclass
class _Run:
    """What every phase of one ``train_role`` run shares, decided once at its start."""

    cfg: TrainConfig
    init_from: str | None
    data_check: Any  # verify.DataCheck
    run_name: str
    umi_config: dict[str, Any]
    args: Any  # TrainingArguments
    last_ckpt: str | None
    cuda: bool
    bf16: bool
    progress: bool
    notes: list[str]
    model_ref: str  # a path or hub id for from_pretrained (resolved once: a hub probe costs seconds)
    local_only: bool
    device_name: str | None = None
    peak_tflops: float | None = None


@dataclass
class _Model:
    model: Any
    tokenizer: Any
    attention: str  # which attention path, and why
    init_digest: str
    params: tuple[int, int] = (0, 0)  # (all, trainable), counted once LoRA is on


@dataclass
class _Data:
    train: Any
    dev: Any
    stats: dict[str, TokenStats]


@dataclass
class _Batches:
    """How the train set reaches the model: the collator, the token budget, the loss path."""

    batching: str  # flatten | rows | pad
    reason: str
    collate: Any
    budget: _Budget | None
    train: Any  # the train set as the Trainer iterates it (token-budget groups or examples)
    loss_path: str


def train_role(
    cfg: TrainConfig,
    init_from: str | None = None,
    *,
    prebuilt: tuple[Any, Any] | None = None,
    save: bool = True,
) -> dict[str, Any]:
    """Train ``cfg.role`` from ``cfg.model`` (or resume), save the model, return the run summary.

    Library-only, for the GPU benchmark (``benchmarks/bench_train.py``), which times this very path
    on models built from configs in process: ``prebuilt`` is ``(model, tokenizer)`` already in
    memory, used instead of loading ``cfg.model``; ``save=False`` skips writing ``model/`` and
    ``summary.json`` (a 7B model is 27 GB in fp32) and returns the summary all the same."""
    run = _start(cfg, init_from, prebuilt)
    if isinstance(run, dict):  # a finished identical run: skipped
        return run
    m = _prepare_model(run, prebuilt)
    data = _prepare_data(run, m.tokenizer)
    batches = _prepare_batches(run, m, data)
    trainer, result, dev_loss, clock = _fit(run, m, data, batches)
    if save:
        _save_model(trainer, cfg, m.tokenizer, cfg.output_dir)
    if not trainer.is_world_process_zero():
        return {}
    summary = _summarize(run, m, data, batches, trainer, result, dev_loss, clock)
    if save:
        write_json_atomic(cfg.output_dir / SUMMARY, summary)  # last: its presence means the run is complete
    return summary


def _start(cfg: TrainConfig, init_from: str | None, prebuilt) -> _Run | dict[str, Any]:
    """Checks, the run directory's plan (skip / resume / fresh / clear) and the TrainingArguments;
    a skipped run's summary instead of a ``_Run``."""
    out = cfg.output_dir
    check_report_to(cfg.report_to)
    data_check = verify_data(cfg.data, cfg.role)  # refuses missing, extra, changed or corrupt shards
    # local first; fails fast offline (a prebuilt model is named, not loaded)
    model_ref, local_only = (cfg.model, True) if prebuilt is not None else resolve_model(cfg.model)
    options = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    for key, default in NEW_OPTION_DEFAULTS.items():  # a run recorded before these options still matches
        if options.get(key) == default:
            options.pop(key)
    ident = identity(data_check.digest, model_key(cfg.model), options)
    run_name = cfg.run_name or out.resolve().name
    umi_config = {
        "umi_version": __version__,
        "role": cfg.role,
        "data": str(cfg.data),
        "data_digest": data_check.digest,
        "manifest_sha256": data_check.manifest_sha256,
        "split_umi_version": data_check.umi_version,
        "model": cfg.model,
        "init_from": init_from or cfg.model,
        "run_name": run_name,
    }
    # One process decides now, before the heavy imports (a refused run fails fast). Under a
    # distributed launcher the main process decides once the process group is up (below) and
    # shares the decision: every rank acting on its own view of the directory races the clear.
    plan = None if _world_size() > 1 else _plan_run(cfg, ident, umi_config)
    if plan is not None and plan.action == "skip":
        return {**(plan.previous or {}), "skipped": True}
    import torch  # after the checks above: a wrong path or an offline hub fails before this import
    from transformers import TrainingArguments, set_seed

    _quiet_library_logs()

    cuda = torch.cuda.is_available()
    device_name, peak = cuda_device()
    bf16 = cfg.bf16 and cuda and torch.cuda.is_bf16_supported()
    notes: list[str] = list(data_check.notes)
    if cfg.bf16 and not bf16:
        notes.append("bf16 switched off: no CUDA device with bf16 support (training in fp32)")
    progress = interactive(cfg.quiet)
    _set_library_progress(progress)
    set_seed(cfg.seed)
    args = TrainingArguments(
        output_dir=str(out / CHECKPOINTS),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type=cfg.scheduler,
        weight_decay=cfg.weight_decay,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        bf16=bf16,
        **_checkpointing_args(TrainingArguments, cfg.gradient_checkpointing),
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        report_to=cfg.report_to,
        run_name=run_name,
        seed=cfg.seed,
        disable_tqdm=not progress,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        # on a machine with no accelerator at all, say so: accelerate only sets up multi-process
        # CPU training (gloo) under torchrun when told the run is on CPU; else each rank trains alone
        use_cpu=not _has_accelerator(),
    )
    if plan is None:  # distributed: TrainingArguments has set the process group up
        plan = _shared_plan(lambda: _plan_run(cfg, ident, umi_config))
        if plan.action == "skip":
            return {**(plan.previous or {}), "skipped": True}
    return _Run(cfg, init_from, data_check, run_name, umi_config, args, plan.last_ckpt, cuda, bf16, progress,
                notes, model_ref, local_only, device_name, peak)


def _prepare_model(run: _Run, prebuilt) -> _Model:
    """Model + tokenizer (the offline tiny model is built once per run dir, then reloaded on resume),
    and the attention path."""
    cfg, out = run.cfg, run.cfg.output_dir
    model_path = run.model_ref
    with run.args.main_process_first(desc="prepare model"):
        if cfg.model == TINY and prebuilt is None:
            from umi_train.tiny import make_tiny, tiny_complete

            init_dir = out / "init"
            if not tiny_complete(init_dir):
                if init_dir.exists():
                    log.warning("%s is incomplete (a run was stopped while writing it); rebuilding it", init_dir)
                log.info("building the offline tiny model + tokenizer from %s/%s", cfg.data, cfg.role)
                shards = role_shards(cfg.data, cfg.role, "train")
                with located_read_errors(shards):
                    make_tiny(shards, init_dir, seed=cfg.seed, vocab_size=cfg.tiny_vocab, overwrite=True)
            model_path = str(init_dir)
    from umi_train import varlen

    varlen.register()  # --attn-implementation umi_varlen must be loadable
    if prebuilt is not None:
        model, tokenizer = prebuilt
    else:
        model, tokenizer = _load_model_and_tokenizer(cfg, model_path, run.bf16, run.local_only)
    # the varlen kernels serve packed rows; a --no-packing run keeps the model's own attention
    switch, attention = varlen.default_attention(model, cfg.attn_implementation if cfg.packing else "", run.cuda)
    if not cfg.packing and not cfg.attn_implementation:
        attention = f"attn_implementation={model.config._attn_implementation} (model default; --no-packing)"
    if switch:
        model.set_attn_implementation(switch)
    init_digest = weights_digest(model)
    limit = tokenizer.model_max_length
    if isinstance(limit, int) and 0 < limit < cfg.max_length:
        run.notes.append(
            f"--max-length {cfg.max_length} is above the model's {limit} tokens (tokenizer model_max_length): "
            f"examples longer than {limit} tokens are trained on positions the model was not built for"
        )
    return _Model(model, tokenizer, attention, init_digest)


def _prepare_data(run: _Run, tokenizer) -> _Data:
    """Tokenize (cached), mask audit, overlong policy; the data report and manifest copy."""
    cfg, out = run.cfg, run.cfg.output_dir
    stats: dict[str, TokenStats] = {}
    all_shards = [p for split in ("train", "dev") for p in role_shards(cfg.data, cfg.role, split)]
    with run.args.main_process_first(desc="tokenize"), located_read_errors(all_shards):
        tokenized = {
            split: tokenize_role(
                cfg.data,
                cfg.role,
                split,
                tokenizer,
                max_length=cfg.max_length,
                overlong=cfg.overlong,
                cache_dir=out / "cache",
                num_proc=cfg.num_proc,
                quiet=not run.progress,
            )
            for split in ("train", "dev")
        }
        (train_ds, stats["train"]), (dev_ds, stats["dev"]) = tokenized["train"], tokenized["dev"]
    return _Data(train_ds, dev_ds, stats)


def _prepare_batches(run: _Run, m: _Model, data: _Data) -> _Batches:
    """Packing if the model provably keeps packed examples apart, else padding; the token budget;
    LoRA; the loss path. Wraps ``m.model`` (LoRA) in place."""
    cfg, args, out = run.cfg, run.args, run.cfg.output_dir
    from umi_train.collate import disable_cache, make_collator, packing_mode, packing_supported

    model, tokenizer = m.model, m.tokenizer
    disable_cache(model)  # packed batches are only isolated without a KV cache; training never needs one
    pad_multiple = 8 if run.cuda else None
    batching, packing_reason, collate = "pad", "packing disabled (--no-packing)", None
    if cfg.packing:
        mode = packing_mode(model)
        packed = make_collator(tokenizer, mode, pad_multiple, flash_kwargs=mode == "flatten")
        # under bf16 the probe runs in autocast too: the kernel it checks is the one training uses
        ok, packing_reason = packing_supported(model, packed, autocast=_bf16_dtype() if run.bf16 else None)
        if ok:
            batching, collate = mode, packed  # the Trainer gets the very collator the probe checked
        # else: the summary's batching line says "dynamic padding" and why (said once, there)
    packing = batching != "pad"
    # packed batches gain nothing from length grouping (rows are filled across lengths); padding does
    args.train_sampling_strategy = "random" if packing else "group_by_length"
    train_ds = data.train
    budget = _token_budget(cfg, args, train_ds, run.notes) if cfg.tokens_per_step else None
    if budget is not None:
        train_ds = budget.dataset
    if cfg.lora:
        m.model = model = _wrap_lora(model, cfg.lora)
    loss_path = "plain (transformers' ForCausalLMLoss over all logits)"
    sharded = _sharded_launch(args)
    if cfg.chunked_loss and sharded:
        loss_path = f"plain: the chunked loss is not tested under {sharded}"
    elif cfg.chunked_loss:
        from umi_train.loss import install_chunked_loss

        chunked, why = install_chunked_loss(model)
        loss_path = why if chunked else f"plain: {why}"
    args.prediction_loss_only = True  # the chunked loss returns no logits; only eval_loss is read
    m.params = count_params(model)

    manifest_src = cfg.data / "manifest.json"
    if args.process_index == 0:
        if manifest_src.is_file():  # (without one, data_check's note already says so)
            shutil.copyfile(manifest_src, out / "data-manifest.json")
        report = {"role": cfg.role, "train": data.stats["train"].to_dict(), "dev": data.stats["dev"].to_dict()}
        write_json_atomic(out / "data-report.json", report)
    # notes (bf16 off, no manifest …) are said once, in the run summary
    return _Batches(batching, packing_reason, collate or make_collator(tokenizer, "pad", pad_multiple), budget,
                    train_ds, loss_path)


def _fit(run: _Run, m: _Model, data: _Data, batches: _Batches):
    """The Trainer, its training and the dev loss; out of memory is a usage error (exit 2)."""
    import torch
    from transformers import PrinterCallback, ProgressCallback, Trainer

    from umi_train.collate import GroupCollator

    cfg, out = run.cfg, run.cfg.output_dir
    clock = _RunClock()
    tracker = tracking_callback(run.umi_config, out / "runs" / run.run_name) if cfg.report_to != "none" else None
    trainer = Trainer(
        model=m.model,
        args=run.args,
        train_dataset=batches.train,
        eval_dataset=data.dev,
        data_collator=GroupCollator(batches.collate),
        processing_class=m.tokenizer,
        callbacks=[_as_callback(clock), *cfg.callbacks, *([tracker] if tracker else [])],
    )
    if tracker is not None:
        attach(trainer, tracker)
    if not run.progress:
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    if run.last_ckpt:
        log.info("resuming from %s", run.last_ckpt)
    if run.cuda:
        torch.cuda.reset_peak_memory_stats()
    longest = max(data.stats["train"].longest, data.stats["dev"].longest)
    try:
        result = trainer.train(resume_from_checkpoint=run.last_ckpt)
        dev_loss = trainer.evaluate()["eval_loss"] if data.dev is not None else None
    except torch.OutOfMemoryError as exc:
        raise UserError(oom_message(cfg, run.args, batches.budget, longest, exc)) from None
    return trainer, result, dev_loss, clock


def _summarize(
    run: _Run, m: _Model, data: _Data, batches: _Batches, trainer, result, dev_loss, clock
) -> dict[str, Any]:
    """The run summary (summary.json): provenance, what was trained how, losses, speed."""
    cfg, args, budget = run.cfg, run.args, batches.budget
    n_params, n_trainable = m.params
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    summary: dict[str, Any] = {
        "status": "done",
        "role": cfg.role,
        "model": cfg.model,
        "init_from": run.init_from or cfg.model,
        "init_digest": m.init_digest,
        "data": str(cfg.data),
        "data_digest": run.data_check.digest,
        "manifest_sha256": run.data_check.manifest_sha256,
        "report_to": cfg.report_to,
        "run_name": run.run_name,
        "output_dir": str(cfg.output_dir),
        "model_dir": str(cfg.output_dir / MODEL_DIR),
        "examples": {k: v.to_dict() for k, v in data.stats.items()},
        "world_size": args.world_size,
        "global_batch_size": None if budget else cfg.batch_size * cfg.grad_accum * args.world_size,
        "tokens_per_step": cfg.tokens_per_step,
        "micro_batch_tokens": budget.micro if budget else None,
        "grad_accum": args.gradient_accumulation_steps,
        "micro_batches": len(budget.dataset) if budget else None,
        "micro_batch_fill": round(budget.dataset.fill(), 4) if budget else None,
        "attention": m.attention,
        "attn_implementation": getattr(getattr(m.model, "config", None), "_attn_implementation", None),
        "loss_path": batches.loss_path,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "params": n_params,
        "trainable_params": n_trainable,
        "packing": batches.batching != "pad",
        "batching": batches.batching,
        "packing_reason": batches.reason,
        "bf16": run.bf16,
        "notes": run.notes,
        "lora": cfg.lora,
        "resumed_from": run.last_ckpt,
        "resumed_from_step": clock.start_step,
        "steps": trainer.state.global_step,
        "epochs": cfg.epochs,
        "lr": cfg.lr,
        "warmup_ratio": cfg.warmup_ratio,
        "weight_decay": cfg.weight_decay,
        "max_length": cfg.max_length,
        "final_loss": losses[-1][1] if losses else None,
        "train_loss": result.training_loss,
        "dev_loss": dev_loss,
        "loss_history": losses,
        "tokens_seen": clock.tokens,
        "seconds": round(clock.seconds, 3),
        "tokens_per_second": round(clock.tokens / clock.seconds, 1) if clock.seconds else None,
        "tokens_per_step_seen": round(clock.tokens / max(1, trainer.state.global_step - clock.start_step), 1),
        "device": run.device_name,
        "peak_gpu_memory_gib": peak_memory_gb(),
        "peak_tflops": run.peak_tflops,
    }
    summary["mfu"] = mfu(summary["tokens_per_second"], flops_per_token(n_params, n_trainable), run.peak_tflops)
    return summary


def _save_model(trainer, cfg: TrainConfig, tokenizer, out: Path) -> None:
    """``model/`` (+ ``adapter/`` with LoRA), written beside the run dir and renamed into place:
    a kill never leaves a half-written model/. Every rank takes part (FSDP gathers the weights)."""
    model_dir = out / MODEL_DIR
    partial = out / f".{MODEL_DIR}.partial"
    if trainer.is_world_process_zero():
        shutil.rmtree(partial, ignore_errors=True)
    final = trainer.model
    if cfg.lora and trainer.is_world_process_zero():
        with atomic_dir(out / "adapter") as adapter:  # whole or absent, like model/
            final.save_pretrained(adapter)
        final = final.merge_and_unload()
    if cfg.lora:
        final.save_pretrained(partial, is_main_process=trainer.is_world_process_zero())
    else:
        trainer.save_model(str(partial))
    if not trainer.is_world_process_zero():
        return
    tokenizer.save_pretrained(partial)
    if (out / "data-manifest.json").is_file():
        shutil.copyfile(out / "data-manifest.json", partial / "data-manifest.json")
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(partial, model_dir)


@dataclass
class _Budget:
    """Token-budget steps: micro-batches of at most ``micro`` tokens, ``accum`` of them a step."""

    micro: int
    accum: int
    dataset: Any  # TokenBudgetDataset


def _token_budget(cfg: TrainConfig, args, train_ds, notes: list[str]) -> _Budget:
    """Group the train set into micro-batches of whole examples and set the Trainer up for them.

    ``--tokens-per-step`` counts real tokens over all processes; the micro-batch budget is
    ``--tokens-per-batch`` (default: the whole step on each process's share, no accumulation), raised
    to the longest example if below it (no example is ever cut), and accumulation makes up the step."""
    from umi_train.collate import TokenBudgetDataset

    step = cfg.tokens_per_step
    assert step is not None, "called for --tokens-per-step runs only"
    world = max(1, args.world_size)
    lengths = list(train_ds["length"])
    longest = max(lengths)
    micro = cfg.tokens_per_batch or -(-step // world)
    if micro < longest:
        notes.append(
            f"micro-batch budget raised from {micro:,} to {longest:,} tokens: the longest train example "
            "is never cut (lower --max-length to keep the budget)"
        )
        micro = longest
    accum = max(1, -(-step // (micro * world)))
    args.per_device_train_batch_size = 1
    args.gradient_accumulation_steps = accum
    args.remove_unused_columns = False  # items are groups of examples; GroupCollator keeps what the model takes
    args.train_sampling_strategy = "random"
    return _Budget(micro, accum, TokenBudgetDataset(train_ds, micro, lengths))


def oom_message(cfg: TrainConfig, args, budget: _Budget | None, longest: int, exc: BaseException) -> str:
    """One line for an out-of-memory stop: what was tried and what to lower."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:160]
    if budget is not None:
        tried = (
            f"--tokens-per-step {cfg.tokens_per_step:,} in micro-batches of up to {budget.micro:,} tokens "
            f"({budget.accum} a step)"
        )
        lower = "lower --tokens-per-batch (accumulation keeps --tokens-per-step)"
    else:
        tried = f"{cfg.batch_size} examples a micro-batch x {cfg.grad_accum} accumulation"
        lower = "lower --batch-size (raise --grad-accum to keep the step), or use --tokens-per-step"
    ckpt = "on" if cfg.gradient_checkpointing else "off (turn it on: --gradient-checkpointing)"
    return (
        f"out of GPU memory ({first}) with {tried}, longest example {longest:,} tokens, gradient checkpointing "
        f"{ckpt}: {lower}, or --max-length {cfg.max_length} (a shorter limit drops longer examples)"
    )


def _sharded_launch(args) -> str | None:
    """FSDP or DeepSpeed, if this run is sharded (they gather and free the lm_head weight around the
    forward, which the chunked loss's recompute in backward would call outside of)."""
    if getattr(args, "fsdp", None) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "FSDP"
    if getattr(args, "deepspeed", None) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        return "DeepSpeed"
    return None


def _bf16_dtype():
    import torch

    return torch.bfloat16


def _has_accelerator() -> bool:
    import torch

    acc = getattr(torch, "accelerator", None)
    return bool(acc.is_available()) if acc is not None else torch.cuda.is_available()


def weights_digest(model) -> str:
    """SHA-256 over the named parameters: proves which weights a run started from (GLPFT stage 2)."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().view(-1).view(dtype=_u8()).numpy().tobytes())
    return h.hexdigest()


def _u8():
    import torch

    return torch.uint8


def _wrap_lora(model, lora: dict[str, Any]):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UserError("LoRA needs peft: pip install 'umi[lora]'") from None
    conf = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["target"],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, conf)


BATCHING_LABELS = {
    "flatten": "packed, one row per batch (varlen attention)",
    "rows": "packed rows capped at the batch's longest example (dense attention)",
    "pad": "dynamic padding, length-grouped",
}


def _step_size(s: dict[str, Any]) -> str:
    """What one optimizer step holds: a token budget, or a number of examples (the recipe's)."""
    if s.get("tokens_per_step"):
        return (
            f"--tokens-per-step {s['tokens_per_step']:,} ({s.get('tokens_per_step_seen') or 0:,.0f} real tokens a step "
            f"seen; micro-batches of <= {s['micro_batch_tokens']:,} tokens, {s['grad_accum']} a step, "
            f"{s.get('micro_batch_fill') or 0:.0%} full)"
        )
    return f"{s.get('global_batch_size', '?')} examples each ({s.get('tokens_per_step_seen') or 0:,.0f} tokens a step)"


def format_summary(s: dict[str, Any]) -> str:
    """The one-screen end-of-run report."""
    if s.get("skipped"):
        return (
            f"{s['role']}: already finished in {s['output_dir']} from the same data, model and options "
            "(skipped; --overwrite or --resume never to retrain)"
        )
    tr = s["examples"]["train"]
    dev = s["examples"]["dev"]
    dropped = tr["dropped_overlong"] + tr["dropped_completion_too_long"]
    fl = s["final_loss"]
    lines = [
        f"role {s['role']}  ({s['model']} -> {s['model_dir']})",
        f"  init from        {s['init_from']}",
        f"  examples         train {tr['used']}/{tr['examples']} used, {dropped} dropped "
        f"(overlong {tr['dropped_overlong']}, completion too long {tr['dropped_completion_too_long']}), "
        f"{tr['trimmed']} prompt-trimmed [--overlong {tr['overlong_policy']}, max {tr['max_length']}]"
        + (f"; dev {dev['used']}" if dev["examples"] else "; no dev split"),
        f"  loss tokens      {tr['loss_share']:.1%} of {tr['tokens']:,} train tokens carry labels",
        f"  batching         {BATCHING_LABELS.get(s.get('batching', ''), 'dynamic padding')}: {s['packing_reason']}",
        f"  attention        {s.get('attention', 'n/a')}",
        f"  steps            {s['steps']}, {_step_size(s)} "
        f"({s.get('world_size', 1)} process{'es' if s.get('world_size', 1) > 1 else ''})"
        + (f" (resumed from step {s['resumed_from_step']})" if s["resumed_from"] else ""),
        f"  loss             final {fl:.4f}" if fl is not None else "  loss             n/a",
    ]
    if s.get("dev_loss") is not None:
        lines[-1] += f", dev {s['dev_loss']:.4f}"
    if s.get("loss_path"):
        lines[-1] += f"; {s['loss_path']}"
    speed = f"  throughput       {s['tokens_per_second'] or 0:,.0f} tokens/s ({s['tokens_seen']:,} tokens)"
    if s.get("mfu") is not None:
        speed += f", MFU {s['mfu']:.1%} of {s['peak_tflops']:g} TFLOP/s"
    if s.get("peak_gpu_memory_gib") is not None:
        speed += f", peak GPU memory {s['peak_gpu_memory_gib']:.1f} GiB ({s.get('device')})"
    lines.append(speed)
    lines += [f"  note             {n}" for n in s["notes"]]
    lines.append(
        f"  saved            {s['model_dir']} (safetensors + tokenizer + data-manifest.json), "
        f"summary.json, data-report.json"
    )
    return "\n".join(lines)
