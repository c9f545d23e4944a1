"""UniSpeech: multitask phonetic-CTC + contrastive speech pretraining."""

__version__ = "0.1.0"
