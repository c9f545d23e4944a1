"""Transcripts -> the token ids a CTC model aligns, and the written words they stand for.

The tokens are made the way the model's training targets were: characters of
`normalize_text` for a ``chars`` model; for a ``phones`` model, espeak phones of the whole
sentence in the model's language (`phonemize`, which marks word boundaries with ``|``).

Word labels are the transcript's words (as `normalize_text` writes them, lower case).
espeak does not always keep one phone word per written word: it joins clitics ("of the" ->
``ʌ v ð ə`` in English), splits numerals ("1995" -> four words) and a hyphenated pair may go
either way. `word_groups` matches the sentence's phones to the phones of each word spoken
alone, and groups phone words and written words into the smallest units whose edges agree,
so a label may hold two written words ("of the") and span one or several phone words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from unispeech.data.tokenizer import KINDS, WORD_DELIMITER, CTCTokenizer, normalize_text

from .alignment import AlignmentError


@dataclass(frozen=True)
class AlignmentTarget:
    """What to align for one transcript: token ids (word delimiters included), and the word
    labels, each covering ``group_sizes[i]`` delimiter-separated groups of tokens."""

    token_ids: list[int]
    labels: list[str]
    group_sizes: list[int]


class TranscriptEncoder:
    """Encodes transcripts for a model's vocabulary, tokenizer kind and (phones) espeak language."""

    def __init__(self, vocabulary: Sequence[str], kind: str, language: str = "") -> None:
        if kind not in KINDS:
            raise ValueError(f"tokenizer kind must be one of {KINDS}, got {kind!r}")
        self.vocab = {symbol: i for i, symbol in enumerate(vocabulary)}
        self.kind = kind
        self.tokenizer = CTCTokenizer(self.vocab, kind=kind, language=language)
        self.locale = ""
        if kind == "phones":
            if not language:
                raise ValueError(
                    "the model records no language for its phones: pass --language (a CommonVoice locale such as "
                    "'es' or an espeak voice)"
                )
            self.locale = voice_to_locale(language)
            from unispeech.data.phonemes import phonemize  # ImportError with the install hint without the extra

            phonemize(["a"], self.locale)  # fails here, once, on a missing espeak or an unknown voice

    def encode(self, texts: Sequence[str]) -> list[AlignmentTarget | AlignmentError]:
        """One target per transcript, or the `AlignmentError` that says why it has none."""
        if self.kind == "chars":
            return [self._encode_chars(text) for text in texts]
        return self._encode_phones(texts)

    def _encode_chars(self, text: str) -> AlignmentTarget | AlignmentError:
        normalized = normalize_text(text)
        if not normalized:
            return AlignmentError("empty transcript (no letters or digits), nothing to align")
        tokens = self.tokenizer.tokenize(normalized)
        words = normalized.split()
        return self._target(tokens, words, [1] * len(words))

    def _encode_phones(self, texts: Sequence[str]) -> list[AlignmentTarget | AlignmentError]:
        from unispeech.data.phonemes import phonemize

        sentences = phonemize(list(texts), self.locale)
        written = [normalize_text(text).split() for text in texts]
        # each written word alone, all in one espeak call
        alone = iter(phonemize([w for words in written for w in words], self.locale, word_boundary=False))
        targets: list[AlignmentTarget | AlignmentError] = []
        for sentence, words in zip(sentences, written):
            word_phones = [next(alone).split() for _ in words]
            tokens = sentence.split()
            if not [t for t in tokens if t != WORD_DELIMITER]:
                targets.append(AlignmentError("empty transcript (espeak gives no phones for it), nothing to align"))
                continue
            labels, sizes = word_groups(words, word_phones, split_words(tokens))
            targets.append(self._target(tokens, labels, sizes))
        return targets

    def _target(self, tokens: list[str], labels: list[str], sizes: list[int]) -> AlignmentTarget | AlignmentError:
        missing = sorted({t for t in tokens if t not in self.vocab})
        if missing:
            what = "phones" if self.kind == "phones" else "characters"
            return AlignmentError(
                f"{what} not in the model's vocabulary: {' '.join(missing)} "
                "(a transcript in another language or script than the model's?)"
            )
        return AlignmentTarget([self.vocab[t] for t in tokens], labels, sizes)


def voice_to_locale(language: str) -> str:
    """The CommonVoice locale `phonemize` takes for an espeak voice a tokenizer records ("en-us" -> "en");
    a locale, or a voice without one, is returned as it is."""
    from unispeech.data.phonemes import LOCALE_TO_VOICE

    if language in LOCALE_TO_VOICE:
        return language
    return next((locale for locale, voice in LOCALE_TO_VOICE.items() if voice == language), language)


def split_words(tokens: Sequence[str], delimiter: str = WORD_DELIMITER) -> list[list[str]]:
    """Tokens split at the word delimiter, empty groups dropped."""
    groups: list[list[str]] = [[]]
    for token in tokens:
        if token == delimiter:
            groups.append([])
        else:
            groups[-1].append(token)
    return [g for g in groups if g]


def word_groups(
    written: Sequence[str], word_phones: Sequence[Sequence[str]], sentence_words: Sequence[Sequence[str]]
) -> tuple[list[str], list[int]]:
    """Labels for the phone words of a sentence: (labels, phone words per label).

    ``written``: the written words; ``word_phones``: each one's phones spoken alone;
    ``sentence_words``: the phone words of the whole sentence. The sentence's phones are
    matched to the concatenated lone words' phones (an edit-distance alignment, so context
    changes such as a linking consonant do not break it); each phone word then belongs to
    the written words its phones came from, and phone words that share a written word are
    merged. A written word without phones joins its neighbour's label.
    """
    from rapidfuzz.distance import Levenshtein

    owner: list[int] = [i for i, phones in enumerate(word_phones) for _ in phones]
    reference = [p for phones in word_phones for p in phones]
    sentence = [p for phones in sentence_words for p in phones]
    # the written word of each sentence phone (None: a phone the lone words do not have)
    source: list[int | None] = [None] * len(sentence)
    for op in Levenshtein.opcodes(sentence, reference):
        if op.tag in ("equal", "replace"):
            for k in range(op.src_start, op.src_end):
                # a replaced run of another length maps proportionally
                offset = (k - op.src_start) * (op.dest_end - op.dest_start) // (op.src_end - op.src_start)
                source[k] = owner[op.dest_start + offset]
    # (first, last) written word of each phone word
    spans: list[tuple[int, int] | None] = []
    position = 0
    for phones in sentence_words:
        owners = [s for s in source[position : position + len(phones)] if s is not None]
        spans.append((min(owners), max(owners)) if owners else None)
        position += len(phones)

    groups: list[list[int]] = []  # [first written, last written, phone words]
    for span in spans:
        if groups and (span is None or span[0] <= groups[-1][1]):
            groups[-1][1] = max(groups[-1][1], span[1]) if span else groups[-1][1]
            groups[-1][2] += 1
        elif span is None:  # a leading phone word that matches nothing: the first written word's
            groups.append([0, 0, 1])
        else:
            groups.append([span[0], span[1], 1])
    if not groups:
        return [], []
    # written words no phone word claims go with the group before them (the first group takes leading ones)
    groups[0][0] = 0
    for current, following in zip(groups, groups[1:]):
        current[1] = following[0] - 1
    groups[-1][1] = max(groups[-1][1], len(written) - 1)
    labels, sizes, phone_word = [], [], 0
    for first, last, size in groups:
        # empty only when espeak read words that are not written (nothing left to name them): show the phones
        label = " ".join(written[first : last + 1]) or " ".join(
            " ".join(phones) for phones in sentence_words[phone_word : phone_word + size]
        )
        labels.append(label)
        sizes.append(size)
        phone_word += size
    return labels, sizes
