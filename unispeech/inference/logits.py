"""A CTC model's logits of 16 kHz waveforms, for the inference commands (`Transcriber`,
`Aligner`): short recordings padded into one batch, a recording longer than one window in
overlapping windows (``unispeech.inference.chunking``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from unispeech.data.feature_extractor import UniSpeechFeatureExtractor
from unispeech.inference.chunking import FrameGrid, context_frames, in_windows, windowed_logits


class CTCLogits:
    """``model`` (already on ``device``) run under ``autocast_dtype`` (None: float32), windows
    of ``chunk_length_s`` with ``stride_length_s`` of context (see `context_frames`)."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        chunk_length_s: float,
        stride_length_s: float | Sequence[float] | None,
    ) -> None:
        self.model, self.device, self.autocast_dtype = model, device, autocast_dtype
        self.grid = FrameGrid.of(model.config)
        # window length and the context dropped on its left and right, in frames
        self.chunk_frames, self.left_frames, self.right_frames = context_frames(
            self.grid, chunk_length_s, stride_length_s
        )
        self.features = UniSpeechFeatureExtractor(do_normalize=True, return_attention_mask=True)

    def is_long(self, samples: int) -> bool:
        """Whether a recording of ``samples`` samples is decoded in windows (longer than one)."""
        return in_windows(self.grid, self.chunk_frames, samples)

    @torch.inference_mode()
    def batch_logits(self, waveforms: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, V) and valid frames (B,) of whole waveforms, padded into one batch."""
        batch = self.features(list(waveforms), return_tensors="pt")
        input_values = self._to_device(batch["input_values"])
        samples = batch["attention_mask"].sum(-1)  # (B,) on the host
        # no padding (always so for one file): no mask, so that attention may take SDPA's
        # flash kernel on a GPU, which accepts no mask; the output is the same
        padded = bool((samples < input_values.shape[1]).any())
        attention_mask = self._to_device(batch["attention_mask"]) if padded else None
        return self._forward(input_values, attention_mask), self.model.get_feat_extract_output_lengths(samples)

    @torch.inference_mode()
    def waveform_logits(self, wave: Any, batch_size: int) -> torch.Tensor:
        """Logits (T, V), float32 on the CPU, of one waveform of any length: whole, or stitched
        from windows run ``batch_size`` at a time when it is longer than one window."""
        wave = np.asarray(wave, dtype=np.float32)
        if not self.is_long(len(wave)):
            logits, _ = self.batch_logits([wave])
            return logits[0].float().cpu()
        return windowed_logits(
            self.model,
            wave,
            self.grid,
            (self.chunk_frames, self.left_frames, self.right_frames),
            lambda batch: self._forward(self._to_device(batch)),
            batch_size,
            self.device,
        )

    def _forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            return self.model(input_values, attention_mask=attention_mask).logits

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        # pinned host memory lets the copy to the GPU run asynchronously
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)
