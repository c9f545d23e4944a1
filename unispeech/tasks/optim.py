"""Optimizer construction and gradient helpers shared by the tasks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim import Optimizer

# Norms, biases and the learned mask embedding are not weight-decayed (standard practice;
# decaying a LayerNorm gain towards 0 only hurts).
_NO_DECAY_MARKERS = ("bias", "layer_norm", "layernorm", "norm.", "masked_spec_embed", "codevectors")


def adam_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lowered = name.lower()
        (no_decay if any(m in lowered for m in _NO_DECAY_MARKERS) or param.ndim == 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(factory: Callable[..., Optimizer], model: nn.Module) -> Optimizer:
    """Call the optimizer the config built (``_target_: torch.optim.AdamW``, ``_partial_:
    true``) on ``model``'s parameters, split into decayed and non-decayed groups.

    On CUDA, Adam/AdamW get the fused kernel (all parameters updated in a few launches
    instead of several per tensor) unless the config says otherwise.
    """
    keywords = dict(getattr(factory, "keywords", {}))
    groups = adam_param_groups(model, float(keywords.get("weight_decay", 0.0)))
    extra = {}
    if getattr(factory, "func", factory) in FUSABLE and "fused" not in keywords:
        extra["fused"] = all(p.is_cuda for p in model.parameters()) or None
    return factory(groups, **extra)


FUSABLE = (torch.optim.Adam, torch.optim.AdamW)


def scale_gradients(module: nn.Module, factor: float) -> list[torch.utils.hooks.RemovableHandle]:
    """Multiply the gradients of every parameter of ``module`` by ``factor``.

    Scaling the gradient that leaves the feature encoder (fairseq's GradMultiply) scales every
    encoder parameter gradient by the same factor, because they are linear in it; hooking the
    parameters does the same without touching the model's forward.
    """
    if factor == 1.0:
        return []
    return [p.register_hook(lambda grad, f=factor: grad * f) for p in module.parameters() if p.requires_grad]


def find_submodule(model: nn.Module, suffix: str) -> nn.Module:
    """The first submodule whose dotted name ends with ``suffix`` (e.g. ``feature_extractor``)."""
    for name, module in model.named_modules():
        if name == suffix or name.endswith("." + suffix):
            return module
    raise AttributeError(f"model {type(model).__name__} has no submodule named *{suffix}")
