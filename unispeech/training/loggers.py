"""Experiment loggers: a CSV log always, wandb unless it is switched off.

wandb runs offline unless the user is logged in or chose a mode: a fresh machine must never
block on a login prompt, and ``WANDB_MODE=disabled`` removes the wandb logger altogether.

The CSV log of a resumed run continues the file of the run it resumes: Lightning's own CSV
logger deletes an existing ``metrics.csv``, so a preempted job would lose every earlier
point. Rows the interrupted run wrote after its checkpoint (steps the resumed run does
again) are dropped when the resumed run writes its first row.
"""

from __future__ import annotations

import csv
import netrc
import os
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch import loggers as lightning_loggers
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

WANDB_HOST = "api.wandb.ai"


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def choose_wandb_mode() -> str:
    """The mode wandb will run in; sets WANDB_MODE=offline when nothing says otherwise."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        return "disabled"
    mode = "online" if wandb_logged_in() else "offline"
    if mode == "offline":
        os.environ["WANDB_MODE"] = "offline"
    return mode


def is_wandb_config(config: Any) -> bool:
    return "WandbLogger" in str(getattr(config, "get", lambda *_: "")("_target_", ""))


class ContinuedMetricsWriter(ExperimentWriter):
    """Lightning's CSV writer, keeping the rows an earlier run of this directory wrote."""

    def _check_log_dir_exists(self) -> None:
        self._earlier_rows: list[dict[str, str]] | None = None
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as handle:
                reader = csv.DictReader(handle)
                self._earlier_rows = list(reader)
                self.metrics_keys = sorted(reader.fieldnames or [])

    def save(self) -> None:
        if self.metrics and self._earlier_rows is not None:
            # the interrupted run may have logged past its checkpoint: this run logs those steps again
            first_step = min(int(row["step"]) for row in self.metrics)
            kept = [row for row in self._earlier_rows if row.get("step") and int(float(row["step"])) < first_step]
            with open(self.metrics_file_path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
            self._earlier_rows = None
        super().save()


class CSVLogger(lightning_loggers.CSVLogger):
    """`<run>/csv/metrics.csv`, continued (not replaced) when the run is resumed."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ContinuedMetricsWriter(log_dir=self.log_dir)
        return self._experiment


def ensure_csv_logger(loggers: list[Logger], output_dir: Path) -> list[Logger]:
    """The CSV log feeds the end-of-run plots and the tests: always keep one."""
    if not any(isinstance(logger, lightning_loggers.CSVLogger) for logger in loggers):
        loggers.append(CSVLogger(save_dir=str(output_dir), name="csv", version=""))
    return loggers


def csv_metrics_file(loggers: list[Logger]) -> Path | None:
    for logger in loggers:
        if isinstance(logger, lightning_loggers.CSVLogger):
            return Path(logger.log_dir) / "metrics.csv"
    return None
