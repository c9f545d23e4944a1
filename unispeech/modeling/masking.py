"""Span masking and negative sampling, vectorised in torch on the model's device.

Both draw from an optional `torch.Generator` (reproducible, and independent of the global
RNG) and never touch padding: a span never starts in padding, and a negative is never a
padded frame nor the positive itself.
"""

from __future__ import annotations

import torch


def uniform(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) draws on `device` from `generator`, wherever that generator lives."""
    if generator is not None and generator.device != device:
        # draw where the generator lives, then move: keeps CPU generators usable with CUDA models
        return torch.rand(shape, generator=generator, device=generator.device).to(device)
    return torch.rand(shape, generator=generator, device=device)


def frame_mask_from_lengths(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(B,) lengths → (B, T) bool, True on the first `length` frames."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def compute_mask_indices(
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    lengths: torch.Tensor | None = None,
    min_masks: int = 0,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random spans of `mask_length` frames covering about `mask_prob` of each sequence.

    Row b gets n_b = floor(mask_prob · len_b / mask_length + u) span starts (u ~ U[0, 1)
    rounds stochastically), at least `min_masks`, at most what fits; starts are drawn
    uniformly without replacement from [0, len_b − mask_length]. Spans may overlap, as in
    wav2vec 2.0, so the masked fraction is a little under `mask_prob`.

    Returns a (B, T) bool tensor.
    """
    batch, time = shape
    device = torch.device(device)
    if lengths is None:
        lengths = torch.full((batch,), time, device=device, dtype=torch.long)
    lengths = lengths.to(device=device, dtype=torch.long)
    if mask_prob <= 0.0 and min_masks <= 0:
        return torch.zeros(batch, time, dtype=torch.bool, device=device)
    span = min(mask_length, time)

    # number of spans per row
    num_starts = (lengths - span + 1).clamp(min=0)  # (B,) positions a span may start at
    expected = mask_prob * lengths.float() / span + uniform((batch,), device, generator)
    num_spans = expected.floor().long().clamp(min=min_masks)
    num_spans = torch.minimum(num_spans, num_starts)  # (B,)
    max_spans = int(num_spans.max().item()) if batch else 0
    if max_spans == 0:
        return torch.zeros(batch, time, dtype=torch.bool, device=device)

    # draw distinct starts: the top-n of random scores over the allowed start positions
    scores = uniform((batch, time), device, generator)
    allowed = torch.arange(time, device=device)[None, :] < num_starts[:, None]
    scores = scores.masked_fill(~allowed, -1.0)
    starts = scores.topk(max_spans, dim=1).indices  # (B, S)
    keep = torch.arange(max_spans, device=device)[None, :] < num_spans[:, None]  # (B, S)

    positions = starts[:, :, None] + torch.arange(span, device=device)  # (B, S, L)
    positions = positions.masked_fill(~keep[:, :, None], 0).flatten(1)
    values = keep[:, :, None].expand(-1, -1, span).flatten(1)
    # count span memberships per frame: overlapping spans add up instead of overwriting
    hits = torch.zeros(batch, time, dtype=torch.int32, device=device)
    hits.scatter_add_(1, positions, values.to(torch.int32))
    return hits > 0


def sample_negative_indices(
    lengths: torch.Tensor,
    max_length: int,
    num_negatives: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """For every frame t of row b, `num_negatives` distractor frames drawn uniformly, with
    replacement, from the other real frames of the same utterance.

    Returns (B, T, K) long indices into the flattened (B·T) frame axis (the layout of
    `transformers`' `sampled_negative_indices`). Rows of length ≤ 1 have no other frame;
    their indices point at the frame itself and the loss masks them as identical.
    """
    device = lengths.device
    batch = lengths.shape[0]
    lengths = lengths.long()
    draws = uniform((batch, max_length, num_negatives), device, generator)
    others = (lengths - 1).clamp(min=1)[:, None, None]  # (B, 1, 1) frames that are not t
    idx = (draws * others).long()  # uniform in [0, len_b − 2]
    t = torch.arange(max_length, device=device)[None, :, None]
    idx = idx + (idx >= t).long()  # skip the positive: [0, len_b − 1] \ {t}
    idx = torch.minimum(idx, (lengths - 1).clamp(min=0)[:, None, None])
    offsets = (torch.arange(batch, device=device) * max_length)[:, None, None]
    return idx + offsets
