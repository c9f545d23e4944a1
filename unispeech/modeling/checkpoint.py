"""Checkpoint I/O in the Hugging Face layout: `config.json` + `model.safetensors`.

Reading accepts what is found in the wild:
- `model.safetensors`, `model.safetensors.index.json` (shards) or `pytorch_model.bin`
  (loaded with `weights_only=True`: a pickle is never executed);
- both names of the positional conv's weight norm: `weight_g` / `weight_v` (older
  checkpoints, ours in memory) and `parametrizations.weight.original0` / `original1`
  (what current torch/transformers write; we write these too);
- a bare-encoder checkpoint loaded into a model with a head, and the other way round
  (the `unispeech.` prefix is added or stripped);
- a head whose shape changed (a new CTC vocabulary, a new label set): left freshly
  initialised and reported, as users expect when fine-tuning.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, TypeVar

import torch

from .config import CONFIG_NAME, UniSpeechConfig

# A `UniSpeechPreTrainedModel` subclass. This module sees models only as `nn.Module`s with a
# `config` (and, on the class, `base_model_prefix`), so that models.py imports it and not
# the other way round.
ModelT = TypeVar("ModelT", bound=torch.nn.Module)

logger = logging.getLogger(__name__)

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

_NORM_TO_OURS = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
_OURS_TO_HF = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def to_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our in-memory keys → the keys `transformers` writes today."""
    out = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        if "pos_conv_embed.conv" in prefix and leaf in _OURS_TO_HF:
            key = f"{prefix}.{_OURS_TO_HF[leaf]}"
        out[key] = value
    return out


def from_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Either weight-norm key style → ours."""
    out = {}
    for key, value in state_dict.items():
        for hf_name, ours in _NORM_TO_OURS.items():
            if key.endswith(hf_name):
                key = key[: -len(hf_name)] + ours
        out[key] = value
    return out


def save_pretrained(model: torch.nn.Module, save_directory: str | os.PathLike, safe_serialization: bool = True) -> None:
    """Write `model.config` and the weights (keys in the `transformers` layout) to `save_directory`."""
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    config.extra["architectures"] = [type(model).__name__]
    config.save_pretrained(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in to_hf_state_dict(model.state_dict()).items()}
    if safe_serialization:
        from safetensors.torch import save_file

        save_file(state, str(directory / SAFE_WEIGHTS_NAME), metadata={"format": "pt"})
    else:
        torch.save(state, directory / TORCH_WEIGHTS_NAME)


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """A local directory, or a hub id downloaded through `huggingface_hub` when online."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    name = str(path)
    if local.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise FileNotFoundError(f"no checkpoint directory at {path!s}")
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in _OFFLINE_VARIABLES):
        raise RuntimeError(
            f"{name!r} is a Hugging Face hub id, but this run is offline (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE "
            f"is set). Download it once where the network is reachable (`huggingface-cli download {name} "
            "--local-dir DIR`) and pass DIR instead."
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # pragma: no cover - huggingface_hub comes with `datasets`
        raise FileNotFoundError(f"{name!r} is not a local directory and huggingface_hub is not installed") from err
    try:
        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.bin"]))
    except Exception as err:
        raise FileNotFoundError(
            f"{name!r} is not a local directory and could not be fetched from the Hugging Face hub "
            f"({type(err).__name__}: {err}). Offline? Download it once elsewhere and pass the folder."
        ) from err


def load_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    if (directory / SAFE_WEIGHTS_NAME).is_file():
        from safetensors.torch import load_file

        return load_file(str(directory / SAFE_WEIGHTS_NAME))
    if (directory / SAFE_WEIGHTS_INDEX_NAME).is_file():
        from safetensors.torch import load_file

        index = json.loads((directory / SAFE_WEIGHTS_INDEX_NAME).read_text())
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_file(str(directory / shard)))
        return state
    if (directory / TORCH_WEIGHTS_NAME).is_file():
        return torch.load(directory / TORCH_WEIGHTS_NAME, map_location="cpu", weights_only=True)
    raise FileNotFoundError(
        f"no weights in {directory}: expected {SAFE_WEIGHTS_NAME}, {SAFE_WEIGHTS_INDEX_NAME} or {TORCH_WEIGHTS_NAME}"
    )


def match_prefix(state_dict: dict[str, torch.Tensor], model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """Add or strip `prefix.` so that an encoder-only checkpoint fits a model with a head
    and a model with a head fits an encoder-only model."""
    expected = model.state_dict().keys()
    model_has_prefix = any(k.startswith(prefix + ".") for k in expected)
    ckpt_has_prefix = any(k.startswith(prefix + ".") for k in state_dict)
    if model_has_prefix and not ckpt_has_prefix:
        return {f"{prefix}.{k}": v for k, v in state_dict.items()}
    if ckpt_has_prefix and not model_has_prefix:
        return {k[len(prefix) + 1 :]: v for k, v in state_dict.items() if k.startswith(prefix + ".")}
    return state_dict


def load_into(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], prefix: str = "unispeech"
) -> dict[str, list[str]]:
    """Copy matching tensors into `model`; returns missing, unexpected and mismatched keys."""
    state_dict = match_prefix(from_hf_state_dict(state_dict), model, prefix)
    own = model.state_dict()
    usable, mismatched = {}, []
    for key, value in state_dict.items():
        if key in own and own[key].shape != value.shape:
            mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}")
        elif key in own:
            usable[key] = value
    result = model.load_state_dict(usable, strict=False)
    info = {
        "missing_keys": sorted(set(result.missing_keys)),
        "unexpected_keys": sorted(k for k in state_dict if k not in own),
        "mismatched_keys": mismatched,
    }
    return info


def from_pretrained(
    cls: type[ModelT],
    path: str | os.PathLike,
    config: UniSpeechConfig | None = None,
    strict: bool = False,
    model_kwargs: dict[str, Any] | None = None,
    **overrides: Any,
) -> ModelT:
    """`cls(config, **model_kwargs)` with the weights of `path` loaded into it (see the
    module docstring); `overrides` change config fields."""
    directory = resolve_checkpoint_dir(path)
    if config is None:
        if not (directory / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}")
        config = UniSpeechConfig.from_pretrained(directory, **overrides)
    model = cls(config, **(model_kwargs or {}))
    info = load_into(model, load_state_dict(directory), cls.base_model_prefix)
    problems = {k: v for k, v in info.items() if v}
    if strict and problems:
        raise RuntimeError(f"checkpoint {path} does not match {cls.__name__}: {problems}")
    if info["missing_keys"] or info["mismatched_keys"]:
        logger.warning(
            "%s from %s: freshly initialised (not in the checkpoint or a different shape): %s",
            cls.__name__,
            path,
            info["missing_keys"] + info["mismatched_keys"],
        )
    if info["unexpected_keys"]:
        logger.info("%s from %s: unused checkpoint weights: %s", cls.__name__, path, info["unexpected_keys"])
    model.loading_info = info
    return model
