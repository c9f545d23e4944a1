"""What a run prints: a progress bar that reads right for step-based runs, and no noise.

- ``RunProgressBar``: Lightning's rich bar shows ``Epoch 0/-2`` when the run is bounded by
  ``max_steps`` (``max_epochs=-1``), ``train/lr: 0.000`` (three decimals hide every real LR),
  and after a mid-epoch resume ``16/8`` (the epoch's total shrinks to the remaining updates
  while the count goes on from the resumed batch). Here: ``Epoch 0 · 800 updates``, the LR in
  scientific notation, and a total counted from the start of the epoch.
- ``quiet_known_noise()``: drops, once per process, messages a user can do nothing about:
  Lightning's advertisement for its cloud logger, a torch deprecation raised inside
  Lightning's own code, and Lightning's note on a batch hook the task overrides on purpose.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class RunProgressBar(RichProgressBar):
    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_steps and trainer.max_steps > 0 and trainer.max_epochs in (None, -1):
            description = f"Epoch {current_epoch} · {trainer.max_steps} updates"
        else:
            description = f"Epoch {current_epoch}/{trainer.max_epochs - 1}"
        return f"{description:{len(self.validation_description)}}"

    @property
    def total_train_batches(self) -> int | float:
        trainer = self.trainer
        if not (trainer.max_steps and trainer.max_steps > 0):
            return trainer.num_training_batches
        # batches this epoch had seen before a mid-epoch resume + those the remaining updates need
        epoch_loop = trainer.fit_loop.epoch_loop
        done = epoch_loop.batch_progress.current.ready if epoch_loop.restarting else 0
        remaining = (trainer.max_steps - trainer.global_step) * max(1, trainer.accumulate_grad_batches)
        return min(trainer.num_training_batches, done + remaining)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        return {k: (f"{v:.2e}" if k.endswith("lr") and isinstance(v, float) else v) for k, v in metrics.items()}


class _DropAdvertisement(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_known_noise() -> None:
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdvertisement) for f in logger.filters):
            logger.addFilter(_DropAdvertisement())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)
    # intended: the task counts a batch's audio seconds on the host before it moves (base.py)
    warnings.filterwarnings("ignore", message=r"You have overridden `on_before_batch_transfer` in `LightningModule`")
