"""Gumbel-softmax product quantizer (wav2vec 2.0 / UniSpeech).

G codebooks ("groups") of V entries each; a frame picks one entry per group and the
concatenation of the G picks is its codevector (codevector_dim = G · D/G).
Training draws the pick with a hard Gumbel-softmax at temperature τ (one-hot forward,
soft gradient: straight-through); evaluation takes the argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import UniSpeechConfig
from .masking import uniform


@dataclass
class QuantizerOutput:
    codevectors: torch.Tensor  # (B, T, codevector_dim)
    perplexity: torch.Tensor  # scalar: Σ_g exp(H(mean soft distribution of group g))
    indices: torch.Tensor  # (B, T, G) the picked entry per group


class GumbelVectorQuantizer(nn.Module):
    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__()
        self.num_groups = config.num_codevector_groups
        self.num_vars = config.num_codevectors_per_group
        entry_dim = config.codevector_dim // self.num_groups
        # one row per (group, entry); stored as (1, G·V, D/G) like the published checkpoints
        self.codevectors = nn.Parameter(torch.empty(1, self.num_groups * self.num_vars, entry_dim).uniform_())
        self.weight_proj = nn.Linear(config.conv_dim[-1], self.num_groups * self.num_vars)
        self.temperature = 2.0  # annealed by the training task

    def forward(
        self,
        features: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> QuantizerOutput:
        # features: (B, T, C); frame_mask: (B, T) bool, the frames that count for perplexity
        b, t, _ = features.shape
        g, v = self.num_groups, self.num_vars
        logits = self.weight_proj(features).float().view(b * t, g, v)  # (N, G, V), float32

        if self.training:
            noise = uniform(logits.shape, logits.device, generator)
            exponential = (-torch.log(noise.clamp_min(1e-10))).clamp_min(1e-10)  # E ~ Exp(1)
            gumbel = -torch.log(exponential)  # G = −log E ~ Gumbel(0, 1)
            soft_pick = ((logits + gumbel) / self.temperature).softmax(dim=-1)
            indices = soft_pick.argmax(dim=-1)  # (N, G)
            hard_pick = torch.zeros_like(soft_pick).scatter_(-1, indices[..., None], 1.0)
            onehot = hard_pick - soft_pick.detach() + soft_pick  # straight-through
            distribution = logits.softmax(dim=-1)  # perplexity uses the noise-free softmax
        else:
            indices = logits.argmax(dim=-1)
            onehot = torch.zeros_like(logits).scatter_(-1, indices[..., None], 1.0)
            distribution = onehot

        if frame_mask is not None:
            weights = frame_mask.reshape(-1, 1, 1).to(distribution.dtype)
            mean_dist = (distribution * weights).sum(0) / weights.sum().clamp_min(1.0)  # (G, V)
        else:
            mean_dist = distribution.mean(0)
        perplexity = torch.exp(-torch.special.xlogy(mean_dist, mean_dist).sum(-1)).sum()

        codebook = self.codevectors.view(g, v, -1)  # (G, V, D/G)
        picked = torch.einsum("ngv,gvd->ngd", onehot.to(codebook.dtype), codebook)  # (N, G, D/G)
        return QuantizerOutput(picked.reshape(b, t, -1), perplexity, indices.view(b, t, g))


def count_codevector_picks(indices: torch.Tensor, frame_mask: torch.Tensor, num_vars: int) -> torch.Tensor:
    """(G·V,) int64: how many frames of ``frame_mask`` picked each codebook entry (hard picks).

    ``indices``: (B, T, G) from ``QuantizerOutput``; ``frame_mask``: (B, T) bool, the real
    (non-padded) frames. Entries with a count of 0 are unused by the batch. An ``index_add``
    of integers: exact, deterministic, and no host sync (boolean indexing would need one).
    """
    g = indices.shape[-1]
    offsets = torch.arange(g, device=indices.device) * num_vars  # group g's entries start at g·V
    flat = (indices + offsets).reshape(-1)
    weights = frame_mask[..., None].expand_as(indices).reshape(-1).long()
    return torch.zeros(g * num_vars, dtype=torch.long, device=indices.device).index_add_(0, flat, weights)
