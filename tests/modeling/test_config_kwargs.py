"""`UniSpeechConfig` takes `transformers`' `PretrainedConfig` keywords, and stays a dataclass."""

import copy
import dataclasses
import json
import logging
import pickle
import typing

import pytest
import torch

from unispeech import UniSpeechConfig

from modeling_fixtures import tiny_config

transformers = pytest.importorskip("transformers")

OLD_FIELDS = ["vocab_size", "hidden_size", "conv_dim", "pad_token_id", "id2label", "ctc_alpha", "layerdrop_seed"]
NEW_FIELDS = ["problem_type", "output_hidden_states", "output_attentions", "return_dict"]

# keywords that both configs take and resolve the same way
SHARED_KWARGS = [
    {},
    {"num_labels": 5},
    {"num_labels": 1},
    {"num_labels": 1, "problem_type": "regression"},
    {"num_labels": 3, "problem_type": "multi_label_classification"},
    {"num_labels": 4, "problem_type": "single_label_classification"},
    {"id2label": {0: "yes", 1: "no", 2: "up"}, "label2id": {"yes": 0, "no": 1, "up": 2}},
    {"id2label": {"0": "yes", "1": "no"}, "label2id": {"yes": 0, "no": 1}},  # JSON keys are strings
    {"id2label": {0: "yes", 1: "no", 2: "up"}, "num_labels": 3},
    {"id2label": {0: "yes", 1: "no", 2: "up"}, "num_labels": 5},  # a different count wins, with a warning
    {"output_hidden_states": True, "output_attentions": True, "return_dict": False},
    {"architectures": ["UniSpeechForCTC"], "finetuning_task": "sid", "pad_token_id": 3, "bos_token_id": 4},
    {"my_own_key": 7, "another": {"nested": [1, 2]}},  # unknown: kept as attributes
]
COMPARED = ["num_labels", "id2label", "label2id", "problem_type", "output_hidden_states", "output_attentions"]
COMPARED += ["return_dict", "pad_token_id", "bos_token_id", "eos_token_id"]


def assert_same(ours, theirs, kwargs):
    for name in COMPARED:
        if name == "label2id" and theirs.label2id is None:
            # transformers leaves label2id unset when only id2label is given; ours is its inverse
            assert ours.label2id == {label: i for i, label in theirs.id2label.items()}
            continue
        assert getattr(ours, name) == getattr(theirs, name), name
    for name in kwargs.keys() - {f.name for f in dataclasses.fields(UniSpeechConfig)} - {"num_labels", "label2id"}:
        assert getattr(ours, name) == getattr(theirs, name), name


@pytest.mark.parametrize("kwargs", SHARED_KWARGS, ids=lambda k: ",".join(k) or "defaults")
def test_pretrained_config_keywords_resolve_as_in_transformers(kwargs, tmp_path):
    ours = UniSpeechConfig(**copy.deepcopy(kwargs))
    theirs = transformers.UniSpeechConfig(**copy.deepcopy(kwargs))
    assert_same(ours, theirs, kwargs)
    # what we write, transformers reads back to the same values, and so do we
    ours.save_pretrained(tmp_path)
    assert_same(ours, transformers.UniSpeechConfig.from_pretrained(tmp_path), kwargs)
    again = UniSpeechConfig.from_pretrained(tmp_path)
    assert again.to_dict() == ours.to_dict()
    assert_same(again, theirs, kwargs)


def test_unknown_keywords_round_trip(tmp_path):
    config = tiny_config(finetuning_task="sid", my_own_key={"a": [1, 2]}, torch_dtype=torch.float16)
    assert config.finetuning_task == "sid" and config.my_own_key == {"a": [1, 2]}
    assert config.extra == {"finetuning_task": "sid", "my_own_key": {"a": [1, 2]}, "torch_dtype": "float16"}
    config.architectures = ["UniSpeechForSequenceClassification"]  # set later: saved too
    config.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["finetuning_task"] == "sid" and raw["torch_dtype"] == "float16" and "extra" not in raw
    again = UniSpeechConfig.from_pretrained(tmp_path)
    assert again == config and again.architectures == ["UniSpeechForSequenceClassification"]
    theirs = transformers.UniSpeechConfig.from_pretrained(tmp_path)
    assert theirs.finetuning_task == "sid" and theirs.my_own_key == {"a": [1, 2]}
    assert theirs.dtype == torch.float16 and theirs.architectures == ["UniSpeechForSequenceClassification"]
    with pytest.raises(AttributeError, match="no attribute 'not_there'"):
        _ = config.not_there


def test_label2id_alone_builds_id2label(tmp_path):
    # transformers 5 discards a lone label2id (it builds LABEL_0, LABEL_1); we keep the labels,
    # and write both maps so that transformers reads the same ones
    config = UniSpeechConfig(label2id={"en": 0, "fr": 1, "es": 2})
    assert config.id2label == {0: "en", 1: "fr", 2: "es"} and config.num_labels == 3
    assert config.label2id == {"en": 0, "fr": 1, "es": 2}
    config.save_pretrained(tmp_path)
    theirs = transformers.UniSpeechConfig.from_pretrained(tmp_path)
    assert theirs.id2label == config.id2label and theirs.label2id == config.label2id
    with pytest.raises(ValueError, match="integer ids"):
        UniSpeechConfig(label2id={"en": "zero"})


def test_id2label_alone_gives_its_inverse():
    # transformers leaves label2id None here; ours is the inverse map, as before
    config = UniSpeechConfig(id2label={0: "yes", 1: "no"})
    assert config.label2id == {"yes": 0, "no": 1}
    assert transformers.UniSpeechConfig(id2label={0: "yes", 1: "no"}).id2label == config.id2label


def test_num_labels_setter_and_mismatch_warning(caplog):
    config = UniSpeechConfig(id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1})
    config.num_labels = 2  # same count: labels kept
    assert config.id2label == {0: "a", 1: "b"}
    config.num_labels = 3
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert config.label2id == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    with caplog.at_level(logging.WARNING, logger="unispeech.modeling.config"):
        UniSpeechConfig(id2label={0: "a"}, num_labels=2)
    assert "num_labels=2 does not match" in caplog.text


def test_return_dict_alias():
    # transformers refuses `use_return_dict=` (a read-only property there); it is `return_dict`
    assert UniSpeechConfig(use_return_dict=False).return_dict is False
    assert UniSpeechConfig(use_return_dict=False).use_return_dict is False
    assert UniSpeechConfig().use_return_dict is True == transformers.UniSpeechConfig().return_dict
    assert "use_return_dict" not in UniSpeechConfig(use_return_dict=False).to_dict()


def test_new_labels_override_stored_ones(tmp_path):
    UniSpeechConfig(id2label={0: "a", 1: "b"}).save_pretrained(tmp_path)
    relabeled = UniSpeechConfig.from_pretrained(tmp_path, id2label={0: "x", 1: "y", 2: "z"})
    assert relabeled.label2id == {"x": 0, "y": 1, "z": 2}
    counted = UniSpeechConfig.from_pretrained(tmp_path, num_labels=4)
    assert counted.id2label == {i: f"LABEL_{i}" for i in range(4)} and counted.label2id["LABEL_3"] == 3
    same = UniSpeechConfig.from_pretrained(tmp_path, num_labels=2)
    assert same.id2label == {0: "a", 1: "b"}


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"problem_type": "ranking"}, ValueError, "problem_type"),
        ({"problem_type": "single_label_classification", "num_labels": 1}, ValueError, "num_labels > 1"),
        ({"inputs_to_logits_ratio": 160}, TypeError, "derived"),
        ({"model_type": "bert"}, ValueError, "model_type"),
    ],
)
def test_refused_keywords(kwargs, error, message):
    with pytest.raises(error, match=message):
        UniSpeechConfig(**kwargs)


def test_single_label_with_one_label_is_refused_by_transformers_too():
    with pytest.raises(ValueError):
        transformers.UniSpeechConfig(problem_type="single_label_classification", num_labels=1)


def test_still_a_dataclass_with_the_same_fields():
    names = [f.name for f in dataclasses.fields(UniSpeechConfig)]
    assert set(OLD_FIELDS + NEW_FIELDS + ["extra"]) <= set(names)
    assert not {"num_labels", "label2id", "use_return_dict"} & set(names)
    hints = typing.get_type_hints(UniSpeechConfig)
    assert set(names) == set(hints)
    assert hints["problem_type"] == str | None and hints["return_dict"] is bool and hints["conv_dim"] == tuple[int, ...]
    # every field by name, as the Hydra schema builds it
    default = UniSpeechConfig()
    assert UniSpeechConfig(**{f.name: getattr(default, f.name) for f in dataclasses.fields(UniSpeechConfig)}) == default
    values = {f.name: getattr(tiny_config(), f.name) for f in dataclasses.fields(UniSpeechConfig)}
    values.update(problem_type="regression", id2label={0: "score"}, output_hidden_states=True, extra={"k": 1})
    built = UniSpeechConfig(**values)
    assert built.num_labels == 1 and built.k == 1 and built.hidden_size == 32 and built.output_hidden_states
    assert dataclasses.replace(built, hidden_size=64).extra == {"k": 1}


def test_copies_keep_everything():
    config = tiny_config(id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1}, finetuning_task="sid")
    for clone in (copy.deepcopy(config), pickle.loads(pickle.dumps(config))):
        assert clone == config and clone.finetuning_task == "sid" and clone.label2id == {"a": 0, "b": 1}
        clone.finetuning_task = "asr"
        assert config.finetuning_task == "sid"
