"""Multitask UniSpeech pretraining: phonetic CTC on labeled rows + contrastive on all rows.

The loss itself lives in ``UniSpeechForPreTraining.forward``. This module adds what belongs
to the training procedure: Gumbel temperature annealing (a pure function of the optimizer
step, so a resumed run continues at the right temperature), feature-encoder gradient scaling,
the optimizer and schedule, logging of every loss part, and validation PER of the phonetic
CTC head with greedy decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from unispeech.modeling import UniSpeechConfig, UniSpeechForPreTraining
from unispeech.tasks.base import SpeechTask
from unispeech.tasks.checkpoints import load_backbone_weights
from unispeech.tasks.metrics import ErrorCounts, ctc_greedy_decode, ids_to_tokens, labels_to_ids
from unispeech.tasks.optim import find_submodule, scale_gradients


def gumbel_temperature(step: int, max_temperature: float, min_temperature: float, decay: float) -> float:
    """τ = max(τ_max · decay^step, τ_min), per optimizer update (fairseq's schedule)."""
    return max(max_temperature * decay**step, min_temperature)


class PretrainingTask(SpeechTask):
    """Wraps ``UniSpeechForPreTraining``; ``phone_vocabulary`` sizes the phonetic CTC head."""

    def __init__(
        self,
        model: dict,
        phone_vocabulary: Sequence[str],
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        gumbel: dict | None = None,
        feature_grad_mult: float = 0.1,
        init_from: str | None = None,
        language: str = "",
        seed: int = 0,
    ) -> None:
        super().__init__(optimizer, scheduler, seed)
        self.save_hyperparameters()
        self.phone_vocabulary = list(phone_vocabulary)
        config = UniSpeechConfig.from_dict(dict(model), num_ctc_classes=len(self.phone_vocabulary))
        self.model = UniSpeechForPreTraining(config)
        if init_from:
            load_backbone_weights(self.model, init_from)  # heads of another size stay fresh
        self.gumbel = {"max_temperature": 2.0, "min_temperature": 0.5, "decay": 0.999995, **(gumbel or {})}
        self.feature_grad_mult = float(feature_grad_mult)
        self._grad_hooks = scale_gradients(find_submodule(self.model, "feature_extractor"), self.feature_grad_mult)
        self._val_counts = ErrorCounts()

    # -- training -----------------------------------------------------------------------
    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        self.model.set_gumbel_temperature(self.current_temperature())

    def current_temperature(self) -> float:
        return gumbel_temperature(int(self.global_step), **self.gumbel)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self._forward(batch, self._mask_generator)
        self._log_parts("train", out, batch)
        self.log("train/gumbel_temperature", self.current_temperature(), on_step=True, batch_size=1)
        self.log_lr()
        self.log_throughput(batch)
        return out.loss

    # -- validation -----------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_counts = ErrorCounts()
        # a fixed generator: validation losses are comparable between epochs
        self._val_generator = torch.Generator(device=self.device).manual_seed(self.seed)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self._forward(batch, self._val_generator)
        self._log_parts("val", out, batch)
        labeled = batch["labeled"].bool().cpu()
        if labeled.any():
            lengths = self.frame_lengths(batch["attention_mask"])
            hyps = ctc_greedy_decode(out.ctc_logits, lengths, blank_id=0)
            refs = labels_to_ids(batch["labels"])
            for row in torch.nonzero(labeled).flatten().tolist():
                self._val_counts.update(
                    ids_to_tokens(hyps[row], self.phone_vocabulary), ids_to_tokens(refs[row], self.phone_vocabulary)
                )

    def on_validation_epoch_end(self) -> None:
        counts = self.trainer.strategy.reduce(self._val_counts.as_tensor().to(self.device), reduce_op="sum")
        if counts[1] > 0:  # no labeled validation rows: no PER
            self.log("val/per", ErrorCounts.rates_from_tensor(counts.cpu())["per"], prog_bar=True, sync_dist=False)

    # -- helpers -------------------------------------------------------------------------
    def _forward(self, batch: dict, generator: torch.Generator | None):
        return self.model(
            batch["input_values"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
            generator=generator,
        )

    def _log_parts(self, stage: str, out, batch: dict) -> None:
        size = int(batch["input_values"].shape[0])
        on_step = stage == "train"
        parts = {
            "loss": out.loss,
            "contrastive_loss": out.contrastive_loss,
            "diversity_loss": out.diversity_loss,
            "ctc_loss": out.ctc_loss,
            "codevector_perplexity": out.codevector_perplexity,
            "contrastive_accuracy": out.contrastive_accuracy,
            "num_masked_frames": out.num_masked_frames,
        }
        has_labels = bool(batch["labeled"].any())
        for name, value in parts.items():
            if value is None or (name == "ctc_loss" and not has_labels):
                continue  # an all-unlabeled batch has no CTC term: logging 0 would bias the mean
            value = value.detach().float() if torch.is_tensor(value) else float(value)
            self.log(
                f"{stage}/{name}",
                value,
                on_step=on_step,
                on_epoch=not on_step,
                prog_bar=name == "loss",
                batch_size=size,
                sync_dist=not on_step,
            )
        self.log(f"{stage}/labeled_fraction", batch["labeled"].float().mean(), on_step=on_step,
                 on_epoch=not on_step, batch_size=size, sync_dist=not on_step)
