"""Pretrained-source handling: hub ids offline, resume paths, encoder shape checks."""

import pytest
import torch

from tests.tasks.conftest import compose_config
from unispeech.modeling import UniSpeechConfig, UniSpeechForCTC, UniSpeechForPreTraining
from unispeech.tasks.loading import load_backbone_weights, read_pretrained
from unispeech.training.config_checks import ConfigError, resolve_ckpt_path


def test_hub_id_offline_fails_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="offline.*huggingface-cli download microsoft/unispeech-large-1350-cv"):
        read_pretrained("microsoft/unispeech-large-1350-cv")


def test_ckpt_path_last_needs_the_run_directory(tmp_path):
    cfg = compose_config(["ckpt_path=last", f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="ckpt_path=last"):
        resolve_ckpt_path(cfg)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert resolve_ckpt_path(cfg) == str(tmp_path / "checkpoints" / "last.ckpt")


def test_encoder_of_another_size_is_refused(tmp_path):
    tiny = {k: v for k, v in compose_config([]).model.items()}
    source = UniSpeechForPreTraining(UniSpeechConfig.from_dict(dict(tiny)))
    source.save_pretrained(tmp_path / "pre")
    same = UniSpeechForCTC(UniSpeechConfig.from_dict(dict(tiny), vocab_size=7))
    info = load_backbone_weights(same, tmp_path / "pre")
    assert any(k.startswith("lm_head") for k in info["missing_keys"])  # the fresh head
    for name, tensor in same.unispeech.state_dict().items():
        assert torch.equal(tensor, source.unispeech.state_dict()[name]), name
    wider = UniSpeechForCTC(UniSpeechConfig.from_dict(dict(tiny) | {"hidden_size": 32, "num_attention_heads": 2}))
    with pytest.raises(ValueError, match="does not fit this encoder"):
        load_backbone_weights(wider, tmp_path / "pre")


def test_pretraining_can_continue_from_an_exported_model(tmp_path):
    from unispeech.tasks import PretrainingTask

    tiny = dict(compose_config([]).model)
    vocabulary = ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b"]
    source = PretrainingTask(tiny, vocabulary)
    source.model.save_pretrained(tmp_path / "pre")
    continued = PretrainingTask(tiny, vocabulary, init_from=str(tmp_path / "pre"))
    for name, tensor in source.model.state_dict().items():
        assert torch.equal(continued.model.state_dict()[name], tensor), name
