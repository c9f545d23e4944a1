"""Shared helpers for the training-framework tests: Hydra composition and tiny runs."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import lightning as L
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import unispeech.train  # noqa: F401  (registers the recipes, the model schema and the resolvers)
from unispeech.training.hydra_config import normalise_argv

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")

# Small, fast and deterministic: no wandb, no progress bar, few steps.
FAST = [
    "logger=csv",
    "callbacks.progress_bar=null",
    "trainer.enable_model_summary=false",
    "+trainer.enable_progress_bar=false",
]


def compose_config(overrides: list[str], config_name: str = "train"):
    """The config `python -m unispeech.train *overrides` would run."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=normalise_argv(overrides))


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(r[name]) for r in rows if r.get(name) not in (None, "")]


class LateSigterm(L.Callback):
    """Sends this process SIGTERM at the end of step `at_step`, after the preemption
    callback's hook has run: a moment a real signal can arrive at too."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler records it
