"""Callbacks of a UniSpeech training run.

- ``PreemptionCheckpoint``: on SIGTERM (a preempted cloud VM, ``scancel``, a SLURM time
  limit) save ``last.ckpt`` after the current step, before Lightning stops the run.
- ``TrainingCurves``: after fit, a PNG of the loss parts and codevector perplexity next to
  the checkpoints, drawn from the CSV log (matplotlib, Agg backend: no display needed).
- ``SeenUtterances``: writes the utterance ids each rank trained on per epoch; the check
  that a sharded epoch uses every utterance exactly once.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from unispeech.training.loggers import csv_metrics_file


class PreemptionCheckpoint(L.Callback):
    def __init__(self, dirpath: str, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self.saved_at_step: int | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        # the usual case: the signal arrived during the step; Lightning stops the run
        # (SIGTERMException) once the step's remaining hooks have run
        if trainer.received_sigterm:
            self._save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # the signal arrived after the hook above (in a later callback, the LR scheduler or
        # logger step, or while the next batch loaded): Lightning stops at its next check
        # without another step, so the state is still that of the last finished step
        if isinstance(exception, SIGTERMException):
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        if self.saved_at_step == trainer.global_step:
            return
        trainer.save_checkpoint(str(self.path))
        self.saved_at_step = trainer.global_step
        rank_zero_info(f"SIGTERM received: saved {self.path} at step {trainer.global_step}")


PLOTTED_METRICS = (
    "loss",
    "contrastive_loss",
    "diversity_loss",
    "ctc_loss",
    "codevector_perplexity",
    "contrastive_accuracy",
)


class TrainingCurves(L.Callback):
    def __init__(self, dirpath: str, filename: str = "training_curves.png") -> None:
        self.path = Path(dirpath) / filename

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            logger.save()  # flush the CSV before reading it
        metrics_file = csv_metrics_file(trainer.loggers)
        if metrics_file is None or not metrics_file.is_file():
            return
        curves = read_curves(metrics_file)
        if curves:
            plot_curves(curves, self.path)
            rank_zero_info(f"training curves: {self.path}")


def read_curves(metrics_file: Path) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...]} for the plotted train/ and val/ metrics."""
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with metrics_file.open(newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if not key or not value or "/" not in key:
                    continue
                stage, _, name = key.partition("/")
                name = name.removesuffix("_epoch").removesuffix("_step")
                if stage in ("train", "val") and name in PLOTTED_METRICS:
                    number = float(value)
                    if math.isfinite(number):
                        curves[f"{stage}/{name}"].append((step, number))
    return dict(curves)


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in PLOTTED_METRICS if any(k.endswith("/" + n) for k in curves)]
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names):
        for stage, style in (("train", "-"), ("val", "o-")):
            points = curves.get(f"{stage}/{name}")
            if points:
                axis.plot(*zip(*points), style, label=stage, markersize=3)
        axis.set_title(name)
        axis.set_xlabel("step")
        axis.legend()
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


class SeenUtterances(L.Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.ids: list[str] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ids = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self.ids.extend(str(i) for i in batch["ids"])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        name = f"epoch{trainer.current_epoch}_rank{trainer.global_rank}.txt"
        (self.dirpath / name).write_text("\n".join(self.ids) + "\n")
