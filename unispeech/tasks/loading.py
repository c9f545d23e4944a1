"""Reading pretrained weights, and trained models for inference.

Pretrained weights come from the three places a user may point at:

1. a Lightning checkpoint written by ``unispeech.train`` (``*.ckpt``),
2. a Hugging Face-format directory (``config.json`` + weights), e.g. from ``unispeech.export``,
3. a hub id such as ``microsoft/unispeech-large-1350-cv`` (needs the network once).

Directory and hub reading (with its clear message when a hub id is asked for offline) is
``unispeech.modeling.checkpoint``'s; this module adds Lightning checkpoints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unispeech.modeling import UniSpeechConfig, checkpoint as hf_checkpoint

BACKBONE_PREFIX = "unispeech."


def is_lightning_checkpoint(source: str | os.PathLike) -> bool:
    return str(source).endswith(".ckpt")


def load_lightning_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no Lightning checkpoint at {path}")
    # our checkpoints hold only tensors and plain containers: the safe loader reads them
    return torch.load(path, map_location="cpu", weights_only=True)


def model_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The wrapped model's weights in a task checkpoint, without the task's `model.` prefix."""
    return {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}


def read_pretrained(source: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(model config dict, state dict with transformers key names) of ``source``."""
    if is_lightning_checkpoint(source):
        checkpoint = load_lightning_checkpoint(source)
        hparams = dict(checkpoint.get("hyper_parameters", {}))
        return dict(hparams.get("model") or {}), model_state(checkpoint)
    directory = hf_checkpoint.resolve_checkpoint_dir(source)
    config = json.loads((directory / "config.json").read_text())
    return config, hf_checkpoint.load_state_dict(directory)


def load_backbone_weights(
    model: nn.Module, source: str | os.PathLike, state: dict[str, torch.Tensor] | None = None
) -> dict:
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


# Fields a fine-tuning config may change on top of a pretrained architecture.
FINETUNE_FIELDS = {
    "hidden_dropout",
    "activation_dropout",
    "attention_dropout",
    "feat_proj_dropout",
    "final_dropout",
    "layerdrop",
    "layerdrop_seed",
    "apply_spec_augment",
    "mask_time_prob",
    "mask_time_length",
    "mask_time_min_masks",
    "mask_feature_prob",
    "mask_feature_length",
    "mask_feature_min_masks",
    "ctc_loss_reduction",
    "ctc_zero_infinity",
}
# Fields of the pretraining head that must not leak into a fine-tuned model's config.
HEAD_FIELDS = {"vocab_size", "architectures", "label2id", "id2label", "num_feat_extract_layers", "model_type"}


def build_finetune_model(
    cls: type[nn.Module], model: dict, pretrained: str | None, freeze_feature_encoder: bool, **head_fields: Any
) -> nn.Module:
    """A model with a fresh head (`head_fields`, e.g. vocab_size). With `pretrained`, the
    architecture and encoder weights come from it and `model` may only change regularisation
    (FINETUNE_FIELDS); without, `model` is the whole architecture."""
    overrides, base, state = dict(model), {}, None
    if pretrained:
        base, state = read_pretrained(pretrained)
        base = {k: v for k, v in base.items() if k not in HEAD_FIELDS}
        overrides = {k: v for k, v in overrides.items() if k in FINETUNE_FIELDS}
    built = cls(UniSpeechConfig.from_dict({**base, **overrides}, **head_fields))
    if pretrained:
        load_backbone_weights(built, pretrained, state)
    if freeze_feature_encoder:
        built.freeze_feature_encoder()
    return built
