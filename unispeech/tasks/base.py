"""What every UniSpeech task shares: optimizer + per-step schedule, step seeding, throughput.

Per-step seeding: at the start of every (micro-)batch the global torch RNG (dropout, Gumbel
noise) and the mask/negative generator are reseeded from (seed, step, rank), and the model's
layerdrop generators from (seed, step) alone. Every random draw is then a function of the
step, so (1) resuming from a checkpoint reproduces the uninterrupted run exactly and (2)
layerdrop skips the same layers on every DDP rank, which keeps every parameter in the graph
on every rank without ``find_unused_parameters``.

Non-finite updates: after backward (and after every ``on_before_optimizer_step`` hook, so
the CTC task's frozen transformer grads are already dropped) and before clipping, the total
gradient norm is computed and logged (``train/grad_norm``). If it is NaN/inf, every
gradient is set to None: AdamW skips such parameters, so neither the weights nor the
optimizer state change (under fp16 AMP the GradScaler skips the update itself, and the
grads stay: it reads them to lower its scale). Under DDP the gradients are all-reduced before this check, so a NaN
on one rank makes every rank skip the same update, and stop at the same step, without any
extra communication. The update still counts as a step (the LR schedule, Gumbel τ and the
CTC ramp advance), which keeps the schedules tied to the run's length.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn

from unispeech.data.audio import SAMPLING_RATE
from unispeech.tasks.diagnostics import NonFiniteUpdates, check_limit, logger, total_grad_norm
from unispeech.tasks.optim import build_optimizer
from unispeech.tasks.schedules import constant

NONFINITE_KEY = "unispeech_nonfinite"  # the skipped-update counters, in the checkpoint
CONFIG_KEY = "unispeech_config"  # the full model config, in the checkpoint
KIND_KEY = "unispeech_task"  # the task kind, in the checkpoint
LENGTH_KEY = "unispeech_total_steps"  # the run length the schedules followed, in the checkpoint


class NonFiniteLossError(RuntimeError):
    """Too many updates in a row had NaN/inf gradients; the message says which and what to try."""


class SpeechTask(L.LightningModule):
    """Base LightningModule: subclasses build ``self.model`` and implement the steps.

    A subclass declares what it is, once: ``kind`` (recorded in its checkpoints),
    ``model_class`` (what it trains and what inference rebuilds), ``data_mode`` (the
    ``UniSpeechDataModule`` mode it reads) and ``data_arguments`` (what it needs from the
    data). ``unispeech.tasks.registry`` maps kinds to classes; nothing else switches on them.

    ``optimizer`` and ``scheduler`` are partials built by Hydra (``_target_`` + ``_partial_``):
    ``optimizer(param_groups)`` and ``scheduler(optimizer, total_steps=N)``.
    """

    kind: ClassVar[str]
    model_class: ClassVar[type[nn.Module]]
    data_mode: ClassVar[str]
    from_data: ClassVar[tuple[str, ...]] = ()  # the constructor arguments `data_arguments` fills
    # hyper-parameters that are objects (Hydra partials), not plain values: kept out of the
    # checkpoint, which must load with torch.load(weights_only=True)
    NOT_HYPERPARAMETERS: ClassVar[tuple[str, ...]] = ("optimizer", "scheduler")

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        seed: int = 0,
        max_consecutive_nonfinite: int | None = 10,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer or functools.partial(torch.optim.AdamW, lr=5e-4)
        self.scheduler_factory = scheduler or constant
        self.seed = int(seed)
        self._step_started: float | None = None
        self._mask_generator: torch.Generator | None = None
        self._nonfinite = NonFiniteUpdates(check_limit("max_consecutive_nonfinite", max_consecutive_nonfinite))
        self._loss_finite: torch.Tensor | None = None  # over the micro-batches of this update

    # -- optimisation ---------------------------------------------------------------
    @classmethod
    def data_arguments(cls, datamodule: Any) -> dict[str, Any]:
        """The constructor arguments that come from the data (vocabulary, labels, ...): the
        ``from_data`` names, read from a set-up ``UniSpeechDataModule``."""
        raise NotImplementedError

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.optimizer_factory, self.model)
        scheduler = self.scheduler_factory(optimizer, total_steps=self._total_steps())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_before_backward(self, loss: torch.Tensor) -> None:
        # kept on the device (no sync): read only to word the message of a skipped update
        finite = torch.isfinite(loss.detach()).all()
        self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Log the gradient norm before clipping; skip (or stop on) a non-finite update.

        Lightning calls this after the ``on_before_optimizer_step`` hooks and before the
        optimizer step; under fp16 AMP the gradients are unscaled by then, except for an
        optimizer that unscales inside its own step (fused AdamW).
        """
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        norm = total_grad_norm(parameters)
        finite = bool(torch.isfinite(norm))  # the one host sync of the check
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)  # fp16 AMP's GradScaler
        if scaler is not None and getattr(optimizer, "_step_supports_amp_scaling", False):
            norm = norm / scaler.get_scale()  # a fused AdamW unscales in its step: these grads are still scaled
        self.log("train/grad_norm", norm, on_step=True, batch_size=1)
        loss_finite = True if self._loss_finite is None else bool(self._loss_finite)
        self._loss_finite = None
        step = int(self.global_step)
        self._nonfinite.record(step, finite)
        self.log("train/skipped_nonfinite", float(self._nonfinite.total), on_step=True, batch_size=1)
        if finite:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        if scaler is None:  # a GradScaler skips this update itself (and needs the grads to see why)
            for p in parameters:
                p.grad = None  # AdamW skips them: no update, no moment or step-count change
        if self._nonfinite.limit_reached:
            raise NonFiniteLossError(self._nonfinite.stop_message(step, loss_finite, str(self.trainer.precision)))
        if self.global_rank == 0:
            logger.warning(self._nonfinite.skipped_message(step, loss_finite))

    def _total_steps(self) -> int:
        """The run's length in updates: ``scheduler.total_steps``, else the trainer's."""
        configured = getattr(self.scheduler_factory, "keywords", {}).get("total_steps")
        if configured:
            return int(configured)
        steps = self.trainer.estimated_stepping_batches
        if steps is None or steps == float("inf"):
            raise ValueError(
                "scheduler.total_steps must be set when trainer.max_steps is -1 and max_epochs is unbounded"
            )
        return int(steps)

    # -- reproducibility ----------------------------------------------------------------
    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # micro-batches of one accumulated step must not share their random draws
        accumulate = max(1, int(self.trainer.accumulate_grad_batches))
        step = int(self.global_step) * accumulate + batch_idx % accumulate
        torch.manual_seed(_mix(self.seed, step, 2 * self.global_rank + 1))
        self._mask_generator = torch.Generator(device=self.device)
        self._mask_generator.manual_seed(_mix(self.seed, step, 2 * self.global_rank + 2))
        for module in self.model.modules():
            generator = getattr(module, "layerdrop_generator", None)
            if isinstance(generator, torch.Generator):
                generator.manual_seed(_mix(self.seed, step, 0))  # same on all ranks
        if self._step_started is None:
            self._step_started = time.perf_counter()

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # counted while the batch is still on the host: on a GPU, reading the sum back from
        # the device every step would stall the CPU until the step's kernels had run
        if isinstance(batch, dict) and "attention_mask" in batch:
            batch["audio_seconds"] = float(batch["attention_mask"].sum()) / SAMPLING_RATE
        return batch

    def log_throughput(self, batch: dict) -> None:
        """Audio hours per second (per rank) between successive training batches."""
        now = time.perf_counter()
        if self._step_started is not None:
            elapsed = max(now - self._step_started, 1e-9)
            audio_seconds = batch["audio_seconds"]
            self.log("train/audio_hours_per_s", audio_seconds / 3600 / elapsed, on_step=True, batch_size=1)
            self.log("train/audio_seconds", audio_seconds, on_step=True, batch_size=1)
        self._step_started = now

    def log_lr(self) -> None:
        optimizer = self.optimizers(use_pl_optimizer=False)
        self.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True, prog_bar=True, batch_size=1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the full architecture (a fine-tuned model's comes from its pretrained source, not
        # from our hyper-parameters): export and transcription need nothing else
        checkpoint[CONFIG_KEY] = self.model.config.to_dict()
        checkpoint[KIND_KEY] = self.kind
        checkpoint[LENGTH_KEY] = self._total_steps()
        checkpoint[NONFINITE_KEY] = self._nonfinite.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        before, now = checkpoint.get(LENGTH_KEY), self._total_steps() if fitting else None
        if fitting and before is not None and before != now:
            logger.warning(
                "resuming a run whose schedules followed %d updates with %d: the LR schedule (and the Gumbel "
                "temperature and CTC ramp, when relative to the run) now follow %d; to extend a run without "
                "changing its schedule, set task.module.scheduler.total_steps to the final length from the start",
                before,
                now,
                now,
            )
        # a resumed run keeps counting skipped updates (and a streak) where it stopped
        if NONFINITE_KEY in checkpoint:
            self._nonfinite.load_state_dict(checkpoint[NONFINITE_KEY])

    def frame_lengths(self, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.get_feat_extract_output_lengths(attention_mask.sum(-1)).long()


def _mix(seed: int, step: int, stream: int) -> int:
    """A distinct 63-bit seed per (seed, step, stream)."""
    return (seed * 1_000_003 + step * 7_919 + stream * 104_729 + 0x5EED) % (2**63 - 1)
