#!/usr/bin/env python
"""Time `unispeech.transcribe` against `transformers` on the same audio files.

    python scripts/benchmark_transcribe.py                  # CPU: small model, 16 clips, batches of 1 and 8
    python scripts/benchmark_transcribe.py --shape base     # GPU: base model, 512 clips, batches of 16

Both sides start from the same files on disk (MP3, 48 kHz, the CommonVoice format) and the
same weights (a randomly initialised CTC model saved in Hugging Face format), run the same
precision and batch size (each row: ours at its default for the device, and 8), and end with text:
- ours:         `Transcriber.transcribe` (batches longest first, decoding threads ahead of
                the model)
- transformers: the usual loop over the files in order: decode, `Wav2Vec2FeatureExtractor`,
                `UniSpeechForCTC`, argmax, `Wav2Vec2CTCTokenizer.batch_decode`
Decoding audio is part of both timings, as it is of a user's. `benchmark.py --transcribe`
prints the same rows.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from unispeech.data.audio import SAMPLING_RATE

from benchmark_data import speechlike
from benchmark_shapes import SHAPES, model_config

CLIPS = {"cpu": 16, "cuda": 512}


def write_clips(directory: Path, count: int, seed: int = 0) -> tuple[list[Path], float]:
    """`count` MP3 clips of 1–12 s (log-normal, mean about 5 s, like CommonVoice); total seconds."""
    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.lognormal(np.log(4.5), 0.45, size=count), 1.0, 12.0)
    paths = [directory / f"clip{i:04d}.mp3" for i in range(count)]

    def write(i: int) -> None:
        sf.write(paths[i], speechlike(float(seconds[i]), 48000, np.random.default_rng([seed, i])), 48000, format="MP3")

    with ThreadPoolExecutor() as pool:  # MP3 encoding releases the GIL
        list(pool.map(write, range(count)))
    return paths, float(seconds.sum())


def save_model(directory: Path, shape: str) -> Path:
    """A random CTC model of `shape` with a character vocabulary, in Hugging Face format."""
    import unispeech
    from unispeech.data.tokenizer import CTCTokenizer

    tokenizer = CTCTokenizer.from_texts(["abcdefghijklmnopqrstuvwxyz '"], kind="chars")
    config = model_config(shape)
    config.vocab_size = len(tokenizer)
    torch.manual_seed(0)
    unispeech.UniSpeechForCTC(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def transformers_transcriber(model_dir: Path, device: torch.device, dtype: torch.dtype | None, batch_size: int):
    from transformers import UniSpeechForCTC, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor

    from unispeech.data.audio import load_audio

    model = UniSpeechForCTC.from_pretrained(model_dir, attn_implementation="sdpa").to(device).eval()
    features = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(model_dir)

    @torch.inference_mode()
    def run(paths: list[Path]) -> list[str]:
        texts = []
        for start in range(0, len(paths), batch_size):
            waves = [load_audio(p) for p in paths[start : start + batch_size]]
            batch = features(waves, sampling_rate=SAMPLING_RATE, padding=True, return_tensors="pt").to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(batch.input_values, attention_mask=batch.attention_mask).logits
            texts += tokenizer.batch_decode(logits.argmax(-1).cpu())
        return texts

    return run


def transcribe_rows(
    shape: str,
    device: torch.device,
    clips: int | None = None,
    repeats: int = 3,
    batch_sizes: tuple[int, ...] | None = None,
    precisions: tuple[str, ...] = ("fp32", "bf16"),
) -> Iterator[str]:
    """One table row per (precision, batch size): audio-s/s and real-time factor of both sides,
    and the ratio. Each row is yielded as soon as it is measured: on a GPU the four rows take
    minutes, and a session cut short should keep the ones that finished."""
    from unispeech.transcribe import DEFAULT_BATCH_SIZE, Transcriber, autocast_dtype

    batch_sizes = batch_sizes or tuple(sorted({DEFAULT_BATCH_SIZE[device.type], 8}))

    with tempfile.TemporaryDirectory() as tmp:
        paths, audio_seconds = write_clips(Path(tmp), clips or CLIPS[device.type])
        model_dir = save_model(Path(tmp) / "model", shape)
        for precision, batch_size in itertools.product(precisions, batch_sizes):
            ours = Transcriber(str(model_dir), str(device), precision=precision)
            theirs = transformers_transcriber(model_dir, device, autocast_dtype(precision, device), batch_size)
            sides = [partial(ours.transcribe, paths, batch_size, progress=False), partial(theirs, paths)]
            for side in sides:  # warm-up: allocator, kernels, file cache
                side()
            times: list[list[float]] = [[], []]
            for _ in range(repeats):
                for i, side in enumerate(sides):  # alternate, so that machine load hits both
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    side()
                    times[i].append(time.perf_counter() - start)
            ours_s, hf_s = (statistics.median(t) for t in times)
            yield (
                f"| {shape} | transcribe {precision}, batch {batch_size} ({len(paths)} files, {audio_seconds:.0f} s) "
                f"| {audio_seconds / ours_s:,.1f} (RTF {ours_s / audio_seconds:.3g}) "
                f"| {audio_seconds / hf_s:,.1f} (RTF {hf_s / audio_seconds:.3g}) | {hf_s / ours_s:.2f}x |"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=list(SHAPES), default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clips", type=int, default=None, help="number of files (default: 24 on CPU, 512 on GPU)")
    parser.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=None,
        help="files per batch, both sides (default: ours for the device, and 8)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=("fp32", "bf16"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    shape = args.shape or ("base" if device.type == "cuda" else "small")
    print("| shape | step | ours audio-s/s | transformers audio-s/s | ratio |\n|---|---|---|---|---|")
    for row in transcribe_rows(
        shape,
        device,
        args.clips,
        args.repeats,
        tuple(args.batch_size) if args.batch_size else None,
        tuple(args.precision),
    ):
        print(row, flush=True)


if __name__ == "__main__":
    main()
