"""The context network: convolutional positional embedding + a stack of Transformer layers.

Two layouts, chosen by `config.do_stable_layer_norm`:
- post-LN (False, base models): x = LN(x + Attn(x)); x = LN(x + FFN(x)); the stack's input
  is layer-normed once after the positional embedding.
- pre-LN (True, large models): x = x + Attn(LN(x)); x = x + FFN(LN(x)); a final LayerNorm
  closes the stack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .activations import get_activation
from .config import UniSpeechConfig


class WeightNormConv1d(nn.Conv1d):
    """Conv1d with weight normalisation over every axis but the kernel axis (dim 2):
    weight = g · v / ‖v‖, with g of shape (1, 1, K) and the norm taken per kernel tap.

    The parameters are named `weight_g` / `weight_v`, the key names of the published
    checkpoints; `checkpoint.py` also reads torch's parametrization names.
    """

    def __init__(self, channels: int, kernel_size: int, groups: int) -> None:
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2, groups=groups)
        weight = self.weight.detach()
        del self.weight
        self.weight_v = nn.Parameter(weight.clone())
        self.weight_g = nn.Parameter(weight.norm(dim=(0, 1), keepdim=True))

    def normalized_weight(self) -> torch.Tensor:
        # (C, C/groups, K): each kernel tap k scaled to norm g[k]
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=(0, 1), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.normalized_weight(), self.bias, padding=self.padding, groups=self.groups)


class PositionalConvEmbedding(nn.Module):
    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__()
        kernel = config.num_conv_pos_embeddings
        self.conv = WeightNormConv1d(config.hidden_size, kernel, config.num_conv_pos_embedding_groups)
        # "same" padding of an even kernel yields one extra frame: drop the last one
        self.num_pad_remove = 1 if kernel % 2 == 0 else 0
        self.activation = get_activation(config.feat_extract_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))  # (B, H, T + 1 for even kernels)
        if self.num_pad_remove:
            y = y[:, :, : -self.num_pad_remove]
        return self.activation(y).transpose(1, 2)  # (B, T, H)


class SelfAttention(nn.Module):
    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.dropout = config.attention_dropout
        h = config.hidden_size
        self.q_proj = nn.Linear(h, h)
        self.k_proj = nn.Linear(h, h)
        self.v_proj = nn.Linear(h, h)
        self.out_proj = nn.Linear(h, h)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # x: (B, T, H); key_mask: (B, 1, 1, T) bool, True where a key may be attended
        b, t, _ = x.shape

        def heads(proj: nn.Linear) -> torch.Tensor:
            return proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)

        q, k, v = heads(self.q_proj), heads(self.k_proj), heads(self.v_proj)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if output_attentions:
            # explicit path, only when the caller wants the attention maps
            scores = (q * self.head_dim**-0.5) @ k.transpose(-1, -2)  # (B, nh, T, T)
            if key_mask is not None:
                scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
            weights = scores.float().softmax(dim=-1).to(q.dtype)
            out = F.dropout(weights, p=dropout, training=self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout)
        out = out.transpose(1, 2).reshape(b, t, -1)  # (B, T, H)
        return self.out_proj(out), weights


class FeedForward(nn.Module):
    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = get_activation(config.hidden_act)
        self.intermediate_dropout = nn.Dropout(config.activation_dropout)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.intermediate_dropout(self.intermediate_act_fn(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class TransformerLayer(nn.Module):
    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.attention = SelfAttention(config)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.pre_norm:
            attn, weights = self.attention(self.layer_norm(x), key_mask, output_attentions)
            x = x + self.dropout(attn)
            x = x + self.feed_forward(self.final_layer_norm(x))
        else:
            attn, weights = self.attention(x, key_mask, output_attentions)
            x = self.layer_norm(x + self.dropout(attn))
            x = self.final_layer_norm(x + self.feed_forward(x))
        return x, weights


class TransformerEncoder(nn.Module):
    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.layerdrop = config.layerdrop
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_hidden_layers))
        # A generator of its own, seeded alike on every rank: all DDP ranks skip the same layers.
        self.layerdrop_generator = torch.Generator().manual_seed(config.layerdrop_seed)
        # recompute each layer's activations in the backward pass: less memory, ~30 % more time
        self.gradient_checkpointing = False

    def layers_to_skip(self) -> list[bool]:
        if not (self.training and self.layerdrop > 0.0):
            return [False] * len(self.layers)
        draws = torch.rand(len(self.layers), generator=self.layerdrop_generator)
        return (draws < self.layerdrop).tolist()

    def forward(
        self,
        x: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        # x: (B, T, H); frame_mask: (B, T) bool, True on real frames
        key_mask = None
        if frame_mask is not None:
            x = x.masked_fill(~frame_mask[..., None], 0.0)  # padding must not leak into the conv
            key_mask = frame_mask[:, None, None, :]  # (B, 1, 1, T)
        x = x + self.pos_conv_embed(x)
        if not self.pre_norm:
            x = self.layer_norm(x)
        x = self.dropout(x)

        hidden_states: list[torch.Tensor] = []
        attentions: list[torch.Tensor] = []
        for layer, skip in zip(self.layers, self.layers_to_skip()):
            if output_hidden_states:
                hidden_states.append(x)
            if skip:
                # Keep the skipped layer in the autograd graph with zero weight, so that DDP
                # sees a gradient for every parameter without `find_unused_parameters`.
                x = x + 0.0 * sum(p.sum() for p in layer.parameters())
                continue
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x, weights = checkpoint(layer, x, key_mask, output_attentions, use_reentrant=False)
            else:
                x, weights = layer(x, key_mask, output_attentions)
            if output_attentions:
                attentions.append(weights)
        if output_hidden_states:
            # the last layer's output, before the pre-LN stack's final norm (as transformers 5)
            hidden_states.append(x)
        if self.pre_norm:
            x = self.layer_norm(x)
        return (
            x,
            tuple(hidden_states) if output_hidden_states else None,
            tuple(attentions) if output_attentions else None,
        )
