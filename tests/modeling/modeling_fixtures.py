"""Shared by the modeling tests (a module name no other test folder uses)."""

from unispeech import UniSpeechConfig


def tiny_config(**overrides) -> UniSpeechConfig:
    """A model small enough for CPU tests, every architectural knob of the real one."""
    fields = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        codevector_dim=16,
        proj_codevector_dim=16,
        num_codevectors_per_group=8,
        num_codevector_groups=2,
        num_ctc_classes=12,
        vocab_size=10,
        classifier_proj_size=8,
        mask_time_prob=0.5,
        mask_time_length=3,
        num_negatives=7,
        layerdrop=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        final_dropout=0.0,
    )
    fields.update(overrides)
    return UniSpeechConfig(**fields)
