"""Waveform → frames: the 7-layer convolutional feature encoder and the feature projection.

With the default strides (5, 2, 2, 2, 2, 2, 2) one output frame covers 320 samples, 20 ms
at 16 kHz.
"""

from __future__ import annotations

import torch
from torch import nn

from .activations import get_activation
from .config import UniSpeechConfig


class ConvLayer(nn.Module):
    """Conv1d → optional norm → activation. The norm is one of:

    - "group": GroupNorm with one group per channel, i.e. each channel normalised over
      time. Used on layer 0 only in `feat_extract_norm="group"` models; since it averages
      over the whole (padded) sequence, outputs depend on padding.
    - "layer": LayerNorm over channels at each time step.
    - None: nothing.
    """

    def __init__(self, config: UniSpeechConfig, layer_id: int, norm: str | None) -> None:
        super().__init__()
        in_dim = config.conv_dim[layer_id - 1] if layer_id > 0 else 1
        out_dim = config.conv_dim[layer_id]
        self.conv = nn.Conv1d(
            in_dim,
            out_dim,
            kernel_size=config.conv_kernel[layer_id],
            stride=config.conv_stride[layer_id],
            bias=config.conv_bias,
        )
        self.norm = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(num_groups=out_dim, num_channels=out_dim, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_dim, elementwise_affine=True)
        self.activation = get_activation(config.feat_extract_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (B, C, T')
        if self.norm == "group":
            x = self.layer_norm(x)
        elif self.norm == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return self.activation(x)


class FeatureEncoder(nn.Module):
    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__()
        n = config.num_feat_extract_layers
        if config.feat_extract_norm == "group":
            norms = ["group"] + [None] * (n - 1)
        else:
            norms = ["layer"] * n
        self.conv_layers = nn.ModuleList(ConvLayer(config, i, norm) for i, norm in enumerate(norms))

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        if self.one_row_at_a_time(input_values):
            # On a CPU, with no graph to keep (inference, or the frozen encoder of fine-tuning),
            # one row at a time keeps each layer's (C, T) activations in cache: about 1.5x
            # faster for this encoder at 8 x 5 s. Every norm here is per row, so the output is
            # the same. With a graph, all activations are stored anyway; a GPU wants the batch.
            return torch.cat([self.encode(row[None]) for row in input_values])
        return self.encode(input_values)

    def one_row_at_a_time(self, input_values: torch.Tensor) -> bool:
        # torch.export (ONNX export) checked first: the loop over rows, and even len(), would
        # fix the batch size of the exported graph
        if torch.compiler.is_exporting() or input_values.device.type != "cpu":
            return False
        return len(input_values) > 1 and not self.builds_graph(input_values)

    def builds_graph(self, input_values: torch.Tensor) -> bool:
        return torch.is_grad_enabled() and (
            input_values.requires_grad or any(p.requires_grad for p in self.parameters())
        )

    def encode(self, input_values: torch.Tensor) -> torch.Tensor:
        x = input_values[:, None, :]  # (B, 1, S)
        for layer in self.conv_layers:
            x = layer(x)
        return x  # (B, C, T)

    def freeze(self) -> None:
        for param in self.parameters():
            param.requires_grad = False


class FeatureProjection(nn.Module):
    """LayerNorm(C) → Linear(C→H) → dropout. Returns the projection and the normalised
    C-dim features, which the quantizer reads (`extract_features`)."""

    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)
        self.dropout = nn.Dropout(config.feat_proj_dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.layer_norm(features)  # (B, T, C)
        return self.dropout(self.projection(normed)), normed  # (B, T, H), (B, T, C)


def conv_output_lengths(lengths: torch.Tensor, config: UniSpeechConfig) -> torch.Tensor:
    """Number of frames the encoder makes from `lengths` samples (no padding in the convs)."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths
