"""LightningModules for UniSpeech: multitask pretraining, CTC fine-tuning, classification."""

from unispeech.tasks.classification import ClassificationTask
from unispeech.tasks.ctc_finetuning import CTCFinetuningTask
from unispeech.tasks.pretraining import PretrainingTask, gumbel_temperature

__all__ = ["ClassificationTask", "CTCFinetuningTask", "PretrainingTask", "gumbel_temperature"]
