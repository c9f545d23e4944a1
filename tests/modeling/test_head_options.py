"""`transformers`' head options: `problem_type` losses, `target_lang`, and the config's output defaults."""

import inspect
import logging

import pytest
import torch
import torch.nn.functional as F

import unispeech
from unispeech import UniSpeechConfig

from modeling_fixtures import tiny_config

transformers = pytest.importorskip("transformers")
loss_utils = pytest.importorskip("transformers.loss.loss_utils")

TOL = 1e-5


def classifier_pair(tmp_path, **overrides):
    """Our classifier and transformers' one with the same weights (read from our checkpoint)."""
    ours = unispeech.UniSpeechForSequenceClassification(tiny_config(**overrides)).eval()
    ours.save_pretrained(tmp_path)
    theirs = transformers.UniSpeechForSequenceClassification.from_pretrained(tmp_path).eval()
    return ours, theirs


def reference_loss(theirs, x, mask, labels):
    """transformers' sequence-classification loss (`problem_type` inferred as in BERT & co.)
    on transformers' logits. Its UniSpeech classifier itself always uses cross-entropy."""
    with torch.no_grad():
        logits = theirs(x, attention_mask=mask).logits
    if labels.dtype == torch.int32:  # same problem type; torch's cross-entropy wants int64 ids
        labels = labels.long()
    return loss_utils.ForSequenceClassificationLoss(labels, logits, theirs.config)


CASES = [
    # (config overrides, labels, problem type set on first use)
    ({"num_labels": 1}, torch.tensor([0.5, -1.0, 2.0]), "regression"),
    ({"num_labels": 1}, torch.tensor([[0.5], [-1.0], [2.0]]), "regression"),
    ({"num_labels": 3}, torch.tensor([0, 2, 1]), "single_label_classification"),
    ({"num_labels": 3}, torch.tensor([0, 2, 1], dtype=torch.int32), "single_label_classification"),
    (
        {"num_labels": 3},
        torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]),
        "multi_label_classification",
    ),
    ({"num_labels": 3, "problem_type": "regression"}, torch.tensor([[0.1, 0.2, 0.3]] * 3), "regression"),
    ({"num_labels": 2, "problem_type": "single_label_classification"}, torch.tensor([1, 0, 1]), None),
]


@pytest.mark.parametrize("overrides,labels,problem_type", CASES)
def test_problem_type_losses_match_transformers(overrides, labels, problem_type, padded_batch, tmp_path):
    x, mask = padded_batch
    ours, theirs = classifier_pair(tmp_path, **overrides)
    assert ours.config.problem_type == overrides.get("problem_type")
    with torch.no_grad():
        out = ours(x, attention_mask=mask, labels=labels)
    expected = reference_loss(theirs, x, mask, labels)
    assert abs(out.loss.item() - expected.item()) <= TOL
    # the type is stored on first use, as transformers does, and saved with the config
    assert ours.config.problem_type == theirs.config.problem_type == (problem_type or overrides["problem_type"])
    ours.save_pretrained(tmp_path / "again")
    assert UniSpeechConfig.from_pretrained(tmp_path / "again").problem_type == ours.config.problem_type


def test_integer_class_ids_match_transformers_classifier(padded_batch, tmp_path):
    x, mask = padded_batch
    ours, theirs = classifier_pair(tmp_path, num_labels=4)
    labels = torch.tensor([3, 0, 2])
    with torch.no_grad():
        a, b = ours(x, attention_mask=mask, labels=labels), theirs(x, attention_mask=mask, labels=labels)
    assert abs(a.loss.item() - b.loss.item()) <= TOL


def test_each_loss_is_the_documented_one(padded_batch):
    x, mask = padded_batch
    regression = unispeech.UniSpeechForSequenceClassification(tiny_config(num_labels=1)).eval()
    targets = torch.tensor([1, 0, 3])  # integer targets with one label: still regression
    with torch.no_grad():
        out = regression(x, attention_mask=mask, labels=targets)
    assert regression.config.problem_type == "regression"
    assert torch.allclose(out.loss, F.mse_loss(out.logits.squeeze(-1), targets.float()))

    multi = unispeech.UniSpeechForSequenceClassification(tiny_config(num_labels=3)).eval()
    hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    with torch.no_grad():
        out = multi(x, attention_mask=mask, labels=hot)
    assert torch.allclose(out.loss, F.binary_cross_entropy_with_logits(out.logits, hot))
    with torch.no_grad():  # the type is fixed now: integer labels are read as multi-hot rows too
        out = multi(x, attention_mask=mask, labels=hot.long())
    assert torch.allclose(out.loss, F.binary_cross_entropy_with_logits(out.logits, hot))

    multi.config.problem_type = "ranking"
    with pytest.raises(ValueError, match="problem_type"):
        multi(x, attention_mask=mask, labels=hot)


def test_regression_trains(padded_batch):
    x, mask = padded_batch
    model = unispeech.UniSpeechForSequenceClassification(tiny_config(num_labels=1))
    loss = model(x, attention_mask=mask, labels=torch.tensor([0.5, -1.0, 2.0])).loss
    loss.backward()
    assert loss.item() > 0 and model.classifier.weight.grad.abs().sum() > 0


# -- target_lang --------------------------------------------------------------------------------
def test_target_lang_signature_matches_transformers():
    ours = inspect.signature(unispeech.UniSpeechForCTC.__init__).parameters["target_lang"]
    theirs = inspect.signature(transformers.UniSpeechForCTC.__init__).parameters["target_lang"]
    assert ours.default is theirs.default is None
    assert unispeech.UniSpeechForCTC(tiny_config()).target_lang is None


def test_target_lang_without_adapters_is_refused_as_in_transformers(tmp_path):
    config = tiny_config()
    with pytest.raises(ValueError, match="adapter_attn_dim"):
        unispeech.UniSpeechForCTC(config, target_lang="fra")
    hf_config = transformers.UniSpeechConfig(**{k: v for k, v in config.to_dict().items() if k != "label2id"})
    with pytest.raises(ValueError, match="adapter_attn_dim"):
        transformers.UniSpeechForCTC(hf_config, target_lang="fra")

    unispeech.UniSpeechForCTC(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="adapter_attn_dim"):
        unispeech.UniSpeechForCTC.from_pretrained(tmp_path, target_lang="fra")
    with pytest.raises(ValueError, match="adapter_attn_dim"):
        transformers.UniSpeechForCTC.from_pretrained(tmp_path, target_lang="fra")
    # target_lang=None is the plain model, and it goes to the model, never into the config
    loaded = unispeech.UniSpeechForCTC.from_pretrained(tmp_path, target_lang=None, vocab_size=12)
    assert loaded.target_lang is None and "target_lang" not in loaded.config.extra
    assert loaded.lm_head.out_features == 12
    with pytest.raises(ValueError, match="adapter_attn_dim"):
        loaded.load_adapter("fra")


def test_config_with_adapters_is_reported(caplog):
    config = tiny_config(adapter_attn_dim=16)
    with pytest.raises(NotImplementedError, match="adapter"):
        unispeech.UniSpeechForCTC(config, target_lang="eng")
    with caplog.at_level(logging.WARNING, logger="unispeech.modeling.models"):
        model = unispeech.UniSpeechForCTC(config)
    assert "adapter_attn_dim=16" in caplog.text
    with pytest.raises(NotImplementedError, match="adapter"):
        model.load_adapter("eng")


# -- output defaults from the config --------------------------------------------------------------
def max_diff(a, b):
    if isinstance(a, torch.Tensor):
        return (a - b).abs().max().item()
    assert len(a) == len(b)  # hidden states, attentions
    return max(max_diff(p, q) for p, q in zip(a, b))


@pytest.mark.parametrize("name", ["UniSpeechModel", "UniSpeechForCTC", "UniSpeechForSequenceClassification"])
def test_config_output_defaults_match_transformers(name, padded_batch, tmp_path):
    x, mask = padded_batch
    config = tiny_config(output_hidden_states=True, output_attentions=True)
    ours = getattr(unispeech, name)(config).eval()
    ours.save_pretrained(tmp_path)
    theirs = getattr(transformers, name).from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert theirs.config.output_hidden_states and theirs.config.output_attentions
    with torch.no_grad():
        a, b = ours(x, attention_mask=mask), theirs(x, attention_mask=mask)
    assert len(a.hidden_states) == len(b.hidden_states) == 3 and len(a.attentions) == len(b.attentions) == 2
    assert max_diff(a.hidden_states, b.hidden_states) <= 1e-4 and max_diff(a.attentions, b.attentions) <= 1e-4
    # an argument still wins over the config
    with torch.no_grad():
        out = ours(x, attention_mask=mask, output_hidden_states=False, output_attentions=False)
    assert out.hidden_states is None and out.attentions is None

    # return_dict=False in the config: tuples (transformers' heads fail there, their bare model does not)
    ours.config.return_dict = False
    with torch.no_grad():
        plain = ours(x, attention_mask=mask)
        assert isinstance(plain, tuple) and len(plain) == len(a.to_tuple())
        assert all(max_diff(p, q) == 0 for p, q in zip(plain, a.to_tuple()))
        assert isinstance(ours(x, attention_mask=mask, return_dict=True), type(a))
        if name == "UniSpeechModel":
            theirs.config.return_dict = False
            other = theirs(x, attention_mask=mask)
            assert len(other) == len(plain) and all(max_diff(p, q) <= 1e-4 for p, q in zip(plain, other))


def test_pretraining_reads_the_config_defaults(padded_batch):
    x, mask = padded_batch
    model = unispeech.UniSpeechForPreTraining(tiny_config(output_hidden_states=True)).eval()
    with torch.no_grad():
        out = model(x, attention_mask=mask)
    assert len(out.hidden_states) == 3
    model.config.return_dict = False
    with torch.no_grad():
        assert isinstance(model(x, attention_mask=mask), tuple)
