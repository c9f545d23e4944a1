"""Callbacks of a UniSpeech training run.

- ``PreemptionCheckpoint``: on SIGTERM (a preempted cloud VM, ``scancel``, a SLURM time
  limit) save ``last.ckpt`` after the current step, before Lightning stops the run; and when
  ``max_steps`` ends the run inside an epoch, leave ``last.ckpt`` in that mid-epoch state, so
  that extending the run (``ckpt_path=last trainer.max_steps=MORE``) goes on with the rest of
  the epoch exactly as an uninterrupted run would.
- ``TrainingCurves``: after fit, a PNG next to the checkpoints, drawn from the CSV log
  (matplotlib, Agg backend: no display needed): the loss parts, the error rates (val/per,
  val/cer, val/wer of a CTC run; a pretraining run's phone PER), and pretraining's
  diagnostics (contrastive accuracy, codebook use: codevector perplexity, unused codevectors).
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
        self.mid_epoch_path = Path(dirpath) / ("mid-epoch-" + filename)
        self.saved_at_step: int | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        # the usual case: the signal arrived during the step; Lightning stops the run
        # (SIGTERMException) once the step's remaining hooks have run
        if trainer.received_sigterm:
            self._save(trainer)
        elif stops_inside_an_epoch(trainer):
            # Lightning marks the epoch complete before its end-of-epoch checkpoint, and a run
            # continued from that one would start the next epoch and never see the rest of this
            # one: keep the state of this step, to become last.ckpt once the run has ended
            # (the whole state, optimizer included; saying so also keeps Lightning from logging
            # that it defaulted to it)
            trainer.save_checkpoint(str(self.mid_epoch_path), weights_only=False)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after every on_train_end, where ModelCheckpoint may write last.ckpt once more
        if trainer.is_global_zero and self.mid_epoch_path.is_file():
            self.mid_epoch_path.replace(self.path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # the signal arrived after the hook above (in a later callback, the LR scheduler or
        # logger step, or while the next batch loaded): Lightning stops at its next check
        # without another step, so the state is still that of the last finished step
        if isinstance(exception, SIGTERMException):
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        if self.saved_at_step == trainer.global_step:
            return
        trainer.save_checkpoint(str(self.path), weights_only=False)  # the whole state: a resume point
        self.saved_at_step = trainer.global_step
        rank_zero_info(f"SIGTERM received: saved {self.path} at step {trainer.global_step}")


def stops_inside_an_epoch(trainer: L.Trainer) -> bool:
    """This batch is the run's last update (``max_steps``) and not the last of its epoch."""
    final = 0 < trainer.max_steps <= trainer.global_step
    return final and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


# The panels of the curves PNG: (title, metric names without their train/ or val/ stage).
# A panel is drawn when one of its series was logged, so a CTC run gets its loss and error
# rates, a pretraining run its loss parts, PER, contrastive accuracy and codebook use.
CURVE_PANELS = (
    ("loss", ("loss",)),
    ("contrastive_loss", ("contrastive_loss",)),
    ("diversity_loss", ("diversity_loss",)),
    ("ctc_loss", ("ctc_loss",)),
    ("error rate", ("per", "cer", "wer")),
    ("accuracy", ("accuracy",)),
    ("contrastive_accuracy", ("contrastive_accuracy",)),
    ("codevector_perplexity", ("codevector_perplexity",)),
    ("unused_codevectors", ("unused_codevectors",)),
)
PLOTTED_METRICS = tuple(name for _, names in CURVE_PANELS for name in names)
CURVE_STAGES = ("train", "val")


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
                if stage in CURVE_STAGES and name in PLOTTED_METRICS:
                    number = float(value)
                    if math.isfinite(number):
                        curves[f"{stage}/{name}"].append((step, number))
    return dict(curves)


def plotted_series(curves: dict[str, list[tuple[int, float]]]) -> list[tuple[str, list[str]]]:
    """The panels the PNG draws from ``curves`` (as ``read_curves`` gives them): (title,
    series keys such as ``val/per``), in CURVE_PANELS order, panels without data left out."""
    panels = []
    for title, names in CURVE_PANELS:
        series = [f"{stage}/{name}" for name in names for stage in CURVE_STAGES if curves.get(f"{stage}/{name}")]
        if series:
            panels.append((title, series))
    return panels


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = plotted_series(curves)
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
    for axis, (title, series) in zip(axes.flat, panels):
        for key in series:
            stage, _, name = key.partition("/")
            label = stage if name == title else key  # "val/per" in the error-rate panel
            axis.plot(*zip(*curves[key]), "-" if stage == "train" else "o-", label=label, markersize=3)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.legend()
    for axis in list(axes.flat)[len(panels) :]:
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
