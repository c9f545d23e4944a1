"""`transcribe --decoder beam`: the beam search's tokens, placed on the frames by forced
alignment so that timestamps and subtitles work with it too, and its options refused
without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.tasks.random_models import save_random_model
from unispeech.inference.beam import build_decoder
from unispeech.transcribe import Transcriber

TEXTS = ["la casa azul", "el gato come", "una mesa roja"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("model"), TEXTS, kind="chars")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "clip.wav"
    rng = np.random.default_rng(3)
    sf.write(path, (0.1 * rng.standard_normal(48000)).astype(np.float32), 16000)  # 3 s
    return path


def test_beam_tokens_are_the_decoders_and_get_frames_in_order(model_dir, clip):
    greedy = Transcriber(str(model_dir))
    beam = Transcriber(str(model_dir), beam_options={"beam_width": 8, "hotwords": ["casa"]})
    wave = sf.read(clip, dtype="float32")[0]
    logits, lengths = beam.batch_logits([wave])
    expected = build_decoder(beam.vocabulary, beam.tokenizer_kind, beam_width=8, hotwords=["casa"]).decode_batch(
        logits, lengths
    )[0]
    spans = beam.token_spans([wave])[0]
    assert [s.token for s in spans] == expected and expected  # a random model still says something
    frames = [(s.first_frame, s.last_frame) for s in spans]
    assert all(first <= last for first, last in frames)
    assert all(a[1] < b[0] for a, b in zip(frames, frames[1:]))  # tokens in order, never overlapping
    assert frames[-1][1] < int(lengths[0])
    # greedy is unchanged by the option's existence
    assert greedy.beam is None and greedy.token_spans([wave])[0] != []


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "unispeech.transcribe", "--no-progress", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_the_command_line_decodes_with_the_beam_and_times_its_words(model_dir, clip, tmp_path):
    result = run("--model", str(model_dir), "--decoder", "beam", "--beam-width", "4", "--timestamps", str(clip))
    assert result.returncode == 0, result.stderr[-1500:]
    (record,) = json.loads(result.stdout)
    assert record["tokens"] and record["token_timestamps"]
    assert [t["token"] for t in record["token_timestamps"]] == [t for t in record["tokens"] if t != "|"]
    assert all(0 <= t["start"] <= t["end"] <= record["seconds"] for t in record["token_timestamps"])
    # options that only mean something to the beam, and an LM that is not there: one line, exit 2
    misuse = run("--model", str(model_dir), "--hotword", "casa", str(clip))
    assert misuse.returncode == 2 and "need --decoder beam" in misuse.stderr and "Traceback" not in misuse.stderr
    missing = run("--model", str(model_dir), "--decoder", "beam", "--lm", str(tmp_path / "no.arpa"), str(clip))
    assert missing.returncode == 2 and "no.arpa" in missing.stderr and "Traceback" not in missing.stderr


def test_greedy_and_beam_agree_where_the_model_is_sure(model_dir):
    beam = Transcriber(str(model_dir), beam_options={"beam_width": 4})
    vocab = beam.vocabulary
    want = [vocab.index(c) for c in "casa"]
    logits = torch.full((1, 12, len(vocab)), -10.0)
    path = [want[0], 0, want[1], want[1], 0, want[2], 0, 0, want[3], 0, 0, 0]  # 0: blank
    logits[0, torch.arange(12), torch.tensor(path)] = 10.0
    (spans,) = beam.decode_logits(logits, torch.tensor([12]))
    assert [(s.token, s.first_frame, s.last_frame) for s in spans] == [
        ("c", 0, 0),
        ("a", 2, 3),
        ("s", 5, 5),
        ("a", 8, 8),
    ]
