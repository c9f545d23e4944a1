"""Read checkpoints of the original UniSpeech code (a 2021 fairseq fork).

fairseq stores `{"args" or "cfg": ..., "model": state_dict}`. This module renames the
state dict to our (= `transformers`') key names and derives a `UniSpeechConfig` from the
training arguments. `scripts/convert_fairseq_checkpoint.py` is the command-line front end.
"""

from __future__ import annotations

import argparse
import ast
import re
from typing import Any

import torch

from .config import UniSpeechConfig

# fairseq name (regex) → our name, in the pretraining model's namespace (no prefix)
_RULES: list[tuple[str, str]] = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", r"feature_extractor.conv_layers.\1.conv.weight"),
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.bias", r"feature_extractor.conv_layers.\1.conv.bias"),
    # group norm (layer 0, extractor_mode=default) sits at index 2 of the block ...
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    # ... layer norm (extractor_mode=layer_norm) is wrapped: (TransposeLast, LayerNorm, TransposeLast)
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"mask_emb", r"masked_spec_embed"),
    (r"encoder\.pos_conv\.0\.(bias|weight_g|weight_v)", r"encoder.pos_conv_embed.conv.\1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
]
# parameters of the pretraining heads (outside the `unispeech.` encoder)
_HEAD_RULES: list[tuple[str, str]] = [
    (r"quantizer\.vars", r"quantizer.codevectors"),
    (r"quantizer\.weight_proj\.(weight|bias)", r"quantizer.weight_proj.\1"),
    (r"project_q\.(weight|bias)", r"project_q.\1"),
    (r"final_proj\.(weight|bias)", r"project_hid.\1"),
    (r"ctc_proj\.(weight|bias)", r"ctc_proj.\1"),
    (r"proj\.(weight|bias)", r"lm_head.\1"),  # fine-tuned models: w2v_encoder.proj
]
# fairseq bookkeeping that has no counterpart
_IGNORED = re.compile(r"^(label_embs_concat|_ema|encoder\.version|.*num_updates)")


def convert_state_dict(fairseq_state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a fairseq UniSpeech state dict; returns (our state dict, unconverted keys)."""
    out: dict[str, torch.Tensor] = {}
    unconverted: list[str] = []
    for key, value in fairseq_state.items():
        name = key.removeprefix("w2v_encoder.").removeprefix("w2v_model.")
        if _IGNORED.match(name):
            continue
        for rules, prefix in ((_RULES, "unispeech."), (_HEAD_RULES, "")):
            target = next((re.sub(p, r, name) for p, r in rules if re.fullmatch(p, name)), None)
            if target is not None:
                out[prefix + target] = value
                break
        else:
            unconverted.append(key)
    return out, unconverted


def _conv_layers(spec: str) -> tuple[list[int], list[int], list[int]]:
    # e.g. "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2": a Python expression of
    # (dim, kernel, stride) tuples; evaluated without eval() by expanding list algebra
    layers: list[tuple[int, int, int]] = []
    for term in spec.split("+"):
        term = term.strip()
        repeat = 1
        match = re.fullmatch(r"(\[.*\])\s*\*\s*(\d+)", term)
        if match:
            term, repeat = match.group(1), int(match.group(2))
        layers.extend(list(ast.literal_eval(term)) * repeat)
    return [d for d, _, _ in layers], [k for _, k, _ in layers], [s for _, _, s in layers]


def config_from_fairseq_args(args: dict[str, Any], **overrides: Any) -> UniSpeechConfig:
    """Map fairseq's training arguments to a `UniSpeechConfig` (unknown ones keep defaults)."""
    fields: dict[str, Any] = {}
    simple = {
        "encoder_embed_dim": "hidden_size",
        "encoder_layers": "num_hidden_layers",
        "encoder_attention_heads": "num_attention_heads",
        "encoder_ffn_embed_dim": "intermediate_size",
        "layer_norm_first": "do_stable_layer_norm",
        "conv_bias": "conv_bias",
        "conv_pos": "num_conv_pos_embeddings",
        "conv_pos_groups": "num_conv_pos_embedding_groups",
        "latent_vars": "num_codevectors_per_group",
        "latent_groups": "num_codevector_groups",
        "num_negatives": "num_negatives",
        "logit_temp": "contrastive_logits_temperature",
        "mask_prob": "mask_time_prob",
        "mask_length": "mask_time_length",
        "mask_channel_prob": "mask_feature_prob",
        "mask_channel_length": "mask_feature_length",
        "dropout": "hidden_dropout",
        "attention_dropout": "attention_dropout",
        "activation_dropout": "activation_dropout",
        "encoder_layerdrop": "layerdrop",
        "replace_prob": "replace_prob",
        "mtlalpha": "ctc_alpha",
    }
    for theirs, ours in simple.items():
        if args.get(theirs) is not None:
            fields[ours] = args[theirs]
    if args.get("conv_feature_layers"):
        fields["conv_dim"], fields["conv_kernel"], fields["conv_stride"] = _conv_layers(args["conv_feature_layers"])
    if args.get("extractor_mode"):
        fields["feat_extract_norm"] = "layer" if args["extractor_mode"] == "layer_norm" else "group"
    final_dim = args.get("final_dim") or fields.get("hidden_size", 768)
    fields["proj_codevector_dim"] = final_dim
    fields["codevector_dim"] = args.get("latent_dim") or final_dim
    fields.update(overrides)
    return UniSpeechConfig(**fields)


def load_fairseq_checkpoint(path: str, trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (model state dict, flat training arguments) of a fairseq checkpoint.

    The file is a pickle; it is read with `weights_only=True` (argparse.Namespace allowed)
    unless `trust_pickle` is set for a file whose origin you trust (fairseq ≥ 0.10 stores an
    omegaconf config that the safe loader refuses).
    """
    if trust_pickle:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    else:
        with torch.serialization.safe_globals([argparse.Namespace]):
            try:
                blob = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # noqa: BLE001 - any unpickling refusal
                raise RuntimeError(
                    f"{path} holds objects the safe loader refuses ({err}). If you trust the file, "
                    "pass trust_pickle=True (--trust-pickle on the command line)."
                ) from err
    if "model" not in blob:
        raise ValueError(f"{path} is not a fairseq checkpoint: no 'model' entry (keys: {sorted(blob)[:8]})")
    args: dict[str, Any] = {}
    if blob.get("args") is not None:
        args = dict(vars(blob["args"])) if not isinstance(blob["args"], dict) else dict(blob["args"])
    elif blob.get("cfg") is not None:
        model_cfg = blob["cfg"]["model"]
        args = dict(model_cfg.items()) if hasattr(model_cfg, "items") else dict(vars(model_cfg))
    if isinstance(args.get("w2v_args"), (dict, argparse.Namespace)):  # fine-tuned: the base model's args
        inner = args["w2v_args"]
        args = {**(vars(inner) if isinstance(inner, argparse.Namespace) else inner), **args}
    return blob["model"], args
