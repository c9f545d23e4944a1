"""espeak-ng phonemization through phonemizer + espeakng-loader (real output, no stubs)."""

from __future__ import annotations

import sys

import pytest

from unispeech.data import phonemes
from unispeech.data.corpus import make_table
from unispeech.data.phonemes import add_phones_column, locale_to_voice, phonemize

# Observed espeak-ng 1.52 output (from espeakng-loader 0.2.4), stress marks removed.
KNOWN = [
    ("en", "hello world", "h ə l oʊ | w ɜː l d"),
    ("en", "cat", "k æ t"),
    ("fr", "bonjour", "b ɔ̃ ʒ u ʁ"),
    ("es", "hola", "o l a"),
    ("it", "ciao", "tʃ a o"),
    ("nl", "hallo", "h ɑ l oː"),
    ("ru", "привет", "p rʲ i vʲ e t"),
    ("sv-SE", "hej", "h ɛ j"),
    ("tr", "merhaba", "m ɛ r h a b a"),
    ("ky", "салам", "s ɑ l ɑ m"),
    ("tt", "сәлам", "s æ ɫ ɑ m"),
    ("zh-CN", "你好", "n i2 χ ɑu2"),
]


@pytest.mark.parametrize("locale,text,expected", KNOWN)
def test_known_words(locale, text, expected):
    assert phonemize([text], locale) == [expected]


def test_word_boundary_is_optional_and_punctuation_dropped():
    with_b, without_b = (
        phonemize(["Hello, world!"], "en")[0],
        phonemize(["Hello, world!"], "en", word_boundary=False)[0],
    )
    assert with_b == "h ə l oʊ | w ɜː l d"
    assert without_b == "h ə l oʊ w ɜː l d"
    assert phonemize(["", "   "], "en") == ["", ""]


def test_locale_map():
    assert locale_to_voice("sv-SE") == "sv" and locale_to_voice("zh-CN") == "cmn"
    assert locale_to_voice("en") == "en-us" and locale_to_voice("pt-BR") == "pt"


def test_phones_column_groups_by_locale():
    table = make_table({"path": ["a", "b", "c"], "text": ["cat", "hola", "bonjour"], "locale": ["en", "es", "fr"]})
    out = add_phones_column(table)
    assert out["phones"] == ["k æ t", "o l a", "b ɔ̃ ʒ u ʁ"]


def test_missing_extra_gives_install_hint(monkeypatch):
    monkeypatch.setattr(phonemes, "_CONFIGURED", False)
    monkeypatch.setattr(phonemes, "_BACKENDS", {})
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'unispeech\[phonemes\]'"):
        phonemize(["hello"], "en")
