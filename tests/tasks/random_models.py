"""Tiny randomly initialised CTC models, exported with a tokenizer: the inference tools'
tests need a model to load, not a trained one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

import unispeech
from unispeech.data.tokenizer import CTCTokenizer


def tiny_config(vocab_size: int, **fields) -> unispeech.UniSpeechConfig:
    """A two-layer, 32-wide model (pre-LN, LayerNorm convs unless ``fields`` say otherwise)."""
    shape = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )
    return unispeech.UniSpeechConfig(**{**shape, **fields, "vocab_size": vocab_size})


def save_random_model(directory: Path, texts: Sequence[str], kind: str, language: str = "") -> Path:
    """A tiny UniSpeechForCTC (seeded) with a tokenizer built from ``texts``, saved to ``directory``."""
    tokenizer = CTCTokenizer.from_texts(texts, kind=kind, language=language)
    config = tiny_config(len(tokenizer))
    torch.manual_seed(0)
    unispeech.UniSpeechForCTC(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
