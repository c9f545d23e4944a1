"""The Trainer with its loggers and callbacks, built from the config before any data work.

Building the Trainer first means a bad trainer setting or a machine without the hardware the
config asks for fails in seconds, not after hours of data preparation.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from unispeech.training.config_checks import ConfigError
from unispeech.training.console import quiet_known_noise
from unispeech.training.loggers import choose_wandb_mode, ensure_csv_logger, is_wandb_config
from unispeech.training.resumable import CountConsumedBatches


def build_loggers(cfg: DictConfig, output_dir: Path) -> list:
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None or "_target_" not in node:
            continue
        if is_wandb_config(node) and choose_wandb_mode() == "disabled":
            continue  # WANDB_MODE=disabled: no wandb objects at all
        try:
            loggers.append(instantiate(node))
        except Exception as error:
            raise ConfigError(f"logger.{name}: {error}") from error
    return ensure_csv_logger(loggers, output_dir)


def build_callbacks(cfg: DictConfig) -> list:
    # first: a checkpoint saved in another callback's on_train_batch_end must count this batch
    callbacks: list = [CountConsumedBatches()]
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None or "_target_" not in node:
            continue
        try:
            callbacks.append(instantiate(node))
        except Exception as error:
            raise ConfigError(f"callbacks.{name}: {error}") from error
    return callbacks


def build_trainer(cfg: DictConfig, output_dir: Path) -> tuple[L.Trainer, list]:
    """(Trainer, its loggers)."""
    quiet_known_noise()
    loggers = build_loggers(cfg, output_dir)
    try:
        trainer = instantiate(
            cfg.trainer, logger=loggers, callbacks=build_callbacks(cfg), default_root_dir=str(output_dir)
        )
    except (TypeError, ValueError, InstantiationException, MisconfigurationException) as error:
        raise ConfigError(f"trainer: {error}") from error
    return trainer, loggers
