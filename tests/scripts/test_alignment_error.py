"""scripts/alignment_error.py, the measurement behind docs/inference.md's alignment tables: the
references it synthesises (sentences joined by pauses in one file) and how it scores records."""

from __future__ import annotations

import sys
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import alignment_error  # noqa: E402


def test_references_of_sentences_joined_by_pauses_and_their_scoring(tmp_path):
    sentences = alignment_error.make_sentences(3, seed=5)
    references = alignment_error.synthesize_references(sentences, tmp_path, pad=0.2, seed=5, per_file=2, gap=0.5)
    assert len(references) == 2  # 2 sentences, then the third alone
    first = references[0]
    counts = [len(sentence.split()) for sentence, _, _, _ in sentences]
    assert len(first["words"]) == counts[0] + counts[1] and first["text"].count(".") == 2
    assert first["sentence_start"].count(True) == 2 and first["sentence_end"].count(True) == 2
    assert first["starts"][0] == 0.2 and first["starts"] == sorted(first["starts"])
    # the second sentence starts 0.5 s after the first one's audio ends
    second = first["sentence_start"].index(True, 1)
    assert abs(first["starts"][second] - first["ends"][second - 1] - 0.5) < 1e-3
    audio, rate = sf.read(first["path"])
    assert rate == 16000 and abs(len(audio) / rate - (first["ends"][-1] + 0.2)) < 1e-3

    def record(reference, shift=0.0):
        words = [
            {"word": w, "start": s + shift, "end": e + shift, "low_score": False}
            for w, s, e in zip(reference["words"], reference["starts"], reference["ends"])
        ]
        return {"words": words}

    exact = alignment_error.compare(references, [record(r) for r in references])
    assert exact["sentences"] == 3 and exact["files"] == 2 and exact["unpaired"] == 0
    assert exact["speech_start"]["count"] == 3 and exact["speech_end"]["count"] == 3
    assert exact["all_boundaries"]["count"] == sum(counts) + 3 and exact["all_boundaries"]["mean_abs_ms"] == 0
    late = alignment_error.compare(references, [record(r, shift=0.03) for r in references])
    assert late["all_boundaries"]["mean_signed_ms"] == 30.0 and late["all_boundaries"]["within_20ms_pct"] == 0
    wrong = alignment_error.compare(references, [record(references[0]), {"words": []}])
    assert wrong["unpaired"] == 1 and wrong["speech_end"]["count"] == 2
    # transcription: words paired by count; one word run across the pause between the sentences
    joined = record(references[0])
    last = first["sentence_end"].index(True)
    joined["words"][last : last + 2] = [{**joined["words"][last], "end": joined["words"][last + 1]["end"]}]
    scored = alignment_error.compare(references, [joined, record(references[1])], pair_by="count")
    assert exact["pauses"] == 1 and exact["words_across_a_pause"] == 0
    assert scored["words_across_a_pause"] == 1 and scored["unpaired"] == 1
    assert scored["file_speech_start"]["count"] == 2 and scored["file_speech_end"]["mean_abs_ms"] == 0
