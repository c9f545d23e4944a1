"""Activation functions by the names `transformers` configs use."""

from __future__ import annotations

import math

import torch
from torch import nn


def _gelu_new(x: torch.Tensor) -> torch.Tensor:
    # the tanh approximation of GELU (`gelu_new` in transformers' configs)
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class _Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def get_activation(name: str) -> nn.Module:
    if name in ("gelu", "gelu_python"):
        return nn.GELU()
    if name == "gelu_new":
        return _Lambda(_gelu_new)
    if name == "relu":
        return nn.ReLU()
    if name == "selu":
        return nn.SELU()
    if name in ("silu", "swish"):
        return nn.SiLU()
    if name == "tanh":
        return nn.Tanh()
    raise ValueError(f"unknown activation {name!r}")
