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


@pytest.fixture()
def random_model_dir(tmp_path):
    import unispeech
    from unispeech.data.tokenizer import CTCTokenizer

    tokenizer = CTCTokenizer.from_texts(["abcdefghij"], kind="chars")
    config = unispeech.UniSpeechConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        vocab_size=len(tokenizer),
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )
    torch.manual_seed(0)
    unispeech.UniSpeechForCTC(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_unpadded_batches_go_without_a_mask_and_give_the_same_logits(random_model_dir, clips, monkeypatch):
    paths, _ = clips
    transcriber = transcribe.Transcriber(str(random_model_dir), workers=1)
    waves = [load_audio(p) for p in paths]
    calls = []
    forward = transcriber.model.forward

    def recording_forward(x, attention_mask=None):
        out = forward(x, attention_mask=attention_mask)
        calls.append((attention_mask, out.logits))
        return out

    monkeypatch.setattr(transcriber.model, "forward", recording_forward)
    transcriber.transcribe_waveforms(waves[:1])
    transcriber.transcribe_waveforms(waves[:2])  # padded: the mask is needed
    (mask_alone, logits_alone), (mask_padded, _) = calls
    assert mask_alone is None and mask_padded is not None and not mask_padded.all()
    batch = transcriber.features(waves[:1], return_tensors="pt")
    with torch.no_grad():
        with_mask = forward(batch["input_values"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(logits_alone, with_mask, rtol=1e-5, atol=1e-5)
