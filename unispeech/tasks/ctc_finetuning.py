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

from collections.abc import Sequence

import torch

from unispeech.modeling import UniSpeechForCTC
from unispeech.tasks.base import SpeechTask
from unispeech.tasks.checkpoints import build_finetune_model
from unispeech.tasks.metrics import ErrorCounts, ctc_greedy_decode, ids_to_tokens, labels_to_ids

HEAD_PREFIX = "lm_head."


class CTCFinetuningTask(SpeechTask):
    """Wraps ``UniSpeechForCTC``; ``vocabulary`` is the tokenizer's id → symbol list
    (``tokenizer_kind`` "phones" or "chars"); ``monitor`` picks the error rate for "best"."""

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
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        seed: int = 0,
        max_consecutive_nonfinite: int | None = 10,
    ) -> None:
        super().__init__(optimizer, scheduler, seed, max_consecutive_nonfinite)
        self.save_hyperparameters()
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
        self._counts = {"val": ErrorCounts(), "test": ErrorCounts()}

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
        self._counts["val"] = ErrorCounts()

    def on_test_epoch_start(self) -> None:
        self._counts["test"] = ErrorCounts()

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
        for hyp, ref in zip(self.decode(out.logits, batch["attention_mask"]), labels_to_ids(batch["labels"])):
            self._counts[stage].update(hyp, ids_to_tokens(ref, self.vocabulary))

    def decode(self, logits: torch.Tensor, attention_mask: torch.Tensor) -> list[list[str]]:
        """Greedy CTC decoding to vocabulary symbols."""
        ids = ctc_greedy_decode(logits, self.frame_lengths(attention_mask), blank_id=0)
        return [ids_to_tokens(row, self.vocabulary) for row in ids]

    def _log_rates(self, stage: str) -> None:
        counts = self.trainer.strategy.reduce(self._counts[stage].as_tensor().to(self.device), reduce_op="sum")
        for name, value in ErrorCounts.rates_from_tensor(counts.cpu()).items():
            self.log(f"{stage}/{name}", value, prog_bar=name == self.monitor)
