"""Multitask UniSpeech pretraining: phonetic CTC on labeled rows + contrastive on all rows.

The loss itself lives in ``UniSpeechForPreTraining.forward``. This module adds what belongs
to the training procedure: Gumbel temperature annealing and the CTC weight ramp (pure
functions of the optimizer step, so a resumed run continues where it was), feature-encoder
gradient scaling, the optimizer and schedule, logging of every loss part, and validation PER
of the phonetic CTC head with greedy decoding.

Both schedules can be tied to the run's length instead of to absolute update counts:

- ``gumbel.anneal_fraction``: τ decays geometrically from ``max_temperature`` to
  ``min_temperature`` over that fraction of the run (the paper's per-update ``decay`` of
  0.999995 is sized for 400k updates; in a 500-update run τ would stay at 1.99).
- ``ctc_alpha_ramp: [start, end]``: the CTC weight α is 0 (contrastive only) until ``start``
  of the run, then rises linearly to ``model.ctc_alpha`` at ``end``. Measured on the demo
  corpus: with α = 0.5 from the first update, the phonetic CTC term's all-blank solution
  makes every context vector of an utterance the same (mean pairwise cosine 1.000 after 50
  updates), which holds the contrastive task at chance and never lets CTC leave the blank
  plateau. Starting contrastive-only gives CTC diverse features to build on. ``null`` keeps
  the paper's constant α (the large recipes do).

Diagnostics logged next to the loss parts: ``codebook_usage`` (perplexity / G·V),
``unused_codevectors`` (codebook entries picked by no real frame of the batch; at
validation over the whole validation set), the training-batch PER of the phonetic head
(``train/per``, on logging steps only: decoding runs on the CPU), and a warning naming the
step when the perplexity drops below ``codebook_collapse_fraction`` of G·V (once per
episode). The base task adds ``train/grad_norm`` and the non-finite update guard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from unispeech.modeling import UniSpeechConfig, UniSpeechForPreTraining
from unispeech.tasks.base import SpeechTask
from unispeech.tasks.diagnostics import CodebookCollapseWatch, check_fraction, logger
from unispeech.tasks.loading import load_backbone_weights
from unispeech.tasks.metrics import ErrorRates, greedy_decode, reference_tokens
from unispeech.tasks.optim import find_submodule, scale_gradients
from unispeech.tasks.schedules import geometric_decay_per_step, linear_ramp_factor


def gumbel_temperature(step: int, max_temperature: float, min_temperature: float, decay: float) -> float:
    """τ = max(τ_max · decay^step, τ_min), per optimizer update (fairseq's schedule)."""
    return max(max_temperature * decay**step, min_temperature)


class PretrainingTask(SpeechTask):
    """Wraps ``UniSpeechForPreTraining``; ``phone_vocabulary`` sizes the phonetic CTC head."""

    kind = "pretrain"
    model_class = UniSpeechForPreTraining
    data_mode = "pretraining"

    from_data = ("phone_vocabulary", "language")

    @classmethod
    def data_arguments(cls, datamodule: Any) -> dict[str, Any]:
        return {"phone_vocabulary": datamodule.tokenizer.vocabulary(), "language": datamodule.tokenizer.language}

    def __init__(
        self,
        model: dict,
        phone_vocabulary: Sequence[str],
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        gumbel: dict | None = None,
        feature_grad_mult: float = 0.1,
        init_from: str | None = None,
        ctc_alpha_ramp: Sequence[float] | None = None,
        language: str = "",
        seed: int = 0,
        codebook_collapse_fraction: float | None = 0.1,
        max_consecutive_nonfinite: int | None = 10,
    ) -> None:
        super().__init__(optimizer, scheduler, seed, max_consecutive_nonfinite)
        self.save_hyperparameters(ignore=list(self.NOT_HYPERPARAMETERS))
        self.phone_vocabulary = list(phone_vocabulary)
        config = UniSpeechConfig.from_dict(dict(model), num_ctc_classes=len(self.phone_vocabulary))
        self.model = UniSpeechForPreTraining(config)
        self.num_codevectors = config.num_codevector_groups * config.num_codevectors_per_group  # G·V
        self._collapse = CodebookCollapseWatch(
            check_fraction("codebook_collapse_fraction", codebook_collapse_fraction), self.num_codevectors
        )
        # this update's quantizer numbers (device tensors), read after backward by the collapse check
        self._quantizer_stats: tuple[int, torch.Tensor, torch.Tensor] | None = None
        # this update's training PER, of this rank only (ranks log it at different times)
        self._train_scores, self._train_scores_step = ErrorRates(sync_on_compute=False), -1
        if init_from:
            load_backbone_weights(self.model, init_from)  # heads of another size stay fresh
        gumbel = {
            "max_temperature": 2.0,
            "min_temperature": 0.5,
            "decay": 0.999995,
            "anneal_fraction": None,
            **(gumbel or {}),
        }
        self.anneal_fraction = gumbel.pop("anneal_fraction")
        if self.anneal_fraction is not None and not 0.0 < float(self.anneal_fraction) <= 1.0:
            raise ValueError(f"gumbel.anneal_fraction={self.anneal_fraction} must be in (0, 1]")
        unknown = set(gumbel) - {"max_temperature", "min_temperature", "decay"}
        if unknown:
            raise ValueError(f"gumbel: unknown option(s) {sorted(unknown)}")
        self.gumbel = gumbel
        self.ctc_alpha = float(config.ctc_alpha)
        self.ctc_alpha_ramp = None if ctc_alpha_ramp is None else tuple(float(f) for f in ctc_alpha_ramp)
        if self.ctc_alpha_ramp is not None and not (
            len(self.ctc_alpha_ramp) == 2 and 0.0 <= self.ctc_alpha_ramp[0] <= self.ctc_alpha_ramp[1] <= 1.0
        ):
            raise ValueError(f"ctc_alpha_ramp={list(ctc_alpha_ramp)} must be [start, end] with 0 <= start <= end <= 1")
        self.feature_grad_mult = float(feature_grad_mult)
        self._grad_hooks = scale_gradients(find_submodule(self.model, "feature_extractor"), self.feature_grad_mult)
        self._val_scores = ErrorRates()
        self._val_picks: torch.Tensor | None = None  # (G·V,) codebook picks over the validation set

    # -- training -----------------------------------------------------------------------
    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        self.model.set_gumbel_temperature(self.current_temperature())

    def current_temperature(self) -> float:
        gumbel = dict(self.gumbel)
        if self.anneal_fraction is not None:
            steps = float(self.anneal_fraction) * self._total_steps()
            gumbel["decay"] = geometric_decay_per_step(gumbel["max_temperature"], gumbel["min_temperature"], steps)
        return gumbel_temperature(int(self.global_step), **gumbel)

    def current_alpha(self) -> float:
        """The CTC weight α of this update (``model.ctc_alpha``, ramped in if configured)."""
        if self.ctc_alpha_ramp is None:
            return self.ctc_alpha
        start, end = self.ctc_alpha_ramp
        return self.ctc_alpha * linear_ramp_factor(int(self.global_step), self._total_steps(), start, end)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self._forward(batch, self._mask_generator, alpha=self.current_alpha())
        self._log_parts("train", out, batch)
        unused = (out.codevector_counts == 0).sum()
        self.log("train/unused_codevectors", unused.float(), on_step=True, batch_size=1)
        self._quantizer_stats = (int(self.global_step), out.codevector_perplexity.detach(), unused)
        if self._is_logging_step():
            self._log_train_per(out.ctc_logits.detach(), batch)
        self.log("train/gumbel_temperature", self.current_temperature(), on_step=True, batch_size=1)
        self.log("train/ctc_alpha", self.current_alpha(), on_step=True, batch_size=1)
        self.log_lr()
        self.log_throughput(batch)
        return out.loss

    def _is_logging_step(self) -> bool:
        """Whether Lightning writes this update's step metrics (every ``log_every_n_steps``)."""
        every = int(self.trainer.log_every_n_steps)
        return every > 0 and (int(self.global_step) + 1) % every == 0

    def _log_train_per(self, ctc_logits: torch.Tensor, batch: dict) -> None:
        """PER of the phonetic head on the labeled rows of this update (all its micro-batches).

        Measured on the masked training input (and with q_t replacing c_t at some frames), so
        it runs above ``val/per``; its use is to see the CTC head leave the blank plateau.
        """
        if not bool(batch["labeled"].any()):
            return
        step = int(self.global_step)
        if self._train_scores_step != step:
            self._train_scores.reset()
            self._train_scores_step = step
        self._count_phone_errors(self._train_scores, ctc_logits, batch)
        self.log("train/per", self._train_scores.compute()["per"], on_step=True, batch_size=1)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        super().on_before_optimizer_step(optimizer)
        # after backward: reading the perplexity back costs no extra wait on an accelerator
        stats, self._quantizer_stats = self._quantizer_stats, None
        if stats is None or self._collapse.fraction is None or self.global_rank != 0:
            return  # rank 0 speaks for the run, as its numbers are the logged ones
        step, perplexity, unused = stats
        message = self._collapse.update(step, float(perplexity), int(unused), self.current_temperature())
        if message is not None:
            logger.warning(message)

    # -- validation -----------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_scores.reset()
        self._val_scores.update([], [])  # a rank without labeled rows has scored nothing, quietly
        self._val_picks = torch.zeros(self.num_codevectors, dtype=torch.long, device=self.device)
        # a fixed generator: validation losses are comparable between epochs
        self._val_generator = torch.Generator(device=self.device).manual_seed(self.seed)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self._forward(batch, self._val_generator)
        self._log_parts("val", out, batch)
        self._val_picks += out.codevector_counts
        if batch["labeled"].any():
            # PER of the phonetic head as it would be used: on the unmasked input (the masked
            # pass above scores the contrastive task, which needs masked frames)
            self._count_phone_errors(self._val_scores, self._unmasked_ctc_logits(batch), batch)

    def _unmasked_ctc_logits(self, batch: dict) -> torch.Tensor:
        values = batch["input_values"]
        frames = int(self.model.get_feat_extract_output_lengths(values.shape[1]))
        nothing = torch.zeros(values.shape[0], frames, dtype=torch.bool, device=values.device)
        return self.model(values, attention_mask=batch["attention_mask"], mask_time_indices=nothing).ctc_logits

    def _count_phone_errors(self, scores: ErrorRates, ctc_logits: torch.Tensor, batch: dict) -> None:
        """Greedy-decode the labeled rows of ``batch`` and add their phone errors to ``scores``."""
        labeled = batch["labeled"].bool()
        lengths = self.frame_lengths(batch["attention_mask"])[labeled]
        hyps = greedy_decode(ctc_logits[labeled], lengths, self.phone_vocabulary)
        scores.update(hyps, reference_tokens(batch["labels"][labeled], self.phone_vocabulary))

    def on_validation_epoch_end(self) -> None:
        scores = self._val_scores.compute()  # over all ranks: every rank takes part
        if scores["utterances"] > 0:  # no labeled validation rows: no PER
            self.log("val/per", scores["per"], prog_bar=True, sync_dist=False)
        if self._val_picks is not None:
            # entries no frame of the whole validation set (all ranks) picked
            picks = self.trainer.strategy.reduce(self._val_picks, reduce_op="sum")
            self.log("val/unused_codevectors", (picks == 0).sum().float(), sync_dist=False)

    # -- helpers -------------------------------------------------------------------------
    def _forward(self, batch: dict, generator: torch.Generator | None, alpha: float | None = None):
        return self.model(
            batch["input_values"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
            generator=generator,
            alpha=alpha,
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
            "codebook_usage": out.codevector_perplexity / self.num_codevectors,
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
        self.log(
            f"{stage}/labeled_fraction",
            batch["labeled"].float().mean(),
            on_step=on_step,
            on_epoch=not on_step,
            batch_size=size,
            sync_dist=not on_step,
        )
