"""UniSpeech: multitask phonetic-CTC + contrastive speech pretraining."""

from .modeling import (
    UniSpeechConfig,
    UniSpeechForCTC,
    UniSpeechForPreTraining,
    UniSpeechForSequenceClassification,
    UniSpeechModel,
)

__version__ = "0.1.0"

__all__ = [
    "UniSpeechConfig",
    "UniSpeechModel",
    "UniSpeechForCTC",
    "UniSpeechForSequenceClassification",
    "UniSpeechForPreTraining",
    "__version__",
]
