"""The training entry point: ``python -m unispeech.train [+recipe=NAME] [group=option] [key=value]``.

With no argument it pretrains a tiny model on the embedded demo corpus on the CPU, then
fine-tunes it for phone recognition (the demo's second stage), and prints where the
checkpoints, the Hugging Face export and the metrics went.

A run: check the config → check the recipe's data exists → build the data module (its
tokenizer sizes the heads) → build the task → fit → test → export → plot. A config may name
a follow-up stage (``next_stage``: overrides composed onto the same command line), which
starts from the best checkpoint of this one.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from unispeech.tasks.base import NonFiniteLossError
from unispeech.training.loggers import choose_wandb_mode, csv_metrics_file, ensure_csv_logger, is_wandb_config
from unispeech.training.resumable import CountConsumedBatches, make_resumable
from unispeech.training.validation import (
    ConfigError,
    check_model_fields,
    check_required_paths,
    check_target_arguments,
    plain,
)

TASKS = ("pretrain", "ctc", "classification")


def _demo_corpus_root() -> str:
    from unispeech.data import ensure_demo_corpus

    return str(ensure_demo_corpus())


# `${demo_corpus:}` in a config: the embedded demo release root, synthesised on first use
if not OmegaConf.has_resolver("demo_corpus"):
    OmegaConf.register_new_resolver("demo_corpus", _demo_corpus_root, use_cache=True)
# arguments of the task classes that train.py fills in from the data module and config
INJECTED_TASK_ARGUMENTS = ("model", "phone_vocabulary", "vocabulary", "labels", "tokenizer_kind", "language", "seed")


# -- checks ------------------------------------------------------------------------------------
def check_config(cfg: DictConfig) -> None:
    """Structural checks; each message names the key to fix."""
    for key in ("model", "data", "task", "trainer"):
        if cfg.get(key) is None:
            raise ConfigError(f"{key} is missing: pick one of conf/{key}/*.yaml ({key}=NAME)")
    if cfg.task.get("name") not in TASKS:
        raise ConfigError(f"task.name={cfg.task.get('name')!r} must be one of {TASKS}")
    for key in ("module", "monitor", "monitor_mode"):
        if key not in cfg.task:
            raise ConfigError(f"task.{key} is missing")
    if cfg.task.monitor_mode not in ("min", "max"):
        raise ConfigError(f"task.monitor_mode={cfg.task.monitor_mode!r} must be 'min' or 'max'")
    check_model_fields(cfg.model)
    check_target_arguments(cfg.task.module, "task.module", INJECTED_TASK_ARGUMENTS)
    check_target_arguments(cfg.data, "data")
    check_target_arguments(cfg.trainer, "trainer", ("logger", "callbacks", "default_root_dir"))
    ckpt = cfg.get("ckpt_path")
    if ckpt not in (None, "last") and not Path(str(ckpt)).is_file():
        raise ConfigError(f"ckpt_path={ckpt!r}: no such file (use ckpt_path=last to resume this run directory)")


# -- building blocks ---------------------------------------------------------------------------
def task_arguments(cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
    """What the task needs from the data: vocabulary and tokenizer kind, or class labels."""
    arguments: dict[str, Any] = {"model": plain(cfg.model), "seed": int(cfg.seed)}
    if cfg.task.name == "classification":
        arguments["labels"] = list(datamodule.label_names)
        return arguments
    tokenizer = datamodule.tokenizer
    vocabulary = [tokenizer.id_to_token[i] for i in range(len(tokenizer))]
    if cfg.task.name == "pretrain":
        arguments["phone_vocabulary"] = vocabulary
    else:
        arguments.update(vocabulary=vocabulary, tokenizer_kind=tokenizer.kind)
    arguments["language"] = getattr(tokenizer, "language", "") or ""
    return arguments


def build_loggers(cfg: DictConfig, output_dir: Path) -> list:
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None or "_target_" not in node:
            continue
        if is_wandb_config(node):
            if choose_wandb_mode() == "disabled":
                continue  # WANDB_MODE=disabled: no wandb objects at all
        try:
            loggers.append(instantiate(node))
        except Exception as error:
            raise ConfigError(f"logger.{name}: {error}") from error
    return ensure_csv_logger(loggers, output_dir)


def build_callbacks(cfg: DictConfig) -> list:
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None or "_target_" not in node:
            continue
        try:
            callbacks.append(instantiate(node))
        except Exception as error:
            raise ConfigError(f"callbacks.{name}: {error}") from error
    return callbacks


def build_trainer(cfg: DictConfig, loggers: list, callbacks: list, output_dir: Path) -> L.Trainer:
    try:
        return instantiate(cfg.trainer, logger=loggers, callbacks=callbacks, default_root_dir=str(output_dir))
    except (TypeError, ValueError, InstantiationException) as error:
        raise ConfigError(f"trainer: {error}") from error


def resolve_ckpt_path(cfg: DictConfig, checkpoint_dir: Path) -> str | None:
    ckpt = cfg.get("ckpt_path")
    if ckpt == "last":
        last = checkpoint_dir / "last.ckpt"
        if not last.is_file():
            raise ConfigError(
                f"ckpt_path=last but {last} does not exist: resume inside the run directory you want to "
                "continue (hydra.run.dir=outputs/runs/NAME or run_name=NAME)"
            )
        return str(last)
    return None if ckpt is None else str(ckpt)


# -- one stage ----------------------------------------------------------------------------------
def run(cfg: DictConfig, output_dir: str | os.PathLike) -> dict[str, Any]:
    """Train (and test, export, plot) one stage; returns where everything went and the metrics."""
    output_dir = Path(output_dir).resolve()
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    check_config(cfg)
    check_required_paths(cfg)
    checkpoint_dir = Path(cfg.paths.checkpoint_dir)
    ckpt_path = resolve_ckpt_path(cfg, checkpoint_dir)  # a bad resume path fails before any work
    L.seed_everything(int(cfg.seed), workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(str(cfg.float32_matmul_precision))

    datamodule = make_resumable(instantiate(cfg.data))
    datamodule.prepare_data()
    datamodule.setup("fit")
    task = instantiate(cfg.task.module, **task_arguments(cfg, datamodule), _convert_="all")

    loggers = build_loggers(cfg, output_dir)
    # first: a checkpoint saved in another callback's on_train_batch_end must count this batch
    callbacks = [CountConsumedBatches()] + build_callbacks(cfg)
    trainer = build_trainer(cfg, loggers, callbacks, output_dir)
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    best = best or str(checkpoint_dir / "last.ckpt")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.get("test_after_fit") and cfg.task.name != "pretrain" and _has_split(datamodule, "test"):
        results = trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})

    summary: dict[str, Any] = {
        "output_dir": str(output_dir),
        "checkpoint": best,
        "last_checkpoint": str(checkpoint_dir / "last.ckpt"),
        "metrics_csv": str(csv_metrics_file(loggers) or ""),
        "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)},
        "world_size": int(trainer.world_size),
    }
    if trainer.is_global_zero:
        if cfg.get("export_after_fit") and Path(best).is_file():
            from unispeech.export import export_checkpoint

            summary["export"] = str(export_checkpoint(best, output_dir / "export"))
        curves = checkpoint_dir / "training_curves.png"
        if curves.is_file():
            summary["curves"] = str(curves)
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _has_split(datamodule: Any, split: str) -> bool:
    check = getattr(datamodule, "has_split", None)
    return bool(check(split)) if callable(check) else hasattr(datamodule, f"{split}_dataloader")


# -- stages ---------------------------------------------------------------------------------------
def run_pipeline(cfg: DictConfig, output_dir: str | os.PathLike, overrides: list[str]) -> list[dict[str, Any]]:
    """Run this stage, then each ``next_stage`` composed from the same overrides plus its own."""
    summaries = [run(cfg, output_dir)]
    next_stage = list(cfg.get("next_stage") or [])
    if next_stage and summaries[0]["world_size"] > 1:
        # a second Trainer in the same DDP processes would need its own launch: run stages as commands
        if _is_global_zero():
            print(f"[unispeech] next_stage skipped under DDP; run it as its own command: {next_stage}")
        return summaries
    if next_stage and GlobalHydra.instance().is_initialized() and _is_global_zero():
        # a stage runs its own next_stage only if it names one: no accidental recursion
        replaced = _STAGE_LOCAL | {_override_key(o) for o in next_stage}
        kept = [o for o in overrides if not _overridden_by(_override_key(o), replaced)]
        stage_overrides = kept + ["next_stage=[]"] + next_stage
        stage_overrides.append(f"task.module.pretrained={summaries[0]['checkpoint']}")
        stage_cfg = hydra.compose(config_name="train", overrides=stage_overrides)
        summaries += run_pipeline(stage_cfg, Path(output_dir) / str(cfg.get("next_stage_name", "stage2")), stage_overrides)
    return summaries


# keys of the first stage that must not leak into the next one
_STAGE_LOCAL = {"ckpt_path", "trainer.max_steps", "trainer.max_epochs", "task", "next_stage"}


def _override_key(override: str) -> str:
    return override.split("=")[0].lstrip("+~")


def _overridden_by(key: str, replaced: set[str]) -> bool:
    """`task.module.lr` belongs to `task`: a stage that picks its own task drops it."""
    return any(key == r or key.startswith(r + ".") for r in replaced)


def _is_global_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0 and not _is_ddp_worker()


def _is_ddp_worker() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0


def print_summary(summaries: list[dict[str, Any]]) -> None:
    for index, summary in enumerate(summaries, start=1):
        print(f"[unispeech] stage {index}: {summary['output_dir']}")
        for key in ("checkpoint", "export", "metrics_csv", "curves"):
            if summary.get(key):
                print(f"  {key:<12} {summary[key]}")
        shown = {k: round(v, 4) for k, v in summary["metrics"].items() if k.startswith(("val/", "test/"))}
        if shown:
            print(f"  {'metrics':<12} {shown}")


def config_dir() -> str:
    """The Hydra configs: conf/ of a checkout (or editable install), else the copy that the
    wheel ships as unispeech/conf."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "conf", package / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no Hydra configs next to {package} (expected conf/train.yaml)")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    output_dir = HydraConfig.get().runtime.output_dir
    overrides = list(HydraConfig.get().overrides.task)
    try:
        summaries = run_pipeline(cfg, output_dir, overrides)
    except (ConfigError, FileNotFoundError, NonFiniteLossError) as error:
        print(f"[unispeech] error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if _is_global_zero():
        print_summary(summaries)
    # sweepers (Optuna) minimise/maximise the value returned here
    objective = cfg.get("objective")
    return summaries[-1]["metrics"].get(str(objective)) if objective else None


if __name__ == "__main__":
    main()
