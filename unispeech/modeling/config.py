"""`UniSpeechConfig`: every hyper-parameter of the model, with `transformers`' names and defaults.

The field names, defaults and the `config.json` layout are those of
`transformers.UniSpeechConfig`, so a directory written by `save_pretrained` loads in
`transformers` and a `microsoft/unispeech-*` config loads here. Fields that only this
project uses (`ctc_alpha`, `layerdrop_seed`) are written too; `transformers` keeps unknown
keys as plain attributes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.json"
ACTIVATIONS = ("gelu", "gelu_new", "relu", "selu", "silu", "swish", "tanh", "gelu_python")


@dataclass
class UniSpeechConfig:
    model_type = "unispeech"

    vocab_size: int = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    feat_quantizer_dropout: float = 0.0
    final_dropout: float = 0.1
    layerdrop: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    num_codevectors_per_group: int = 320
    num_codevector_groups: int = 2
    contrastive_logits_temperature: float = 0.1
    num_negatives: int = 100
    codevector_dim: int = 256
    proj_codevector_dim: int = 256
    diversity_loss_weight: float = 0.1
    ctc_loss_reduction: str = "mean"
    ctc_zero_infinity: bool = False
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    num_ctc_classes: int = 80
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    replace_prob: float = 0.5
    # -- sequence classification labels (transformers' PretrainedConfig fields) --
    id2label: dict[int, str] | None = None
    # -- this project's own fields --
    # UniSpeech's α: weight of the phonetic CTC term on labeled utterances (paper: 0.5).
    ctc_alpha: float = 0.5
    # Seed of the layerdrop draw. Every DDP rank draws the same layers to skip.
    layerdrop_seed: int = 0
    # Anything else found in a config.json (torch_dtype, architectures, ...), kept verbatim.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.conv_dim = tuple(int(c) for c in self.conv_dim)
        self.conv_stride = tuple(int(s) for s in self.conv_stride)
        self.conv_kernel = tuple(int(k) for k in self.conv_kernel)
        if self.id2label is None:
            self.id2label = {0: "LABEL_0", 1: "LABEL_1"}
        self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming the field when a combination cannot build a model."""
        n = len(self.conv_dim)
        if not (len(self.conv_stride) == len(self.conv_kernel) == n) or n == 0:
            raise ValueError(
                "conv_dim, conv_stride and conv_kernel must have the same non-zero length, got "
                f"len(conv_dim)={n}, len(conv_stride)={len(self.conv_stride)}, "
                f"len(conv_kernel)={len(self.conv_kernel)}"
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_size % self.num_conv_pos_embedding_groups != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by "
                f"num_conv_pos_embedding_groups ({self.num_conv_pos_embedding_groups})"
            )
        if self.codevector_dim % self.num_codevector_groups != 0:
            raise ValueError(
                f"codevector_dim ({self.codevector_dim}) must be divisible by "
                f"num_codevector_groups ({self.num_codevector_groups})"
            )
        for name in ("hidden_act", "feat_extract_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {ACTIVATIONS}")
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(f"feat_extract_norm={self.feat_extract_norm!r} must be 'group' or 'layer'")
        if self.ctc_loss_reduction not in ("mean", "sum"):
            raise ValueError(f"ctc_loss_reduction={self.ctc_loss_reduction!r} must be 'mean' or 'sum'")
        for name in (
            "hidden_dropout",
            "activation_dropout",
            "attention_dropout",
            "feat_proj_dropout",
            "feat_quantizer_dropout",
            "final_dropout",
            "layerdrop",
            "mask_time_prob",
            "mask_feature_prob",
            "replace_prob",
            "ctc_alpha",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must lie in [0, 1]")

    # -- derived values ------------------------------------------------------------------
    @property
    def num_feat_extract_layers(self) -> int:
        return len(self.conv_dim)

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Waveform samples per output frame (320 = 20 ms at 16 kHz by default)."""
        ratio = 1
        for stride in self.conv_stride:
            ratio *= stride
        return ratio

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["label2id"] = self.label2id
        out["num_feat_extract_layers"] = self.num_feat_extract_layers
        out["model_type"] = self.model_type
        return out

    @classmethod
    def from_dict(cls, config: dict[str, Any], **overrides: Any) -> UniSpeechConfig:
        config = {**config, **overrides}
        model_type = config.get("model_type", cls.model_type)
        if model_type not in (cls.model_type, "wav2vec2"):
            raise ValueError(f"config has model_type={model_type!r}, expected 'unispeech'")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in config.items() if k in names}
        derived = {"label2id", "num_feat_extract_layers", "model_type", "num_labels"}
        extra = {k: v for k, v in config.items() if k not in names and k not in derived}
        if "num_labels" in config and "id2label" not in config:
            known["id2label"] = {i: f"LABEL_{i}" for i in range(int(config["num_labels"]))}
        return cls(**known, extra=extra)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(self.to_json_string())

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> UniSpeechConfig:
        """Read `config.json` from a directory (or the file itself)."""
        path = Path(path)
        file = path / CONFIG_NAME if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} at {path}")
        return cls.from_dict(json.loads(file.read_text()), **overrides)
