"""Audio decoding/resampling and the Wav2Vec2-compatible feature extractor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from unispeech.data.audio import audio_info, keep_duration, load_audio, normalize, random_crop, resample
from unispeech.data.feature_extractor import UniSpeechFeatureExtractor

from datafakes import tone


@pytest.mark.parametrize(
    "suffix,fmt,subtype,rate",
    [
        (".wav", "WAV", "PCM_16", 16_000),
        (".flac", "FLAC", "PCM_16", 16_000),
        (".mp3", "MP3", None, 48_000),
        (".ogg", "OGG", "VORBIS", 44_100),
        (".opus", "OGG", "OPUS", 48_000),
    ],
)
def test_every_format_decodes_to_16k_mono(tmp_path, suffix, fmt, subtype, rate):
    path = tmp_path / f"clip{suffix}"
    sf.write(path, tone(1.5, rate, freq=440), rate, format=fmt, subtype=subtype)
    wav = load_audio(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    # lossy codecs may add a few ms of encoder delay/padding, never more
    assert abs(len(wav) - 24_000) <= 0.03 * 16_000
    # the tone survives: its spectrum peaks at 440 Hz
    spectrum = np.abs(np.fft.rfft(wav[:16_000]))
    assert abs(np.argmax(spectrum) - 440) <= 2


def test_stereo_is_averaged_and_resampled(tmp_path):
    left = tone(1.0, 44_100, freq=300)
    right = np.zeros_like(left)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 44_100)
    wav = load_audio(tmp_path / "st.wav")
    assert len(wav) == 16_000
    expected = resample(left / 2, 44_100, 16_000)
    assert np.max(np.abs(wav - expected)) < 1e-3
    assert audio_info(tmp_path / "st.wav").channels == 2


def test_normalize_and_filters():
    rng = np.random.default_rng(0)
    wav = (3.0 + 2.0 * rng.standard_normal(10_000)).astype(np.float32)
    out = normalize(wav)
    assert abs(out.mean()) < 1e-5 and abs(out.std() - 1.0) < 1e-3
    assert np.all(np.isfinite(normalize(np.zeros(100, np.float32))))  # silence does not divide by 0
    assert keep_duration(1.0, 0.5, 2.0) and not keep_duration(0.1, 0.5, 2.0) and not keep_duration(3, None, 2.0)
    crop = random_crop(np.arange(100, dtype=np.float32), 30, np.random.default_rng(1))
    assert len(crop) == 30 and np.all(np.diff(crop) == 1)


def test_load_audio_normalizes_and_reads_bytes(tmp_path):
    sf.write(tmp_path / "x.flac", tone(0.5, 16_000), 16_000)
    raw = (tmp_path / "x.flac").read_bytes()
    wav = load_audio(raw, do_normalize=True)
    assert len(wav) == 8_000 and abs(wav.std() - 1.0) < 1e-3


def test_missing_and_corrupt_files_raise(tmp_path):
    (tmp_path / "bad.mp3").write_bytes(b"garbage" * 100)
    with pytest.raises(RuntimeError):
        load_audio(tmp_path / "bad.mp3")
    with pytest.raises(RuntimeError):
        audio_info(tmp_path / "nope.wav")


# -- feature extractor -------------------------------------------------------------------
def _waves():
    rng = np.random.default_rng(3)
    return [
        rng.standard_normal(n).astype(np.float32) * s + m
        for n, s, m in ((16_000, 0.5, 0.1), (9_000, 2.0, -1), (12_345, 0.1, 0))
    ]


def test_feature_extractor_matches_transformers():
    from transformers import Wav2Vec2FeatureExtractor

    waves = _waves()
    ours = UniSpeechFeatureExtractor(do_normalize=True, return_attention_mask=True)(
        waves, sampling_rate=16_000, return_tensors="np"
    )
    ref = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )(waves, sampling_rate=16_000, padding=True, return_tensors="np")
    assert ours["input_values"].shape == (3, 16_000)
    np.testing.assert_allclose(ours["input_values"], ref["input_values"], atol=1e-5)
    np.testing.assert_array_equal(ours["attention_mask"], ref["attention_mask"])
    assert ours["attention_mask"].sum(1).tolist() == [16_000, 9_000, 12_345]
    assert np.all(ours["input_values"][1, 9_000:] == 0.0)


def test_feature_extractor_without_normalisation_and_multiple():
    waves = _waves()
    out = UniSpeechFeatureExtractor(do_normalize=False)(waves, pad_to_multiple_of=320)
    assert out["input_values"].shape == (3, 16_000)  # 16000 = 50 * 320 already
    out = UniSpeechFeatureExtractor(do_normalize=False)(waves[1:], pad_to_multiple_of=320)
    assert out["input_values"].shape[1] == 12_480
    np.testing.assert_array_equal(out["input_values"][0, :9_000].numpy(), waves[1])


def test_feature_extractor_rejects_wrong_rate():
    with pytest.raises(ValueError, match="44100.*16000"):
        UniSpeechFeatureExtractor()(_waves(), sampling_rate=44_100)


def test_feature_extractor_save_load_and_autofeatureextractor(tmp_path):
    from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor

    fe = UniSpeechFeatureExtractor(do_normalize=False, return_attention_mask=False)
    fe.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["feature_extractor_type"] == "Wav2Vec2FeatureExtractor"
    assert (config["feature_size"], config["sampling_rate"], config["padding_value"]) == (1, 16000, 0.0)
    hf = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(hf, Wav2Vec2FeatureExtractor)
    assert hf.do_normalize is False and hf.return_attention_mask is False and hf.sampling_rate == 16000
    back = UniSpeechFeatureExtractor.from_pretrained(tmp_path)
    assert back.to_dict() == fe.to_dict()
