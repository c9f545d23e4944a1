"""Config checks that run before any data or model work, naming the offending key."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.utils import get_class, get_method
from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A bad configuration value; the message names the key (``model.hidden_size``)."""


class MissingDataError(FileNotFoundError):
    """A recipe's data is not where the config says; the message tells how to get it."""


def suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_model_fields(model: DictConfig, where: str = "model") -> None:
    from unispeech.modeling import UniSpeechConfig

    fields = {f.name for f in dataclasses.fields(UniSpeechConfig)} - {"extra"}
    for key in model:
        if key not in fields:
            raise ConfigError(f"{where}.{key} is not a UniSpeechConfig field{suggest(str(key), fields)}")


def check_target_arguments(node: DictConfig, where: str, injected: Iterable[str] = ()) -> None:
    """Every key of an ``_target_`` node must be an argument of the target."""
    target = node.get("_target_")
    if target is None:
        raise ConfigError(f"{where}._target_ is missing")
    try:
        obj = get_class(target) if target[:1].isupper() or "." in target else get_method(target)
    except Exception as error:
        raise ConfigError(f"{where}._target_={target!r} cannot be imported: {error}") from error
    function = obj.__init__ if inspect.isclass(obj) else obj
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    allowed = set(parameters) - {"self"}
    for key in node:
        key = str(key)
        if key.startswith("_") and key.endswith("_"):
            continue
        if key not in allowed:
            raise ConfigError(f"{where}.{key} is not an argument of {target}{suggest(key, allowed)}")
        if key in injected:
            raise ConfigError(f"{where}.{key} is filled in by unispeech.train; remove it from the config")


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
            f"{str(info.get('instructions', '')).strip()}\n"
            + (f"See {readme} for the full recipe." if readme else "")
        )


def plain(node: Any) -> Any:
    """A DictConfig/ListConfig as plain Python containers (checkpoint-safe hyper-parameters)."""
    if isinstance(node, (DictConfig,)) or OmegaConf.is_list(node):
        return OmegaConf.to_container(node, resolve=True)
    return node
