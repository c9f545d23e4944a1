"""Audio decoding, down-mixing, resampling and normalisation.

Everything goes through soundfile (its wheel bundles libsndfile with FLAC, Ogg/Vorbis,
Opus and MP3 support) and soxr. We deliberately avoid `datasets`' Audio feature, which
decodes through torchcodec/FFmpeg, and torchaudio, whose wheels are pinned to one torch
build.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

SAMPLING_RATE = 16_000
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus")

# Added to the variance before the square root, as in transformers' Wav2Vec2FeatureExtractor,
# so that silent (constant) clips do not divide by zero and our output matches theirs.
NORM_EPS = 1e-7


@dataclass(frozen=True)
class AudioInfo:
    """Header information of one audio file."""

    frames: int
    sampling_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sampling_rate if self.sampling_rate else 0.0


def audio_info(source: str | Path | BinaryIO) -> AudioInfo:
    """Read only the header (cheap): used at preparation time to validate clips.

    Raises ``soundfile.LibsndfileError`` (a ``RuntimeError``) for missing or undecodable files.
    """
    info = sf.info(source)
    return AudioInfo(frames=int(info.frames), sampling_rate=int(info.samplerate), channels=int(info.channels))


def to_mono(wav: np.ndarray) -> np.ndarray:
    """Average channels; soundfile returns (frames, channels) for multichannel files."""
    if wav.ndim == 2:
        return wav.mean(axis=1, dtype=np.float32)
    return wav


def resample(wav: np.ndarray, orig_sr: int, target_sr: int = SAMPLING_RATE, quality: str = "HQ") -> np.ndarray:
    """Band-limited resampling with soxr ("HQ" is plenty for 16 kHz ASR input)."""
    if orig_sr == target_sr:
        return wav
    return soxr.resample(wav, orig_sr, target_sr, quality=quality).astype(np.float32, copy=False)


def normalize(wav: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the whole utterance (wav2vec2 / UniSpeech input convention)."""
    wav = wav.astype(np.float32, copy=False)
    return (wav - wav.mean()) / np.sqrt(wav.var() + NORM_EPS)


def read_frames(source: str | Path | BinaryIO, start: float = 0.0, end: float = -1.0) -> tuple[np.ndarray, int]:
    """The file's (frames, channels) float32 samples from ``start`` to ``end`` seconds (end
    < 0: to the end) at its own rate, and that rate; always_2d keeps mono/stereo in one path."""
    if start <= 0 and end < 0:
        return sf.read(source, dtype="float32", always_2d=True)
    with sf.SoundFile(source) as handle:
        first = int(round(start * handle.samplerate))
        handle.seek(min(first, handle.frames))
        count = -1 if end < 0 else max(0, int(round(end * handle.samplerate)) - first)
        return handle.read(count, dtype="float32", always_2d=True), handle.samplerate


def load_audio(
    source: str | Path | bytes | BinaryIO,
    sampling_rate: int = SAMPLING_RATE,
    do_normalize: bool = False,
    quality: str = "HQ",
    start: float = 0.0,
    end: float = -1.0,
) -> np.ndarray:
    """Decode any soundfile-readable file to a mono float32 waveform at ``sampling_rate``;
    ``start``/``end`` (seconds, end < 0: to the end) read one segment of it (Kaldi `segments`)."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    wav, sr = read_frames(source, start, end)
    wav = to_mono(wav)
    wav = resample(wav, sr, sampling_rate, quality=quality)
    if do_normalize:
        wav = normalize(wav)
    return np.ascontiguousarray(wav, dtype=np.float32)


def keep_duration(duration: float, min_duration: float | None, max_duration: float | None) -> bool:
    """Duration filter shared by all corpora (bounds in seconds, inclusive; None = unbounded)."""
    if min_duration is not None and duration < min_duration:
        return False
    if max_duration is not None and duration > max_duration:
        return False
    return True


def random_crop(wav: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Crop to at most ``max_samples`` at a random offset (pretraining on long clips)."""
    if max_samples <= 0 or len(wav) <= max_samples:
        return wav
    start = int(rng.integers(0, len(wav) - max_samples + 1))
    return wav[start : start + max_samples]
