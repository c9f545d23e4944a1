"""Model outputs: dataclasses that also behave like the tuples `return_dict=False` gives."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch


class ModelOutput:
    """Fields set to None are left out of `to_tuple()`, as in `transformers`."""

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def __getitem__(self, key: int | str) -> Any:
        return getattr(self, key) if isinstance(key, str) else self.to_tuple()[key]

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


@dataclass
class BaseModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None  # (B, T, H)
    extract_features: torch.Tensor | None = None  # (B, T, C), layer-normed conv features
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    # (B, T) bool: the frames replaced by the mask embedding (None when nothing was masked)
    mask_time_indices: torch.Tensor | None = None


@dataclass
class CausalLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, vocab_size)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, num_labels)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class UniSpeechForPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    projected_states: torch.Tensor | None = None  # (B, T, H) context vectors c_t
    projected_quantized_states: torch.Tensor | None = None  # (B, T, H) targets q_t
    codevector_perplexity: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    # the parts of `loss`, each divided by the number of masked frames (see the model)
    contrastive_loss: torch.Tensor | None = None
    diversity_loss: torch.Tensor | None = None
    ctc_loss: torch.Tensor | None = None
    ctc_logits: torch.Tensor | None = None  # (B, T, num_ctc_classes)
    contrastive_accuracy: torch.Tensor | None = None
    num_masked_frames: torch.Tensor | None = None
    mask_time_indices: torch.Tensor | None = None
    # (G·V,) int64: the real frames that picked each codebook entry (hard picks); 0 = unused
    codevector_counts: torch.Tensor | None = None
