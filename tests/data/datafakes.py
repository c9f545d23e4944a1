"""Helpers to write fake audio and CommonVoice TSVs (shared by the data tests)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import soundfile as sf

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

# The sentences of the same-text pairs of `write_defect_release`, and how each is spelled.
BRULEE = "Crème brûlée"  # NFC (composed) here; written decomposed (NFD) for `nfd.mp3`
HAPPY = "I am happy"  # written with an emoji for `emoji.mp3`
STRAY_TAB = "We walk\thome today"


def write_defect_release(root: Path) -> Path:
    """`root/en/`, a CommonVoice locale with the defects the loader must name or repair:

    - every TSV starts with a UTF-8 byte-order mark (as Excel writes them);
    - `train.tsv` line 4 (`tab.mp3`) has a tab inside its sentence: 14 fields, not 13;
    - `cut.mp3` is a 3.5 s clip cut to 40 % of its bytes (the mp3 header still says 3.5 s);
    - `nfc.mp3`/`nfd.mp3` have the same sentence, composed and decomposed;
    - `emoji.mp3`/`plain.mp3` have the same sentence, with and without 🙂;
    - `late.mp3` is listed but missing (a test restores it);
    - `validated.tsv` also has the dev speaker `spk_dev`, whose clip must stay out of a
      speaker-disjoint subset.
    """
    loc = root / "en"
    clips = loc / "clips"
    clips.mkdir(parents=True)
    for name, seconds in {"a1": 1.5, "a2": 2.0, "tab": 1.5, "nfc": 1.5, "nfd": 1.5, "emoji": 1.0, "plain": 1.0}.items():
        sf.write(clips / f"{name}.mp3", tone(seconds, 48_000), 48_000, format="MP3")
    for name in ("dev1", "dev2"):
        sf.write(clips / f"{name}.mp3", tone(2.0, 48_000), 48_000, format="MP3")
    sf.write(clips / "cut.mp3", tone(3.5, 48_000), 48_000, format="MP3")
    whole = (clips / "cut.mp3").read_bytes()
    (clips / "cut.mp3").write_bytes(whole[: int(len(whole) * 0.4)])
    train = [
        cv_row("spk_a", "a1.mp3", "Hello world."),
        cv_row("spk_a", "a2.mp3", "The cat sat."),
        cv_row("spk_b", "tab.mp3", STRAY_TAB),
        cv_row("spk_b", "cut.mp3", "This sentence takes three and a half seconds"),
        cv_row("spk_c", "nfc.mp3", unicodedata.normalize("NFC", BRULEE)),
        cv_row("spk_c", "nfd.mp3", unicodedata.normalize("NFD", BRULEE)),
        cv_row("spk_c", "emoji.mp3", HAPPY + " 🙂"),
        cv_row("spk_c", "plain.mp3", HAPPY),
        cv_row("spk_d", "late.mp3", "This clip arrives later"),
    ]
    dev = [cv_row("spk_dev", "dev1.mp3", "Good morning"), cv_row("spk_dev", "dev2.mp3", "Good evening")]
    with_bom = {"train": train, "dev": dev, "validated": train + dev}
    for split, rows in with_bom.items():
        write_tsv(loc / f"{split}.tsv", CV_HEADER, rows)
        (loc / f"{split}.tsv").write_bytes(b"\xef\xbb\xbf" + (loc / f"{split}.tsv").read_bytes())
    return root
