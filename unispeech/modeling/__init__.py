"""UniSpeech in plain PyTorch (no lightning, hydra, datasets or soundfile here)."""

from .config import UniSpeechConfig
from .masking import compute_mask_indices, sample_negative_indices
from .models import (
    UniSpeechForCTC,
    UniSpeechForPreTraining,
    UniSpeechForSequenceClassification,
    UniSpeechModel,
    UniSpeechPreTrainedModel,
)

__all__ = [
    "UniSpeechConfig",
    "UniSpeechModel",
    "UniSpeechForCTC",
    "UniSpeechForSequenceClassification",
    "UniSpeechForPreTraining",
    "UniSpeechPreTrainedModel",
    "compute_mask_indices",
    "sample_negative_indices",
]
