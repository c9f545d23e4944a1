"""Config checks that run before any data or model work, naming the offending key.

Hydra already refuses unknown `model.*` keys and wrong types (the model group is typed by
`UniSpeechConfig`) and builds every object from its `_target_`; what is left to check here
is what only a whole run knows: mandatory values a recipe leaves to the user, that the task
accepts its keys and reads the data mode the data config produces, the recipe's input paths
and the checkpoint to resume.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from unispeech.modeling import UniSpeechConfig
from unispeech.tasks.base import SpeechTask

# arguments that unispeech.train fills in: of the task (from the config and the data), of the Trainer
TASK_INJECTED = ("model", "seed")
TRAINER_INJECTED = ("logger", "callbacks", "default_root_dir")


class ConfigError(ValueError):
    """A bad configuration value; the message names the key (``model.hidden_size``)."""


class MissingDataError(FileNotFoundError):
    """A recipe's data is not where the config says; the message tells how to get it."""


def suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_config(cfg: DictConfig) -> type[SpeechTask]:
    """Everything that can be checked without data; returns the task class."""
    check_missing(cfg)
    for key in ("model", "data", "task", "trainer"):
        if cfg.get(key) is None:
            raise ConfigError(f"{key} is missing: pick one of conf/{key}/*.yaml ({key}=NAME)")
    check_trainer(cfg.trainer)
    for section in ("task", "data"):
        resolve(cfg, section)  # a missing stage-1 checkpoint, a bad interpolation: now, not after the data
    for key in ("module", "monitor", "monitor_mode"):
        if key not in cfg.task:
            raise ConfigError(f"task.{key} is missing")
    if cfg.task.monitor_mode not in ("min", "max"):
        raise ConfigError(f"task.monitor_mode={cfg.task.monitor_mode!r} must be 'min' or 'max'")
    fields = {f.name for f in dataclasses.fields(UniSpeechConfig)}
    for key in map(str, cfg.model):  # `+model.x=1` gets past Hydra's typed model group
        if key not in fields:
            raise ConfigError(f"model.{key} is not a UniSpeechConfig field{suggest(key, fields)}")
    task_class = target_class(cfg.task.module, "task.module", SpeechTask)
    check_arguments(task_class, cfg.task.module, "task.module", TASK_INJECTED + task_class.from_data)
    check_arguments(target_class(cfg.data, "data", object), cfg.data, "data")
    check_arguments(target_class(cfg.trainer, "trainer", object), cfg.trainer, "trainer", TRAINER_INJECTED)
    mode = cfg.data.get("mode")
    if mode != task_class.data_mode:
        raise ConfigError(
            f"data.mode={mode!r} but {task_class.__name__} reads {task_class.data_mode!r} data: "
            f"pick a data config made for it or set data.mode={task_class.data_mode}"
        )
    check_required_paths(cfg)
    return task_class


# trainer keys whose type a typo breaks only deep inside Lightning (`trainer.max_steps=abc`)
TRAINER_TYPES = {
    "max_steps": int,
    "max_epochs": (int, type(None)),
    "val_check_interval": (int, float, type(None)),
    "log_every_n_steps": int,
    "accumulate_grad_batches": int,
    "num_nodes": int,
    "gradient_clip_val": (int, float, type(None)),
    "check_val_every_n_epoch": (int, type(None)),
}
GPU_ACCELERATORS = ("gpu", "cuda")


def check_trainer(trainer: DictConfig) -> None:
    """Types of the numeric trainer keys, and that the machine has the accelerator asked for."""
    for key, types in TRAINER_TYPES.items():
        value = trainer.get(key)
        if key in trainer and (isinstance(value, bool) or not isinstance(value, types)):
            raise ConfigError(f"trainer.{key}={value!r} must be a number (see conf/trainer/*.yaml)")
    accelerator, precision = str(trainer.get("accelerator", "auto")), str(trainer.get("precision", "32-true"))
    if accelerator == "cpu" and precision not in ("32-true", "32", "64-true", "64"):
        print(
            f"[unispeech] trainer.precision={precision} on the CPU: autocast to half precision, which is faster "
            "only on CPUs with AVX512-BF16/AMX; trainer.precision=32-true trains in float32",
            flush=True,
        )
    if accelerator in GPU_ACCELERATORS and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but this machine has no GPU that torch can use "
            f"(torch {torch.__version__}, CUDA {torch.version.cuda or 'not built in'}): run with trainer=cpu "
            "(or trainer.accelerator=cpu trainer.precision=32-true), or install a CUDA build of torch"
        )


def fit_intervals_to_the_run(cfg: DictConfig) -> None:
    """A run shorter than its validation or logging interval would never validate (no best
    checkpoint, no objective for a sweeper) or never write metrics.csv: do both at its end."""
    steps = cfg.trainer.get("max_steps", -1)
    if not isinstance(steps, int) or steps <= 0:
        return
    batches = steps * max(1, int(cfg.trainer.get("accumulate_grad_batches", 1)))
    # val_check_interval counts training batches, log_every_n_steps optimizer steps
    for key, length in (("val_check_interval", batches), ("log_every_n_steps", steps)):
        value = cfg.trainer.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > length:
            print(
                f"[unispeech] trainer.{key}={value} is longer than the run (trainer.max_steps={steps}): using {length}",
                flush=True,
            )
            with open_dict(cfg):
                cfg.trainer[key] = length


def check_missing(cfg: DictConfig) -> None:
    """Values a recipe leaves to the user (``language: ???``), named with where to read about them."""
    missing = [str(key) for key in cfg if OmegaConf.is_missing(cfg, key)]
    if missing:
        readme = (cfg.get("recipe_info") or {}).get("readme")
        raise ConfigError(
            f"{', '.join(missing)} must be set (e.g. {missing[0]}=...)" + (f": see {readme}" if readme else "")
        )


def target_class(node: DictConfig, where: str, base: type) -> type:
    try:
        cls = get_class(str(node.get("_target_")))
    except Exception as error:
        raise ConfigError(f"{where}._target_={node.get('_target_')!r} cannot be imported: {error}") from error
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{where}._target_={node.get('_target_')!r} is not a {base.__name__}")
    return cls


def check_arguments(cls: type, node: DictConfig, where: str, injected: Iterable[str] = ()) -> None:
    """Every key of ``node`` must be a constructor argument, and not one train.py fills in."""
    allowed = set(inspect.signature(cls).parameters)
    for key in map(str, node):
        if key.startswith("_") and key.endswith("_"):
            continue
        if key not in allowed:
            raise ConfigError(f"{where}.{key} is not an argument of {cls.__name__}{suggest(key, allowed)}")
        if key in injected:
            raise ConfigError(f"{where}.{key} is filled in by unispeech.train; remove it from the config")


def resolve(cfg: DictConfig, section: str) -> None:
    """Resolve every interpolation of ``cfg[section]``; a failure names the key, not a traceback."""
    try:
        OmegaConf.to_container(cfg[section], resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "") or section
        cause = error.__cause__ if isinstance(error.__cause__, ConfigError) else str(error).split("\n")[0]
        raise ConfigError(f"{key}: {cause}") from None


def check_required_paths(cfg: DictConfig) -> None:
    """Fail before any work when a recipe's data is missing, with the recipe's instructions."""
    info = cfg.get("recipe_info")
    if not info:
        return
    missing = [str(p) for p in info.get("required_paths") or [] if not Path(str(p)).expanduser().exists()]
    if missing:
        readme = info.get("readme", "")
        raise MissingDataError(
            f"recipe {info.get('name')!r}: data not found: {', '.join(missing)}\n"
            f"{str(info.get('instructions', '')).strip()}\n" + (f"See {readme} for the full recipe." if readme else "")
        )


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """The checkpoint to resume: `ckpt_path` is `auto` (the default: this run directory's
    last.ckpt if it has one), `last` (it must), a file, or null (a fresh start, refused
    when this run directory already holds a run: its checkpoints would be overwritten)."""
    ckpt = cfg.get("ckpt_path")
    last = Path(cfg.paths.checkpoint_dir) / "last.ckpt"
    if ckpt == "auto":
        if last.is_file():
            print(f"[unispeech] resuming {last} (ckpt_path=auto; another run_name starts a new run)", flush=True)
            return str(last)
        return None
    if ckpt is None:
        if last.is_file():
            raise ConfigError(
                f"{last.parent.parent} already holds a run ({last.name}): ckpt_path=auto (the default) or "
                "ckpt_path=last continues it; to start over, pick another run_name or delete that directory"
            )
        return None
    if ckpt == "last":
        if not last.is_file():
            raise ConfigError(
                f"ckpt_path=last but {last} does not exist: resume inside the run directory you want to "
                "continue (run_name=NAME, or hydra.run.dir=DIR)"
            )
        return str(last)
    if not Path(str(ckpt)).is_file():
        raise ConfigError(f"ckpt_path={ckpt!r}: no such file (use ckpt_path=last to resume this run directory)")
    return str(ckpt)


def plain(node: Any) -> Any:
    """A DictConfig/ListConfig as plain Python containers (checkpoint-safe hyper-parameters)."""
    if isinstance(node, DictConfig) or OmegaConf.is_list(node):
        return OmegaConf.to_container(node, resolve=True)
    return node
