"""The four UniSpeech models: the bare encoder, CTC, sequence classification, pretraining.

Module and parameter names follow `transformers`' UniSpeech, so state dicts are
interchangeable (see `checkpoint.py`).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint
from .config import PROBLEM_TYPES, UniSpeechConfig
from .feature_encoder import FeatureEncoder, FeatureProjection, conv_output_lengths
from .losses import IGNORE_INDEX, contrastive_loss_per_row, ctc_loss_per_row, diversity_loss
from .masking import compute_mask_indices, frame_mask_from_lengths, sample_negative_indices, uniform
from .outputs import BaseModelOutput, CausalLMOutput, SequenceClassifierOutput, UniSpeechForPreTrainingOutput
from .quantizer import GumbelVectorQuantizer, count_codevector_picks
from .transformer import PositionalConvEmbedding, TransformerEncoder, WeightNormConv1d

logger = logging.getLogger(__name__)


class UniSpeechPreTrainedModel(nn.Module):
    """Shared plumbing: weight init, frame lengths, checkpoint I/O."""

    base_model_prefix = "unispeech"

    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__()
        self.config = config

    # -- initialisation (the scheme of the reference implementations) ---------------------
    def init_weights(self) -> None:
        self.apply(self._init_module)

    def _init_module(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, GumbelVectorQuantizer):
            nn.init.normal_(module.weight_proj.weight, mean=0.0, std=1.0)
            nn.init.zeros_(module.weight_proj.bias)
            nn.init.uniform_(module.codevectors)
        elif isinstance(module, PositionalConvEmbedding):
            conv = module.conv
            nn.init.normal_(conv.weight_v, mean=0.0, std=2 * math.sqrt(1 / (conv.kernel_size[0] * conv.in_channels)))
            with torch.no_grad():
                conv.weight_g.copy_(conv.weight_v.norm(dim=(0, 1), keepdim=True))
            nn.init.zeros_(conv.bias)
        elif isinstance(module, FeatureProjection):
            bound = 1 / math.sqrt(module.projection.in_features)
            nn.init.uniform_(module.projection.weight, -bound, bound)
            nn.init.uniform_(module.projection.bias, -bound, bound)
        elif isinstance(module, nn.Linear):
            # `apply` visits children first, so the quantizer and the feature projection
            # above overwrite this for their own Linear layers
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv1d) and not isinstance(module, WeightNormConv1d):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                bound = math.sqrt(module.groups / (module.in_channels * module.kernel_size[0]))
                nn.init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, UniSpeechModel) and module.masked_spec_embed is not None:
            nn.init.uniform_(module.masked_spec_embed)

    # -- frame bookkeeping -----------------------------------------------------------------
    def get_feat_extract_output_lengths(self, input_lengths: torch.Tensor | int) -> torch.Tensor:
        """Frames produced from `input_lengths` waveform samples."""
        return conv_output_lengths(torch.as_tensor(input_lengths), self.config)

    def _frame_lengths(
        self, attention_mask: torch.Tensor | None, input_values: torch.Tensor, num_frames: int
    ) -> torch.Tensor:
        if attention_mask is None:
            return torch.full((input_values.shape[0],), num_frames, dtype=torch.long, device=input_values.device)
        return self.get_feat_extract_output_lengths(attention_mask.sum(-1)).long().clamp(0, num_frames)

    def _output_flags(
        self, output_attentions: bool | None, output_hidden_states: bool | None, return_dict: bool | None
    ) -> tuple[bool, bool, bool]:
        """The `forward` arguments left as None take the config's defaults, as in `transformers`."""
        cfg = self.config
        return (
            cfg.output_attentions if output_attentions is None else output_attentions,
            cfg.output_hidden_states if output_hidden_states is None else output_hidden_states,
            cfg.return_dict if return_dict is None else return_dict,
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- checkpoint I/O (see checkpoint.py) --------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True) -> None:
        checkpoint.save_pretrained(self, save_directory, safe_serialization=safe_serialization)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, config: UniSpeechConfig | None = None, strict: bool = False, **overrides: Any
    ):
        """Load a directory written by us or by `transformers` (or a hub id, when online).
        `overrides` change config fields (e.g. `vocab_size=` for a new CTC head); heads
        missing from the checkpoint are freshly initialised and reported."""
        return checkpoint.from_pretrained(cls, path, config=config, strict=strict, **overrides)

    def freeze_feature_encoder(self) -> None:
        """No gradient for the conv feature encoder (fine-tuning, as in the paper)."""
        encoder = self if isinstance(self, UniSpeechModel) else getattr(self, self.base_model_prefix)
        encoder.feature_extractor.freeze()

    def gradient_checkpointing_enable(self, enabled: bool = True) -> None:
        """Trade compute for memory: Transformer layers recompute their activations in backward."""
        for module in self.modules():
            if isinstance(module, TransformerEncoder):
                module.gradient_checkpointing = enabled

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _as_tuple(output, return_dict: bool):
    return output if return_dict else output.to_tuple()


class UniSpeechModel(UniSpeechPreTrainedModel):
    """Waveform (B, S) → context vectors (B, T, H)."""

    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__(config)
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        self.masked_spec_embed = None
        if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0:
            self.masked_spec_embed = nn.Parameter(torch.empty(config.hidden_size).uniform_())
        self.encoder = TransformerEncoder(config)
        self.init_weights()

    def draw_time_mask(
        self,
        frame_lengths: torch.Tensor,
        num_frames: int,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(B, T) bool: spans of `mask_time_length` frames over about `mask_time_prob` of
        each row's real frames (at least `mask_time_min_masks` spans)."""
        cfg = self.config
        return compute_mask_indices(
            (frame_lengths.shape[0], num_frames),
            cfg.mask_time_prob,
            cfg.mask_time_length,
            frame_lengths,
            cfg.mask_time_min_masks,
            device,
            generator,
        )

    def mask_hidden_states(
        self,
        hidden_states: torch.Tensor,
        frame_lengths: torch.Tensor,
        mask_time_indices: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """SpecAugment on the projected features: time spans get the learned mask embedding
        (given `mask_time_indices`, or drawn in training), feature channels get zeros."""
        cfg = self.config
        if not cfg.apply_spec_augment:
            return hidden_states, None
        b, t, h = hidden_states.shape
        if mask_time_indices is None and self.training and cfg.mask_time_prob > 0:
            mask_time_indices = self.draw_time_mask(frame_lengths, t, hidden_states.device, generator)
        if mask_time_indices is not None:
            mask_time_indices = mask_time_indices.to(hidden_states.device, torch.bool)
            embed = self.masked_spec_embed.to(hidden_states.dtype)
            hidden_states = torch.where(mask_time_indices[..., None], embed, hidden_states)
        if self.training and cfg.mask_feature_prob > 0:
            channels = compute_mask_indices(
                (b, h),
                cfg.mask_feature_prob,
                cfg.mask_feature_length,
                None,
                cfg.mask_feature_min_masks,
                hidden_states.device,
                generator,
            )
            hidden_states = hidden_states.masked_fill(channels[:, None, :], 0.0)
        return hidden_states, mask_time_indices

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        generator: torch.Generator | None = None,
    ):
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        features = self.feature_extractor(input_values).transpose(1, 2)  # (B, T, C)
        frame_lengths = self._frame_lengths(attention_mask, input_values, features.shape[1])
        frame_mask = None if attention_mask is None else frame_mask_from_lengths(frame_lengths, features.shape[1])
        hidden, extract_features = self.feature_projection(features)  # (B, T, H), (B, T, C)
        hidden, mask_time_indices = self.mask_hidden_states(hidden, frame_lengths, mask_time_indices, generator)
        hidden, hidden_states, attentions = self.encoder(hidden, frame_mask, output_hidden_states, output_attentions)
        out = BaseModelOutput(hidden, extract_features, hidden_states, attentions, mask_time_indices)
        return _as_tuple(out, return_dict)


class UniSpeechForCTC(UniSpeechPreTrainedModel):
    """Encoder + linear head over `vocab_size` symbols (blank = `pad_token_id`), CTC loss.

    `target_lang` is `transformers`' argument that picks a language's adapter weights
    (`adapter.<lang>.safetensors`, for configs with `adapter_attn_dim`). This implementation
    has no attention adapters: `target_lang` is refused with a ValueError when the config
    defines none (as `transformers` does) and with NotImplementedError when it does."""

    def __init__(self, config: UniSpeechConfig, target_lang: str | None = None) -> None:
        super().__init__(config)
        self.target_lang = target_lang
        self._check_adapters(target_lang)
        self.unispeech = UniSpeechModel(config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.init_weights()

    def _check_adapters(self, target_lang: str | None, call: str | None = None) -> None:
        call = call or f"target_lang={target_lang!r}"
        adapter_attn_dim = getattr(self.config, "adapter_attn_dim", None)
        if target_lang is not None and adapter_attn_dim is None:
            raise ValueError(
                f"{call}: language adapters need `config.adapter_attn_dim`, which this config does not set "
                "(a model without adapters has no per-language weights to load)"
            )
        if target_lang is not None:
            raise NotImplementedError(
                f"{call}: the config defines language adapters (adapter_attn_dim={adapter_attn_dim}) and this "
                "implementation has none; load this checkpoint with `transformers`"
            )
        if adapter_attn_dim is not None:
            logger.warning(
                "config.adapter_attn_dim=%s: attention adapters are not implemented here and are left out",
                adapter_attn_dim,
            )

    def load_adapter(self, target_lang: str, force_load: bool = True, **kwargs: Any) -> None:
        """`transformers`' way to switch a model with language adapters to `target_lang`;
        always refused here (see the class docstring)."""
        self._check_adapters(target_lang, call=f"load_adapter({target_lang!r})")

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        config: UniSpeechConfig | None = None,
        strict: bool = False,
        target_lang: str | None = None,
        **overrides: Any,
    ):
        """As `UniSpeechPreTrainedModel.from_pretrained`; `target_lang` goes to the model, not the config."""
        return checkpoint.from_pretrained(
            cls, path, config=config, strict=strict, model_kwargs={"target_lang": target_lang}, **overrides
        )

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        generator: torch.Generator | None = None,
    ):
        if labels is not None and labels.numel() and labels.max() >= self.config.vocab_size:
            raise ValueError(f"label values must be < vocab_size ({self.config.vocab_size}), got {int(labels.max())}")
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        base = self.unispeech(
            input_values, attention_mask, mask_time_indices, output_attentions, output_hidden_states, True, generator
        )
        logits = self.lm_head(self.dropout(base.last_hidden_state))  # (B, T, V)
        loss = None
        if labels is not None:
            frame_lengths = self._frame_lengths(attention_mask, input_values, logits.shape[1])
            per_row = ctc_loss_per_row(
                logits, frame_lengths, labels, self.config.pad_token_id or 0, self.config.ctc_zero_infinity
            )
            if self.config.ctc_loss_reduction == "mean":
                # torch's "mean": each row divided by its target length, then averaged
                loss = (per_row / (labels >= 0).sum(-1).clamp(min=1)).mean()
            else:
                loss = per_row.sum()
        out = CausalLMOutput(loss, logits, base.hidden_states, base.attentions)
        return _as_tuple(out, return_dict)


class UniSpeechForSequenceClassification(UniSpeechPreTrainedModel):
    """Encoder → (optionally a softmax-weighted sum of all layers) → projector → mean
    over real frames → classifier.

    The loss follows `config.problem_type`, inferred from the first labels when None and
    then stored in the config, as `transformers`' sequence classifiers do: "regression"
    when `num_labels == 1` (MSE), "single_label_classification" for integer class ids
    (cross-entropy), "multi_label_classification" otherwise, i.e. float multi-hot labels
    (binary cross-entropy on the logits)."""

    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__(config)
        self.unispeech = UniSpeechModel(config)
        if config.use_weighted_layer_sum:
            num_layers = config.num_hidden_layers + 1  # the transformer's input and each layer's output
            self.layer_weights = nn.Parameter(torch.ones(num_layers) / num_layers)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)
        self.init_weights()

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        weighted = self.config.use_weighted_layer_sum
        base = self.unispeech(
            input_values, attention_mask, None, output_attentions, output_hidden_states or weighted, True
        )
        if weighted:
            stacked = torch.stack(base.hidden_states, dim=1)  # (B, L+1, T, H)
            weights = self.layer_weights.softmax(dim=-1)
            hidden = (stacked * weights.view(-1, 1, 1)).sum(dim=1)
        else:
            hidden = base.last_hidden_state
        hidden = self.projector(hidden)  # (B, T, P)
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            frame_lengths = self._frame_lengths(attention_mask, input_values, hidden.shape[1])
            frame_mask = frame_mask_from_lengths(frame_lengths, hidden.shape[1])
            hidden = hidden.masked_fill(~frame_mask[..., None], 0.0)
            pooled = hidden.sum(dim=1) / frame_lengths.clamp(min=1)[:, None].to(hidden.dtype)
        logits = self.classifier(pooled)
        loss = self.classification_loss(logits, labels) if labels is not None else None
        hidden_states = base.hidden_states if output_hidden_states else None
        out = SequenceClassifierOutput(loss, logits, hidden_states, base.attentions)
        return _as_tuple(out, return_dict)

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of `config.problem_type` (set here on first use when None), in float32."""
        cfg = self.config
        num_labels = cfg.num_labels
        if cfg.problem_type is None:
            if num_labels == 1:
                cfg.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                cfg.problem_type = "single_label_classification"
            else:
                cfg.problem_type = "multi_label_classification"
        logits, labels = logits.float(), labels.to(logits.device)
        if cfg.problem_type == "regression":
            if num_labels == 1:  # (B, 1) logits against (B,) or (B, 1) targets
                return F.mse_loss(logits.squeeze(), labels.squeeze().float())
            return F.mse_loss(logits, labels.float())
        if cfg.problem_type == "single_label_classification":
            return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1).long())  # int32 ids too
        if cfg.problem_type == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        raise ValueError(f"config.problem_type={cfg.problem_type!r} is not one of {PROBLEM_TYPES}")


class UniSpeechForPreTraining(UniSpeechPreTrainedModel):
    """UniSpeech multitask pretraining (Wang et al., 2021).

    For labeled utterances L (phone labels) and unlabeled utterances M:

        loss = [ Σ_{x∈L} (α·L_ctc(x) + (1−α)·L_self(x)) + Σ_{x∈M} L_self(x) ] / N_masked
        L_self(x) = L_contrastive(x) + w_div · L_diversity · n_masked(x)

    L_contrastive sums InfoNCE over the masked frames of x; the phonetic CTC reads, at every
    frame, the context vector c_t or, with probability `replace_prob`, the projected
    quantized target q_t, so the CTC gradient shapes the codebook.
    """

    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__(config)
        self.unispeech = UniSpeechModel(config)
        self.dropout_features = nn.Dropout(config.feat_quantizer_dropout)
        self.quantizer = GumbelVectorQuantizer(config)
        self.project_q = nn.Linear(config.codevector_dim, config.proj_codevector_dim)
        self.project_hid = nn.Linear(config.proj_codevector_dim, config.hidden_size)
        self.ctc_proj = nn.Linear(config.hidden_size, config.num_ctc_classes)
        self.dropout = nn.Dropout(config.final_dropout)
        self.init_weights()

    def set_gumbel_temperature(self, temperature: float) -> None:
        self.quantizer.temperature = float(temperature)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        sampled_negative_indices: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        generator: torch.Generator | None = None,
        alpha: float | None = None,
    ):
        cfg = self.config
        if labels is not None and labels.numel() and labels.max() >= cfg.num_ctc_classes:
            raise ValueError(
                f"phone label values must be < num_ctc_classes ({cfg.num_ctc_classes}), got {int(labels.max())}"
            )
        alpha = cfg.ctc_alpha if alpha is None else alpha
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        if mask_time_indices is None and cfg.apply_spec_augment and cfg.mask_time_prob > 0:
            # the loss needs masked frames in evaluation too (validation loss)
            num_frames = int(self.get_feat_extract_output_lengths(input_values.shape[1]))
            frame_lengths = self._frame_lengths(attention_mask, input_values, num_frames)
            mask_time_indices = self.unispeech.draw_time_mask(frame_lengths, num_frames, input_values.device, generator)

        base = self.unispeech(
            input_values, attention_mask, mask_time_indices, output_attentions, output_hidden_states, True, generator
        )
        context = base.last_hidden_state  # (B, T, H)
        b, t, _ = context.shape
        frame_lengths = self._frame_lengths(attention_mask, input_values, t)
        frame_mask = frame_mask_from_lengths(frame_lengths, t)
        masked = base.mask_time_indices
        masked = torch.zeros_like(frame_mask) if masked is None else masked & frame_mask  # (B, T)

        # targets from the unmasked features: quantize → project_q → project_hid
        # perplexity over masked frames; over all real frames when nothing is masked (no sync)
        perplexity_frames = masked | (frame_mask & ~masked.any())
        quantized = self.quantizer(self.dropout_features(base.extract_features), perplexity_frames, generator)
        targets = self.project_hid(self.project_q(quantized.codevectors.to(self.project_q.weight.dtype)))  # (B, T, H)

        # phonetic CTC input: c_t, or (training only) q_t with probability replace_prob
        ctc_input = context
        if self.training and cfg.replace_prob > 0:
            draws = uniform((b, t), context.device, generator)
            ctc_input = torch.where((draws < cfg.replace_prob)[..., None], targets.to(context.dtype), context)
        ctc_logits = self.ctc_proj(self.dropout(ctc_input))  # (B, T, num_ctc_classes)

        # self-supervised part: contrastive over masked frames + diversity
        if sampled_negative_indices is None:
            sampled_negative_indices = sample_negative_indices(frame_lengths, t, cfg.num_negatives, generator)
        contrastive_rows, correct = contrastive_loss_per_row(
            context,
            targets,
            quantized.indices,
            masked,
            sampled_negative_indices.to(context.device),
            cfg.contrastive_logits_temperature,
        )
        num_codevectors = cfg.num_codevector_groups * cfg.num_codevectors_per_group
        diversity = diversity_loss(quantized.perplexity, num_codevectors)
        masked_per_row = masked.sum(dim=1).float()  # (B,)

        # phonetic CTC on labeled rows; unlabeled rows contribute with zero weight so the
        # CTC head gets a (zero) gradient on every step, as DDP requires
        if labels is None:
            labels = torch.full((b, 1), IGNORE_INDEX, dtype=torch.long, device=context.device)
        labeled = (labels >= 0).any(dim=1)  # (B,)
        ctc_rows = ctc_loss_per_row(ctc_logits, frame_lengths, labels, cfg.pad_token_id or 0, cfg.ctc_zero_infinity)
        ctc_rows = torch.where(labeled, ctc_rows, torch.zeros_like(ctc_rows))

        self_weight = torch.where(labeled, 1.0 - alpha, 1.0)  # (B,)
        self_rows = contrastive_rows + cfg.diversity_loss_weight * diversity * masked_per_row
        num_masked = masked_per_row.sum()
        normaliser = num_masked.clamp(min=1.0)
        loss = ((self_weight * self_rows).sum() + alpha * ctc_rows.sum()) / normaliser

        out = UniSpeechForPreTrainingOutput(
            loss=loss,
            projected_states=context,
            projected_quantized_states=targets,
            codevector_perplexity=quantized.perplexity,
            hidden_states=base.hidden_states,
            attentions=base.attentions,
            contrastive_loss=contrastive_rows.sum() / normaliser,
            diversity_loss=diversity,
            ctc_loss=ctc_rows.sum() / normaliser,
            ctc_logits=ctc_logits,
            contrastive_accuracy=correct.sum() / normaliser,
            num_masked_frames=num_masked,
            mask_time_indices=masked,
            codevector_counts=count_codevector_picks(quantized.indices, frame_mask, cfg.num_codevectors_per_group),
        )
        return _as_tuple(out, return_dict)
