"""The training entry point: ``python -m unispeech.train [recipe=NAME] [group=option] [key=value]``.

With no argument it runs the demo recipe (``recipes/demo/``): tiny multitask pretraining on
the embedded demo corpus on the CPU, then phone CTC fine-tuning from its best checkpoint,
and prints where the checkpoints, the Hugging Face export and the metrics went.

One run: check the config (every key, path and the data mode, before any work) → build the
Trainer (the hardware is checked here) → prepare the data → build the task from what the data
provides (vocabulary, labels) → fit → test → export. A recipe with ``stages`` runs each stage
as its own process (``unispeech.training.stages``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from unispeech.tasks.base import NonFiniteLossError
from unispeech.training import hydra_config
from unispeech.training.builders import build_trainer
from unispeech.training.config_checks import (
    ConfigError,
    check_config,
    fit_intervals_to_the_run,
    plain,
    resolve_ckpt_path,
)
from unispeech.training.stages import StageFailed, run_stages
from unispeech.training.summary import finish_run, print_summary

hydra_config.register()
# what a user can fix: one line on stderr and exit status 2, no traceback
USER_ERRORS = (ConfigError, FileNotFoundError, NonFiniteLossError, StageFailed)


def run(cfg: DictConfig, output_dir: str | os.PathLike) -> dict[str, Any]:
    """Train (then test, export, plot) once; returns where everything went and the metrics."""
    output_dir = Path(output_dir).resolve()
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    task_class = check_config(cfg)
    fit_intervals_to_the_run(cfg)
    ckpt_path = resolve_ckpt_path(cfg)
    L.seed_everything(int(cfg.seed), workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(str(cfg.float32_matmul_precision))
    trainer, loggers = build_trainer(cfg, output_dir)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    task = instantiate(
        cfg.task.module,
        model=plain(cfg.model),
        seed=int(cfg.seed),
        **task_class.data_arguments(datamodule),
        _convert_="all",
    )
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    return finish_run(cfg, trainer, task, datamodule, loggers, output_dir)


@hydra.main(version_base="1.3", config_path=hydra_config.config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        if cfg.get("stages"):
            summaries = run_stages(cfg, list(HydraConfig.get().overrides.task))
        else:
            summaries = [run(cfg, HydraConfig.get().runtime.output_dir)]
    except USER_ERRORS as error:
        print(f"[unispeech] error: {error}", file=sys.stderr)
        discard_if_empty(Path(HydraConfig.get().runtime.output_dir))
        raise SystemExit(2) from None
    print_summary(summaries)
    # sweepers (Optuna) minimise/maximise the value returned here
    objective = cfg.get("objective")
    return summaries[-1]["metrics"].get(str(objective)) if objective else None


def discard_if_empty(run_dir: Path) -> None:
    """A run refused before any work leaves no directory behind (only Hydra's own files)."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra", "train.log"}:
        shutil.rmtree(run_dir, ignore_errors=True)


def cli() -> None:
    """`unispeech-train` and `python -m unispeech.train`."""
    sys.argv = hydra_config.normalise_argv(sys.argv)
    main()


if __name__ == "__main__":
    cli()
