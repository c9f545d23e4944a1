"""Helpers to write fake audio and CommonVoice TSVs (shared by the data tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# the columns of a CommonVoice (v17+) TSV, stated here apart from the code that reads them
CV_HEADER = (
    "client_id path sentence_id sentence sentence_domain up_votes down_votes age gender accents variant locale segment"
).split()


def tone(seconds: float, rate: int, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    wav = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels == 2:
        return np.stack([wav, 0.5 * wav], axis=1)
    return wav


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")


def cv_row(client: str, clip: str, sentence: str, locale: str = "en") -> list[str]:
    return [client, clip, f"sid-{clip}", sentence, "", "2", "0", "", "", "", "", locale, ""]


# name -> (seconds, rate, channels); written as mp3 unless noted
GOOD_CLIPS = {
    "a1.mp3": (1.5, 48_000, 1),
    "a2.mp3": (2.0, 48_000, 1),
    "b1.mp3": (1.0, 48_000, 1),
    "b2.mp3": (2.5, 48_000, 1),
    "c1.mp3": (1.25, 48_000, 1),
    "stereo.mp3": (2.0, 44_100, 2),
    "short.mp3": (0.1, 48_000, 1),
    "empty_text.mp3": (1.0, 48_000, 1),
    "quoted.mp3": (1.0, 48_000, 1),
    "digits.mp3": (1.0, 48_000, 1),
}
