"""Transcription plumbing that needs no trained model: decoding ahead, and precision."""

import numpy as np
import pytest
import soundfile as sf
import torch

from unispeech import transcribe
from unispeech.data.audio import load_audio


@pytest.fixture()
def clips(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate([0.5, 1.0, 0.25, 0.75]):
        path = tmp_path / f"clip{i}.flac"
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        paths.append(path)
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"not audio")
    return paths, broken


def test_decode_ahead_keeps_order_and_hands_back_errors(clips):
    paths, broken = clips
    batches = [[paths[0], paths[1]], [broken, paths[2]], [paths[3]]]
    out = list(transcribe.decode_ahead(batches, workers=3))
    assert [batch for batch, _ in out] == batches
    loaded = [wave for _, waves in out for wave in waves]
    assert isinstance(loaded[2], RuntimeError) and "broken.mp3" in str(loaded[2])
    for path, wave in zip([paths[0], paths[1], paths[2], paths[3]], loaded[:2] + loaded[3:]):
        np.testing.assert_array_equal(wave, load_audio(path))


def test_decode_ahead_holds_a_bounded_number_of_batches(clips, monkeypatch):
    paths, _ = clips
    started = []
    monkeypatch.setattr(transcribe, "_load_or_error", lambda path: started.append(path) or path)
    batches = [[p] for p in paths * 3]  # 12 one-file batches
    stream = transcribe.decode_ahead(batches, workers=2)
    next(stream)
    # the batch handed out, plus LOOKAHEAD_BATCHES queued behind it (+1 submitted on hand-out)
    assert len(started) <= 2 + transcribe.LOOKAHEAD_BATCHES
    assert sum(1 for _ in stream) == len(batches) - 1


def test_precision_auto_is_float32_on_cpu_and_bf16_is_opt_in():
    cpu = torch.device("cpu")
    assert transcribe.autocast_dtype("auto", cpu) is None
    assert transcribe.autocast_dtype("fp32", cpu) is None
    assert transcribe.autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        transcribe.autocast_dtype("fp16", cpu)
