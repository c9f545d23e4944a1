"""The embedded demo corpus: offline espeak-ng speech in the CommonVoice release layout.

`ensure_demo_corpus()` synthesises, once and deterministically, a small multi-speaker
corpus in English, French and Spanish (sentences drawn from built-in word lists, voices
varied by espeak variant, rate and pitch) and writes it as a CommonVoice release:

    <cache>/demo/v1/cv-corpus-demo/<locale>/{train,dev,test,validated,other}.tsv
                                            clip_durations.tsv, clips/*.mp3 (48 kHz)

so the default training run and the tests exercise the real loading code with no download.
Train/dev/test speakers are disjoint, as in CommonVoice. The cache is `$UNISPEECH_CACHE`
(default `~/.cache/unispeech`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import resample
from .commonvoice import CV_COLUMNS
from .corpus import build_in_place, default_cache_dir

VERSION = 1
RELEASE_NAME = "cv-corpus-demo"
CLIP_RATE = 48_000

# Built-in vocabularies: common, easily pronounced words.
WORDS = {
    "en": (
        "the cat sees a small red house near green water today we walk to school and read "
        "good books every morning my friend likes warm bread with sweet milk she sings old "
        "songs under blue sky people open big windows"
    ),
    "fr": (
        "le chat voit une petite maison rouge près de l'eau verte aujourd'hui nous marchons "
        "vers l'école et lisons de bons livres chaque matin mon ami aime le pain chaud avec "
        "du lait doux elle chante des chansons sous le ciel bleu"
    ),
    "es": (
        "el gato ve una casa pequeña roja cerca del agua verde hoy caminamos a la escuela y "
        "leemos buenos libros cada mañana mi amigo quiere pan caliente con leche dulce ella "
        "canta canciones viejas bajo el cielo azul la gente abre ventanas"
    ),
}
SYNTH_VOICE = {"en": "en-us", "fr": "fr", "es": "es"}
# (variant, gender, age) per speaker; rate/pitch are drawn per speaker from the seed.
SPEAKERS = (
    ("m1", "male_masculine", "twenties"),
    ("f2", "female_feminine", "thirties"),
    ("m3", "male_masculine", "forties"),
    ("f4", "female_feminine", "twenties"),
    ("m5", "male_masculine", "fifties"),
    ("f1", "female_feminine", "teens"),
    ("m7", "male_masculine", "thirties"),
    ("f3", "female_feminine", "sixties"),
    ("m2", "male_masculine", "twenties"),
    ("f5", "female_feminine", "forties"),
)
# split -> (speaker indices, utterances). Dev/test speakers are unseen in train.
SPLITS = {"train": (range(0, 6), 40), "dev": (range(6, 7), 8), "test": (range(7, 8), 8), "other": (range(8, 10), 8)}
LOCALES = tuple(WORDS)


@dataclass
class _Clip:
    client_id: str
    path: str
    sentence_id: str
    sentence: str
    gender: str
    age: str
    duration_ms: int


def _make_sentence(rng: np.random.Generator, words: list[str]) -> str:
    n = int(rng.integers(3, 8))
    picked = [words[i] for i in rng.integers(0, len(words), n)]
    sentence = " ".join(picked)
    return sentence[0].upper() + sentence[1:] + "."


def _synth_locale(locale: str, out_dir: Path, seed: int) -> list[tuple[str, _Clip]]:
    from .espeak_synth import EspeakSynth

    synth = EspeakSynth.get()
    rng = np.random.default_rng([seed, LOCALES.index(locale)])
    words = WORDS[locale].split()
    styles = [(int(rng.integers(140, 200)), int(rng.integers(30, 70))) for _ in SPEAKERS]
    clips_dir = out_dir / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    clips: list[tuple[str, _Clip]] = []
    counter = 0
    for split, (speaker_ids, count) in SPLITS.items():
        speaker_ids = list(speaker_ids)
        for k in range(count):
            spk = speaker_ids[k % len(speaker_ids)]
            variant, gender, age = SPEAKERS[spk]
            rate, pitch = styles[spk]
            # Re-draw until the clip lasts 1-4 s (a few tries at most with 3-7 words).
            for _ in range(20):
                sentence = _make_sentence(rng, words)
                wav = synth.synthesize(sentence, f"{SYNTH_VOICE[locale]}+{variant}", rate=rate, pitch=pitch)
                if 1.0 <= len(wav) / synth.sampling_rate <= 4.0:
                    break
            wav = resample(wav, synth.sampling_rate, CLIP_RATE)
            counter += 1
            name = f"common_voice_{locale}_{1000 + counter}.mp3"
            sf.write(clips_dir / name, wav, CLIP_RATE, format="MP3", subtype="MPEG_LAYER_III")
            frames = sf.info(clips_dir / name).frames
            client_id = hashlib.sha512(f"demo-{locale}-{spk}".encode()).hexdigest()
            sentence_id = hashlib.sha256(f"{locale}:{sentence}".encode()).hexdigest()
            clips.append(
                (split, _Clip(client_id, name, sentence_id, sentence, gender, age, round(1000 * frames / CLIP_RATE)))
            )
    return clips


def _write_tsv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_locale(locale: str, out_dir: Path, clips: list[tuple[str, _Clip]]) -> None:
    def row(c: _Clip, votes: tuple[int, int]) -> tuple:
        return (
            c.client_id,
            c.path,
            c.sentence_id,
            c.sentence,
            "",
            votes[0],
            votes[1],
            c.age,
            c.gender,
            "",
            "",
            locale,
            "",
        )

    by_split: dict[str, list[tuple]] = {}
    for split, clip in clips:
        by_split.setdefault(split, []).append(row(clip, (2, 0) if split != "other" else (0, 0)))
    by_split["validated"] = [r for s in ("train", "dev", "test") for r in by_split[s]]
    for split, rows in by_split.items():
        _write_tsv(out_dir / f"{split}.tsv", CV_COLUMNS, rows)
    _write_tsv(out_dir / "clip_durations.tsv", ("clip", "duration[ms]"), [(c.path, c.duration_ms) for _, c in clips])


def generate_demo_corpus(target: Path, seed: int = 0, locales: tuple[str, ...] = LOCALES) -> Path:
    """Write the corpus under ``target/cv-corpus-demo`` (no caching; see ensure_demo_corpus)."""
    release = Path(target) / RELEASE_NAME
    for locale in locales:
        out_dir = release / locale
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_locale(locale, out_dir, _synth_locale(locale, out_dir, seed))
    return release


def ensure_demo_corpus(cache_dir: str | Path | None = None) -> Path:
    """Return the demo release root (`.../cv-corpus-demo`), generating it on first use.

    Generation happens in a private temporary folder that is renamed into place when
    complete, so concurrent processes (tests, DDP ranks) never read a half-written corpus;
    the loser of a race discards its copy.
    """
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "demo"
    final = base / f"v{VERSION}"
    if (final / "COMPLETE").exists():
        return final / RELEASE_NAME

    def fill(folder: Path) -> None:
        generate_demo_corpus(folder)
        (folder / "COMPLETE").write_text(f"unispeech demo corpus v{VERSION}\n")

    build_in_place(final, fill, marker="COMPLETE")
    return final / RELEASE_NAME
