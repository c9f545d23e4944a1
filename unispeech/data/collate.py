"""Collation into the batch format of docs/CONTRACTS.md:

    input_values   float32 (B, S), zero padded, 16 kHz
    attention_mask int64   (B, S), 1 on real samples
    labels         int64   (B, L), token ids, IGNORE_INDEX (-100) padded; all IGNORE_INDEX for unlabeled rows
    labeled        bool    (B,)
    class_labels   int64   (B,)  only for classification corpora
    ids            list[str]

`Collator` builds it from the items of a `SpeechDataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from unispeech.modeling.losses import IGNORE_INDEX


class Collator:
    """Pads a list of `SpeechDataset` items. ``pad_to_multiple_of`` rounds the padded length
    up (e.g. 320 samples = one encoder frame) to limit distinct shapes."""

    def __init__(self, pad_to_multiple_of: int | None = None) -> None:
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        lengths = [len(item["input_values"]) for item in items]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        values = np.zeros((len(items), width), dtype=np.float32)
        mask = np.zeros((len(items), width), dtype=np.int64)
        for row, item in enumerate(items):
            values[row, : lengths[row]] = item["input_values"]
            mask[row, : lengths[row]] = 1
        label_rows = [item.get("labels") for item in items]
        label_width = max((len(lab) for lab in label_rows if lab is not None), default=0)
        # Keep at least one column so that an all-unlabeled batch still has a (B, 1) tensor.
        labels = torch.full((len(items), max(label_width, 1)), IGNORE_INDEX, dtype=torch.long)
        for row, lab in enumerate(label_rows):
            if lab:
                labels[row, : len(lab)] = torch.as_tensor(lab, dtype=torch.long)
        batch: dict[str, Any] = {
            "input_values": torch.from_numpy(values),
            "attention_mask": torch.from_numpy(mask),
            "labels": labels,
            "labeled": torch.tensor([lab is not None and len(lab) > 0 for lab in label_rows], dtype=torch.bool),
            "ids": [item["id"] for item in items],
        }
        if "class_label" in items[0]:
            batch["class_labels"] = torch.tensor([item["class_label"] for item in items], dtype=torch.long)
        return batch
