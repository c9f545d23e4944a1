"""Data pipeline benchmark: decode + resample throughput, and batch padding.

    python scripts/benchmark_data.py [--clips 24] [--seconds 5]

1. Throughput in audio-seconds per CPU-second (one process, one thread) for 48 kHz MP3
   (CommonVoice clips) -> 16 kHz and for 16 kHz FLAC, split into decode and resample.
2. Padding fraction of duration-bucketed batches vs random batches on a CommonVoice-like
   duration distribution (log-normal, mean ~5 s, clipped to 0.5-15 s).
Results are printed as Markdown, ready for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from unispeech.data.audio import SAMPLING_RATE, load_audio, resample, to_mono
from unispeech.data.sampler import DurationBucketSampler, padding_fraction


def speechlike(seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limited noise with a syllable-rate envelope: compresses like speech in MP3."""
    n = int(seconds * rate)
    noise = rng.standard_normal(n).astype(np.float32)
    kernel = np.hanning(int(rate / 2000) * 2 + 1).astype(np.float32)
    voiced = np.convolve(noise, kernel / kernel.sum(), mode="same")
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * np.arange(n) / rate))
    return (0.3 * voiced * envelope).astype(np.float32)


def cpu_time(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def throughput(paths: list[Path], seconds_total: float, repeats: int = 5) -> dict[str, float]:
    """Best-of-`repeats` audio-seconds per CPU-second for decode, resample, and both."""
    decoded: list[tuple[np.ndarray, int]] = []

    def decode_all() -> None:
        decoded.clear()
        for p in paths:
            wav, sr = sf.read(p, dtype="float32", always_2d=True)
            decoded.append((to_mono(wav), sr))

    def resample_all() -> None:
        for wav, sr in decoded:
            resample(wav, sr, SAMPLING_RATE)

    def full() -> None:
        for p in paths:
            load_audio(p)

    t_decode = min(cpu_time(decode_all) for _ in range(repeats))
    t_resample = min(cpu_time(resample_all) for _ in range(repeats))
    t_full = min(cpu_time(full) for _ in range(repeats))
    return {
        "decode": seconds_total / t_decode,
        "resample": seconds_total / t_resample if t_resample else float("inf"),
        "load_audio": seconds_total / t_full,
    }


def padding_table(n: int = 50_000, seed: int = 0) -> list[tuple[str, float, float, float]]:
    rng = np.random.default_rng(seed)
    durations = np.clip(rng.lognormal(np.log(4.6), 0.4, n), 0.5, 15.0)
    rows = []
    for cap in (40.0, 80.0, 160.0):
        for width in (0.02, 0.05, 0.10):
            sampler = DurationBucketSampler(durations, max_batch_seconds=cap, bucket_width=width, seed=seed)
            batches = list(sampler)
            mean_size = n / len(batches)
            order = rng.permutation(n)
            size = max(1, round(mean_size))
            random_batches = [order[i : i + size] for i in range(0, n, size)]
            rows.append(
                (
                    f"{cap:.0f} s / width {width:.2f}",
                    mean_size,
                    padding_fraction(batches, durations),
                    padding_fraction(random_batches, durations),
                )
            )
    return rows, float(durations.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        mp3, flac = [], []
        for i in range(args.clips):
            mp3.append(Path(tmp) / f"c{i}.mp3")
            sf.write(mp3[-1], speechlike(args.seconds, 48_000, rng), 48_000, format="MP3")
            flac.append(Path(tmp) / f"c{i}.flac")
            sf.write(flac[-1], speechlike(args.seconds, SAMPLING_RATE, rng), SAMPLING_RATE, format="FLAC")
        total = args.clips * args.seconds
        results = {"MP3 48 kHz -> 16 kHz": throughput(mp3, total), "FLAC 16 kHz": throughput(flac, total)}
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} logical cores; "
        f"python {platform.python_version()}, soundfile {sf.__version__} (libsndfile {sf.__libsndfile_version__}), "
        f"soxr {soxr.__version__}, numpy {np.__version__}"
    )
    print(
        f"\n{args.clips} clips x {args.seconds:.0f} s; audio-seconds per CPU-second, one thread "
        "(x real time per core)\n"
    )
    print("| input | decode | resample (soxr HQ) | load_audio (both) |\n|---|---|---|---|")
    for name, r in results.items():
        no_op = name.startswith("FLAC 16")  # already at 16 kHz: resample() returns its input
        resample_cell = "n/a (no-op)" if no_op else f"{r['resample']:,.0f}x"
        print(f"| {name} | {r['decode']:,.0f}x | {resample_cell} | {r['load_audio']:,.0f}x |")
    rows, mean = padding_table()
    print(f"\nPadding fraction, 50,000 log-normal durations (mean {mean:.2f} s), epoch 0\n")
    print("| max_batch_seconds / bucket_width | mean batch size | bucketed | random (same size) |\n|---|---|---|---|")
    for name, size, bucketed, random_pad in rows:
        print(f"| {name} | {size:.1f} | {100 * bucketed:.1f}% | {100 * random_pad:.1f}% |")


if __name__ == "__main__":
    main()
