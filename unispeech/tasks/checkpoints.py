"""Reading pretrained weights from the three places a user may point at.

1. a Lightning checkpoint written by ``unispeech.train`` (``*.ckpt``),
2. a Hugging Face-format directory (``config.json`` + weights), e.g. from ``unispeech.export``,
3. a hub id such as ``microsoft/unispeech-large-1350-cv`` (needs the network once).

Directory and hub reading is ``unispeech.modeling.checkpoint``'s; this module adds Lightning
checkpoints and a clear message when a hub id is asked for offline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unispeech.modeling import checkpoint as hf_checkpoint

BACKBONE_PREFIX = "unispeech."
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def is_lightning_checkpoint(source: str | os.PathLike) -> bool:
    return str(source).endswith(".ckpt")


def load_lightning_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no Lightning checkpoint at {path}")
    # our checkpoints hold only tensors and plain containers: the safe loader reads them
    return torch.load(path, map_location="cpu", weights_only=True)


def resolve_pretrained_dir(source: str) -> Path:
    """A local directory for ``source``; a hub id is downloaded only when online."""
    local = Path(source).expanduser()
    looks_like_hub_id = not local.exists() and source.count("/") == 1 and not source.startswith((".", "/", "~"))
    if looks_like_hub_id and any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in _OFFLINE_VARIABLES):
        raise RuntimeError(
            f"pretrained={source!r} is a Hugging Face hub id, but this run is offline (HF_HUB_OFFLINE/"
            "TRANSFORMERS_OFFLINE is set). Download it once where the network is reachable "
            f"(`huggingface-cli download {source} --local-dir DIR`) and pass pretrained=DIR."
        )
    return hf_checkpoint.resolve_checkpoint_dir(source)


def read_pretrained(source: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(model config dict, state dict with transformers key names) of ``source``."""
    if is_lightning_checkpoint(source):
        checkpoint = load_lightning_checkpoint(source)
        hparams = dict(checkpoint.get("hyper_parameters", {}))
        state = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
        return dict(hparams.get("model") or {}), state
    directory = resolve_pretrained_dir(str(source))
    config = json.loads((directory / "config.json").read_text())
    return config, hf_checkpoint.load_state_dict(directory)


def load_backbone_weights(model: nn.Module, source: str | os.PathLike, state: dict[str, torch.Tensor] | None = None) -> dict:
    """Copy matching weights of ``source`` into ``model``.

    Every encoder (``unispeech.*``) tensor must be present with the right shape, otherwise
    this raises: a silently half-initialised encoder wastes a fine-tuning run. Head tensors
    whose shapes differ (a new vocabulary) stay freshly initialised and are reported.
    """
    if state is None:
        _, state = read_pretrained(source)
    info = hf_checkpoint.load_into(model, state, "unispeech")
    missing = [k for k in info["missing_keys"] if k.startswith(BACKBONE_PREFIX)]
    mismatched = [k for k in info["mismatched_keys"] if k.startswith(BACKBONE_PREFIX)]
    if missing or mismatched:
        raise ValueError(
            f"pretrained source {source} does not fit this encoder: {len(missing)} missing and "
            f"{len(mismatched)} differently shaped tensors (first: {(missing + mismatched)[:3]}). "
            "Is it a model of the same size (model=...)?"
        )
    return info


# -- inference models from a run's checkpoint or an exported directory ------------------------------
CONFIG_KEY = "unispeech_config"  # the full model config, stored by every task in its checkpoint


def task_kind(hparams: dict[str, Any]) -> str:
    if "phone_vocabulary" in hparams:
        return "pretrain"
    if "labels" in hparams:
        return "classification"
    return "ctc"


def load_trained_model(source: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, info) from a Lightning checkpoint or a Hugging Face-format directory.

    ``info`` holds ``task`` ("pretrain"/"ctc"/"classification"), ``vocabulary`` (id → symbol),
    ``tokenizer_kind``, ``language`` and ``labels`` where they apply.
    """
    from unispeech.modeling import (
        UniSpeechConfig,
        UniSpeechForCTC,
        UniSpeechForPreTraining,
        UniSpeechForSequenceClassification,
    )

    classes = {"pretrain": UniSpeechForPreTraining, "ctc": UniSpeechForCTC, "classification": UniSpeechForSequenceClassification}
    if is_lightning_checkpoint(source):
        checkpoint = load_lightning_checkpoint(source)
        hparams = dict(checkpoint.get("hyper_parameters", {}))
        kind = task_kind(hparams)
        if CONFIG_KEY not in checkpoint:
            raise ValueError(f"{source} has no {CONFIG_KEY}: not a checkpoint written by unispeech.train")
        config = UniSpeechConfig.from_dict(checkpoint[CONFIG_KEY])
        model = classes[kind](config)
        state = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state, strict=True)
        info = {
            "task": kind,
            "vocabulary": list(hparams.get("vocabulary") or hparams.get("phone_vocabulary") or []),
            "tokenizer_kind": hparams.get("tokenizer_kind", "phones"),
            "language": hparams.get("language", ""),
            "labels": list(hparams.get("labels") or []),
        }
        return model.eval(), info
    directory = resolve_pretrained_dir(str(source))
    config = json.loads((directory / "config.json").read_text())
    architecture = (config.get("architectures") or ["UniSpeechForCTC"])[0]
    kind = {"UniSpeechForPreTraining": "pretrain", "UniSpeechForSequenceClassification": "classification"}.get(
        architecture, "ctc"
    )
    model = classes[kind].from_pretrained(directory, strict=True)
    info: dict[str, Any] = {"task": kind, "vocabulary": [], "tokenizer_kind": "chars", "language": "", "labels": []}
    if (directory / "vocab.json").is_file():
        from unispeech.data.tokenizer import CTCTokenizer

        tokenizer = CTCTokenizer.from_pretrained(directory)
        info.update(
            vocabulary=[tokenizer.id_to_token[i] for i in range(len(tokenizer))],
            tokenizer_kind=tokenizer.kind,
            language=tokenizer.language,
        )
    if kind == "classification":
        info["labels"] = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model.eval(), info
