"""`SpeechDataset`: a map-style torch dataset over a prepared corpus table.

Only plain Python lists/arrays are kept (no Arrow handles), so the dataset pickles cheaply
into DataLoader workers. Audio is decoded lazily with soundfile and resampled with soxr.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import SAMPLING_RATE, load_audio, normalize, random_crop

logger = logging.getLogger("unispeech.data")


class SpeechDataset(Dataset):
    """Items: {"id", "input_values" (float32 np), "labels" (list[int] | None), "class_label"}.

    ``segments``: (start, end) seconds of each file to read (end < 0: to its end), for
    recordings that hold several utterances. ``max_sample_size`` (samples) randomly crops
    longer clips, for unlabeled utterances only (a crop would cut a labeled clip's
    transcript); labeled clips should be bounded with the corpus' ``max_duration`` instead.
    """

    def __init__(
        self,
        paths: Sequence[str],
        ids: Sequence[str],
        durations: Sequence[float],
        labels: Sequence[Sequence[int] | None] | None = None,
        class_labels: Sequence[int] | None = None,
        do_normalize: bool = True,
        max_sample_size: int | None = None,
        seed: int = 0,
        sampling_rate: int = SAMPLING_RATE,
        segments: Sequence[tuple[float, float]] | None = None,
    ) -> None:
        n = len(paths)
        if not (len(ids) == len(durations) == n):
            raise ValueError("paths, ids and durations must have the same length")
        self.paths = list(paths)
        self.ids = list(ids)
        self.labels = list(labels) if labels is not None else [None] * n
        # (start, end) seconds within each file (Kaldi `segments`); None: whole files
        self.segments = list(segments) if segments is not None else None
        self.class_labels = list(class_labels) if class_labels is not None else None
        self.do_normalize = do_normalize
        self.max_sample_size = max_sample_size
        self.seed = seed
        self.sampling_rate = sampling_rate
        self._draws = 0
        self._fallbacks = 0  # clips that vanished after preparation and were replaced
        # Durations the batch sampler should see: cropped clips count at most the crop size.
        durations = np.asarray(durations, dtype=np.float64)
        if max_sample_size:
            crop_seconds = max_sample_size / sampling_rate
            unlabeled = np.array([lab is None for lab in self.labels])
            durations = np.where(unlabeled, np.minimum(durations, crop_seconds), durations)
        self.durations = durations

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            start, end = self.segments[index] if self.segments is not None else (0.0, -1.0)
            wav = load_audio(self.paths[index], self.sampling_rate, start=start, end=end)
        except RuntimeError as err:
            # Validated at preparation time, so this means the file changed since. Rather than
            # killing a long run mid-epoch, serve the next utterance (with its own labels).
            if self._fallbacks >= len(self):
                raise
            self._fallbacks += 1
            logger.warning("cannot decode %s (%s); serving the next utterance instead", self.paths[index], err)
            return self[(index + 1) % len(self)]
        labels = self.labels[index]
        if self.max_sample_size and labels is None and len(wav) > self.max_sample_size:
            # Varies across epochs and workers, reproducible under a global seed.
            self._draws += 1
            rng = np.random.default_rng([self.seed, torch.initial_seed() % (2**63), self._draws, index])
            wav = random_crop(wav, self.max_sample_size, rng)
        if self.do_normalize and len(wav):
            wav = normalize(wav)
        item: dict[str, Any] = {"id": self.ids[index], "input_values": wav, "labels": labels}
        if self.class_labels is not None:
            item["class_label"] = int(self.class_labels[index])
        return item
