"""Long recordings in overlapping windows: CTC logits of every window, stitched into one sequence.

Attention is global, so decoding a recording whole costs memory and time that grow with its
length (the feature encoder's activations linearly, attention quadratically). Instead, cut it
into windows of ``chunk`` frames that overlap, run the windows in small batches, and keep of
each window only its middle: the ``left`` and ``right`` context frames at its edges are
computed, so that the kept frames see audio on both sides, and then dropped. This is the
``chunk_length_s`` / ``stride_length_s`` scheme of the ``transformers`` ASR pipeline, with
the same default context: ``chunk_length_s / 6`` on each side.

Everything happens on the model's frame grid. Frame ``t`` is computed from samples
``[t * hop, t * hop + field)`` (``hop`` = product of ``config.conv_stride``, 320 samples =
20 ms; ``field`` = the encoder's receptive field, 400 samples), so a window that starts at
sample ``first * hop`` and holds ``(n - 1) * hop + field`` samples makes exactly the frames
``first .. first + n - 1`` of the whole recording. The kept parts tile ``0 .. T - 1`` with
no gap and no overlap, ``T = model.get_feat_extract_output_lengths(len(wave))``: stitched
frame ``t`` is frame ``t`` of whole-file decoding, computed with less context.

Window ``k`` starts at frame ``k * (chunk - left - right)``; it keeps its frames from
``left`` after its start (0 for the first) to ``right`` before its end. The last window is
moved back to end at the last frame, so every window has the same length (a batch of them
needs no padding and no attention mask) and the last one gets at least ``left`` frames of
context, not a short tail with little. A recording of at most ``chunk`` frames is one window,
the whole file.

Two statistics of whole-file decoding span the whole recording, and windows get them from it
rather than from their own samples: the input normalisation (zero mean, unit variance) and,
in ``feat_extract_norm="group"`` models, the GroupNorm of the first convolution, which
normalises each channel over time. With both, a window's feature-encoder output equals the
whole file's at the same frames; what still differs is the transformer's view, which ends at
the window's edges (measured on the demo model in docs/inference.md: 99 % of frames keep
their best token with 20 s windows, 97 % with window statistics for the GroupNorm).
Both are gathered one window-sized block at a time, so no full-length copy is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from unispeech.data.audio import NORM_EPS, SAMPLING_RATE
from unispeech.modeling.feature_encoder import ConvLayer, FeatureEncoder

# 20 s windows (1,000 frames). Attention over a window costs 20 s x 20 s; the context
# dropped on both sides (1/6 each) makes every kept frame cost 1.5 frames of compute. Longer
# windows waste less on context but cost more memory and time per window; 20 s covers most
# single utterances (CommonVoice clips are under 10 s), which then decode whole as before.
DEFAULT_CHUNK_LENGTH_S = 20.0
# the share of a window, on each side, that is context: transformers' pipeline default
DEFAULT_STRIDE_FRACTION = 1 / 6


@dataclass(frozen=True)
class FrameGrid:
    """Where the model's frames lie in the waveform."""

    hop: int  # samples from one frame to the next (320)
    field: int  # samples one frame is computed from (400)

    @classmethod
    def of(cls, config: Any) -> FrameGrid:
        hop = math.prod(config.conv_stride)
        field = 1
        for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
            field = (field - 1) * stride + kernel
        return cls(hop=hop, field=field)

    @property
    def frame_seconds(self) -> float:
        return self.hop / SAMPLING_RATE

    def frames(self, samples: int) -> int:
        """Frames made from ``samples`` samples (as ``get_feat_extract_output_lengths``)."""
        return 0 if samples < self.field else (samples - self.field) // self.hop + 1

    def samples(self, frames: int) -> int:
        """The fewest samples that make ``frames`` frames."""
        return (frames - 1) * self.hop + self.field

    def seconds_to_frames(self, seconds: float) -> int:
        return round(seconds * SAMPLING_RATE / self.hop)


@dataclass(frozen=True)
class Window:
    """One window: samples ``[start_sample, end_sample)`` make frames ``first_frame ..``;
    of those, the whole-recording frames ``[keep_from, keep_to)`` are kept."""

    start_sample: int
    end_sample: int
    first_frame: int
    keep_from: int
    keep_to: int

    def kept_slice(self) -> slice:
        """The kept frames, as indices into this window's own frames."""
        return slice(self.keep_from - self.first_frame, self.keep_to - self.first_frame)


def plan_windows(num_samples: int, grid: FrameGrid, chunk: int, left: int, right: int) -> list[Window]:
    """Windows of ``chunk`` frames over a recording of ``num_samples`` samples, with ``left``
    and ``right`` frames of context dropped on their inner edges. ``chunk`` 0 (or a recording
    of at most ``chunk`` frames) gives one window, the whole recording."""
    total = grid.frames(num_samples)
    if chunk <= 0 or total <= chunk:
        return [Window(0, num_samples, 0, 0, total)]
    step = chunk - left - right
    if left < 0 or right < 0 or step <= 0:
        raise ValueError(f"context of {left} + {right} frames leaves nothing of a {chunk}-frame window")
    windows: list[Window] = []
    kept = 0  # frames [0, kept) are covered by earlier windows
    start = 0
    while True:
        if start + chunk >= total:  # the last window: moved back to end at the last frame
            start = total - chunk
            windows.append(_window(grid, start, chunk, kept, total))
            return windows
        keep_to = start + chunk - right
        windows.append(_window(grid, start, chunk, kept, keep_to))
        kept, start = keep_to, start + step  # the next window starts `left` frames before keep_to


def _window(grid: FrameGrid, first: int, frames: int, keep_from: int, keep_to: int) -> Window:
    start_sample = first * grid.hop
    return Window(start_sample, start_sample + grid.samples(frames), first, keep_from, keep_to)


def in_windows(grid: FrameGrid, chunk_frames: int, samples: int) -> bool:
    """Whether a recording of ``samples`` samples is decoded in windows of ``chunk_frames``
    (0: never): it makes more frames than one window holds."""
    return chunk_frames > 0 and grid.frames(samples) > chunk_frames


def context_frames(
    grid: FrameGrid, chunk_length_s: float, stride_length_s: float | Sequence[float] | None = None
) -> tuple[int, int, int]:
    """(chunk, left, right) in frames from seconds; stride ``None`` = chunk / 6 on each side, a
    number = that on each side, a pair = (left, right)."""
    if chunk_length_s < 0:
        raise ValueError(f"chunk length must be 0 (never chunk) or positive, got {chunk_length_s} s")
    if stride_length_s is None:
        stride_length_s = chunk_length_s * DEFAULT_STRIDE_FRACTION
    if isinstance(stride_length_s, (int, float)):
        stride_length_s = (stride_length_s, stride_length_s)
    if len(stride_length_s) != 2:
        raise ValueError(f"stride length is one number or two (left, right), got {list(stride_length_s)}")
    left_s, right_s = stride_length_s
    chunk, left, right = (grid.seconds_to_frames(s) for s in (chunk_length_s, left_s, right_s))
    if chunk_length_s > 0 and (chunk < 1 or left < 0 or right < 0 or left + right >= chunk):
        raise ValueError(
            f"a {chunk_length_s} s chunk with {left_s} s + {right_s} s of context (stride) keeps nothing: "
            "the strides must be at least 0 and together shorter than the chunk"
        )
    return chunk, left, right


class NormalizedWave:
    """A waveform normalised over its whole length (zero mean, unit variance: what whole-file
    decoding feeds the model), handed out one slice at a time so that no normalised copy of a
    long recording is made."""

    def __init__(self, wave: np.ndarray) -> None:
        self.wave = np.asarray(wave, dtype=np.float32)
        # the float32 arithmetic of unispeech.data.audio.normalize, so the values are equal
        self.mean = self.wave.mean()
        self.scale = np.sqrt(self.wave.var() + NORM_EPS)

    def __len__(self) -> int:
        return len(self.wave)

    def cut(self, start: int, end: int) -> np.ndarray:
        return (self.wave[start:end] - self.mean) / self.scale


def stitched_logits(
    run_windows: Callable[[torch.Tensor], torch.Tensor],
    wave: NormalizedWave,
    windows: Sequence[Window],
    batch_size: int,
) -> torch.Tensor:
    """The logits (T, V) of a whole recording from its windows' logits, on the CPU in float32.

    ``run_windows`` maps a batch of equal-length windows (B, S) to logits (B, frames, V);
    ``batch_size`` windows run at once, so memory depends on the window, not on the length of
    the recording.
    """
    kept: list[torch.Tensor] = []
    for first in range(0, len(windows), batch_size):
        group = windows[first : first + batch_size]
        batch = np.stack([wave.cut(w.start_sample, w.end_sample) for w in group])  # (B, S)
        logits = run_windows(torch.from_numpy(batch))  # (B, chunk, V)
        kept += [row[w.kept_slice()].float().cpu() for w, row in zip(group, logits)]
    return torch.cat(kept)  # (T, V)


def windowed_logits(
    model: nn.Module,
    wave: np.ndarray,
    grid: FrameGrid,
    frames: tuple[int, int, int],
    run_windows: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The logits (T, V) of one recording, on the CPU in float32, from windows of
    ``frames = (chunk, left, right)`` (`context_frames`), ``batch_size`` at a time, with the
    whole recording's input normalisation and first-layer GroupNorm statistics. ``run_windows``
    as `stitched_logits` takes it (it moves the batch to the device)."""
    windows = plan_windows(len(wave), grid, *frames)
    normalized = NormalizedWave(wave)
    window_samples = windows[0].end_sample - windows[0].start_sample
    with whole_recording_group_norm(model, normalized, window_samples, device):
        return stitched_logits(run_windows, normalized, windows, batch_size)


class FixedGroupNorm(nn.Module):
    """A per-channel GroupNorm with given statistics (C,) instead of those of its input."""

    def __init__(self, norm: nn.GroupNorm, mean: torch.Tensor, var: torch.Tensor) -> None:
        super().__init__()
        # (x - mean) / std * weight + bias = x * scale + shift, one pass over x
        scale = torch.rsqrt(var.float() + norm.eps) * norm.weight.detach()
        self.register_buffer("scale", scale[:, None])  # (C, 1)
        self.register_buffer("shift", (norm.bias.detach() - mean.float() * scale)[:, None])  # (C, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        return x.mul(self.scale).add_(self.shift)


@contextmanager
def whole_recording_group_norm(
    model: nn.Module, wave: NormalizedWave, block_samples: int, device: torch.device | str = "cpu"
) -> Iterator[None]:
    """While open, the first convolution's GroupNorm (``feat_extract_norm="group"`` models;
    others are left alone) uses the statistics of the whole recording, gathered block by block."""
    layer = _group_norm_layer(model)
    if layer is None:
        yield
        return
    kernel, stride = layer.conv.kernel_size[0], layer.conv.stride[0]
    outputs = (len(wave) - kernel) // stride + 1  # first-layer frames of the whole recording
    per_block = max(1, (block_samples - kernel) // stride + 1)
    total = torch.zeros(layer.conv.out_channels, dtype=torch.float64, device=device)
    squares = torch.zeros_like(total)
    with torch.inference_mode():
        for first in range(0, outputs, per_block):
            last = min(first + per_block, outputs) - 1
            block = torch.from_numpy(wave.cut(first * stride, last * stride + kernel)).to(device)
            out = layer.conv(block[None, None].float())[0].double()  # (C, frames of this block)
            total += out.sum(-1)
            squares += out.square().sum(-1)
    mean = total / outputs
    var = (squares / outputs - mean.square()).clamp_min(0)  # GroupNorm's variance is the biased one
    original = layer.layer_norm
    layer.layer_norm = FixedGroupNorm(original, mean, var)
    try:
        yield
    finally:
        layer.layer_norm = original


def _group_norm_layer(model: nn.Module) -> ConvLayer | None:
    encoder = next((m for m in model.modules() if isinstance(m, FeatureEncoder)), None)
    first = encoder.conv_layers[0] if encoder is not None else None
    return first if first is not None and first.norm == "group" else None
