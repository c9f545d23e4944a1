"""Optimizer construction and gradient helpers shared by the tasks."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

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


def build_adam(
    model: nn.Module,
    lr: float,
    betas: Iterable[float] = (0.9, 0.98),
    eps: float = 1e-6,
    weight_decay: float = 0.01,
) -> torch.optim.AdamW:
    """Adam with decoupled weight decay, as fairseq's ``adam`` optimizer applies it. On CUDA
    the fused kernel updates all parameters in a few launches instead of several per tensor."""
    on_cuda = all(p.is_cuda for p in model.parameters())
    return torch.optim.AdamW(
        adam_param_groups(model, weight_decay),
        lr=lr,
        betas=tuple(betas),
        eps=eps,
        weight_decay=weight_decay,
        fused=on_cuda or None,
    )


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
