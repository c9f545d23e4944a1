"""Converting a checkpoint laid out like the original fairseq UniSpeech code."""

import argparse
import subprocess
import sys
from pathlib import Path

import torch

from unispeech import UniSpeechForPreTraining

from modeling_fixtures import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def fairseq_layout(model: UniSpeechForPreTraining) -> dict[str, torch.Tensor]:
    """Our state dict under the names fairseq's Wav2Vec2Model/UniSpeech modules use."""
    renames = [
        ("unispeech.feature_extractor.conv_layers.{i}.conv.weight", "feature_extractor.conv_layers.{i}.0.weight"),
        ("unispeech.feature_extractor.conv_layers.0.layer_norm.weight", "feature_extractor.conv_layers.0.2.weight"),
        ("unispeech.feature_extractor.conv_layers.0.layer_norm.bias", "feature_extractor.conv_layers.0.2.bias"),
        ("unispeech.feature_projection.layer_norm.{p}", "layer_norm.{p}"),
        ("unispeech.feature_projection.projection.{p}", "post_extract_proj.{p}"),
        ("unispeech.masked_spec_embed", "mask_emb"),
        ("unispeech.encoder.pos_conv_embed.conv.{w}", "encoder.pos_conv.0.{w}"),
        ("unispeech.encoder.layer_norm.{p}", "encoder.layer_norm.{p}"),
        ("unispeech.encoder.layers.{i}.attention.{a}.{p}", "encoder.layers.{i}.self_attn.{a}.{p}"),
        ("unispeech.encoder.layers.{i}.layer_norm.{p}", "encoder.layers.{i}.self_attn_layer_norm.{p}"),
        ("unispeech.encoder.layers.{i}.feed_forward.intermediate_dense.{p}", "encoder.layers.{i}.fc1.{p}"),
        ("unispeech.encoder.layers.{i}.feed_forward.output_dense.{p}", "encoder.layers.{i}.fc2.{p}"),
        ("unispeech.encoder.layers.{i}.final_layer_norm.{p}", "encoder.layers.{i}.final_layer_norm.{p}"),
        ("quantizer.codevectors", "quantizer.vars"),
        ("quantizer.weight_proj.{p}", "quantizer.weight_proj.{p}"),
        ("project_q.{p}", "project_q.{p}"),
        ("project_hid.{p}", "final_proj.{p}"),
        ("ctc_proj.{p}", "ctc_proj.{p}"),
    ]
    state = model.state_dict()
    out = {}
    for ours, theirs in renames:
        for i in range(7):
            for p in ("weight", "bias"):
                for w in ("weight_g", "weight_v", "bias"):
                    for a in ("q_proj", "k_proj", "v_proj", "out_proj"):
                        key = ours.format(i=i, p=p, w=w, a=a)
                        if key in state:
                            out[theirs.format(i=i, p=p, w=w, a=a)] = state[key]
    assert len(out) == len(state), sorted(set(state) - {k for k in state if k in out})
    out["label_embs_concat"] = torch.zeros(3, 4)  # fairseq bookkeeping, dropped by the converter
    return out


def test_fairseq_checkpoint_converts_and_gives_the_same_outputs(tmp_path, padded_batch):
    config = tiny_config(do_stable_layer_norm=True, mask_time_prob=0.5)
    model = UniSpeechForPreTraining(config).eval()
    args = argparse.Namespace(
        encoder_embed_dim=32,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_embed_dim=64,
        layer_norm_first=True,
        conv_bias=False,
        conv_pos=16,
        conv_pos_groups=4,
        latent_vars=8,
        latent_groups=2,
        latent_dim=16,
        final_dim=16,
        extractor_mode="default",
        mask_prob=0.5,
        mask_length=3,
        conv_feature_layers="[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2",
        num_negatives=7,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
    )
    ckpt = tmp_path / "checkpoint_best.pt"
    torch.save({"args": args, "model": fairseq_layout(model)}, ckpt)
    out_dir = tmp_path / "converted"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/convert_fairseq_checkpoint.py"), str(ckpt), str(out_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    converted = UniSpeechForPreTraining.from_pretrained(out_dir).eval()
    assert converted.loading_info["missing_keys"] == [] and converted.loading_info["unexpected_keys"] == []
    assert converted.config.num_ctc_classes == 12 and converted.config.do_stable_layer_norm
    x, mask = padded_batch
    no_mask = torch.zeros(3, 49, dtype=torch.bool)
    with torch.no_grad():
        a = model(x, mask, mask_time_indices=no_mask)
        b = converted(x, mask, mask_time_indices=no_mask)
    torch.testing.assert_close(a.projected_states, b.projected_states)
    torch.testing.assert_close(a.projected_quantized_states, b.projected_quantized_states)
