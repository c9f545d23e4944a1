"""Text -> phone sequences with phonemizer's espeak backend (optional `phonemes` extra).

The espeak-ng shared library and its data come from the `espeakng-loader` wheel, so no
system package is needed. Both phonemizer and espeak-ng are GPL-3, hence optional.
Phones are returned as one space-separated string per sentence (e.g. "h ə l oʊ | w ɜː l d"
with the word delimiter "|", `tokenizer.WORD_DELIMITER`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import datasets

from .tokenizer import WORD_DELIMITER, strip_non_speech

INSTALL_HINT = "pip install 'unispeech[phonemes]'"

# CommonVoice locale -> espeak-ng voice. Locales not listed are tried as-is, then by their
# language part ("pt-BR" -> "pt").
LOCALE_TO_VOICE = {
    "en": "en-us",
    "es": "es",
    "fr": "fr-fr",
    "it": "it",
    "ky": "ky",
    "nl": "nl",
    "ru": "ru",
    "sv-SE": "sv",
    "tr": "tr",
    "tt": "tt",
    "zh-CN": "cmn",
    "de": "de",
    "pt": "pt",
    "pl": "pl",
}

_BACKENDS: dict[str, Any] = {}
_CONFIGURED = False


def _configure_espeak() -> None:
    """Point phonemizer at the espeak-ng library and data bundled in `espeakng-loader`."""
    global _CONFIGURED
    if _CONFIGURED:
        return
    try:
        import espeakng_loader
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"Phonemization needs the optional 'phonemes' extra (phonemizer + espeakng-loader, GPL-3): {INSTALL_HINT}"
        ) from err
    # espeak-ng reads ESPEAK_DATA_PATH when initialised; phonemizer 3.x only lets us set the
    # library path, so the data path goes through the environment.
    os.environ["ESPEAK_DATA_PATH"] = espeakng_loader.get_data_path()
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    _CONFIGURED = True


def locale_to_voice(locale: str) -> str:
    """Map a CommonVoice locale (e.g. "sv-SE", "zh-CN") to an espeak-ng voice."""
    if locale in LOCALE_TO_VOICE:
        return LOCALE_TO_VOICE[locale]
    return locale.split("-")[0].lower() if locale else "en-us"


def _backend(voice: str) -> Any:
    if voice not in _BACKENDS:
        _configure_espeak()
        from phonemizer.backend import EspeakBackend

        _BACKENDS[voice] = EspeakBackend(
            voice,
            preserve_punctuation=False,
            with_stress=False,
            # Foreign words are read by another voice; drop the "(en)" flags, keep the phones.
            language_switch="remove-flags",
        )
    return _BACKENDS[voice]


def phonemize(texts: Sequence[str], locale: str, word_boundary: bool = True) -> list[str]:
    """Phonemize sentences of one language; one space-separated phone string each.

    Sentences are cleaned first (`clean_for_espeak`: NFC, no emoji or markup), so the same
    sentence gives the same phones however it is encoded. Empty input sentences give ""
    (callers drop them with a counted warning).
    """
    _configure_espeak()
    from phonemizer.separator import Separator

    # phonemizer needs distinct phone and word separators: always mark word boundaries,
    # and drop the marks afterwards when they are not wanted.
    separator = Separator(phone=" ", word=f" {WORD_DELIMITER} ", syllable="")
    cleaned = [clean_for_espeak(text) for text in texts]
    out = _backend(locale_to_voice(locale)).phonemize(cleaned, separator=separator, strip=True)
    return [_tidy(line, word_boundary) for line in out]


def _tidy(line: str, word_boundary: bool) -> str:
    """Collapse whitespace and stray/duplicated boundary symbols."""
    tokens = line.split()
    if word_boundary:
        cleaned: list[str] = []
        for tok in tokens:
            if tok == WORD_DELIMITER and (not cleaned or cleaned[-1] == WORD_DELIMITER):
                continue
            cleaned.append(tok)
        while cleaned and cleaned[-1] == WORD_DELIMITER:
            cleaned.pop()
        tokens = cleaned
    else:
        tokens = [tok for tok in tokens if tok != WORD_DELIMITER]
    return " ".join(tokens)


def _phonemize_batch(batch: dict[str, list], word_boundary: bool, default_locale: str) -> dict[str, list]:
    """`datasets.map` worker: group the batch by locale, one espeak call per language."""
    phones = [""] * len(batch["text"])
    locales = batch.get("locale") or [default_locale] * len(phones)
    by_locale: dict[str, list[int]] = {}
    for i, loc in enumerate(locales):
        by_locale.setdefault(loc or default_locale, []).append(i)
    for loc, rows in by_locale.items():
        texts = [batch["text"][i] for i in rows]
        for i, result in zip(rows, phonemize(texts, loc, word_boundary)):
            phones[i] = result
    return {"phones": phones}


_MARKUP = re.compile(r"[<>\[\]{}]")


def clean_for_espeak(text: str) -> str:
    """What espeak should read: `strip_non_speech` (NFC: an NFD "brûlée" would come out as
    "b ɹ ʌ l ɛ"; no emoji, which espeak reads by name), no brackets, which espeak treats as
    SSML-ish markup and which carry no pronunciation, and an all-capitals sentence in lower
    case: Kaldi-style transcripts (speechocean762, LibriSpeech, WSJ) are upper case, and
    espeak spells a capitalised word it does not know as letters ("IT" -> "aɪ t iː")."""
    text = _MARKUP.sub(" ", strip_non_speech(text))
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) > 1 and all(ch.isupper() for ch in letters if ch.lower() != ch.upper()) and text != text.lower():
        text = text.lower()
    return text


def add_phones_column(
    table: datasets.Dataset,
    word_boundary: bool = True,
    default_locale: str = "en",
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Add a `phones` column, computed once with `datasets.map` (the caller caches the table)."""
    _configure_espeak()
    if "phones" in table.column_names:
        table = table.remove_columns("phones")
    return table.map(
        _phonemize_batch,
        batched=True,
        batch_size=256,
        fn_kwargs={"word_boundary": word_boundary, "default_locale": default_locale},
        num_proc=num_proc if num_proc and num_proc > 1 and len(table) >= 4 * num_proc else None,
        desc="phonemizing",
    )
