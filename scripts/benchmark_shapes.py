"""The model shapes that `benchmark.py` and `benchmark_transcribe.py` time, and their configs."""

from __future__ import annotations

from unispeech import UniSpeechConfig

SHAPES = {
    # name: (config fields, batch size, seconds per utterance)
    "small": (
        dict(
            hidden_size=384,
            num_hidden_layers=4,
            num_attention_heads=6,
            intermediate_size=1536,
            conv_dim=(256,) * 7,
            codevector_dim=256,
            proj_codevector_dim=128,
        ),
        2,
        4.0,
    ),
    "base": (dict(), 8, 15.0),
    "large": (
        dict(
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            do_stable_layer_norm=True,
            feat_extract_norm="layer",
            codevector_dim=768,
            proj_codevector_dim=768,
        ),
        8,
        15.0,
    ),
}


def model_config(shape: str) -> UniSpeechConfig:
    """The config of `shape`: its fields over the defaults, with time masking and 64 output symbols."""
    fields, _, _ = SHAPES[shape]
    common = dict(mask_time_prob=0.5, mask_time_length=10, layerdrop=0.0, vocab_size=64, num_ctc_classes=64)
    return UniSpeechConfig(**{**common, **fields})
