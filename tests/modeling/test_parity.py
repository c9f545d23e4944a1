"""Our models against `transformers`' UniSpeech, the same weights, the same padded batch."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import unispeech
from unispeech.modeling import checkpoint

from modeling_fixtures import tiny_config

transformers = pytest.importorskip("transformers")

CLASSES = ["UniSpeechModel", "UniSpeechForCTC", "UniSpeechForSequenceClassification", "UniSpeechForPreTraining"]
VARIANTS = [(norm, stable) for norm in ("group", "layer") for stable in (False, True)]
TOL = 1e-4


def hf_pair(name, tmp_path, hf_kwargs=None, **overrides):
    config = tiny_config(**overrides)
    if name == "UniSpeechForSequenceClassification":
        config = tiny_config(id2label={0: "yes", 1: "no", 2: "up"}, **overrides)
    ours = getattr(unispeech, name)(config).eval()
    ours.save_pretrained(tmp_path)
    theirs, info = getattr(transformers, name).from_pretrained(tmp_path, output_loading_info=True, **(hf_kwargs or {}))
    return ours, theirs.eval(), info


def max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("norm,stable", VARIANTS)
@pytest.mark.parametrize("name", CLASSES)
def test_outputs_match_transformers(name, norm, stable, padded_batch, tmp_path):
    x, mask = padded_batch
    ours, theirs, info = hf_pair(name, tmp_path, feat_extract_norm=norm, do_stable_layer_norm=stable)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]

    kwargs = {}
    if name == "UniSpeechForCTC":
        kwargs["labels"] = torch.tensor([[1, 2, 3, 4], [5, 6, -100, -100], [7, -100, -100, -100]])
    if name == "UniSpeechForSequenceClassification":
        kwargs["labels"] = torch.tensor([0, 2, 1])
    with torch.no_grad():
        theirs_out = theirs(x, attention_mask=mask, output_hidden_states=True, **kwargs)
        if name == "UniSpeechForPreTraining":
            # no masking, as transformers' pretraining model in eval mode
            kwargs["mask_time_indices"] = torch.zeros(3, 49, dtype=torch.bool)
        ours_out = ours(x, attention_mask=mask, output_hidden_states=True, **kwargs)

    if name == "UniSpeechModel":
        assert max_diff(ours_out.last_hidden_state, theirs_out.last_hidden_state) <= TOL
        assert max_diff(ours_out.extract_features, theirs_out.extract_features) <= TOL
    elif name == "UniSpeechForPreTraining":
        assert max_diff(ours_out.projected_states, theirs_out.projected_states) <= TOL
        assert max_diff(ours_out.projected_quantized_states, theirs_out.projected_quantized_states) <= TOL
    else:
        assert max_diff(ours_out.logits, theirs_out.logits) <= TOL
        assert abs(ours_out.loss.item() - theirs_out.loss.item()) <= TOL
    assert len(ours_out.hidden_states) == len(theirs_out.hidden_states) == 3
    for a, b in zip(ours_out.hidden_states, theirs_out.hidden_states):
        assert max_diff(a, b) <= TOL


@pytest.mark.parametrize("stable", [False, True])
def test_weighted_layer_sum_and_attentions_match(stable, padded_batch, tmp_path):
    x, mask = padded_batch
    ours, theirs, _ = hf_pair(
        "UniSpeechForSequenceClassification",
        tmp_path,
        hf_kwargs={"attn_implementation": "eager"},  # transformers' sdpa path returns no attention maps
        use_weighted_layer_sum=True,
        do_stable_layer_norm=stable,
    )
    with torch.no_grad():
        ours.layer_weights.copy_(torch.tensor([0.2, 1.0, -0.5]))
        theirs.layer_weights.copy_(torch.tensor([0.2, 1.0, -0.5]))
        a = ours(x, attention_mask=mask, output_attentions=True)
        b = theirs(x, attention_mask=mask, output_attentions=True)
    assert max_diff(a.logits, b.logits) <= TOL
    assert len(a.attentions) == len(b.attentions) == 2
    for wa, wb in zip(a.attentions, b.attentions):
        assert max_diff(wa, wb) <= TOL


def test_perplexity_matches_on_unpadded_batch(tmp_path):
    ours, theirs, _ = hf_pair("UniSpeechForPreTraining", tmp_path)
    x = torch.randn(2, 8000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = ours(x, mask_time_indices=torch.zeros(2, 24, dtype=torch.bool))
        b = theirs(x)
    assert abs(a.codevector_perplexity.item() - b.codevector_perplexity.item()) <= TOL


@pytest.mark.parametrize("name", CLASSES)
def test_transformers_checkpoint_loads_here(name, padded_batch, tmp_path):
    x, mask = padded_batch
    config = transformers.UniSpeechConfig(**{k: v for k, v in tiny_config().to_dict().items() if k != "extra"})
    theirs = getattr(transformers, name)(config).eval()
    theirs.save_pretrained(tmp_path)
    ours = getattr(unispeech, name).from_pretrained(tmp_path).eval()
    assert ours.loading_info == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}
    # our pretraining model masks in eval too (for a validation loss): switch that off here
    no_mask = {"mask_time_indices": torch.zeros(3, 49, dtype=torch.bool)} if name == "UniSpeechForPreTraining" else {}
    with torch.no_grad():
        a = ours(x, attention_mask=mask, output_hidden_states=True, **no_mask)
        b = theirs(x, attention_mask=mask, output_hidden_states=True)
    assert max_diff(a.hidden_states[-1], b.hidden_states[-1]) <= TOL


def test_old_weight_norm_key_style_loads(padded_batch, tmp_path):
    """Published checkpoints name the weight norm `weight_g` / `weight_v`."""
    x, mask = padded_batch
    model = unispeech.UniSpeechModel(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    renamed = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in state.items()
    }
    assert "encoder.pos_conv_embed.conv.weight_g" in renamed
    (tmp_path / "model.safetensors").unlink()
    torch.save(renamed, tmp_path / "pytorch_model.bin")
    loaded = unispeech.UniSpeechModel.from_pretrained(tmp_path).eval()
    assert loaded.loading_info["missing_keys"] == [] and loaded.loading_info["unexpected_keys"] == []
    with torch.no_grad():
        assert max_diff(loaded(x, mask).last_hidden_state, model(x, mask).last_hidden_state) == 0.0
    # transformers reads the old style too
    theirs, info = transformers.UniSpeechModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_pretraining_checkpoint_fine_tunes_with_fresh_head(tmp_path):
    pre = unispeech.UniSpeechForPreTraining(tiny_config())
    pre.save_pretrained(tmp_path)
    ctc = unispeech.UniSpeechForCTC.from_pretrained(tmp_path, vocab_size=23)
    info = ctc.loading_info
    assert info["missing_keys"] == ["lm_head.bias", "lm_head.weight"]
    assert {"quantizer.codevectors", "ctc_proj.weight", "project_q.weight"} <= set(info["unexpected_keys"])
    assert ctc.lm_head.out_features == 23
    torch.testing.assert_close(
        ctc.unispeech.encoder.layers[0].attention.q_proj.weight, pre.unispeech.encoder.layers[0].attention.q_proj.weight
    )
    cls = unispeech.UniSpeechForSequenceClassification.from_pretrained(
        tmp_path, id2label={0: "a", 1: "b", 2: "c", 3: "d"}
    )
    assert cls.classifier.out_features == 4
    assert cls.loading_info["missing_keys"] == [
        "classifier.bias",
        "classifier.weight",
        "projector.bias",
        "projector.weight",
    ]
    # a bare encoder loads from a model with a head, dropping the prefix
    base = unispeech.UniSpeechModel.from_pretrained(tmp_path)
    assert base.loading_info["missing_keys"] == []


def test_saved_directory_is_transformers_layout(tmp_path):
    model = unispeech.UniSpeechForCTC(tiny_config())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "unispeech" and config["architectures"] == ["UniSpeechForCTC"]
    assert config["vocab_size"] == 10 and config["conv_stride"] == [5, 2, 2, 2, 2, 2, 2]
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert "unispeech.encoder.pos_conv_embed.conv.parametrizations.weight.original0" in keys
    assert "lm_head.weight" in keys
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(RuntimeError, match="does not match"):
        unispeech.UniSpeechForCTC.from_pretrained(tmp_path, strict=True)


def test_state_dict_key_conversion_round_trips():
    state = unispeech.UniSpeechModel(tiny_config()).state_dict()
    assert checkpoint.from_hf_state_dict(checkpoint.to_hf_state_dict(state)).keys() == state.keys()


def test_hub_id_offline_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="offline.*huggingface-cli download microsoft/unispeech-sat-base"):
        unispeech.UniSpeechForCTC.from_pretrained("microsoft/unispeech-sat-base")
