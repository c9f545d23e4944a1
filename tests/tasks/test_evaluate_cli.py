"""`python -m unispeech.evaluate` refuses what it cannot score: one line on stderr, exit status 2.

Run as the user runs it (a subprocess: Hydra parses the command line), with untrained
models whose vocabulary is the demo's Spanish phones or not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.tasks.conftest import compose_config
from tests.tasks.random_models import save_random_model
from unispeech.data.tokenizer import SPECIALS
from unispeech.evaluate import BEAM_OPTIONS, beam_options, check_vocabularies, make_beam_decoder, split_name
from unispeech.inference.ngram import estimate_kneser_ney
from unispeech.training.config_checks import ConfigError


def run_evaluate(tmp_path, *overrides):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    return subprocess.run(
        [sys.executable, "-m", "unispeech.evaluate", f"hydra.run.dir={tmp_path / 'hydra'}", *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def assert_one_line_error(done, *phrases):
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("[unispeech] error: "), done.stderr
    assert "Traceback" not in done.stderr
    for phrase in phrases:
        assert phrase in errors[0], errors[0]


def test_no_checkpoint_says_how_to_pass_one(tmp_path):
    done = run_evaluate(tmp_path)
    assert_one_line_error(done, "checkpoint= is required", "checkpoint=outputs/runs/")
    assert "MissingMandatoryValue" not in done.stderr


@pytest.mark.parametrize("name", ["gone.ckpt", "gone_export"])
def test_a_missing_checkpoint_is_named(tmp_path, name):
    done = run_evaluate(tmp_path, f"checkpoint={tmp_path / name}")
    assert_one_line_error(done, str(tmp_path / name))


def demo_phones(locale: str) -> list[str]:
    """The phone symbols of the demo's fine-tuning tokenizer for `locale`."""
    cfg = compose_config(["data=demo_ctc", f"data.corpus={'${demo_corpus:}'}/{locale}"])
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return [s for s in datamodule.tokenizer.vocabulary() if s not in SPECIALS]


@pytest.fixture(scope="module")
def spanish_model(tmp_path_factory):
    """An untrained CTC model with the vocabulary of the demo's Spanish fine-tuning data."""
    return save_random_model(tmp_path_factory.mktemp("es") / "model", [" ".join(demo_phones("es"))], "phones")


@pytest.mark.slow
def test_a_spanish_model_is_not_scored_on_english_references(spanish_model, tmp_path):
    done = run_evaluate(
        tmp_path, f"checkpoint={spanish_model}", "data.corpus=${demo_corpus:}/en", "split=test", "batch_limit=1"
    )
    assert_one_line_error(
        done, str(spanish_model), "demo/v1/cv-corpus-demo/en", "reference symbols are not in the model's vocabulary"
    )
    assert "recipe=commonvoice/finetune language=" in done.stderr and "data=demo_ctc" in done.stderr
    assert '"per"' not in done.stdout  # no number printed


@pytest.mark.slow
def test_split_dev_is_val_and_the_spanish_model_is_scored_on_spanish_data(spanish_model, tmp_path):
    output = tmp_path / "rates.json"
    done = run_evaluate(tmp_path, f"checkpoint={spanish_model}", "split=dev", "batch_limit=1", f"output={output}")
    assert done.returncode == 0, done.stderr
    result = json.loads(output.read_text())
    assert result["split"] == "val" and result["utterances"] > 0 and 0.0 <= result["per"]
    assert json.loads(done.stdout) == result  # stdout is the JSON alone: logs go to stderr


def test_split_names():
    assert split_name("dev") == "val" and split_name("test") == "test"
    with pytest.raises(ConfigError, match="must be one of train, val, test .*dev split is val"):
        split_name("valid")


class FakeTokenizer:
    def __init__(self, symbols, kind="phones", language=""):
        self.symbols, self.kind, self.language = list(SPECIALS) + list(symbols), kind, language

    def vocabulary(self):
        return self.symbols


def model_info(symbols, kind="phones", language=""):
    return {"vocabulary": list(SPECIALS) + list(symbols), "tokenizer_kind": kind, "language": language}


def test_vocabularies_are_compared_by_symbol_not_id():
    phones = [f"p{i}" for i in range(10)]
    # the same symbols in another order (other ids) are fine; so is one reference symbol the model lacks
    check_vocabularies("m", model_info(reversed(phones)), FakeTokenizer(phones), "data=x")
    check_vocabularies("m", model_info(phones[1:]), FakeTokenizer(phones), "data=x")
    with pytest.raises(ConfigError, match="3 of the 10 reference symbols"):
        check_vocabularies("m", model_info(phones[3:]), FakeTokenizer(phones), "data=x")
    with pytest.raises(ConfigError, match="outputs chars but the references are phones"):
        check_vocabularies("m", model_info(phones, kind="chars"), FakeTokenizer(phones), "data=x")
    with pytest.raises(ConfigError, match="language is 'es' but the references' is 'en-us'"):
        check_vocabularies("m", model_info(phones, language="es"), FakeTokenizer(phones, language="en-us"), "data=x")
    check_vocabularies("m", model_info(phones, language="fr-fr"), FakeTokenizer(phones, language="fr"), "data=x")
    check_vocabularies("m", model_info(phones[5:]), FakeTokenizer(phones), "data=x", allow_mismatch=True)
    # a French demo model on the demo's default (Spanish) data: the hint names language=fr
    with pytest.raises(ConfigError, match="data=demo_ctc language=fr for a demo model"):
        check_vocabularies("m", model_info(phones, language="fr-fr"), FakeTokenizer(phones, language="es"), "data=x")


# -- decoder=beam ----------------------------------------------------------------------------
def test_the_beam_options_defaults_match_conf_evaluate_yaml():
    # beam options left at their conf/evaluate.yaml defaults are not "set" with decoder=greedy
    cfg = compose_config([], config_name="evaluate")
    assert cfg.decoder == "greedy"
    assert {key: OmegaConf.to_container(cfg)[key] for key in BEAM_OPTIONS} == BEAM_OPTIONS


def test_beam_options_need_decoder_beam_and_a_known_decoder(tmp_path):
    with pytest.raises(ConfigError, match="beam_width= is a beam search option: add decoder=beam"):
        beam_options(compose_config(["checkpoint=x", "beam_width=4"], config_name="evaluate"))
    assert beam_options(compose_config(["decoder=beam", "beam_width=4"], config_name="evaluate"))["beam_width"] == 4
    done = run_evaluate(tmp_path, f"checkpoint={tmp_path / 'any.ckpt'}", "decoder=viterbi")
    assert_one_line_error(done, "decoder='viterbi' must be one of greedy, beam")


@pytest.mark.slow
def test_decoder_beam_reports_greedy_and_beam_rates_of_the_same_split(spanish_model, tmp_path):
    # a phone LM over the demo's phones, and a hotword: the whole beam path of the command
    phones = demo_phones("es")
    lm = estimate_kneser_ney([phones[i : i + 4] + ["|"] + phones[i + 4 : i + 7] for i in range(0, 20, 3)], order=3)
    lm_path = lm.write(tmp_path / "phones.arpa")
    output = tmp_path / "rates.json"
    overrides = ["split=test", "batch_limit=1", f"output={output}", "decoder=beam", "beam_width=4"]
    overrides += [f"lm_path={lm_path}", "lm_alpha=0.3", f"hotwords=[{phones[0]} {phones[1]}]"]
    done = run_evaluate(tmp_path, f"checkpoint={spanish_model}", *overrides)
    assert done.returncode == 0, done.stderr
    result = json.loads(output.read_text())
    assert result["decoder"] == "beam" and result["split"] == "test" and result["utterances"] > 0
    assert result["beam_options"]["beam_width"] == 4 and result["beam_options"]["lm_path"] == str(lm_path)
    for decoder in ("greedy", "beam"):
        assert 0.0 <= result[decoder]["per"] and result[decoder]["decode_ms_per_utterance"] >= 0.0
    assert "per" not in result  # no top-level rates that could be read as either decoder's
    assert set(result["examples"][0]) == {"reference", "greedy", "beam"}
    # decoder=greedy (the default) keeps its layout: rates at the top level
    done = run_evaluate(tmp_path, f"checkpoint={spanish_model}", "split=test", "batch_limit=1", f"output={output}")
    assert done.returncode == 0, done.stderr
    greedy = json.loads(output.read_text())
    assert greedy["per"] == result["greedy"]["per"] and "hypothesis" in greedy["examples"][0]


@pytest.mark.slow
def test_language_models_it_cannot_read_are_refused(spanish_model, tmp_path, monkeypatch):
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\x00\x01")
    blocked = tmp_path / "no_kenlm" / "kenlm"  # an install without the lm extra, even where kenlm is built
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('No module named kenlm')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(blocked.parent), os.environ.get("PYTHONPATH", "")]))
    done = run_evaluate(tmp_path, f"checkpoint={spanish_model}", "decoder=beam", f"lm_path={binary}")
    assert_one_line_error(done, f"lm_path={binary}", "needs the kenlm module", "pip install 'unispeech[lm]'")
    info = model_info(["a", "b"])
    with pytest.raises(ConfigError, match=f"lm_path={tmp_path / 'gone.arpa'} does not exist"):
        make_beam_decoder(info, "beam", {"lm_path": str(tmp_path / "gone.arpa")})
    with pytest.raises(ConfigError, match="hotword 'xyz' has symbols the model's vocabulary lacks: xyz"):
        make_beam_decoder(info, "beam", {"hotwords": ["xyz"]})
    with pytest.raises(ConfigError, match="beam_width='many' must be an integer"):
        make_beam_decoder(info, "beam", {"beam_width": "many"})
    assert make_beam_decoder(info, "greedy", {}) is None
