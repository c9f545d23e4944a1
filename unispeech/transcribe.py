"""Transcribe audio files with a fine-tuned CTC model (greedy decoding).

    python -m unispeech.transcribe --model RUN/checkpoints/best-*.ckpt clips/ a.wav b.mp3
    python -m unispeech.transcribe --model RUN/export --format tsv --output out.tsv clips/
    python -m unispeech.transcribe --model RUN/export --timestamps lecture.flac
    python -m unispeech.transcribe --model RUN/export --format srt --output subtitles/ talks/

``--model`` is a Lightning checkpoint from ``unispeech.train`` or an exported / Hugging Face
directory with a tokenizer. Directories are searched for audio files. Output: one record per
file with the text and the token sequence. The text reads as ``CTCTokenizer.decode`` (and
transformers' processor) gives it: phones separated by spaces, without the word delimiter
``|``; or characters joined into words separated by spaces. ``tokens`` keeps every symbol,
``|`` included. ``--timestamps`` adds ``words`` and ``token_timestamps`` (start and end in
seconds); ``--format srt|vtt|ctm`` writes subtitles or CTM from the word times. Words next to
silence begin and end where the audio's level says, and a decoded word that runs across a
pause is split there (``--word-edges pauses``, the default; ``ctc``: the tokens' own frames).
See docs/inference.md.

Recordings longer than ``--chunk-length-s`` (20 s) are decoded in overlapping windows whose
frames are stitched (``unispeech.inference.chunking``), so memory does not grow with their
length beyond the audio itself; shorter ones are decoded whole.

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
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unispeech.data.audio import SAMPLING_RATE
from unispeech.inference.audio_files import (
    UnreadableAudio,
    check_audio,
    decode_ahead,
    describe_audio_error,
    find_audio,
    min_input_samples,
    too_short,
)
from unispeech.inference.chunking import (
    DEFAULT_CHUNK_LENGTH_S,
)
from unispeech.inference.cli import (
    ALL_FAILED_OR_USAGE,
    SOME_FAILED,
    add_chunk_options,
    add_word_edges_option,
    positive_int,
    progress_bar,
)
from unispeech.inference.logits import CTCLogits
from unispeech.inference.pauses import check_word_edges, silent_frames_of
from unispeech.inference.timestamps import TokenSpan, greedy_token_spans, timestamp_fields
from unispeech.inference.writers import SUBTITLE_WRITERS, write_ctm, write_records
from unispeech.tasks.inference import load_ctc_model
from unispeech.tasks.metrics import tokens_to_text, units

logger = logging.getLogger("unispeech.transcribe")

PRECISIONS = ("auto", "fp32", "bf16")
# Files per batch when none is asked for. A CPU is fastest one file at a time (no padding,
# no mask: 1.2x batches of 8 for the small model in scripts/benchmark_transcribe.py); a GPU
# needs batches to fill it.
DEFAULT_BATCH_SIZE = {"cpu": 1, "cuda": 16}
FORMATS = ("json", "tsv", "srt", "vtt", "ctm")


class Transcriber(CTCLogits):
    """A CTC model + its vocabulary: ``transcribe(paths)`` and ``transcribe_waveform(wave)`` → records.

    Recordings longer than ``chunk_length_s`` are decoded in windows of that length with
    ``stride_length_s`` of context on each side (None: a sixth of the window; a pair: left,
    right), see ``unispeech.inference.chunking``; ``chunk_length_s=0`` decodes every file whole.
    """

    def __init__(
        self,
        model_source: str,
        device: str = "cpu",
        precision: str = "auto",
        workers: int | None = None,
        chunk_length_s: float = DEFAULT_CHUNK_LENGTH_S,
        stride_length_s: float | Sequence[float] | None = None,
        beam_options: dict[str, Any] | None = None,
        word_edges: str = "pauses",
    ) -> None:
        check_word_edges(word_edges)
        self.word_edges = word_edges  # of timestamped words next to silence: unispeech.inference.pauses
        self.model, info = load_ctc_model(model_source, "transcription")
        self.vocabulary = info["vocabulary"]
        self.tokenizer_kind = info["tokenizer_kind"]
        # None: greedy; else `build_decoder`'s options (beam width, LM, hotwords), see docs/inference.md
        self.beam = None
        if beam_options is not None:
            from unispeech.inference.beam import build_decoder

            self.beam = build_decoder(self.vocabulary, self.tokenizer_kind, **beam_options)
        self.device = torch.device(device)
        # On a CPU torch's threads already use every core and more decoding threads slow them
        # (measured: 2 threads 7 % slower than 1 on 2 cores); a GPU leaves the cores to decoding.
        self.workers = (
            workers if workers is not None else (min(8, os.cpu_count() or 1) if self.device.type == "cuda" else 1)
        )
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        self.model.to(self.device)
        super().__init__(
            self.model, self.device, autocast_dtype(precision, self.device), chunk_length_s, stride_length_s
        )
        self.min_samples = min_input_samples(self.model.config)
        self.failed = 0  # files the last `transcribe` call could not transcribe

    def waveform_logits(self, wave: Any, batch_size: int | None = None) -> torch.Tensor:
        """Logits (T, V) of one waveform of any length (`CTCLogits.waveform_logits`), windows
        run ``batch_size`` at a time (default: the device's batch size)."""
        return super().waveform_logits(wave, batch_size or DEFAULT_BATCH_SIZE.get(self.device.type, 8))

    def decode_logits(self, logits: torch.Tensor, lengths: torch.Tensor) -> list[list[TokenSpan]]:
        """The tokens of each row of ``logits`` (B, T, V), its first ``lengths`` frames, with the
        frames each token was read from: greedy (the best path), or the beam search's output
        placed on the frames by forced alignment (its most likely path)."""
        if self.beam is None:
            best = logits.argmax(dim=-1).cpu()  # (B, T)
            return [greedy_token_spans(row[:n].tolist(), self.vocabulary) for row, n in zip(best, lengths.tolist())]
        from unispeech.inference.alignment import align

        log_probs = torch.log_softmax(logits.detach().float().cpu(), dim=-1)  # (B, T, V)
        # `decode` takes log-probabilities as they are (decode_batch would log-softmax them again)
        tokens = [self.beam.decode(row, int(n)) for row, n in zip(log_probs.numpy(), lengths.tolist())]
        ids = {symbol: i for i, symbol in enumerate(self.vocabulary)}
        alignments = align(log_probs, lengths.cpu(), [[ids[t] for t in row] for row in tokens], self.vocabulary)
        return [[TokenSpan(t.token, t.start, t.end - 1) for t in a.tokens] for a in alignments]

    def token_spans(self, waveforms: Sequence[Any], batch_size: int | None = None) -> list[list[TokenSpan]]:
        """Decoded tokens of each waveform: the short ones in one padded batch, each long one
        in windows."""
        spans: dict[int, list[TokenSpan]] = {}
        short = [i for i, wave in enumerate(waveforms) if not self.is_long(len(wave))]
        if short:
            logits, lengths = self.batch_logits([waveforms[i] for i in short])
            spans.update(zip(short, self.decode_logits(logits, lengths)))
        for i, wave in enumerate(waveforms):
            if i not in spans:
                logits = self.waveform_logits(wave, batch_size)  # (T, V)
                spans[i] = self.decode_logits(logits[None], torch.tensor([len(logits)]))[0]
        return [spans[i] for i in range(len(waveforms))]

    def transcribe_waveforms(self, waveforms: Sequence[Any]) -> list[list[str]]:
        """The token sequence of each 16 kHz waveform."""
        return [[span.token for span in spans] for spans in self.token_spans(waveforms)]

    def transcribe_waveform(self, wave: Any, timestamps: bool = True) -> dict[str, Any]:
        """The record of one 16 kHz mono waveform (text, tokens, seconds and, unless
        ``timestamps`` is False, words and token_timestamps)."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"expected a mono waveform (one dimension), got shape {wave.shape}")
        if len(wave) < self.min_samples:
            raise ValueError(too_short(len(wave), self.min_samples))
        return self._record(self.token_spans([wave])[0], wave, timestamps)

    def _record(self, spans: list[TokenSpan], wave: np.ndarray, timestamps: bool) -> dict[str, Any]:
        tokens = [span.token for span in spans]
        record = {
            "text": transcript_text(tokens, self.tokenizer_kind),
            "tokens": tokens,
            "seconds": round(len(wave) / SAMPLING_RATE, 3),
        }
        if timestamps:
            silent = silent_frames_of(wave, self.grid.hop, self.word_edges)
            fields = timestamp_fields(spans, self.grid.frame_seconds, self.tokenizer_kind, silent)
            record.update(words=fields["words"], token_timestamps=fields["token_timestamps"])
        return record

    def transcribe(
        self,
        files: Sequence[str | os.PathLike],
        batch_size: int | None = None,
        progress: bool = True,
        timestamps: bool = False,
    ) -> list[dict[str, Any]]:
        """One record per file, in the order given. A file that cannot be transcribed gets a
        record with an empty text and an `error` (and one warning naming it) instead of
        stopping the run; ``self.failed`` counts them. ``timestamps`` adds ``words`` and
        ``token_timestamps`` to each record."""
        files = [Path(f) for f in files]
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
        batches = self._batches(order, durations, batch_size)
        start, audio_seconds = time.perf_counter(), 0.0
        decoded = decode_ahead(batches, self.workers)
        for batch, loaded in progress_bar(decoded, "transcribing", progress, total=len(batches)):
            waves = {}
            for path, wave in zip(batch, loaded):
                if isinstance(wave, Exception):
                    records[path] = _failed(path, UnreadableAudio(describe_audio_error(path, wave)))
                elif len(wave) < self.min_samples:  # the header promised more than the decoder gave
                    records[path] = _failed(path, UnreadableAudio(too_short(len(wave), self.min_samples)))
                else:
                    waves[path] = wave
            if not waves:
                continue
            for path, spans in zip(waves, self.token_spans(list(waves.values()), batch_size)):
                audio_seconds += len(waves[path]) / SAMPLING_RATE
                records[path] = {"path": str(path), **self._record(spans, waves[path], timestamps)}
        elapsed = time.perf_counter() - start
        self.speed = {"audio_seconds": audio_seconds, "wall_seconds": elapsed}
        self.failed = sum(1 for record in records.values() if record.get("error"))
        if timestamps:
            for record in records.values():
                record.setdefault("words", [])
                record.setdefault("token_timestamps", [])
        if audio_seconds > 0:
            logger.info(
                "transcribed %.1f s of audio in %.1f s: %.1f audio-s/s, real-time factor %.4f",
                audio_seconds,
                elapsed,
                audio_seconds / elapsed,
                elapsed / audio_seconds,
            )
        return [records[f] for f in files]

    def _batches(self, order: list[Path], durations: dict[Path, float], batch_size: int) -> list[list[Path]]:
        """Files longer than one window go one a batch (their windows are batched instead), so
        that decoding ahead holds at most 1 + audio_files.LOOKAHEAD_BATCHES long recordings in memory."""
        is_long = {path: self.is_long(round(durations[path] * SAMPLING_RATE)) for path in order}
        long = [path for path in order if is_long[path]]
        short = [path for path in order if not is_long[path]]
        return [[path] for path in long] + [short[i : i + batch_size] for i in range(0, len(short), batch_size)]


def transcript_text(tokens: Sequence[str], tokenizer_kind: str) -> str:
    """The text of a decoded token sequence, as ``CTCTokenizer.decode`` gives it: phones
    separated by spaces without the word delimiter ``|`` (what the phone error rate scores);
    characters joined into words, words separated by spaces. Special symbols are dropped."""
    if tokenizer_kind == "phones":
        return " ".join(units(tokens))
    return tokens_to_text(tokens)


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


def _failed(path: Path, error: Exception) -> dict[str, Any]:
    logger.warning("cannot transcribe %s: %s", path, error)
    return {"path": str(path), "text": "", "tokens": [], "seconds": 0.0, "error": str(error)}


def add_decoder_options(parser: argparse.ArgumentParser) -> None:
    """--decoder and the beam search's options (docs/inference.md, "Beam search")."""
    parser.add_argument(
        "--decoder",
        choices=("greedy", "beam"),
        default="greedy",
        help="greedy (best path) or a CTC prefix beam search, with --lm and --hotword if given",
    )
    parser.add_argument("--beam-width", type=positive_int, default=16, help="prefixes kept per frame (beam)")
    parser.add_argument("--lm", metavar="PATH", help="n-gram LM for --decoder beam: ARPA, KenLM binary or word list")
    parser.add_argument("--lm-alpha", type=float, default=0.5, help="LM weight (default 0.5)")
    parser.add_argument("--lm-beta", type=float, default=1.0, help="bonus per LM unit, word or phone (default 1.0)")
    parser.add_argument("--hotword", action="append", default=[], help="a word to favour (repeatable; beam)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m unispeech.transcribe",
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
        "--batch-size",
        type=positive_int,
        default=None,
        help="files (or windows of a long file) per batch (default: 1 on a CPU, 16 on a GPU)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="json or tsv records; srt or vtt subtitles (one file per input); ctm (one line per word)",
    )
    parser.add_argument(
        "--output",
        help="file to write (default: stdout); for srt/vtt of several files a directory, one <name>.srt/.vtt each",
    )
    parser.add_argument(
        "--timestamps",
        action="store_true",
        help="add words and token_timestamps (start, end in seconds) to the JSON records",
    )
    add_word_edges_option(parser)
    add_chunk_options(parser)
    add_decoder_options(parser)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="auto: bf16 autocast on a GPU, float32 on a CPU"
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="audio decoding threads (default: 1 on a CPU, min(8, CPUs) on a GPU)",
    )
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> None:
    """The command line; exits 1 when some files failed, 2 when all did or on a usage error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    beam_flags = args.lm or args.hotword or args.beam_width != 16 or args.lm_alpha != 0.5 or args.lm_beta != 1.0
    if args.decoder == "greedy" and beam_flags:
        parser.error("--beam-width, --lm, --lm-alpha, --lm-beta and --hotword need --decoder beam")
    if args.timestamps and args.format == "tsv":
        parser.error("--timestamps adds to JSON records; TSV has no place for them (srt, vtt and ctm are timed)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        files = find_audio(args.inputs)
        if not files:
            parser.error("no audio files found")
        subtitle_paths = _subtitle_paths(files, args.format, args.output)
        transcriber = Transcriber(
            args.model,
            args.device,
            args.precision,
            args.workers,
            chunk_length_s=args.chunk_length_s,
            stride_length_s=args.stride_length_s,
            beam_options=None
            if args.decoder == "greedy"
            else dict(
                beam_width=args.beam_width,
                lm_path=args.lm,
                lm_alpha=args.lm_alpha,
                lm_beta=args.lm_beta,
                hotwords=args.hotword,
            ),
            word_edges=args.word_edges,
        )
    except (FileNotFoundError, ValueError) as error:
        parser.exit(ALL_FAILED_OR_USAGE, f"error: {error}\n")  # a bad path or model: the message is enough
    timestamps = args.timestamps or args.format in ("srt", "vtt", "ctm")
    records = transcriber.transcribe(files, args.batch_size, not args.no_progress, timestamps=timestamps)
    write_output(records, args.format, args.output, subtitle_paths)
    if transcriber.failed:
        status = ALL_FAILED_OR_USAGE if transcriber.failed == len(records) else SOME_FAILED
        parser.exit(status, f"error: {transcriber.failed} of {len(records)} files could not be transcribed\n")


def _subtitle_paths(files: Sequence[Path], fmt: str, output: str | None) -> dict[Path, Path] | None:
    """Where each file's subtitles go when they go to a directory (several inputs, or
    ``--output`` an existing directory): ``<output>/<stem>.<fmt>``. None: one stream (stdout
    or the ``--output`` file). Raises ValueError for a layout that cannot work."""
    if fmt not in SUBTITLE_WRITERS:
        return None
    to_directory = output is not None and Path(output).is_dir()
    if len(files) == 1 and not to_directory:
        return None
    if output is None:
        raise ValueError(f"--format {fmt} of {len(files)} files writes one file each: pass --output DIRECTORY")
    if Path(output).exists() and not to_directory:
        raise ValueError(f"--format {fmt} of {len(files)} files needs --output to be a directory, {output} is a file")
    targets: dict[Path, Path] = {}
    for path in files:
        target = Path(output) / f"{path.stem}.{fmt}"
        clash = next((other for other, taken in targets.items() if taken == target), None)
        if clash is not None:
            raise ValueError(f"{clash} and {path} would both write {target}: transcribe them separately")
        targets[path] = target
    return targets


def write_output(
    records: list[dict[str, Any]], fmt: str, output: str | None, subtitle_paths: dict[Path, Path] | None = None
) -> None:
    """Write ``records`` as ``fmt`` to ``output`` (stdout when None), or subtitles to ``subtitle_paths``.
    A file that failed gets no subtitles (its warning and the exit status say so)."""
    if subtitle_paths is not None:
        Path(output).mkdir(parents=True, exist_ok=True)
        for record in records:
            if not record.get("error"):
                with open(subtitle_paths[Path(record["path"])], "w", encoding="utf-8") as handle:
                    SUBTITLE_WRITERS[fmt](record, handle)
        return
    if fmt in SUBTITLE_WRITERS and records[0].get("error"):
        return
    handle = open(output, "w", encoding="utf-8") if output else sys.stdout
    try:
        if fmt in SUBTITLE_WRITERS:
            SUBTITLE_WRITERS[fmt](records[0], handle)
        elif fmt == "ctm":
            write_ctm(records, handle)
        else:
            write_records(records, fmt, handle)
    finally:
        if output:
            handle.close()


if __name__ == "__main__":
    main()
