#!/usr/bin/env python
"""Word-boundary error of `python -m unispeech.align` against espeak-ng's own word timing.

    python scripts/alignment_error.py --model RUN/finetune/checkpoints/last.ckpt
    python scripts/alignment_error.py --model RUN/export --sentences 100 --pad 0.3 --json error.json
    python scripts/alignment_error.py --model RUN/export --per-file 4 --gap 0.5 --noise 1e-2 --word-edges ctc

Sentences are made like the demo corpus's Spanish ones (3-7 words of its word list, voices of
its held-out speakers, rates 140-200 and pitches 30-70 drawn per sentence, from ``--seed``),
spoken by espeak-ng, which reports where each word begins in its output (its word events,
``EspeakSynth.synthesize_with_words``). Within a sentence espeak-ng leaves no pause between
words, so a word ends where the next begins, and the last word ends with the audio. Each
audio file holds ``--per-file`` sentences (one transcript) with ``--gap`` seconds of
near-silence between them and ``--pad`` before and after (so speech starts and ends are not
simply the edges of the file), white noise of RMS ``--noise`` over it all, as 16 kHz WAV.

Reported over all word boundaries (n + 1 in a sentence of n words: where speech starts, the
n - 1 between words, where it ends), and for each kind apart: the absolute error in ms (mean,
median, share within 20/50/100 ms) and the mean signed error (positive: the aligner is late).
The aligner's frames are 20 ms; the words a sentence's alignment flags ``low_score`` are counted.
``--word-edges`` is the aligner's option: ``pauses`` (its default) or ``ctc``.

``--transcribe`` scores `unispeech.transcribe --timestamps` instead: its words are the model's
own, paired with the references by position in files with as many; every file's first start
and last end are scored, and ``words_across_a_pause`` counts the words whose times run across
the middle of a pause between two sentences (of ``pauses`` in all).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from unispeech.data.audio import SAMPLING_RATE, resample
from unispeech.data.demo_corpus import SPEAKERS, SYNTH_VOICE, WORDS
from unispeech.data.tokenizer import normalize_text

LOCALE = "es"
# the demo corpus's dev, test and "other" speakers (its training speakers are 0-5)
HELD_OUT_SPEAKERS = [variant for variant, _, _ in SPEAKERS[6:]]
TOLERANCES_MS = (20, 50, 100)


def make_sentences(count: int, seed: int) -> list[tuple[str, str, int, int]]:
    """(sentence, voice, rate, pitch) drawn as the demo corpus draws them."""
    rng = np.random.default_rng(seed)
    words = WORDS[LOCALE].split()
    out = []
    for i in range(count):
        picked = [words[k] for k in rng.integers(0, len(words), int(rng.integers(3, 8)))]
        sentence = " ".join(picked)
        variant = HELD_OUT_SPEAKERS[i % len(HELD_OUT_SPEAKERS)]
        rate, pitch = int(rng.integers(140, 200)), int(rng.integers(30, 70))
        out.append((sentence[0].upper() + sentence[1:] + ".", f"{SYNTH_VOICE[LOCALE]}+{variant}", rate, pitch))
    return out


def synthesize_references(
    sentences, folder: Path, pad: float, seed: int, per_file: int = 1, gap: float = 0.5, noise: float = 3e-4
) -> list[dict]:
    """Write one WAV per ``per_file`` sentences (``gap`` seconds of near-silence between them,
    ``pad`` before and after); return its path, text, and reference word times (s) with which
    words begin and end a sentence (speech starts and ends there)."""
    from unispeech.data.espeak_synth import EspeakSynth

    synth = EspeakSynth.private()
    rng = np.random.default_rng([seed, 1])
    references = []
    for first in range(0, len(sentences), per_file):
        pieces, reference = [np.zeros(int(round(pad * SAMPLING_RATE)))], {"words": [], "starts": [], "ends": []}
        reference.update(sentence_start=[], sentence_end=[])
        for k, (sentence, voice, rate, pitch) in enumerate(sentences[first : first + per_file]):
            if k:
                pieces.append(np.zeros(int(round(gap * SAMPLING_RATE))))
            offset = sum(len(piece) for piece in pieces) / SAMPLING_RATE
            audio, events = synth.synthesize_with_words(sentence, voice, rate=rate, pitch=pitch)
            starts = [e.sample / synth.sampling_rate + offset for e in events]
            reference["starts"] += starts
            reference["ends"] += starts[1:] + [len(audio) / synth.sampling_rate + offset]
            reference["words"] += [normalize_text(sentence[e.start : e.start + e.length]) for e in events]
            reference["sentence_start"] += [True] + [False] * (len(events) - 1)
            reference["sentence_end"] += [False] * (len(events) - 1) + [True]
            pieces.append(resample(audio, synth.sampling_rate, SAMPLING_RATE))
        pieces.append(np.zeros(int(round(pad * SAMPLING_RATE))))
        # near-silence, not digital zeros: a recording's noise floor (3e-4: -70 dBFS)
        padded = np.concatenate(pieces).astype(np.float32)
        padded += (noise * rng.standard_normal(len(padded))).astype(np.float32)
        path = folder / f"sentences_{first:03d}.wav"
        sf.write(path, padded, SAMPLING_RATE)
        text = " ".join(sentence for sentence, _, _, _ in sentences[first : first + per_file])
        references.append({"path": path, "text": text, **reference})
    return references


def summary(errors_s: list[float]) -> dict[str, float]:
    """Mean and median absolute error (ms), share within each tolerance (%), mean signed error (ms)."""
    if not errors_s:
        return {"count": 0}
    absolute = [abs(e) * 1000 for e in errors_s]
    out = {
        "count": len(errors_s),
        "mean_abs_ms": round(statistics.fmean(absolute), 1),
        "median_abs_ms": round(statistics.median(absolute), 1),
        "mean_signed_ms": round(1000 * statistics.fmean(errors_s), 1),
    }
    for tolerance in TOLERANCES_MS:
        out[f"within_{tolerance}ms_pct"] = round(100 * sum(a <= tolerance for a in absolute) / len(absolute), 1)
    return out


def compare(references: list[dict], records: list[dict], pair_by: str = "words") -> dict:
    """Boundary errors of the aligned words against the references (files whose words do not
    pair one to one are counted, not scored). A sentence of n words has n + 1 boundaries:
    where speech starts (its first word's start), n - 1 between words (a word's end is the
    next one's start in the references; the next word's start is scored), and where it ends
    (its last word's end). ``pair_by="count"`` (transcription, whose words are the model's
    own) pairs a file's words by position when there are as many as the reference's, and scores
    every file's first start and last end (``file_speech_start``, ``file_speech_end``)."""
    errors: dict[str, list[float]] = {"speech_start": [], "between_words": [], "speech_end": []}
    file_edges: dict[str, list[float]] = {"file_speech_start": [], "file_speech_end": []}
    unpaired, failed, low, across_pauses = 0, 0, 0, 0
    for reference, record in zip(references, records):
        if record.get("error"):
            failed += 1
            continue
        words = record["words"]
        if pair_by == "count" and words:  # the file's first and last word, whatever the words between
            file_edges["file_speech_start"].append(words[0]["start"] - reference["starts"][0])
            file_edges["file_speech_end"].append(words[-1]["end"] - reference["ends"][-1])
        across_pauses += sum(
            1
            for k in range(len(reference["words"]) - 1)
            if reference["sentence_end"][k]
            for w in words
            if w["start"] < (reference["ends"][k] + reference["starts"][k + 1]) / 2 < w["end"]
        )
        paired = (
            len(words) == len(reference["words"])
            if pair_by == "count"
            else [w["word"] for w in words] == reference["words"]
        )
        if not paired:
            unpaired += 1
            continue
        low += sum(w.get("low_score", False) for w in words)
        for k, word in enumerate(words):
            kind = "speech_start" if reference["sentence_start"][k] else "between_words"
            errors[kind].append(word["start"] - reference["starts"][k])
            if reference["sentence_end"][k]:
                errors["speech_end"].append(word["end"] - reference["ends"][k])
    every = [e for values in errors.values() for e in values]
    return {
        "files": len(references),
        "sentences": sum(sum(r["sentence_start"]) for r in references),
        "words": sum(len(r["words"]) for r in references),
        "failed": failed,
        "unpaired": unpaired,
        "low_score_words": low,
        "pauses": sum(sum(r["sentence_end"]) - 1 for r in references),
        "words_across_a_pause": across_pauses,
        "all_boundaries": summary(every),
        **{name: summary(values) for name, values in errors.items()},
        **{name: summary(values) for name, values in file_edges.items() if values},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a Spanish CTC model: .ckpt from unispeech.train or export dir")
    parser.add_argument("--sentences", type=int, default=80)
    parser.add_argument("--seed", type=int, default=2024, help="sentence, voice and noise draws")
    parser.add_argument("--pad", type=float, default=0.3, help="seconds of near-silence before and after the speech")
    parser.add_argument("--per-file", type=int, default=1, help="sentences per audio file (one transcript)")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds of near-silence between a file's sentences")
    parser.add_argument("--noise", type=float, default=3e-4, help="white noise RMS, whole file (3e-4: -70 dBFS)")
    parser.add_argument("--word-edges", choices=("pauses", "ctc"), default="pauses", help="as unispeech.align's")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--transcribe",
        action="store_true",
        help="score the word times of `unispeech.transcribe --timestamps` instead (files whose word count matches)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers and every record here")
    args = parser.parse_args()

    from unispeech.align import Aligner
    from unispeech.transcribe import Transcriber

    if args.transcribe:
        transcriber = Transcriber(args.model, args.device, word_edges=args.word_edges)
        seconds_per_frame = transcriber.grid.frame_seconds
    else:
        aligner = Aligner(args.model, args.device, word_edges=args.word_edges)
        seconds_per_frame = aligner.seconds_per_frame
    with tempfile.TemporaryDirectory(prefix="alignment-error-") as folder:
        sentences = make_sentences(args.sentences, args.seed)
        references = synthesize_references(
            sentences, Path(folder), args.pad, args.seed, args.per_file, args.gap, args.noise
        )
        if args.transcribe:
            paths = [r["path"] for r in references]
            records = transcriber.transcribe(paths, args.batch_size, progress=False, timestamps=True)
        else:
            records = aligner.align([(r["path"], r["text"]) for r in references], args.batch_size)
    result = compare(references, records, "count" if args.transcribe else "words")
    result.update(model=args.model, seed=args.seed, pad_s=args.pad, per_file=args.per_file, gap_s=args.gap)
    result.update(noise=args.noise, word_edges=args.word_edges, frame_ms=1000 * seconds_per_frame)
    result.update(tool="transcribe" if args.transcribe else "align")
    print(json.dumps(result, indent=1))
    if args.json:
        for reference in references:
            reference["path"] = reference["path"].name
        args.json.write_text(json.dumps({**result, "references": references, "records": records}, indent=1) + "\n")


if __name__ == "__main__":
    main()
