"""Experiment loggers: a CSV log always, wandb unless it is switched off.

wandb runs offline unless the user is logged in or chose a mode: a fresh machine must never
block on a login prompt, and ``WANDB_MODE=disabled`` removes the wandb logger altogether.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger

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


def ensure_csv_logger(loggers: list[Logger], output_dir: Path) -> list[Logger]:
    """The CSV log feeds the end-of-run plots and the tests: always keep one."""
    if not any(isinstance(logger, CSVLogger) for logger in loggers):
        loggers.append(CSVLogger(save_dir=str(output_dir), name="csv", version=""))
    return loggers


def csv_metrics_file(loggers: list[Logger]) -> Path | None:
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            return Path(logger.log_dir) / "metrics.csv"
    return None
