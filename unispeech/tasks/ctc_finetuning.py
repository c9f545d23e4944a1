"""CTC fine-tuning of a pretrained UniSpeech encoder on phones or characters.

The paper's recipe: a fresh output layer sized to the tokenizer, the convolutional feature
encoder frozen throughout, the transformer frozen for the first ``freeze_transformer_steps``
updates, tri-stage learning rate, time and channel masking, greedy decoding, PER.

Freezing the transformer for N updates is done by dropping its gradients before the
optimizer step rather than by ``requires_grad=False``: under DDP every parameter that
requires a gradient must get one on every rank every step, and toggling ``requires_grad``
after DDP has wrapped the model is not allowed. AdamW skips parameters whose grad is None,
so frozen weights see neither updates nor weight decay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from unispeech.modeling import UniSpeechForCTC
from unispeech.tasks.base import SpeechTask
from unispeech.tasks.loading import build_finetune_model
from unispeech.tasks.metrics import RATES, ErrorRates, greedy_decode, reference_tokens

HEAD_PREFIX = "lm_head."


class CTCFinetuningTask(SpeechTask):
    """Wraps ``UniSpeechForCTC``; ``vocabulary`` is the tokenizer's id → symbol list
    (``tokenizer_kind`` "phones" or "chars"); ``monitor`` picks the error rate for "best"."""

    kind = "ctc"
    model_class = UniSpeechForCTC
    data_mode = "ctc"

    from_data = ("vocabulary", "tokenizer_kind", "language")

    @classmethod
    def data_arguments(cls, datamodule: Any) -> dict[str, Any]:
        tokenizer = datamodule.tokenizer
        return {"vocabulary": tokenizer.vocabulary(), "tokenizer_kind": tokenizer.kind, "language": tokenizer.language}

    def __init__(
        self,
        model: dict,
        vocabulary: Sequence[str],
        pretrained: str | None = None,
        freeze_feature_encoder: bool = True,
        freeze_transformer_steps: int = 0,
        monitor: str = "per",
        tokenizer_kind: str = "phones",
        language: str = "",
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        seed: int = 0,
        max_consecutive_nonfinite: int | None = 10,
    ) -> None:
        super().__init__(optimizer, scheduler, seed, max_consecutive_nonfinite)
        self.save_hyperparameters(ignore=list(self.NOT_HYPERPARAMETERS))
        self.vocabulary = list(vocabulary)
        if monitor not in ("per", "cer", "wer"):
            raise ValueError(f"task.monitor={monitor!r} must be one of per, cer, wer")
        self.monitor = monitor
        # kept so that export/transcribe can rebuild the tokenizer from the checkpoint alone
        self.tokenizer_kind = tokenizer_kind
        self.language = language
        # architecture from the pretrained model; regularisation (masking, dropout) from our config
        self.model = build_finetune_model(
            UniSpeechForCTC, model, pretrained, freeze_feature_encoder, vocab_size=len(self.vocabulary), pad_token_id=0
        )
        self.freeze_transformer_steps = int(freeze_transformer_steps)
        self.scores = torch.nn.ModuleDict({"val": ErrorRates(), "test": ErrorRates()})

    # -- training -----------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.model(batch["input_values"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        self.log("train/loss", out.loss.detach(), on_step=True, prog_bar=True, batch_size=len(batch["ids"]))
        self.log("train/transformer_frozen", float(self.transformer_frozen()), on_step=True, batch_size=1)
        self.log_lr()
        self.log_throughput(batch)
        return out.loss

    def transformer_frozen(self) -> bool:
        return self.global_step < self.freeze_transformer_steps

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.transformer_frozen():
            for name, param in self.model.named_parameters():
                if not name.startswith(HEAD_PREFIX):
                    param.grad = None

    # -- evaluation -----------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.scores["val"].reset()

    def on_test_epoch_start(self) -> None:
        self.scores["test"].reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate("test", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_rates("val")

    def on_test_epoch_end(self) -> None:
        self._log_rates("test")

    def _evaluate(self, stage: str, batch: dict) -> None:
        out = self.model(batch["input_values"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        self.log(f"{stage}/loss", out.loss.detach(), on_epoch=True, batch_size=len(batch["ids"]), sync_dist=True)
        hyps = greedy_decode(out.logits, self.frame_lengths(batch["attention_mask"]), self.vocabulary)
        self.scores[stage].update(hyps, reference_tokens(batch["labels"], self.vocabulary))

    def _log_rates(self, stage: str) -> None:
        rates = self.scores[stage].compute()  # over all ranks: every rank takes part
        for name in RATES:
            self.log(f"{stage}/{name}", rates[name], prog_bar=name == self.monitor)
