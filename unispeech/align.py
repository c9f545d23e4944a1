"""Forced alignment of transcripts to audio with a fine-tuned CTC model.

    python -m unispeech.align --model RUN/export clip.mp3 "El gato ve una casa."
    python -m unispeech.align --model RUN/export clip.mp3 @clip.txt --format textgrid --output clip.TextGrid
    python -m unispeech.align --model RUN/export --manifest clips.tsv --format ctm --output clips.ctm
    python -m unispeech.align --model RUN/export --commonvoice cv/es --split test --format textgrid --output grids/

The transcript becomes the model's tokens as its training targets were made (espeak phones
in the model's language, or normalised characters, with ``|`` between words), and CTC
Viterbi alignment (``unispeech.inference.alignment``) places every token, and so every word,
on the model's 20 ms frames. Output: per file the words and the phones (or characters) with
start and end in seconds and a score, the geometric mean of the model's posteriors over the
segment (0 to 1); a word whose score is under ``--min-word-score`` gets ``low_score: true``
(a word the audio probably does not contain). JSON (default), CTM, or Praat TextGrid
(needs praatio: ``pip install 'unispeech[align]'``).

A file that cannot be aligned (unreadable audio, a transcript longer than the audio can hold,
symbols the model does not know) does not stop the others: its record has an ``error`` and a
warning names it. Exit status: 0 when every file was aligned, 1 when some failed, 2 when all
failed or on a usage error. See docs/inference.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from unispeech.data.audio import SAMPLING_RATE
from unispeech.data.tokenizer import WORD_DELIMITER
from unispeech.inference.align_output import (
    CTM_LEVELS,
    FORMATS,
    require_praatio,
    save_textgrid,
    textgrid_names,
    textgrid_text,
    write_ctm,
    write_json,
)
from unispeech.inference.align_text import AlignmentTarget, TranscriptEncoder
from unispeech.inference.alignment import (
    Alignment,
    AlignmentError,
    align,
    check_alignable,
    frame_seconds,
    pass_memory_bytes,
)
from unispeech.inference.audio_files import (
    UnreadableAudio,
    check_audio,
    decode_ahead,
    describe_audio_error,
    min_input_samples,
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
from unispeech.inference.pauses import check_word_edges, silent_frames_of, snap_to_pauses
from unispeech.tasks.inference import load_ctc_model

logger = logging.getLogger("unispeech.align")

# Words scoring under this are flagged `low_score`. With the demo model (phone error rate 35 %),
# 0.02 flagged 86 % of words swapped for another and 99 % of words inserted into a transcript,
# and 5 % of correctly transcribed words (docs/inference.md); a better model separates them more.
DEFAULT_MIN_WORD_SCORE = 0.02
# Files per batch when none is asked for. Unlike transcription, alignment gains from batches on
# a CPU too: the Viterbi pass costs the same per frame for 1 file as for 8 (measured with the
# demo model, 1 thread: 32 clips in 1.5 s one at a time, 0.54 s in batches of 8).
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 16}
WINDOWS_PER_BATCH = 4  # windows of a long recording run at once
# a recording is refused when its alignment pass would need more than this share of free memory
MEMORY_SHARE = 0.8


class Aligner(CTCLogits):
    """A CTC model, its vocabulary and transcript encoder: ``align([(path, transcript)])`` → records."""

    def __init__(
        self,
        model_source: str,
        device: str = "cpu",
        language: str | None = None,
        min_word_score: float = DEFAULT_MIN_WORD_SCORE,
        word_edges: str = "pauses",
        chunk_length_s: float = DEFAULT_CHUNK_LENGTH_S,
        stride_length_s: float | Sequence[float] | None = None,
    ) -> None:
        check_word_edges(word_edges)
        self.model, info = load_ctc_model(model_source, "alignment")
        self.vocabulary = info["vocabulary"]
        self.kind = info["tokenizer_kind"]
        self.encoder = TranscriptEncoder(self.vocabulary, self.kind, language or info["language"])
        self.device = torch.device(device)
        self.model.to(self.device)
        # float32: alignment scores are compared across words. Recordings longer than
        # chunk_length_s get their log-posteriors window by window, as transcription does; the
        # path is still found over the whole
        super().__init__(self.model, self.device, None, chunk_length_s, stride_length_s)
        self.min_samples = min_input_samples(self.model.config)
        self.seconds_per_frame = frame_seconds(self.model.config)
        self.min_word_score = min_word_score
        self.word_edges = word_edges
        self.failed = 0  # files the last `align` call could not align

    def log_probs(self, waveforms: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-posteriors (B, T, V), float32, and valid frames (B,) of a batch of 16 kHz
        waveforms; a long recording comes alone, and in windows."""
        if len(waveforms) == 1 and self.is_long(len(waveforms[0])):
            logits = self.waveform_logits(waveforms[0], WINDOWS_PER_BATCH)  # (T, V)
            return logits.log_softmax(dim=-1)[None], torch.tensor([len(logits)])
        logits, lengths = self.batch_logits(waveforms)
        return logits.float().log_softmax(dim=-1), lengths

    def align(
        self, items: Sequence[tuple[Path, str]], batch_size: int | None = None, progress: bool = False
    ) -> list[dict[str, Any]]:
        """One record per (audio path, transcript), in the order given; a pair that cannot be
        aligned gets a record with an ``error`` (and a warning naming the file), and
        ``self.failed`` counts them."""
        batch_size = batch_size or DEFAULT_BATCH_SIZE.get(self.device.type, 8)
        records: dict[int, dict[str, Any]] = {}
        targets: dict[int, AlignmentTarget] = {}
        durations: dict[int, float] = {}
        for index, ((path, text), target) in enumerate(zip(items, self.encoder.encode([t for _, t in items]))):
            try:
                if isinstance(target, AlignmentError):
                    raise target
                info = check_audio(path, self.min_samples)
                self._check_memory(info.frames * SAMPLING_RATE // info.sampling_rate, target)
            except (AlignmentError, UnreadableAudio) as error:
                records[index] = _failed(path, text, error)
                continue
            targets[index], durations[index] = target, info.frames / info.sampling_rate
        # longest first: similar lengths share a batch (less padding); a long recording alone
        order = sorted(targets, key=lambda i: -durations[i])
        long = {i for i in order if self.is_long(round(durations[i] * SAMPLING_RATE))}
        short = [i for i in order if i not in long]
        batches = [[i] for i in order if i in long] + [
            short[i : i + batch_size] for i in range(0, len(short), batch_size)
        ]
        loaded_batches = decode_ahead([[items[i][0] for i in batch] for batch in batches], workers=1)
        for batch, (_, loaded) in progress_bar(zip(batches, loaded_batches), "aligning", progress, total=len(batches)):
            waves = {}
            for index, wave in zip(batch, loaded):
                path, text = items[index]
                if isinstance(wave, Exception):
                    records[index] = _failed(path, text, UnreadableAudio(describe_audio_error(path, wave)))
                elif len(wave) < self.min_samples:  # the header promised more than the decoder gave
                    records[index] = _failed(path, text, UnreadableAudio("too short for the model"))
                else:
                    waves[index] = wave
            if waves:
                records.update(self._align_batch(items, waves, targets))
        self.failed = sum(1 for record in records.values() if record.get("error"))
        return [records[i] for i in range(len(items))]

    def _check_memory(self, samples: int, target: AlignmentTarget) -> None:
        """Refuse, before any work, a recording whose alignment pass would not fit in memory
        (an hour and its transcript need about 5 GB), instead of being killed in the middle."""
        needed = pass_memory_bytes(self.grid.frames(samples), len(target.token_ids))
        available = available_memory_bytes(self.device)
        if available is not None and needed > MEMORY_SHARE * available:
            raise AlignmentError(
                f"aligning {samples / SAMPLING_RATE / 60:.1f} min of audio to {len(target.token_ids)} tokens "
                f"needs about {_size(needed)}, more than {MEMORY_SHARE:.0%} of the {_size(available)} free: cut "
                "the audio and its transcript into parts at a few sentence boundaries and align those"
            )

    def _align_batch(
        self, items: Sequence[tuple[Path, str]], waves: dict[int, Any], targets: dict[int, AlignmentTarget]
    ) -> dict[int, dict[str, Any]]:
        log_probs, frame_lengths = self.log_probs(list(waves.values()))
        records, rows = {}, []
        for row, index in enumerate(waves):
            path, text = items[index]
            try:
                check_alignable(targets[index].token_ids, int(frame_lengths[row]), "", self.seconds_per_frame)
            except AlignmentError as error:
                records[index] = _failed(path, text, error)
                continue
            rows.append((row, index))
        if not rows:
            return records
        keep = torch.tensor([row for row, _ in rows], device=log_probs.device)
        kept_lengths = frame_lengths[keep.cpu()]
        alignments = align(
            log_probs[keep, : int(kept_lengths.max())],
            kept_lengths,
            [targets[index].token_ids for _, index in rows],
            self.vocabulary,
            word_labels=[targets[index].labels for _, index in rows],
            group_sizes=[targets[index].group_sizes for _, index in rows],
        )
        for (_, index), alignment in zip(rows, alignments):
            path, text = items[index]
            silent = silent_frames_of(waves[index], self.grid.hop, self.word_edges)
            alignment.words = snap_to_pauses(alignment.words, silent, self.seconds_per_frame)
            records[index] = alignment_record(
                path, text, alignment, len(waves[index]), self.seconds_per_frame, self.min_word_score
            )
        return records


# a cgroup's memory limit and use (v2, then v1): a container's or a SLURM job's --mem
CGROUP_MEMORY = [
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
]


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory free for the alignment pass: the host's (MemAvailable, or what is left under
    this process's cgroup limit if that is less; the pointers come back to the host) and, on a
    GPU, the smaller of that and the device's. None where none of these can be read."""
    candidates = []
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        candidates.append(int(fields["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        pass
    for limit_file, usage_file in CGROUP_MEMORY:
        try:
            limit, usage = (Path(f).read_text().strip() for f in (limit_file, usage_file))
            candidates.append(int(limit) - int(usage))  # "max" (no limit) is no number
            break
        except (OSError, ValueError):
            continue
    if device.type == "cuda":
        candidates.append(torch.cuda.mem_get_info(device)[0])
    return min(candidates) if candidates else None


def _size(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.1f} GiB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.0f} MiB"


def alignment_record(
    path: Path, text: str, alignment: Alignment, samples: int, seconds_per_frame: float, min_word_score: float
) -> dict[str, Any]:
    """The output record of one alignment: times in seconds, scores in (0, 1], words scoring
    under ``min_word_score`` flagged ``low_score``; word delimiters are not listed as tokens."""
    words = [
        {
            "word": word.word,
            "start": _seconds(word.start, seconds_per_frame),
            "end": _seconds(word.end, seconds_per_frame),
            "score": round(word.score, 4),
            "low_score": word.score < min_word_score,
        }
        for word in alignment.words
    ]
    tokens = [
        {
            "token": token.token,
            "start": _seconds(token.start, seconds_per_frame),
            "end": _seconds(token.end, seconds_per_frame),
            "score": round(token.score, 4),
        }
        for token in alignment.tokens
        if token.token != WORD_DELIMITER
    ]
    return {
        "path": str(path),
        "transcript": text,
        "duration": round(samples / SAMPLING_RATE, 3),
        "score": round(alignment.score, 4),
        "words": words,
        "tokens": tokens,
    }


def _seconds(frame: int, seconds_per_frame: float) -> float:
    return round(frame * seconds_per_frame, 3)


def _failed(path: Path, text: str, error: Exception) -> dict[str, Any]:
    logger.warning("cannot align %s: %s", path, error)
    return {"path": str(path), "transcript": text, "error": str(error)}


# -- inputs ----------------------------------------------------------------------------
def read_transcript(argument: str) -> str:
    """The transcript argument: the text itself, or ``@FILE`` for the text of a UTF-8 file."""
    if not argument.startswith("@"):
        return argument
    path = Path(argument[1:])
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"no such transcript file: {path}") from None
    except UnicodeDecodeError:
        raise ValueError(f"transcript file {path} is not UTF-8 text") from None


def manifest_items(manifest: Path) -> list[tuple[Path, str]]:
    """(audio, transcript) of a TSV with a header and columns ``path`` and ``sentence``
    (others are ignored); relative paths are relative to the manifest's folder."""
    from unispeech.data.commonvoice import read_tsv

    if not manifest.is_file():
        raise FileNotFoundError(f"no such manifest: {manifest}")
    return _tsv_items(read_tsv(manifest), manifest, manifest.parent)


def commonvoice_items(root: Path, split: str) -> list[tuple[Path, str]]:
    """(clip, sentence) of a CommonVoice locale folder's ``<split>.tsv``; clips are in ``clips/``."""
    from unispeech.data.commonvoice import find_locale_dir, read_tsv

    folder = find_locale_dir(root)
    tsv = folder / f"{split}.tsv"
    if not tsv.is_file():
        found = ", ".join(sorted(p.stem for p in folder.glob("*.tsv"))) or "none"
        raise FileNotFoundError(f"no {split}.tsv in {folder} (splits there: {found})")
    return _tsv_items(read_tsv(tsv), tsv, folder / "clips")


def _tsv_items(columns: dict[str, list[str]], tsv: Path, base: Path) -> list[tuple[Path, str]]:
    missing = [name for name in ("path", "sentence") if name not in columns]
    if missing:
        raise ValueError(f"{tsv} has no {' or '.join(missing)} column (columns: {', '.join(columns) or 'none'})")
    if not columns["path"]:
        raise ValueError(f"{tsv} lists no audio")
    return [(base / path, sentence) for path, sentence in zip(columns["path"], columns["sentence"])]


# -- command line ------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m unispeech.align",
        description="Align transcripts to audio (word and phone times) with a fine-tuned UniSpeech CTC model.",
        epilog=(
            "A file that cannot be aligned gets an error in its record (a warning names it) and the others are "
            "still aligned. Exit status: 0 all aligned, 1 some failed, 2 all failed or a usage error."
        ),
    )
    parser.add_argument("audio", nargs="?", help="audio file (with TRANSCRIPT; or use --manifest / --commonvoice)")
    parser.add_argument("transcript", nargs="?", help="its transcript, or @FILE to read it from a UTF-8 text file")
    parser.add_argument("--model", required=True, help=".ckpt from unispeech.train or an exported directory")
    parser.add_argument("--manifest", type=Path, help="TSV with a header and columns path, sentence")
    parser.add_argument("--commonvoice", type=Path, help="CommonVoice locale folder (with clips/ and split TSVs)")
    parser.add_argument("--split", default="test", help="CommonVoice split to align (default: test)")
    parser.add_argument("--format", choices=FORMATS, default="json")
    parser.add_argument(
        "--output",
        help="file to write (default: stdout); a folder for TextGrids of several files, one <name>.TextGrid each",
    )
    parser.add_argument(
        "--ctm-level", choices=CTM_LEVELS, default="words", help="CTM lines per word or per phone/character"
    )
    parser.add_argument(
        "--language", help="espeak language of a phone model's transcripts (default: the one the model records)"
    )
    parser.add_argument(
        "--min-word-score",
        type=float,
        default=DEFAULT_MIN_WORD_SCORE,
        help=f"flag words scoring under this as low_score (default: {DEFAULT_MIN_WORD_SCORE})",
    )
    add_word_edges_option(parser)
    add_chunk_options(parser)
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="files per batch (default: 8 on a CPU, 16 on a GPU)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _items(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[tuple[Path, str]]:
    sources = sum(x is not None for x in (args.manifest, args.commonvoice)) + (args.audio is not None)
    if sources != 1:
        parser.error("give AUDIO TRANSCRIPT, --manifest FILE or --commonvoice DIR (one of them)")
    if args.manifest is not None:
        return manifest_items(args.manifest)
    if args.commonvoice is not None:
        return commonvoice_items(args.commonvoice, args.split)
    if args.transcript is None:
        parser.error("AUDIO needs a TRANSCRIPT (the text, or @FILE)")
    return [(Path(args.audio), read_transcript(args.transcript))]


def output_plan(fmt: str, output: str | None, count: int) -> tuple[str, Path | None]:
    """Where the output goes: ("stdout", None), ("file", path) or ("folder", path), or
    ValueError for an ``--output`` that cannot take it. TextGrids of several files go to a
    folder, one each; so do one file's when ``--output`` is a folder or ends with "/"."""
    if output is None:
        if fmt == "textgrid" and count > 1:
            raise ValueError("TextGrids of several files need --output FOLDER")
        return "stdout", None
    path = Path(output)
    if fmt == "textgrid" and (count > 1 or path.is_dir() or output.endswith(("/", os.sep))):
        if path.exists() and not path.is_dir():
            raise ValueError(f"--output {output} is a file; TextGrids of several files need a folder")
        return "folder", path
    if path.is_dir():
        raise ValueError(f"--output {output} is a folder; {fmt.upper()} output goes to one file")
    return "file", path


def write_output(
    records: list[dict[str, Any]], args: argparse.Namespace, plan: tuple[str, Path | None], token_tier: str
) -> None:
    """Write the records as ``args.format`` asks, where `output_plan` says; TextGrids name
    their token tier ``token_tier`` ("phones" or "chars")."""
    where, path = plan
    if args.format == "textgrid":
        aligned = [r for r in records if not r.get("error")]
        if where == "folder":
            path.mkdir(parents=True, exist_ok=True)
            for record, name in zip(aligned, textgrid_names(aligned)):
                save_textgrid(record, path / name, token_tier)
        elif aligned and where == "file":
            save_textgrid(aligned[0], path, token_tier)
        elif aligned:
            sys.stdout.write(textgrid_text(aligned[0], token_tier))
        return
    handle = open(path, "w", encoding="utf-8") if where == "file" else sys.stdout
    try:
        if args.format == "json":
            write_json(records, handle)
        else:
            write_ctm(records, handle, args.ctm_level)
    finally:
        if handle is not sys.stdout:
            handle.close()


def main(argv: list[str] | None = None) -> None:
    """The command line; exits 1 when some files failed, 2 when all did or on a usage error."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        if args.format == "textgrid":
            require_praatio()
        items = _items(args, parser)
        plan = output_plan(args.format, args.output, len(items))
        aligner = Aligner(
            args.model,
            args.device,
            args.language,
            args.min_word_score,
            args.word_edges,
            args.chunk_length_s,
            args.stride_length_s,
        )
    except (OSError, ValueError, ImportError, RuntimeError) as error:
        # a bad path, model, language (phonemizer's RuntimeError) or a missing extra: one line
        parser.exit(ALL_FAILED_OR_USAGE, f"error: {error}\n")
    records = aligner.align(items, args.batch_size, progress=not args.no_progress and len(items) > 1)
    try:
        write_output(records, args, plan, token_tier="phones" if aligner.kind == "phones" else "chars")
    except OSError as error:
        parser.exit(ALL_FAILED_OR_USAGE, f"error: cannot write the output: {error}\n")
    if aligner.failed:
        status = ALL_FAILED_OR_USAGE if aligner.failed == len(records) else SOME_FAILED
        parser.exit(status, f"error: {aligner.failed} of {len(records)} files could not be aligned\n")


if __name__ == "__main__":
    main()
