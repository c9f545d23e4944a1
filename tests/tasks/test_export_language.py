"""An exported phone tokenizer records the espeak voice its phones came from (`phonemizer_lang`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tasks.conftest import FAST, compose_config
from tests.tasks.random_models import save_random_model
from unispeech import export
from unispeech.data.phonemes import locale_to_voice

PHONES = ["b w e n o s | d i a s"]


def tokenizer_config(directory: Path) -> dict:
    return json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("voice", ["es", "fr-fr"])
def test_the_recorded_language_is_exported(tmp_path, voice):
    model = save_random_model(tmp_path / "model", PHONES, "phones", language=voice)
    export.main([str(model), str(tmp_path / "out")])
    config = tokenizer_config(tmp_path / "out")
    assert config["phonemizer_lang"] == voice and config["unispeech_language"] == voice


def test_an_unknown_language_is_left_out_not_guessed_and_language_sets_it(tmp_path, caplog):
    model = save_random_model(tmp_path / "model", PHONES, "phones")
    export.main([str(model), str(tmp_path / "out")])
    assert "phonemizer_lang" not in tokenizer_config(tmp_path / "out")
    assert "records no language" in caplog.text and "--language" in caplog.text
    export.main([str(model), str(tmp_path / "fr"), "--language", "fr"])  # a CommonVoice locale: its voice
    assert tokenizer_config(tmp_path / "fr")["phonemizer_lang"] == "fr-fr"


def test_the_export_without_a_language_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = save_random_model(tmp_path / "model", PHONES, "phones")
    export.main([str(model), str(tmp_path / "out")])
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer.decode(tokenizer.convert_tokens_to_ids(["b", "w", "e"])) == "b w e"


@pytest.mark.slow
def test_a_model_finetuned_on_the_spanish_demo_exports_the_spanish_voice(tmp_path):
    from unispeech.train import run

    overrides = ["recipe=demo/finetune", *FAST, "task.module.pretrained=null", "trainer.max_steps=1"]
    summary = run(compose_config([*overrides, "trainer.val_check_interval=1", "export_after_fit=false"]), tmp_path)
    export.main([summary["checkpoint"], str(tmp_path / "export")])
    assert tokenizer_config(tmp_path / "export").get("phonemizer_lang") == locale_to_voice("es")
