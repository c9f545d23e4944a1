"""`UniSpeechConfig`: every hyper-parameter of the model, with `transformers`' names and defaults.

The field names, defaults and the `config.json` layout are those of
`transformers.UniSpeechConfig`, so a directory written by `save_pretrained` loads in
`transformers` and a `microsoft/unispeech-*` config loads here. Fields that only this
project uses (`ctc_alpha`, `layerdrop_seed`) are written too; `transformers` keeps unknown
keys as plain attributes.

The constructor also takes `transformers`' `PretrainedConfig` keywords: `num_labels` and
`label2id` (turned into `id2label`), `use_return_dict` (an alias of `return_dict`), and any
other keyword (`architectures`, `torch_dtype`, `finetuning_task`, ...), which is kept in
`extra`, read back as an attribute and written to `config.json`. The class stays a plain
dataclass: `dataclasses.fields` lists the typed fields only (the Hydra schema reads them).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.json"
ACTIVATIONS = ("gelu", "gelu_new", "relu", "selu", "silu", "swish", "tanh", "gelu_python")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
MODEL_TYPES = ("unispeech", "wav2vec2")
# Keys of a config.json that are recomputed from the fields, never stored.
DERIVED_KEYS = ("model_type", "num_feat_extract_layers")
LABEL_KEYS = ("id2label", "label2id", "num_labels")

logger = logging.getLogger(__name__)


def _default_labels(num_labels: int) -> dict[int, str]:
    return {i: f"LABEL_{i}" for i in range(int(num_labels))}


def _plain(value: Any) -> Any:
    """A `torch.dtype` (given as `torch_dtype=torch.float16`) as the name JSON can hold."""
    kind = type(value)
    if kind.__module__ == "torch" and kind.__name__ == "dtype":
        return str(value).removeprefix("torch.")
    return value


def _accepts_pretrained_config_kwargs(cls: type) -> type:
    """Wrap the dataclass `__init__` so that it also takes `PretrainedConfig`'s keywords.

    The keywords are translated into field values before the generated `__init__` (and
    so `__post_init__`'s validation) runs; `dataclasses.fields` and the type hints stay
    those of the class body."""
    fields_init = cls.__init__

    @functools.wraps(fields_init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        field_values, label2id = cls._split_kwargs(kwargs)
        fields_init(self, *args, **field_values)
        if label2id is not None:
            self._label2id = label2id

    cls.__init__ = __init__
    return cls


@_accepts_pretrained_config_kwargs
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
    # -- transformers' PretrainedConfig fields --
    # Sequence classification labels; `num_labels` and `label2id` are derived (see below).
    id2label: dict[int, str] | None = None
    # "regression", "single_label_classification" or "multi_label_classification"; None:
    # inferred by `UniSpeechForSequenceClassification` from the first labels it sees.
    problem_type: str | None = None
    # What the models' `forward` returns when the argument is not passed.
    output_hidden_states: bool = False
    output_attentions: bool = False
    return_dict: bool = True
    # -- this project's own fields --
    # UniSpeech's α: weight of the phonetic CTC term on labeled utterances (paper: 0.5).
    ctc_alpha: float = 0.5
    # Seed of the layerdrop draw. Every DDP rank draws the same layers to skip.
    layerdrop_seed: int = 0
    # Anything else found in a config.json (torch_dtype, architectures, ...), kept verbatim.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def _split_kwargs(cls, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int] | None]:
        """Constructor keywords → (field values, an explicit `label2id` to keep or None)."""
        kwargs = dict(kwargs)
        names = {f.name for f in dataclasses.fields(cls)}
        model_type = kwargs.pop("model_type", cls.model_type)
        if model_type not in MODEL_TYPES:
            raise ValueError(f"config has model_type={model_type!r}, expected {cls.model_type!r}")
        for key in DERIVED_KEYS:
            kwargs.pop(key, None)
        if "use_return_dict" in kwargs:
            use_return_dict = kwargs.pop("use_return_dict")
            kwargs.setdefault("return_dict", use_return_dict)

        # labels, as PretrainedConfig: num_labels wins over an id2label of another length
        num_labels = kwargs.pop("num_labels", None)
        label2id = kwargs.pop("label2id", None)
        id2label = kwargs.get("id2label")
        if id2label is None and label2id is not None:
            try:
                id2label = {int(i): str(label) for label, i in label2id.items()}
            except (TypeError, ValueError) as err:
                raise ValueError(f"label2id must map labels to integer ids, got {label2id!r}") from err
            label2id = None  # it is exactly the inverse of id2label now
        if num_labels is not None and (id2label is None or len(id2label) != int(num_labels)):
            if id2label is not None:
                logger.warning(
                    "num_labels=%s does not match the %d labels of id2label/label2id: using LABEL_0..LABEL_%d",
                    num_labels,
                    len(id2label),
                    int(num_labels) - 1,
                )
            id2label, label2id = _default_labels(num_labels), None
        if id2label is not None:
            kwargs["id2label"] = id2label

        extra = dict(kwargs.pop("extra", None) or {})
        for key in [k for k in kwargs if k not in names]:
            if hasattr(cls, key):
                raise TypeError(f"{cls.__name__}: {key!r} is derived from the other fields and cannot be set")
            extra[key] = _plain(kwargs.pop(key))
        kwargs["extra"] = extra
        return kwargs, (dict(label2id) if label2id is not None else None)

    # -- PretrainedConfig-style attributes: unknown ones live in `extra` --------------------
    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails; dunders stay out (copy/pickle probe them)
        extra = self.__dict__.get("extra")
        if extra is not None and not name.startswith("__") and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        extra = self.__dict__.get("extra")
        if (
            extra is not None
            and (name in extra or not (name.startswith("_") or hasattr(type(self), name)))
            and name not in {f.name for f in dataclasses.fields(self)}
        ):
            extra[name] = _plain(value)  # e.g. config.finetuning_task = "sid": saved with the rest
            return
        if name == "id2label":
            self.__dict__.pop("_label2id", None)  # an explicit label2id belonged to the old labels
        object.__setattr__(self, name, value)

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
        if self.problem_type not in (None, *PROBLEM_TYPES):
            raise ValueError(f"problem_type={self.problem_type!r} must be None or one of {PROBLEM_TYPES}")
        if self.problem_type == "single_label_classification" and self.num_labels == 1:
            raise ValueError(
                'problem_type="single_label_classification" needs num_labels > 1: use num_labels=2 for a binary '
                'classifier, or problem_type="regression" for a single output'
            )
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

    @num_labels.setter
    def num_labels(self, num_labels: int) -> None:
        # as PretrainedConfig: a different count replaces the labels by LABEL_0..LABEL_{n-1}
        if num_labels != self.num_labels:
            self.id2label = _default_labels(num_labels)

    @property
    def label2id(self) -> dict[str, int]:
        """The inverse of `id2label`, unless one was given with it (kept as given)."""
        explicit = self.__dict__.get("_label2id")
        return dict(explicit) if explicit is not None else {label: i for i, label in self.id2label.items()}

    @label2id.setter
    def label2id(self, label2id: dict[str, int] | None) -> None:
        self._label2id = None if label2id is None else dict(label2id)

    @property
    def use_return_dict(self) -> bool:
        """PretrainedConfig's older name of `return_dict`."""
        return self.return_dict

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: _plain(v) for k, v in self.extra.items()}
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
        """A config from a `config.json` dict; `overrides` win (new labels for a new head
        replace the stored ones: a stored label2id is dropped, and id2label too when the
        overrides name the labels)."""
        config = dict(config)
        if overrides.keys() & set(LABEL_KEYS):
            config.pop("label2id", None)
            if overrides.keys() & {"id2label", "label2id"}:
                config.pop("id2label", None)
                config.pop("num_labels", None)
        return cls(**{**config, **overrides})

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
