"""Transcribe audio files with a fine-tuned CTC model (greedy decoding).

    python -m unispeech.transcribe --model RUN/checkpoints/best-*.ckpt clips/ a.wav b.mp3
    python -m unispeech.transcribe --model RUN/export --format tsv --output out.tsv clips/

``--model`` is a Lightning checkpoint from ``unispeech.train`` or an exported / Hugging Face
directory with a tokenizer. Directories are searched for audio files. Output: one record per
file with the text and the token sequence. The text reads as ``CTCTokenizer.decode`` (and
transformers' processor) gives it: phones separated by spaces, without the word delimiter
``|``; or characters joined into words separated by spaces. ``tokens`` keeps every symbol,
``|`` included. See docs/inference.md.

A file that cannot be transcribed (not audio, corrupt, empty, too short) does not stop the
others: its record has an empty text and an ``error`` (an ``error`` column in TSV output,
present when any file failed), and a warning naming it goes to stderr. Exit status: 0 when
every file was transcribed, 1 when some failed, 2 when all failed or on a usage error (a bad
option, a missing input or model).

Speed: files are batched longest first (little padding); ``--workers`` threads decode the next
batches while the model runs on this one (libsndfile and soxr release the GIL); ``--precision
auto`` runs bf16 autocast on a GPU and float32 on a CPU (``bf16`` on a CPU with AVX512-BF16 or
AMX is about twice as fast; see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from unispeech.data.audio import AUDIO_EXTENSIONS, SAMPLING_RATE, AudioInfo, audio_info, load_audio
from unispeech.data.feature_extractor import UniSpeechFeatureExtractor
from unispeech.tasks.inference import load_trained_model
from unispeech.tasks.metrics import greedy_decode, tokens_to_text, units

logger = logging.getLogger("unispeech.transcribe")

PRECISIONS = ("auto", "fp32", "bf16")
# Files per batch when none is asked for. A CPU is fastest one file at a time (no padding,
# no mask: 1.2x batches of 8 for the small model in scripts/benchmark_transcribe.py); a GPU
# needs batches to fill it.
DEFAULT_BATCH_SIZE = {"cpu": 1, "cuda": 16}
# batches decoded ahead of the one the model is running: enough to hide decoding, little memory
LOOKAHEAD_BATCHES = 2
# exit statuses of the command line (see the module docstring)
SOME_FAILED, ALL_FAILED_OR_USAGE = 1, 2


class UnreadableAudio(ValueError):
    """A file that cannot be transcribed; the message is the one-line reason."""


def find_audio(inputs: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such audio file or directory: {item}")
    return files


class Transcriber:
    """A CTC model + its vocabulary; ``transcribe(paths)`` → records."""

    def __init__(
        self, model_source: str, device: str = "cpu", precision: str = "auto", workers: int | None = None
    ) -> None:
        self.model, info = load_trained_model(model_source)
        if info["task"] != "ctc":
            raise ValueError(f"{model_source} is a {info['task']} model; transcription needs a CTC fine-tuned one")
        if not info["vocabulary"]:
            raise ValueError(f"{model_source} has no tokenizer vocabulary (vocab.json)")
        self.vocabulary = info["vocabulary"]
        self.tokenizer_kind = info["tokenizer_kind"]
        self.device = torch.device(device)
        self.autocast_dtype = autocast_dtype(precision, self.device)
        # On a CPU torch's threads already use every core and more decoding threads slow them
        # (measured: 2 threads 7 % slower than 1 on 2 cores); a GPU leaves the cores to decoding.
        self.workers = (
            workers if workers is not None else (min(8, os.cpu_count() or 1) if self.device.type == "cuda" else 1)
        )
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        self.model.to(self.device)
        self.features = UniSpeechFeatureExtractor(do_normalize=True, return_attention_mask=True)
        self.min_samples = min_input_samples(self.model.config)
        self.failed = 0  # files the last `transcribe` call could not transcribe

    @torch.inference_mode()
    def transcribe_waveforms(self, waveforms: Sequence[Any]) -> list[list[str]]:
        batch = self.features(list(waveforms), return_tensors="pt")
        pin = self.device.type == "cuda"
        input_values = _to(batch["input_values"], self.device, pin)
        samples = batch["attention_mask"].sum(-1)  # (B,) on the host
        # no padding (always so for one file): no mask, so that attention may take SDPA's
        # flash kernel on a GPU, which accepts no mask; the output is the same
        padded = bool((samples < input_values.shape[1]).any())
        attention_mask = _to(batch["attention_mask"], self.device, pin) if padded else None
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            logits = self.model(input_values, attention_mask=attention_mask).logits
        lengths = self.model.get_feat_extract_output_lengths(samples)
        return greedy_decode(logits, lengths, self.vocabulary)

    def transcribe(
        self, files: Sequence[Path], batch_size: int | None = None, progress: bool = True
    ) -> list[dict[str, Any]]:
        """One record per file, in the order given. A file that cannot be transcribed gets a
        record with an empty text and an `error` (and one warning naming it) instead of
        stopping the run; ``self.failed`` counts them."""
        batch_size = batch_size or DEFAULT_BATCH_SIZE.get(self.device.type, 8)
        durations: dict[Path, float] = {}
        records: dict[Path, dict[str, Any]] = {}
        for path in files:
            try:
                info = check_audio(path, self.min_samples)
                durations[path] = info.frames / info.sampling_rate
            except UnreadableAudio as error:
                records[path] = _failed(path, error)
        # longest first: similar lengths share a batch (less padding), and memory errors come early
        order = sorted(durations, key=lambda f: -durations[f])
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        start, audio_seconds = time.perf_counter(), 0.0
        for batch, loaded in _progress(decode_ahead(batches, self.workers), progress, total=len(batches)):
            waves = {}
            for path, wave in zip(batch, loaded):
                if isinstance(wave, Exception):
                    records[path] = _failed(path, UnreadableAudio(describe_audio_error(path, wave)))
                elif len(wave) < self.min_samples:  # the header promised more than the decoder gave
                    records[path] = _failed(path, UnreadableAudio(_too_short(len(wave), self.min_samples)))
                else:
                    waves[path] = wave
            if not waves:
                continue
            for path, tokens in zip(waves, self.transcribe_waveforms(list(waves.values()))):
                seconds = len(waves[path]) / SAMPLING_RATE
                audio_seconds += seconds
                records[path] = {
                    "path": str(path),
                    "text": transcript_text(tokens, self.tokenizer_kind),
                    "tokens": tokens,
                    "seconds": round(seconds, 3),
                }
        elapsed = time.perf_counter() - start
        self.speed = {"audio_seconds": audio_seconds, "wall_seconds": elapsed}
        self.failed = sum(1 for record in records.values() if record.get("error"))
        if audio_seconds > 0:
            logger.info(
                "transcribed %.1f s of audio in %.1f s: %.1f audio-s/s, real-time factor %.4f",
                audio_seconds,
                elapsed,
                audio_seconds / elapsed,
                elapsed / audio_seconds,
            )
        return [records[f] for f in files]


def transcript_text(tokens: Sequence[str], tokenizer_kind: str) -> str:
    """The text of a decoded token sequence, as ``CTCTokenizer.decode`` gives it: phones
    separated by spaces without the word delimiter ``|`` (what the phone error rate scores);
    characters joined into words, words separated by spaces. Special symbols are dropped."""
    if tokenizer_kind == "phones":
        return " ".join(units(tokens))
    return tokens_to_text(tokens)


def min_input_samples(config: Any) -> int:
    """The fewest samples from which the feature encoder makes one frame (400 at the default
    strides and kernels, 25 ms at 16 kHz); a shorter input makes its convolutions fail."""
    samples = 1
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
        samples = (samples - 1) * stride + kernel
    return samples


def check_audio(path: Path, min_samples: int = 1) -> AudioInfo:
    """The header of ``path``, or ``UnreadableAudio`` with a one-line reason.

    The header is read from an open file object, not the path: libsndfile then identifies
    the format by the file's first bytes only. Given a path, it falls back on the extension
    and hands a non-audio ``.mp3`` to libmpg123, which prints resync notes to the terminal.
    (A real MP3 whose frames are corrupt still reaches libmpg123, and its notes, on decoding.)
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UnreadableAudio("no such file") from None
    except OSError as error:
        raise UnreadableAudio(f"cannot read it ({error.strerror or error})") from None
    if size == 0:
        raise UnreadableAudio("empty file (0 bytes)")
    try:
        with path.open("rb") as handle:
            info = audio_info(handle)
    except (RuntimeError, OSError) as error:  # soundfile.LibsndfileError is a RuntimeError
        raise UnreadableAudio(describe_audio_error(path, error)) from None
    if info.frames <= 0 or info.sampling_rate <= 0:
        raise UnreadableAudio("empty audio (0 samples)")
    samples = info.frames * SAMPLING_RATE // info.sampling_rate
    if samples < min_samples:
        raise UnreadableAudio(_too_short(samples, min_samples))
    return info


def describe_audio_error(path: Path, error: Exception) -> str:
    """One line on why ``path`` could not be read, without libsndfile's misleading "File does
    not exist or is not a regular file" for a file that exists."""
    if isinstance(error, UnreadableAudio):
        return str(error)
    if not path.exists():
        return "no such file"
    reason = getattr(error, "error_string", None)  # soundfile.LibsndfileError: libsndfile's own words
    if reason is None:
        return f"cannot decode it ({getattr(error, 'strerror', None) or error})"
    reason = reason.strip().rstrip(".")
    if reason.startswith("File does not exist or is not a regular file"):
        # what libsndfile says when its decoder (libmpg123 for MP3) gives up on an existing file
        reason = "corrupt or truncated, the decoder found no audio in it"
    elif reason:
        reason = reason[0].lower() + reason[1:]
    return f"not a readable audio file (soundfile: {reason})"


def _too_short(samples: int, min_samples: int) -> str:
    return (
        f"too short: {1000 * samples / SAMPLING_RATE:.1f} ms of audio, the model needs at least "
        f"{1000 * min_samples / SAMPLING_RATE:.1f} ms"
    )


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    bf16_ok = device.type != "cuda" or torch.cuda.is_bf16_supported()
    if precision == "bf16" and not bf16_ok:
        raise ValueError(f"{torch.cuda.get_device_name(device)} has no bfloat16 support; use --precision fp32")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and bf16_ok):
        return torch.bfloat16
    return None


def decode_ahead(batches: Sequence[Sequence[Path]], workers: int) -> Iterator[tuple[Sequence[Path], list[Any]]]:
    """Yields (batch, waveforms) in order; each waveform is an array, or the exception that
    stopped its file from loading. The next LOOKAHEAD_BATCHES batches decode in `workers`
    threads meanwhile, so on a GPU decoding overlaps the model instead of adding to it."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[tuple[Sequence[Path], list[Future]]] = deque()
        upcoming = iter(batches)

        def submit_next() -> None:
            batch = next(upcoming, None)
            if batch is not None:
                pending.append((batch, [pool.submit(_load_or_error, path) for path in batch]))

        for _ in range(1 + LOOKAHEAD_BATCHES):
            submit_next()
        while pending:
            batch, futures = pending.popleft()
            submit_next()
            yield batch, [future.result() for future in futures]


def _load_or_error(path: Path) -> Any:
    try:
        return load_audio(path)
    except (RuntimeError, OSError, ValueError) as error:  # corrupt, missing, unsupported
        return error


def _to(tensor: torch.Tensor, device: torch.device, pin: bool) -> torch.Tensor:
    # pinned host memory lets the copy to the GPU run asynchronously
    return tensor.pin_memory().to(device, non_blocking=True) if pin else tensor.to(device)


def _failed(path: Path, error: Exception) -> dict[str, Any]:
    logger.warning("cannot transcribe %s: %s", path, error)
    return {"path": str(path), "text": "", "tokens": [], "seconds": 0.0, "error": str(error)}


def _progress(items: Iterable, enabled: bool, total: int) -> Iterable:
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description="transcribing", total=total, transient=True, console=_stderr_console())


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def write_records(records: list[dict[str, Any]], fmt: str, handle) -> None:
    """JSON: the records as they are. TSV: ``path``, ``text`` and, when any file failed, ``error``."""
    if fmt == "json":
        json.dump(records, handle, ensure_ascii=False, indent=1)
        handle.write("\n")
        return
    columns = ["path", "text"] + (["error"] if any(record.get("error") for record in records) else [])
    handle.write("\t".join(columns) + "\n")
    for record in records:
        fields = (" ".join(str(record.get(column) or "").split()) for column in columns)
        handle.write("\t".join(fields) + "\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    """The command line; exits 1 when some files failed, 2 when all did or on a usage error."""
    parser = argparse.ArgumentParser(
        description="Transcribe audio with a fine-tuned UniSpeech CTC model.",
        epilog=(
            "A file that cannot be transcribed gets an empty text and an error in its record (a warning "
            "names it) and the others are still transcribed. Exit status: 0 all files transcribed, "
            "1 some failed, 2 all failed or a usage error (bad option, missing input or model)."
        ),
    )
    parser.add_argument("inputs", nargs="+", help="audio files or directories")
    parser.add_argument("--model", required=True, help=".ckpt from unispeech.train or an exported directory")
    parser.add_argument(
        "--batch-size", type=_positive_int, default=None, help="files per batch (default: 1 on a CPU, 16 on a GPU)"
    )
    parser.add_argument("--format", choices=("json", "tsv"), default="json")
    parser.add_argument("--output", help="file to write (default: stdout)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="auto: bf16 autocast on a GPU, float32 on a CPU"
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="audio decoding threads (default: 1 on a CPU, min(8, CPUs) on a GPU)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        files = find_audio(args.inputs)
        if not files:
            parser.error("no audio files found")
        transcriber = Transcriber(args.model, args.device, args.precision, args.workers)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(ALL_FAILED_OR_USAGE, f"error: {error}\n")  # a bad path or model: the message is enough
    records = transcriber.transcribe(files, args.batch_size, not args.no_progress)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            write_records(records, args.format, handle)
    else:
        write_records(records, args.format, sys.stdout)
    if transcriber.failed:
        status = ALL_FAILED_OR_USAGE if transcriber.failed == len(records) else SOME_FAILED
        parser.exit(status, f"error: {transcriber.failed} of {len(records)} files could not be transcribed\n")


if __name__ == "__main__":
    main()
