import json

import pytest

from unispeech import UniSpeechConfig

from modeling_fixtures import tiny_config

transformers = pytest.importorskip("transformers")


def test_defaults_are_transformers_defaults():
    ours = UniSpeechConfig().to_dict()
    theirs = transformers.UniSpeechConfig().to_dict()
    for key, value in ours.items():
        if key in theirs and key not in ("id2label", "label2id"):
            expected = list(theirs[key]) if isinstance(theirs[key], tuple) else theirs[key]
            assert value == expected, key
    shared = {"vocab_size", "hidden_size", "num_ctc_classes", "replace_prob", "conv_kernel", "mask_time_prob"}
    assert shared <= ours.keys()
    assert ours["vocab_size"] == 32 and ours["num_ctc_classes"] == 80 and ours["replace_prob"] == 0.5


def test_round_trip_and_transformers_reads_our_config(tmp_path):
    config = tiny_config(id2label={0: "yes", 1: "no"}, do_stable_layer_norm=True)
    config.save_pretrained(tmp_path)
    again = UniSpeechConfig.from_pretrained(tmp_path)
    assert again.to_dict() == config.to_dict()
    assert again.id2label == {0: "yes", 1: "no"} and again.num_labels == 2
    theirs = transformers.UniSpeechConfig.from_pretrained(tmp_path)
    assert theirs.hidden_size == 32 and theirs.do_stable_layer_norm is True
    assert theirs.num_labels == 2 and theirs.id2label[0] == "yes"
    # unknown keys survive a round trip
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["torch_dtype"] = "float32"
    assert UniSpeechConfig.from_dict(raw).to_dict()["torch_dtype"] == "float32"


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"conv_dim": (512, 512)}, "same non-zero length"),
        ({"hidden_size": 100, "num_attention_heads": 12}, "divisible by num_attention_heads"),
        ({"hidden_act": "swishy"}, "hidden_act"),
        ({"feat_extract_norm": "batch"}, "feat_extract_norm"),
        ({"mask_time_prob": 1.5}, "mask_time_prob"),
        ({"codevector_dim": 255}, "codevector_dim"),
    ],
)
def test_invalid_combinations_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        UniSpeechConfig(**overrides)


def test_wrong_model_type_is_refused():
    with pytest.raises(ValueError, match="model_type"):
        UniSpeechConfig.from_dict({"model_type": "bert"})
