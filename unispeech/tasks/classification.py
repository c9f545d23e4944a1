"""Utterance classification (keyword spotting) on a pretrained UniSpeech encoder.

``UniSpeechForSequenceClassification`` mean-pools the projected encoder output over valid
frames; with ``use_weighted_layer_sum`` it first mixes every transformer layer with learned
softmax weights (SUPERB style), which usually beats the last layer for keyword spotting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from unispeech.modeling import UniSpeechForSequenceClassification
from unispeech.tasks.base import SpeechTask
from unispeech.tasks.loading import build_finetune_model


class ClassificationTask(SpeechTask):
    """Wraps ``UniSpeechForSequenceClassification``; ``labels`` are the class names."""

    kind = "classification"
    model_class = UniSpeechForSequenceClassification
    data_mode = "classification"

    from_data = ("labels",)

    @classmethod
    def data_arguments(cls, datamodule: Any) -> dict[str, Any]:
        return {"labels": list(datamodule.label_names)}

    def __init__(
        self,
        model: dict,
        labels: Sequence[str],
        pretrained: str | None = None,
        freeze_feature_encoder: bool = True,
        use_weighted_layer_sum: bool = False,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        seed: int = 0,
        max_consecutive_nonfinite: int | None = 10,
    ) -> None:
        super().__init__(optimizer, scheduler, seed, max_consecutive_nonfinite)
        self.save_hyperparameters(ignore=list(self.NOT_HYPERPARAMETERS))
        self.labels = list(labels)
        self.model = build_finetune_model(
            UniSpeechForSequenceClassification,
            model,
            pretrained,
            freeze_feature_encoder,
            id2label=dict(enumerate(self.labels)),
            use_weighted_layer_sum=bool(use_weighted_layer_sum),
        )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, correct = self._step(batch)
        size = len(batch["ids"])
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True, batch_size=size)
        self.log("train/accuracy", correct / size, on_step=True, batch_size=size)
        self.log_lr()
        self.log_throughput(batch)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate("test", batch)

    def _evaluate(self, stage: str, batch: dict) -> None:
        loss, correct = self._step(batch)
        size = len(batch["ids"])
        self.log(f"{stage}/loss", loss, on_epoch=True, batch_size=size, sync_dist=True)
        # batch_size-weighted mean of per-batch accuracy = overall accuracy
        self.log(f"{stage}/accuracy", correct / size, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)

    def _step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch["input_values"], attention_mask=batch["attention_mask"], labels=batch["class_labels"])
        correct = (out.logits.argmax(-1) == batch["class_labels"]).sum().float()
        return out.loss, correct
