"""Experiment tracking through transformers' own integrations (``--report-to``).

The Trainer's callbacks log the loss curve, the TrainingArguments and the model config; this
module adds what only umi knows — the umi version, the split's manifest digest, the data digest,
the role and the starting model — to the tracked config, so a logged run says exactly which
dataset it was trained on. TensorBoard event files go to ``RUNDIR/runs/<run name>``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from umi_train import UserError

if TYPE_CHECKING:
    from transformers.trainer_callback import CallbackHandler

REPORT_TO = ("none", "tensorboard", "wandb", "mlflow")
_PACKAGE = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_report_to(report_to: str) -> None:
    if report_to not in REPORT_TO:
        raise UserError(f"--report-to {report_to!r}: expected one of {', '.join(REPORT_TO)}")
    package = _PACKAGE.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise UserError(f"--report-to {report_to} needs the {package} package: pip install {package}")


def tracking_callback(umi_config: dict[str, Any], logging_dir: Path):
    """A TrainerCallback that points TensorBoard at ``logging_dir`` and adds ``umi_config`` to
    whichever tracker is active. It must come after the integration callbacks (the Trainer puts
    user callbacks last), so their writers / runs exist when it runs."""
    from transformers import TrainerCallback
    from transformers.integrations import MLflowCallback, TensorBoardCallback, WandbCallback

    text = json.dumps(umi_config, indent=2, sort_keys=True)

    class UmiTracking(TrainerCallback):
        handler: CallbackHandler | None  # the trainer's callbacks, set by attach()
        logging_dir: str

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if not state.is_world_process_zero:
                return
            for cb in self.handler.callbacks if self.handler else []:
                if isinstance(cb, TensorBoardCallback) and cb.tb_writer is not None:
                    cb.tb_writer.add_text("umi", f"```\n{text}\n```")
                    cb.tb_writer.flush()
                elif isinstance(cb, WandbCallback) and getattr(cb, "_wandb", None) is not None:
                    if cb._wandb.run is not None:
                        cb._wandb.config.update({"umi": umi_config}, allow_val_change=True)
                elif isinstance(cb, MLflowCallback) and getattr(cb, "_ml_flow", None) is not None:
                    cb._ml_flow.log_params({f"umi.{k}": str(v)[:250] for k, v in umi_config.items()})

    tracker = UmiTracking()
    tracker.handler = None
    tracker.logging_dir = str(logging_dir)
    return tracker


def attach(trainer, tracker) -> None:
    """Give the tracker the trainer's callback list and send TensorBoard to the run directory."""
    from transformers.integrations import TensorBoardCallback

    tracker.handler = trainer.callback_handler
    if not os.environ.get("TENSORBOARD_LOGGING_DIR"):
        for cb in trainer.callback_handler.callbacks:
            if isinstance(cb, TensorBoardCallback):
                cb.logging_dir = tracker.logging_dir
