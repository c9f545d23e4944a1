"""The replication corpus: the UniSpeech paper's cross-lingual setting, in miniature and offline.

The paper's claim is that a labeled high-resource language (phonetic CTC) plus unlabeled
audio of a target language (contrastive) learns representations that make a small labeled
target set go further. `ensure_replication_corpus()` synthesises, with espeak-ng, a corpus
shaped for exactly that experiment and writes it as a CommonVoice release:

    <cache>/replication/v<VERSION>/<size>/cv-corpus-replication-<size>/
        en/{train,dev,test,validated,other}.tsv   labeled source language (other.tsv empty)
        es/{train,dev,test,validated,other}.tsv   target: other = unlabeled audio, small train
        <locale>/clip_durations.tsv, <locale>/speakers.tsv, <locale>/clips/*.mp3 (48 kHz)

Unlike the 40-word demo corpus, the vocabulary is a few thousand pronounceable words per
language, generated from syllable inventories in each orthography, mixed with a few hundred
real common words; speakers are espeak-ng voice variants x rate x pitch x pitch range x level
(x optional pink/white noise), and every dev/test speaker uses a voice variant that no other
speaker of either language uses, so evaluation is on unseen voices.

Determinism: every random draw comes from (seed, locale, split, clip or speaker index), never
from worker order, so the TSVs are byte-identical for a seed whatever the number of workers.
espeak-ng keeps state between utterances (pitch-flutter phase, gain control, noise
generators): the same sentence sounds slightly different depending on what the process
said before. Each pool worker therefore loads a private copy of the library (fresh state,
whatever the parent said) and never speaks itself; each speaker's clips are synthesised in
a child forked from it, so they start from that same fresh state and the audio is
deterministic too.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import io
import logging
import os
import pickle
import re
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import resample
from .commonvoice import CV_COLUMNS
from .corpus import build_in_place, default_cache_dir
from .cpus import usable_cpus
from .demo_corpus import CLIP_RATE, _write_tsv

logger = logging.getLogger("unispeech.data")

VERSION = 1
RELEASE_PREFIX = "cv-corpus-replication"
LOCALES = ("en", "es")
SYNTH_VOICE = {"en": "en-us", "es": "es"}
SPLITS = {"en": ("train", "dev", "test"), "es": ("other", "train", "dev", "test")}
EVAL_SPLITS = ("dev", "test")
# Fixed small integers for the seeds: a draw depends on the locale/split *name*, not on
# dictionary order.
_LOCALE_ID = {"en": 1, "es": 2}
_SPLIT_ID = {"train": 1, "dev": 2, "test": 3, "other": 4}
MIN_SECONDS, MAX_SECONDS = 2.0, 8.0  # clip duration range, like CommonVoice recordings
MAX_ATTEMPTS = 25


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class SizeSpec:
    """(speakers, clips per speaker) for every split; clips last ~5 s on average.

    Source language `en`: labeled train + dev/test. Target language `es`: unlabeled `other`
    (pretraining audio), a small labeled `train` (fine-tuning) and dev/test.
    """

    en_train: tuple[int, int]
    en_dev: tuple[int, int]
    en_test: tuple[int, int]
    es_other: tuple[int, int]
    es_train: tuple[int, int]
    es_dev: tuple[int, int]
    es_test: tuple[int, int]

    def split(self, locale: str, split: str) -> tuple[int, int]:
        return getattr(self, f"{locale}_{split}")

    def eval_speakers(self) -> int:
        return sum(self.split(loc, s)[0] for loc in LOCALES for s in EVAL_SPLITS)


# fmt: off
SIZES = {
    #                  en train    en dev   en test   es other    es train  es dev    es test
    "smoke": SizeSpec((4, 2),     (2, 1),  (2, 1),   (4, 2),     (2, 2),   (2, 1),   (2, 1)),
    "cpu":   SizeSpec((72, 10),   (6, 8),  (6, 8),   (72, 10),   (12, 10), (6, 10),  (6, 10)),   # ~1 h + ~1 h
    "gpu":   SizeSpec((240, 15),  (8, 15), (8, 15),  (240, 15),  (48, 15), (8, 15),  (8, 15)),   # ~5 h + ~5 h
}
# fmt: on


# --------------------------------------------------------------------------- vocabulary


def _word_list(text: str) -> tuple[str, ...]:
    """The whitespace-separated words of `text`, each once, in order of first appearance."""
    return tuple(dict.fromkeys(text.split()))


# Frequent real words (closed-class words first, then common verbs, nouns, adjectives), roughly
# in frequency order: sentences draw them with Zipf-like weights so they read naturally.
COMMON_WORDS = {
    "en": _word_list("""
        the a an and of to in on at for with from by about into over after before under
        between through during without against among around is are was were be been being
        am has have had do does did will would can could shall should may might must I you
        he she it we they me him her us them my your his its our their this that these those
        what which who whom whose where when why how not no yes all some any many much more
        most few each every both either neither other another such same own very too also
        just only still even already again always never often sometimes soon now then here
        there today tonight tomorrow yesterday so but or if because although though while
        until since than as like one two three four five six seven eight nine ten hundred
        thousand first second last next say said go went come came get got make made take
        took see saw know knew think thought give gave find found tell told ask asked work
        worked call called try tried feel felt leave left keep kept begin began seem seemed
        help helped show showed hear heard play played run ran move moved live lived believe
        bring brought hold held write wrote read sit sat stand stood lose lost pay paid meet
        met time year people way day man woman child children world life hand part place
        case week home house water room mother father friend family school city country
        story book door night morning evening car road food name good new old great big
        small little long short high low young early late right best better
        """),
    "es": _word_list("""
        el la los las un una unos unas lo al del de a en con por para sin sobre entre hasta
        desde hacia contra según durante tras bajo ante y o pero ni que como si porque
        aunque mientras cuando donde pues sino yo tú él ella nosotros nosotras vosotros
        ellos ellas usted ustedes me te se nos os le les mi mis tu tus su sus nuestro
        nuestra nuestros nuestras este esta estos estas ese esa esos esas aquel aquella
        aquellos aquellas esto eso qué quién cuál cómo dónde cuándo cuánto no sí ya muy más
        menos tan también tampoco siempre nunca casi bastante demasiado solo ahora antes
        después luego pronto tarde temprano hoy ayer mañana aquí allí ahí cerca lejos dentro
        fuera arriba abajo todo toda todos todas otro otra otros otras mismo misma cada
        mucho mucha muchos muchas poco poca pocos pocas algo nada alguien nadie alguno
        ninguno es son era eran fue fueron ser sido está están estaba estar hay había ha han
        he has hemos tiene tienen tenía tener hace hacen hizo hacer puede pueden podía poder
        quiere quieren quería dice dicen dijo decir va van iba ir viene vienen vino venir
        sabe saben sabía saber ve ven vio ver da dan dio dar pone puso poner sale salió
        salir llega llegó llegar pasa pasó pasar queda quedó habla habló hablar lleva llevó
        deja dejó sigue siguió encuentra piensa cree conoce vive trabaja uno dos tres cuatro
        cinco seis siete ocho nueve diez cien mil primero primera segundo último casa ciudad
        país mundo agua vida tiempo año día noche semana mes hora gente hombre mujer niño
        niña amigo amiga familia trabajo escuela libro calle puerta mesa camino parte lugar
        nombre madre padre hijo hija mano cabeza bien mal mejor peor bueno buena grande
        pequeño nuevo nueva viejo vieja largo alto joven claro
        """),
}

# A few profanities the syllable rules can produce; generated words never equal them.
_BLOCKED = {
    "en": frozenset("fuck shit cunt cock dick piss slut whore twat wank fag tit tits".split()),
    "es": frozenset("puta puto mierda coño culo joder polla verga pene cabrón".split()),
}


_Inventory = tuple[tuple[str, ...], np.ndarray]  # spellings, cumulative probabilities


def _inventory(*groups: tuple[str, float]) -> _Inventory:
    """('b c d', weight) groups -> (spellings, cumulative probabilities); '-' spells "nothing"."""
    items: list[str] = []
    weights: list[float] = []
    for spellings, weight in groups:
        for s in spellings.split():
            items.append("" if s == "-" else s)
            weights.append(weight)
    return tuple(items), _cumulative(np.asarray(weights, dtype=np.float64))


def _cumulative(weights: np.ndarray) -> np.ndarray:
    cum = np.cumsum(weights / weights.sum())
    cum[-1] = 1.0
    return cum


def _pick(rng: np.random.Generator, inventory: _Inventory) -> str:
    # One uniform draw and a binary search: ~10x faster than Generator.choice(p=...).
    items, cum = inventory
    return items[int(np.searchsorted(cum, rng.random(), side="right"))]


# English: common onsets, vowel spellings (incl. r-coloured ones) and codas; an optional
# derivational suffix or a silent final e, as in "brake".
_EN = {
    "onset_first": _inventory(
        ("b c d f g h j k l m n p r s t v w y z", 3.0),
        ("ch sh th wh qu", 1.5),
        ("bl br cl cr dr fl fr gl gr pl pr sk sl sm sn sp st sw tr tw", 0.6),
        ("str spr scr thr shr", 0.3),
        ("-", 5.0),
    ),
    "onset_mid": _inventory(
        ("b d f g k l m n p r s t v z", 3.0), ("ch sh th", 0.8), ("bl br cl cr dr fr gr pl pr st tr", 0.4)
    ),
    "vowel": _inventory(("a e i o u", 5.0), ("ai ea ee oa oo ou oi", 0.7), ("ar er or ir ur", 0.5)),
    "coda_mid": _inventory(("-", 10.0), ("n r l s m t", 1.0)),
    "coda_final": _inventory(
        ("-", 4.0), ("b d g k l m n p s t x", 2.0), ("ck ll ss ng nk nd nt mp st sk sp ft lt ld lk sh th tch", 0.4)
    ),
    "suffix": _inventory(("er ing ed ly", 2.0), ("ness ful less ment ish y est", 1.0)),
    "syllables": _inventory(("1", 0.40), ("2", 0.45), ("3", 0.15)),
}
# Spanish: CV/CVC syllables with its consonants (ñ, ll, ch, rr, qu, gu, silent h), vowels and
# diphthongs; accents as written stress marks on one of the last three syllables.
_ES = {
    "onset_first": _inventory(
        ("b c d f g j l m n p r s t v", 3.0),
        ("ch ll y z h", 1.0),
        ("qu gu", 0.5),
        ("bl br cl cr dr fl fr gl gr pl pr tr", 0.5),
        ("-", 8.0),
    ),
    "onset_mid": _inventory(
        ("b c d f g j l m n p r s t v", 3.0),
        ("ch ll y z ñ rr", 1.0),
        ("qu gu", 0.6),
        ("bl br cl cr dr fr gr pl pr tr", 0.5),
    ),
    "vowel": _inventory(("a e o", 6.0), ("i u", 4.0), ("ia ie io ua ue ui ai ei oi au", 0.3)),
    "coda_mid": _inventory(("-", 10.0), ("n s r l", 1.0)),
    "coda_final": _inventory(("-", 9.0), ("n s r l", 1.2), ("d z", 0.4)),
    "syllables": _inventory(("1", 0.06), ("2", 0.40), ("3", 0.38), ("4", 0.16)),
}
_ACCENT = str.maketrans("aeiou", "áéíóú")
_EN_SHORT_ONLY = {"ck": "k", "ll": "l", "ss": "s", "tch": "ch"}  # spellings that follow a short vowel
# Rejected spellings: triple letters, odd doubles, no vowel, and roman numerals (espeak-ng
# reads "vi" as "roman six"); English words also need 3+ letters ("uk", "os" are read as
# letter names) and "ces" is an abbreviation in espeak-ng's English dictionary.
_BAD = {
    "en": re.compile(r"(.)\1\1|([hjkqvwxy])\2|^[^aeiouy]+$|^[ivxlcdm]+$|^..?$|^ces$"),
    "es": re.compile(r"(.)\1\1|ii|uu|^[^aeiouáéíóú]+$|^[ivxlcdm]+$"),
}


def _english_word(rng: np.random.Generator) -> str:
    n = int(_pick(rng, _EN["syllables"]))
    parts = []
    for k in range(n):
        last = k == n - 1
        onset = _pick(rng, _EN["onset_first"] if k == 0 else _EN["onset_mid"])
        vowel = _pick(rng, _EN["vowel"])
        while (onset == "qu" and vowel[0] == "u") or (onset == "y" and vowel[0] == "i"):
            vowel = _pick(rng, _EN["vowel"])
        coda = _pick(rng, _EN["coda_final"] if last else _EN["coda_mid"])
        if len(vowel) > 1:
            coda = _EN_SHORT_ONLY.get(coda, coda)
        if last and vowel in ("a", "i", "o", "u") and coda in tuple("bdklmnptz") and rng.random() < 0.3:
            coda += "e"  # silent e: long vowel
        parts.append(onset + vowel + coda)
    word = "".join(parts)
    if n <= 2 and rng.random() < 0.25:
        word += _pick(rng, _EN["suffix"])
    return word


def _spanish_word(rng: np.random.Generator) -> str:
    n = int(_pick(rng, _ES["syllables"]))
    syllables: list[list[str]] = []
    for k in range(n):
        onset = _pick(rng, _ES["onset_first"] if k == 0 else _ES["onset_mid"])
        vowel = _pick(rng, _ES["vowel"])
        if onset in ("qu", "gu"):
            vowel = "e" if rng.random() < 0.6 else "i"  # que/qui, gue/gui
        while onset == "y" and vowel[0] == "i":
            vowel = _pick(rng, _ES["vowel"])
        if onset == "z" and vowel[0] in "ei":
            onset = "c"  # ze/zi are spelled ce/ci
        if k > 0:
            prev_coda = syllables[-1][2]
            if onset == "rr" and prev_coda:
                onset = "r"  # rr only between vowels
            if prev_coda == "n" and onset[:1] in ("b", "p"):
                syllables[-1][2] = "m"  # mb, mp
        coda = _pick(rng, _ES["coda_final"] if k == n - 1 else _ES["coda_mid"])
        syllables.append([onset, vowel, coda])
    if n >= 2 and rng.random() < 0.3:
        target = syllables[-1 - int(rng.integers(0, min(3, n)))]
        vowel = target[1]
        strong = next((i for i, c in enumerate(vowel) if c in "aeo"), len(vowel) - 1)
        target[1] = vowel[:strong] + vowel[strong].translate(_ACCENT) + vowel[strong + 1 :]
    return "".join("".join(s) for s in syllables)


_WORD_MAKERS: dict[str, Callable[[np.random.Generator], str]] = {"en": _english_word, "es": _spanish_word}


@lru_cache(maxsize=8)
def make_vocabulary(locale: str, size: int = 4000, seed: int = 0) -> tuple[str, ...]:
    """``size`` distinct pronounceable made-up words in ``locale``'s orthography (deterministic).

    Words never coincide with `COMMON_WORDS` (so the real words keep their own frequency) or
    with a short profanity list. espeak-ng reads them through its letter-to-sound rules.
    """
    make = _WORD_MAKERS[locale]
    rng = np.random.default_rng([seed, _LOCALE_ID[locale], 17])
    excluded = set(COMMON_WORDS[locale]) | _BLOCKED[locale]
    seen: dict[str, None] = {}
    while len(seen) < size:
        word = make(rng)
        if len(word) >= 2 and word not in excluded and not _BAD[locale].search(word):
            seen.setdefault(word, None)
    return tuple(seen)


@lru_cache(maxsize=8)
def _word_tables(locale: str, seed: int) -> tuple[_Inventory, _Inventory]:
    """Common and generated words with Zipf-like draw weights (the generated ones flatter)."""
    common = COMMON_WORDS[locale]
    vocab = make_vocabulary(locale, seed=seed)
    return (
        (common, _cumulative(1.0 / (np.arange(len(common)) + 4.0))),
        (vocab, _cumulative(1.0 / (np.arange(len(vocab)) + 40.0) ** 0.9)),
    )


COMMON_WORD_SHARE = 0.45


def make_sentence(rng: np.random.Generator, locale: str, n_words: int, seed: int = 0) -> str:
    """A capitalised sentence of ``n_words`` words: ~45% common words, the rest generated ones.

    A comma now and then and one question in ten (Spanish opens it with ¿) vary espeak-ng's
    phrasing and intonation.
    """
    common, generated = _word_tables(locale, seed)
    words: list[str] = []
    while len(words) < n_words:
        word = _pick(rng, common if rng.random() < COMMON_WORD_SHARE else generated)
        if not words or word != words[-1]:
            words.append(word)
    if n_words >= 5 and rng.random() < 0.15:
        k = int(rng.integers(1, n_words - 2))
        words[k] += ","
    question = rng.random() < 0.1
    text = " ".join(words) + ("?" if question else ".")
    text = text[0].upper() + text[1:]
    return "¿" + text if question and locale == "es" else text


# --------------------------------------------------------------------------- speakers

# espeak-ng variants that sound like speech, sorted. Left out: whispers and breathy voices
# (whisper, whisperf, caleb, croak, grandpa), effects (Demonic, announcer, the robosoft,
# RicishayMax, UniRobot and anikaRobot echo voices), a speed test (fast), a name with a
# space (Mr serious), variants that clip heavily at normal volume (Jacky, antonio, iven,
# ed, paul, Marco, ian), and variants whose waveform differs from one process to the next
# for the same input (Alicia, f2, f3, f5, sandro, victor: all set unusual high formants,
# probably read out of range inside espeak-ng 1.52), which would break reproducibility.
VOICE_VARIANTS = (
    "Alex",
    "Andrea",
    "Andy",
    "Annie",
    "AnxiousAndy",
    "Denis",
    "Diogo",
    "Gene",
    "Gene2",
    "Henrique",
    "Hugo",
    "Lee",
    "Mario",
    "Michael",
    "Mike",
    "Nguyen",
    "Reed",
    "Storm",
    "Tweaky",
    "adam",
    "anika",
    "aunty",
    "belinda",
    "benjamin",
    "boris",
    "david",
    "edward",
    "edward2",
    "f1",
    "f4",
    "grandma",
    "gustave",
    "iven2",
    "iven3",
    "iven4",
    "john",
    "kaukovalta",
    "klatt",
    "klatt2",
    "klatt3",
    "klatt4",
    "klatt5",
    "klatt6",
    "linda",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "marcelo",
    "max",
    "michel",
    "miguel",
    "mike2",
    "norbert",
    "pablo",
    "pedro",
    "quincy",
    "rob",
    "robert",
    "shelby",
    "steph",
    "steph2",
    "steph3",
    "travis",
    "zac",
)
RATE_WPM = (135, 205)  # espeak-ng speaking rate, words per minute
PITCH = (25, 75)  # espeak-ng pitch, 0-99
PITCH_RANGE = (20, 90)  # espeak-ng pitch range (intonation), 0-99
LEVEL_DBFS = (-30.0, -20.0)  # clip RMS level
SNR_DB = (20.0, 40.0)  # additive noise, per speaker
AGES = ("teens", "twenties", "thirties", "forties", "fifties", "sixties")
_CV_GENDER = {"male": "male_masculine", "female": "female_feminine", "": ""}


@dataclass(frozen=True)
class SpeakerSpec:
    """One synthetic speaker: a fixed voice (variant, rate, pitch, range, level, noise)."""

    locale: str
    split: str
    index: int
    variant: str
    rate: int
    pitch: int
    pitch_range: int
    level_db: float
    noise: str  # "white", "pink" or "none"
    snr_db: float
    gender: str
    age: str

    @property
    def voice(self) -> str:
        return f"{SYNTH_VOICE[self.locale]}+{self.variant}"

    @property
    def client_id(self) -> str:
        """A hash of the voice spec, like CommonVoice's client_id (the locale is part of it)."""
        spec = (
            f"replication|{self.locale}|{self.variant}|{self.rate}|{self.pitch}|{self.pitch_range}"
            f"|{self.level_db:.1f}|{self.noise}|{self.snr_db:.1f}"
        )
        return hashlib.sha512(spec.encode()).hexdigest()


def _check_variants() -> None:
    from .espeak_synth import voice_variants

    missing = sorted(set(VOICE_VARIANTS) - set(voice_variants()))
    if missing:
        raise RuntimeError(
            f"this espeak-ng data lacks the voice variants {missing}; "
            "the replication corpus was designed for espeakng-loader's espeak-ng 1.52"
        )


def plan_speakers(size: str = "cpu", seed: int = 0, noise: bool = True) -> list[SpeakerSpec]:
    """Every speaker of the corpus, in a fixed order (locale, split, index).

    Variants are shuffled from the seed; the first ones go one each to the dev/test speakers
    of both languages, so no other speaker (of either language) shares their timbre. The
    other speakers cycle through the remaining variants with their own rate, pitch, range
    and level; no two speakers share all of (variant, rate, pitch, range).
    """
    from .espeak_synth import variant_gender

    spec = SIZES[size]
    order = list(np.random.default_rng([seed, 7]).permutation(len(VOICE_VARIANTS)))
    variants = [VOICE_VARIANTS[i] for i in order]
    n_eval = spec.eval_speakers()
    if n_eval >= len(variants):
        raise ValueError(f"size {size!r} needs {n_eval} held-out voice variants, only {len(variants)} exist")
    eval_variants, train_variants = variants[:n_eval], variants[n_eval:]
    genders = {v: _CV_GENDER[variant_gender(v)] for v in VOICE_VARIANTS}
    used: set[tuple] = set()
    speakers: list[SpeakerSpec] = []
    n_train = 0
    for locale in LOCALES:
        for split in SPLITS[locale]:
            for index in range(spec.split(locale, split)[0]):
                rng = np.random.default_rng([seed, _LOCALE_ID[locale], _SPLIT_ID[split], index, 3])
                if split in EVAL_SPLITS:
                    variant = eval_variants.pop(0)
                else:
                    variant = train_variants[n_train % len(train_variants)]
                    n_train += 1
                while True:
                    voice = (
                        variant,
                        int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
                        int(rng.integers(PITCH[0], PITCH[1] + 1)),
                        int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
                    )
                    if voice not in used:
                        break
                used.add(voice)
                level = round(float(rng.uniform(*LEVEL_DBFS)), 1)
                kind = ("white", "pink")[int(rng.integers(0, 2))]
                snr = round(float(rng.uniform(*SNR_DB)), 1)
                age = AGES[int(rng.integers(0, len(AGES)))]
                speakers.append(
                    SpeakerSpec(
                        locale,
                        split,
                        index,
                        *voice,
                        level,
                        kind if noise else "none",
                        snr if noise else 0.0,
                        genders[variant],
                        age,
                    )
                )
    return speakers


# --------------------------------------------------------------------------- synthesis


@dataclass(frozen=True)
class _Task:
    """One speaker's clips: (clip index within the split, file name) pairs."""

    speaker: SpeakerSpec
    clips: tuple[tuple[int, str], ...]
    seed: int
    clips_dir: str


def _words_per_second(locale: str, rate: int) -> float:
    # Measured on the generated sentences (common + made-up words are longer than espeak's
    # "words" per minute); only the first guess of the length, the loop below corrects it.
    return rate / 60.0 * {"en": 1.03, "es": 0.95}[locale]


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance 1/f noise, shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    scale = np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0))
    noise = np.fft.irfft(spectrum / scale, n)
    return noise / (noise.std() + 1e-12)


def _render(wav: np.ndarray, rate: int, speaker: SpeakerSpec, rng: np.random.Generator) -> np.ndarray:
    """Set the speaker's level, add its noise, limit peaks and resample to 48 kHz."""
    wav = wav.astype(np.float64)
    rms = np.sqrt(np.mean(wav**2)) + 1e-12
    wav *= 10.0 ** (speaker.level_db / 20.0) / rms
    if speaker.noise != "none":
        noise = rng.standard_normal(len(wav)) if speaker.noise == "white" else _pink_noise(rng, len(wav))
        wav += noise * np.sqrt(np.mean(wav**2) / 10.0 ** (speaker.snr_db / 10.0))
    peak = np.abs(wav).max()
    if peak > 0.95:
        wav *= 0.95 / peak
    return np.clip(resample(wav.astype(np.float32), rate, CLIP_RATE), -1.0, 1.0)


def _synth_task(task: _Task) -> list[dict]:
    """Synthesise, render and MP3-encode one speaker's clips; returns their TSV fields."""
    synth = _SYNTH if _SYNTH is not None else _private_synth()
    spk = task.speaker
    clips_dir = Path(task.clips_dir)
    lo, hi = MIN_SECONDS + 0.02, MAX_SECONDS - 0.02  # margin for the resampled length
    out = []
    for index, name in task.clips:
        rng = np.random.default_rng([task.seed, _LOCALE_ID[spk.locale], _SPLIT_ID[spk.split], index])
        target = float(rng.uniform(MIN_SECONDS + 0.3, MAX_SECONDS - 0.3))
        n_words = max(1, round(target * _words_per_second(spk.locale, spk.rate)))
        for attempt in range(1, MAX_ATTEMPTS + 1):  # noqa: B007 (read after the loop: the tries it took)
            sentence = make_sentence(rng, spk.locale, n_words, seed=task.seed)
            wav = synth.synthesize(sentence, spk.voice, rate=spk.rate, pitch=spk.pitch, pitch_range=spk.pitch_range)
            seconds = len(wav) / synth.sampling_rate
            if lo <= seconds <= hi:
                break
            # Re-draw a sentence, scaled towards the target length.
            n_words = max(1, round(n_words * target / max(seconds, 0.1)))
        else:
            raise RuntimeError(f"no {MIN_SECONDS}-{MAX_SECONDS} s sentence for {spk.voice} after {MAX_ATTEMPTS} tries")
        audio = _render(wav, synth.sampling_rate, spk, rng)
        buffer = io.BytesIO()
        sf.write(buffer, audio, CLIP_RATE, format="MP3", subtype="MPEG_LAYER_III")
        (clips_dir / name).write_bytes(buffer.getvalue())
        out.append(
            {
                "index": index,
                "path": name,
                "sentence": sentence,
                "attempts": attempt,
                "duration_ms": round(1000 * len(audio) / CLIP_RATE),
            }
        )
    return out


def _in_fresh_child(fn: Callable, arg):
    """``fn(arg)`` in a forked child, which starts from this worker's silent espeak-ng.

    Whatever ran before in the worker, every task starts from the same library state, so
    a speaker's audio does not depend on which worker synthesised it or in what order.
    Without ``os.fork`` (Windows) the task runs in place: identical TSVs for a fixed number
    of workers, but the audio may differ by a few samples.
    """
    if not hasattr(os, "fork"):
        return fn(arg)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the worker's loop
        try:
            os.close(read_fd)
            try:
                payload = pickle.dumps((True, fn(arg)))
            except BaseException:
                payload = pickle.dumps((False, traceback.format_exc()))
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        raise RuntimeError(f"synthesis child died without a result (wait status {status})")
    ok, value = pickle.loads(payload)
    if not ok:
        raise RuntimeError(f"synthesis failed in the child process:\n{value}")
    return value


_SYNTH = None  # the pool worker's private espeak-ng: initialised, never spoken


def _private_synth():
    """A fresh espeak-ng instance, with libc's rand() (used for breath noise) reseeded.

    A private copy of the library ignores whatever the parent process said with the shared
    instance (a fork-started worker inherits it); ``srand(1)`` is libc's initial state.
    """
    from .espeak_synth import EspeakSynth

    synth = EspeakSynth.private()
    try:
        ctypes.CDLL(None).srand(1)
    except (OSError, AttributeError, TypeError):
        pass  # no process-wide libc handle (Windows): breathy voices may vary slightly
    return synth


def _init_worker(seed: int) -> None:
    global _SYNTH
    _SYNTH = _private_synth()
    for locale in LOCALES:
        _word_tables(locale, seed)  # built once here, inherited by every forked child


def _run_task(task: _Task) -> list[dict]:
    return _in_fresh_child(_synth_task, task)


def _pool_context():
    """'fork' on Linux: workers start at once and no `if __name__ == "__main__"` guard is
    needed in the caller's script (they touch neither torch nor the parent's espeak-ng).
    Elsewhere 'spawn', the platform default."""
    return get_context("fork" if sys.platform.startswith("linux") else "spawn")


# --------------------------------------------------------------------------- writing


def _release_name(size: str) -> str:
    return f"{RELEASE_PREFIX}-{size}"


def generate_replication_corpus(
    target: str | Path,
    size: str = "cpu",
    seed: int = 0,
    num_workers: int | None = None,
    noise: bool = True,
    progress: bool = True,
) -> Path:
    """Write the corpus under ``target/cv-corpus-replication-<size>`` (no caching).

    Speakers are synthesised in a process pool (``num_workers``, default: the usable CPUs)
    with a progress bar; the result does not depend on the number of workers. See
    `ensure_replication_corpus`.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    _check_variants()
    start = time.perf_counter()
    release = Path(target) / _release_name(size)
    tasks = _plan_tasks(release, size, seed, plan_speakers(size, seed, noise))
    workers = max(1, min(num_workers or usable_cpus(), len(tasks)))
    results = _synthesise(tasks, workers, seed, f"replication corpus ({size})", progress)
    for locale in LOCALES:
        _write_locale(
            release / locale, locale, [(t.speaker, r) for t, r in zip(tasks, results) if t.speaker.locale == locale]
        )
    elapsed = time.perf_counter() - start
    clips = [c for r in results for c in r]
    logger.info(
        "replication corpus %s: %d clips, %.2f h of audio in %.0f s with %d worker(s) "
        "(%d sentences re-drawn for length)",
        size,
        len(clips),
        sum(c["duration_ms"] for c in clips) / 3.6e6,
        elapsed,
        workers,
        sum(c["attempts"] - 1 for c in clips),
    )
    return release


def _plan_tasks(release: Path, size: str, seed: int, speakers: list[SpeakerSpec]) -> list[_Task]:
    """One task per speaker: its clips' indices and file names, in a fixed order. Makes the
    locales' clips/ folders that the tasks write to."""
    tasks: list[_Task] = []
    for locale in LOCALES:
        (release / locale / "clips").mkdir(parents=True, exist_ok=True)
        # CommonVoice-like file numbers, unique within the locale and fixed by the plan.
        number = 20_000_000
        for split in SPLITS[locale]:
            per_speaker = SIZES[size].split(locale, split)[1]
            for spk in (s for s in speakers if s.locale == locale and s.split == split):
                clips = []
                for k in range(per_speaker):
                    number += 1
                    clips.append((spk.index * per_speaker + k, f"common_voice_{locale}_{number}.mp3"))
                tasks.append(_Task(spk, tuple(clips), seed, str(release / locale / "clips")))
    return tasks


def _synthesise(tasks: list[_Task], workers: int, seed: int, desc: str, progress: bool) -> list[list[dict]]:
    """Each task's clip rows, in task order, from a pool of `workers` processes."""
    from tqdm.auto import tqdm

    results: list[list[dict]] = [[] for _ in tasks]
    pool = ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_init_worker, initargs=(seed,))
    try:
        with tqdm(
            total=sum(len(t.clips) for t in tasks), unit="clip", desc=desc, disable=None if progress else True
        ) as bar:
            futures = {pool.submit(_run_task, task): i for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                bar.update(len(tasks[i].clips))
    finally:
        # On an error or Ctrl-C, drop the queued speakers instead of synthesising them all.
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _write_locale(out_dir: Path, locale: str, clips: list[tuple[SpeakerSpec, list[dict]]]) -> None:
    by_split: dict[str, list[tuple]] = {split: [] for split in ("train", "dev", "test", "other")}
    durations: list[tuple] = []
    for spk, rows in clips:
        votes = (0, 0) if spk.split == "other" else (2, 0)
        for c in rows:
            sentence_id = hashlib.sha256(f"{locale}:{c['sentence']}".encode()).hexdigest()
            by_split[spk.split].append(
                (
                    spk.client_id,
                    c["path"],
                    sentence_id,
                    c["sentence"],
                    "",
                    votes[0],
                    votes[1],
                    spk.age,
                    spk.gender,
                    "",
                    "",
                    locale,
                    "",
                )
            )
            durations.append((c["path"], c["duration_ms"]))
    by_split["validated"] = [r for s in ("train", "dev", "test") for r in by_split[s]]
    for split, rows in by_split.items():
        _write_tsv(out_dir / f"{split}.tsv", CV_COLUMNS, rows)
    _write_tsv(out_dir / "clip_durations.tsv", ("clip", "duration[ms]"), durations)
    _write_speakers(out_dir / "speakers.tsv", [spk for spk, _ in clips])


def _write_speakers(path: Path, speakers: list[SpeakerSpec]) -> None:
    """The voice behind every client_id, for analysis (not read by the loader)."""
    _write_tsv(
        path,
        (
            "client_id",
            "split",
            "variant",
            "rate",
            "pitch",
            "pitch_range",
            "level_db",
            "noise",
            "snr_db",
            "gender",
            "age",
        ),
        [
            (
                s.client_id,
                s.split,
                s.variant,
                s.rate,
                s.pitch,
                s.pitch_range,
                f"{s.level_db:.1f}",
                s.noise,
                f"{s.snr_db:.1f}",
                s.gender,
                s.age,
            )
            for s in speakers
        ],
    )


def ensure_replication_corpus(
    size: str = "cpu",
    cache_dir: str | Path | None = None,
    num_workers: int | None = None,
    *,
    seed: int = 0,
    noise: bool = True,
    progress: bool = True,
) -> Path:
    """Return the release root (`.../cv-corpus-replication-<size>`, holding en/ and es/).

    Generated on first use into ``<cache>/replication/v<VERSION>/<size>/`` (``<cache>`` =
    ``cache_dir`` or `default_cache_dir()`; a non-default seed or ``noise=False`` gets its own
    folder). Generation happens in a private temporary folder renamed into place when
    complete, so concurrent processes never read a half-written corpus; the loser of a race
    discards its copy.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    base = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "replication" / f"v{VERSION}"
    variant = size + (f"-seed{seed}" if seed else "") + ("" if noise else "-clean")
    final = base / variant
    if (final / "COMPLETE").exists():
        return final / _release_name(size)

    def fill(folder: Path) -> None:
        start = time.perf_counter()
        generate_replication_corpus(folder, size, seed=seed, num_workers=num_workers, noise=noise, progress=progress)
        (folder / "COMPLETE").write_text(
            f"unispeech replication corpus v{VERSION} size={size} seed={seed} "
            f"noise={noise} generated in {time.perf_counter() - start:.0f} s\n"
        )

    build_in_place(final, fill, marker="COMPLETE")
    return final / _release_name(size)


def summarize(release: str | Path) -> list[dict]:
    """Per (locale, split): clips, hours and speakers, read back from the TSVs."""
    from .commonvoice import read_clip_durations, read_tsv

    rows = []
    for locale in LOCALES:
        loc = Path(release) / locale
        durations = read_clip_durations(loc)
        for split in ("train", "dev", "test", "other"):
            table = read_tsv(loc / f"{split}.tsv")
            paths = table.get("path", [])
            rows.append(
                {
                    "locale": locale,
                    "split": split,
                    "clips": len(paths),
                    "hours": sum(durations.get(p, 0.0) for p in paths) / 3600.0,
                    "speakers": len(set(table.get("client_id", []))),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m unispeech.data.synthetic_corpus",
        description="Generate (once) the espeak-ng replication corpus and print where it is.",
    )
    parser.add_argument("--size", default="cpu", choices=sorted(SIZES))
    parser.add_argument("--out", default=None, help="cache root instead of $UNISPEECH_CACHE (~/.cache/unispeech)")
    parser.add_argument("--workers", type=int, default=None, help="synthesis processes (default: usable CPUs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-noise", action="store_true", help="no additive noise")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = ensure_replication_corpus(args.size, args.out, args.workers, seed=args.seed, noise=not args.no_noise)
    print(root)
    print(f"ready in {time.perf_counter() - start:.1f} s ({(root.parent / 'COMPLETE').read_text().strip()})")
    for row in summarize(root):
        if row["clips"]:
            print(
                f"  {row['locale']}/{row['split']:<6} {row['clips']:5d} clips {row['hours']:6.2f} h "
                f"{row['speakers']:4d} speakers"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
