#!/usr/bin/env python
"""Word-boundary error of `python -m unispeech.align` against espeak-ng's own word timing.

    python scripts/alignment_error.py --model RUN/finetune/checkpoints/last.ckpt
    python scripts/alignment_error.py --model RUN/export --sentences 100 --pad 0.3 --json error.json

Sentences are made like the demo corpus's Spanish ones (3-7 words of its word list, voices of
its held-out speakers, rates 140-200 and pitches 30-70 drawn per sentence, from ``--seed``),
spoken by espeak-ng, which reports where each word begins in its output (its word events,
``EspeakSynth.synthesize_with_words``). Within a sentence espeak-ng leaves no pause between
words, so a word ends where the next begins, and the last word ends with the audio. The audio
goes to the aligner as 16 kHz WAV, with ``--pad`` seconds of near-silence before and after
(so the first and last boundaries are not simply the edges of the file).

Reported over all word boundaries (n + 1 in a sentence of n words: where speech starts, the
n - 1 between words, where it ends), and for each kind apart: the absolute error in ms (mean,
median, share within 20/50/100 ms) and the mean signed error (positive: the aligner is late).
The aligner's frames are 20 ms; the words a sentence's alignment flags ``low_score`` are counted.
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


def synthesize_references(sentences, folder: Path, pad: float, seed: int) -> list[dict]:
    """Write one WAV per sentence; return its path, text and reference word times (s)."""
    from unispeech.data.espeak_synth import EspeakSynth

    synth = EspeakSynth.private()
    rng = np.random.default_rng([seed, 1])
    references = []
    for i, (sentence, voice, rate, pitch) in enumerate(sentences):
        audio, events = synth.synthesize_with_words(sentence, voice, rate=rate, pitch=pitch)
        starts = [e.sample / synth.sampling_rate + pad for e in events]
        words = [normalize_text(sentence[e.start : e.start + e.length]) for e in events]
        ends = starts[1:] + [len(audio) / synth.sampling_rate + pad]
        audio = resample(audio, synth.sampling_rate, SAMPLING_RATE)
        silence = int(round(pad * SAMPLING_RATE))
        # near-silence, not digital zeros: a recording's noise floor (-70 dBFS)
        padded = np.concatenate([np.zeros(silence), audio, np.zeros(silence)]).astype(np.float32)
        padded += (3e-4 * rng.standard_normal(len(padded))).astype(np.float32)
        path = folder / f"sentence_{i:03d}.wav"
        sf.write(path, padded, SAMPLING_RATE)
        references.append({"path": path, "text": sentence, "words": words, "starts": starts, "ends": ends})
    return references


def summary(errors_s: list[float]) -> dict[str, float]:
    """Mean and median absolute error (ms), share within each tolerance (%), mean signed error (ms)."""
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


def compare(references: list[dict], records: list[dict]) -> dict:
    """Boundary errors of the aligned words against the references (sentences whose words do
    not pair one to one are counted, not scored). A sentence of n words has n + 1 boundaries:
    where speech starts (the first word's start), n - 1 between words (a word's end is the
    next one's start, in the references and in the aligner's output), and where it ends."""
    errors: dict[str, list[float]] = {"speech_start": [], "between_words": [], "speech_end": []}
    unpaired, failed, low = 0, 0, 0
    for reference, record in zip(references, records):
        if record.get("error"):
            failed += 1
            continue
        words = record["words"]
        if [w["word"] for w in words] != reference["words"]:
            unpaired += 1
            continue
        low += sum(w["low_score"] for w in words)
        errors["speech_start"].append(words[0]["start"] - reference["starts"][0])
        for word, start in zip(words[1:], reference["starts"][1:]):
            errors["between_words"].append(word["start"] - start)
        errors["speech_end"].append(words[-1]["end"] - reference["ends"][-1])
    every = [e for values in errors.values() for e in values]
    return {
        "sentences": len(references),
        "words": sum(len(r["words"]) for r in references),
        "failed": failed,
        "unpaired": unpaired,
        "low_score_words": low,
        "all_boundaries": summary(every),
        **{name: summary(values) for name, values in errors.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a Spanish CTC model: .ckpt from unispeech.train or export dir")
    parser.add_argument("--sentences", type=int, default=80)
    parser.add_argument("--seed", type=int, default=2024, help="sentence, voice and noise draws")
    parser.add_argument("--pad", type=float, default=0.3, help="seconds of near-silence before and after the speech")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the numbers and every record here")
    args = parser.parse_args()

    from unispeech.align import Aligner

    aligner = Aligner(args.model, args.device)
    with tempfile.TemporaryDirectory(prefix="alignment-error-") as folder:
        references = synthesize_references(make_sentences(args.sentences, args.seed), Path(folder), args.pad, args.seed)
        records = aligner.align([(r["path"], r["text"]) for r in references], args.batch_size)
    result = compare(references, records)
    result.update(model=args.model, seed=args.seed, pad_s=args.pad, frame_ms=1000 * aligner.seconds_per_frame)
    print(json.dumps(result, indent=1))
    if args.json:
        for reference in references:
            reference["path"] = reference["path"].name
        args.json.write_text(json.dumps({**result, "references": references, "records": records}, indent=1) + "\n")


if __name__ == "__main__":
    main()
