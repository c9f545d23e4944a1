"""ONNX export (`python -m unispeech.export --onnx`): onnxruntime gives torch's logits, within 1e-4,
on batch sizes and lengths other than the traced ones, padded or not, for both Transformer layouts;
and the command line's answers when the extra is missing or the request is wrong.

Each layout is exported once per module (torch.export + ONNX translation: 10-40 s on 2 cores)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import unispeech
from tests.tasks.random_models import save_random_model, tiny_config
from unispeech import export
from unispeech.data.feature_extractor import UniSpeechFeatureExtractor
from unispeech.inference.onnx_export import (
    MissingOnnxExtra,
    OnnxCTCModel,
    OnnxMismatch,
    export_onnx,
    samples_for_frames,
    verify_onnx,
)
from unispeech.tasks.inference import load_trained_model

TEXTS = ["hola que tal", "buenos dias"]
TOLERANCE = 1e-4
MISSING_EXTRA = "error: ONNX export needs the onnx extra: pip install 'unispeech[onnx]'\n"


def post_ln_group_norm_model(directory: Path) -> Path:
    """The base models' layout: post-LN Transformer, GroupNorm on the first conv only."""
    config = tiny_config(12, feat_extract_norm="group", do_stable_layer_norm=False)
    torch.manual_seed(1)
    unispeech.UniSpeechForCTC(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def pre_ln_export(tmp_path_factory):
    """The pre-LN tiny model (save_random_model's), exported by the command line in a process of
    its own, as a user runs it: (export directory, the command's result)."""
    root = tmp_path_factory.mktemp("pre_ln")
    source = save_random_model(root / "model", TEXTS, "chars")
    command = [sys.executable, "-m", "unispeech.export", str(source), str(root / "export"), "--onnx"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return root / "export", result


@pytest.fixture(scope="module")
def post_ln_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("post_ln")
    directory = post_ln_group_norm_model(root / "model")
    model, _ = load_trained_model(directory)
    export_onnx(model, directory / "model.onnx")
    return directory


@pytest.fixture(params=["pre-LN, LayerNorm convs", "post-LN, GroupNorm conv"])
def exported(request):
    """(torch model, onnxruntime model) of one layout, loaded from the export directory."""
    directory = request.getfixturevalue("pre_ln_export")[0] if "pre" in request.param else None
    directory = directory or request.getfixturevalue("post_ln_export")
    model, _ = load_trained_model(directory)
    return model, OnnxCTCModel(directory)


def batch(lengths: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded noise batch: values (B, S) float32 (zeros in padding), mask (B, S) int64."""
    rng = np.random.default_rng(seed)
    mask = (np.arange(max(lengths))[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    values = (rng.standard_normal(mask.shape) * mask).astype(np.float32)
    return values, mask


def torch_outputs(model, values: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        mask_tensor = None if mask is None else torch.from_numpy(mask)
        logits = model(torch.from_numpy(values), attention_mask=mask_tensor).logits
    lengths = model.get_feat_extract_output_lengths(
        torch.from_numpy(mask).sum(-1) if mask is not None else values.shape[1]
    )
    return logits.numpy(), np.broadcast_to(lengths.numpy(), (values.shape[0],))


# the export traces a batch of 2 rows of 16000 and 12000 samples: these are none of those
UNPADDED = [(1, 8000), (3, 23_456), (5, 4_321)]


@pytest.mark.slow
@pytest.mark.parametrize("rows,samples", UNPADDED)
def test_an_unpadded_batch_gives_torchs_logits_without_a_mask(exported, rows, samples):
    model, onnx_model = exported
    values, _ = batch([samples] * rows, seed=rows)
    expected, expected_lengths = torch_outputs(model, values, None)  # torch without any mask
    logits, lengths = onnx_model.run(values)  # the graph with an all-ones mask
    assert logits.shape == expected.shape == (rows, int(expected_lengths[0]), model.config.vocab_size)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(lengths, expected_lengths)


@pytest.mark.slow
@pytest.mark.parametrize("lengths", [[17_000, 9_001, 3_333], [5_000, 30_000, 12_345, 800, 16_000]])
def test_a_padded_batch_gives_torchs_logits_and_frame_counts(exported, lengths):
    model, onnx_model = exported
    values, mask = batch(lengths, seed=len(lengths))
    expected, expected_lengths = torch_outputs(model, values, mask)
    logits, output_lengths = onnx_model.run(values, mask)
    assert logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(output_lengths, expected_lengths)
    assert output_lengths.dtype == np.int64 and len(set(output_lengths.tolist())) == len(lengths)


@pytest.mark.slow
def test_padding_does_not_change_the_real_frames_of_a_layer_norm_model(pre_ln_export):
    # (a GroupNorm conv normalises over the padded length: there padding does change them, in torch too)
    onnx_model = OnnxCTCModel(pre_ln_export[0])
    lengths = [5_000, 30_000, 800]
    values, mask = batch(lengths)
    logits, output_lengths = onnx_model.run(values, mask)
    for row, length in enumerate(lengths):
        alone, _ = onnx_model.run(values[row, :length])
        np.testing.assert_allclose(logits[row, : output_lengths[row]], alone[0], rtol=0, atol=TOLERANCE)


@pytest.mark.slow
def test_the_shortest_inputs_run_one_and_two_frames(exported):
    # the graph is exported for 2+ frames; one frame (400 samples) runs as well
    model, onnx_model = exported
    for frames in (1, 2):
        values, _ = batch([samples_for_frames(model.config, frames)], seed=frames)
        expected, _ = torch_outputs(model, values, None)
        logits, lengths = onnx_model.run(values)
        assert logits.shape[1] == lengths[0] == frames
        np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.slow
def test_raw_waveforms_are_prepared_as_the_preprocessor_config_says(exported):
    model, onnx_model = exported
    rng = np.random.default_rng(3)
    waves = [0.3 * rng.standard_normal(n).astype(np.float32) + 0.1 for n in (7_000, 11_000)]
    features = UniSpeechFeatureExtractor()(waves)  # normalised, padded, with a mask
    expected, _ = torch_outputs(model, features["input_values"].numpy(), features["attention_mask"].numpy())
    logits, lengths = onnx_model.logits_for(waves)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE)
    assert lengths.tolist() == model.get_feat_extract_output_lengths(torch.tensor([7_000, 11_000])).tolist()


@pytest.mark.slow
def test_the_command_writes_one_directory_for_torch_transformers_and_onnxruntime(pre_ln_export):
    directory, result = pre_ln_export
    assert result.stdout.strip() == str(directory)
    for name in ("config.json", "model.safetensors", "vocab.json", "preprocessor_config.json", "model.onnx"):
        assert (directory / name).is_file(), name
    # the check right after export, in one line of the log
    summary = next(line for line in result.stderr.splitlines() if "max abs logit difference" in line)
    assert float(summary.split("difference ")[1].split()[0]) < TOLERANCE
    # the graph's axes: batch and time are dynamic and named
    session = OnnxCTCModel(directory).session
    assert [i.shape for i in session.get_inputs()] == [["batch", "samples"], ["batch", "samples"]]
    assert [o.shape[:2] for o in session.get_outputs()] == [["batch", "frames"], ["batch"]]
    assert session.get_modelmeta().custom_metadata_map["unispeech.receptive_field"] == "400"


@pytest.mark.slow
def test_a_graph_that_is_not_the_models_fails_the_check(pre_ln_export):
    directory = pre_ln_export[0]
    model, _ = load_trained_model(directory)
    assert verify_onnx(model, directory / "model.onnx").max_abs_diff < TOLERANCE
    with torch.no_grad():
        model.lm_head.bias += 0.01  # no longer the exported weights
    with pytest.raises(OnnxMismatch, match="more than the tolerance"):
        verify_onnx(model, directory / "model.onnx")


@pytest.mark.slow
def test_bad_inputs_name_the_culprit(pre_ln_export):
    onnx_model = OnnxCTCModel(pre_ln_export[0])
    values, mask = batch([4_000, 3_000])
    with pytest.raises(ValueError, match="attention_mask has shape"):
        onnx_model.run(values, mask[:, :100])
    with pytest.raises(ValueError, match="fewer than one frame needs \\(400\\)"):
        onnx_model.run(values[:, :399])
    with pytest.raises(ValueError, match="input_values must be"):
        onnx_model.run(values[None])


def test_a_missing_extra_is_one_line_naming_the_install_command(tmp_path, monkeypatch, capsys):
    source = save_random_model(tmp_path / "model", TEXTS, "chars")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(source), str(tmp_path / "out"), "--onnx"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == MISSING_EXTRA
    assert not (tmp_path / "out").exists()  # refused before anything is written
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingOnnxExtra, match=r"^running an ONNX model needs the onnx extra: pip install"):
        OnnxCTCModel(tmp_path)


def test_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    source = save_random_model(tmp_path / "model", TEXTS, "chars")
    for argv, message in [
        ([str(source), str(tmp_path / "a"), "--opset", "20"], "--opset needs --onnx"),
        ([str(source), str(tmp_path / "b"), "--onnx", "--opset", "13"], "opset 18 or later"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            export.main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    # a pretraining model has no CTC head to export
    pretraining = tmp_path / "pretraining"
    unispeech.UniSpeechForPreTraining(tiny_config(12, codevector_dim=16, proj_codevector_dim=16)).save_pretrained(
        pretraining
    )
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(pretraining), str(tmp_path / "c"), "--onnx"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --onnx exports CTC models;") and err.count("\n") == 1
    assert not (tmp_path / "c").exists()
