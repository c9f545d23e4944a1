"""`CTCTokenizer`: characters or phones <-> ids, saved in the Wav2Vec2CTCTokenizer layout.

Vocabulary: `<pad>`=0 (the CTC blank), `<s>`=1, `</s>`=2, `<unk>`=3, `|`=4 (word
delimiter), then the symbols seen in the training split, sorted. Character vocabularies are
written for `transformers.Wav2Vec2CTCTokenizer`; phone vocabularies (space-separated phone
strings) for `Wav2Vec2PhonemeCTCTokenizer` with phonemization off, the transformers class
that treats multi-character phones as single tokens. Both load with `AutoTokenizer`.
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from unispeech.modeling.losses import IGNORE_INDEX

PAD, BOS, EOS, UNK, WORD_DELIMITER = "<pad>", "<s>", "</s>", "<unk>", "|"
SPECIALS = (PAD, BOS, EOS, UNK, WORD_DELIMITER)
KINDS = ("chars", "phones")


# Symbols nobody reads aloud: emoji and pictographs (So), modifier symbols such as emoji skin
# tones (Sk), private-use (Co), surrogate (Cs) and unassigned (Cn: emoji newer than Python's
# Unicode tables) code points. Currency (Sc) and math (Sm) signs are read ("$5", "2 + 2").
NON_SPEECH_CATEGORIES = frozenset({"So", "Sk", "Co", "Cs", "Cn"})
# What glues emoji sequences together, removed without a space: variation selectors (VS1-16
# and the ideographic VS17-256 are marks, Mn, so they would otherwise be kept), the zero-width
# joiner of 👩‍👩‍👧 sequences, the combining keycap (1️⃣) and the tag characters of flag sequences.
_EMOJI_GLUE = {0x200D: None, 0x20E3: None}
_EMOJI_GLUE.update(dict.fromkeys(range(0xFE00, 0xFE10)))
_EMOJI_GLUE.update(dict.fromkeys(range(0xE0100, 0xE01F0)))
_EMOJI_GLUE.update(dict.fromkeys(range(0xE0020, 0xE0080)))


def strip_non_speech(text: str) -> str:
    """The text as spoken: NFC-normalised, emoji and other symbols nobody reads replaced by spaces.

    Shared by both target kinds, so "brûlée" decomposed (NFD) or composed (NFC) and a
    sentence with or without an emoji give the same characters and the same phones (espeak
    would read 🙂 as "slightly smiling face"). Letters, marks, digits, punctuation, ASCII and
    the spoken symbols (currency, math) are kept, and so is case (left to espeak). So is a
    modifier symbol between two letters: an apostrophe typed as an accent ("don´t").
    """
    text = unicodedata.normalize("NFC", text).translate(_EMOJI_GLUE)
    if text.isascii():
        return text
    chars = list(text)
    for i, ch in enumerate(chars):
        category = "" if ch.isascii() else unicodedata.category(ch)
        if category not in NON_SPEECH_CATEGORIES:
            continue
        if category == "Sk" and 0 < i < len(chars) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha():
            continue
        chars[i] = " "
    return "".join(chars)


def normalize_text(text: str) -> str:
    """Transcript normalisation for character targets.

    `strip_non_speech`, lower-case, and replace punctuation and symbols by spaces; letters,
    combining marks, digits and apostrophes inside words are kept. Whitespace is collapsed.
    """
    text = strip_non_speech(text).lower()
    chars = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] in "LMN" or ch == "'":
            chars.append(ch)
        else:
            chars.append(" ")
    words = [w.strip("'") for w in "".join(chars).split()]
    return " ".join(w for w in words if w)


class CTCTokenizer:
    """Greedy CTC tokenizer over characters (``kind="chars"``) or phones (``kind="phones"``)."""

    def __init__(self, vocab: dict[str, int], kind: str = "chars", language: str = "") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        for expected_id, token in enumerate(SPECIALS):
            if vocab.get(token) != expected_id:
                raise ValueError(f"vocab must map {token!r} to {expected_id} (Wav2Vec2CTCTokenizer layout)")
        self.vocab = dict(vocab)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.kind = kind
        self.language = language

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: Iterable[str], kind: str = "chars", language: str = "") -> CTCTokenizer:
        """Build the vocabulary from (already normalised / phonemized) training texts."""
        symbols: set[str] = set()
        for text in texts:
            symbols.update(_split(text, kind))
        ordered = sorted(symbols - set(SPECIALS))
        vocab = {tok: i for i, tok in enumerate(SPECIALS)}
        vocab.update({tok: i + len(SPECIALS) for i, tok in enumerate(ordered)})
        return cls(vocab, kind=kind, language=language)

    # -- properties --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def pad_token_id(self) -> int:
        return self.vocab[PAD]

    @property
    def unk_token_id(self) -> int:
        return self.vocab[UNK]

    @property
    def word_delimiter_token_id(self) -> int:
        return self.vocab[WORD_DELIMITER]

    # -- encoding ----------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        return _split(text, self.kind)

    def encode(self, text: str) -> list[int]:
        unk = self.unk_token_id
        return [self.vocab.get(tok, unk) for tok in self.tokenize(text)]

    def __call__(self, texts: str | Sequence[str]) -> list[int] | list[list[int]]:
        if isinstance(texts, str):
            return self.encode(texts)
        return [self.encode(t) for t in texts]

    # -- decoding ----------------------------------------------------------------------
    def vocabulary(self) -> list[str]:
        """Every symbol, in id order (what a model's output layer is sized and read by)."""
        return [self.id_to_token[i] for i in range(len(self))]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.id_to_token.get(int(i), UNK) for i in ids]

    def decode(
        self,
        ids: Sequence[int] | torch.Tensor,
        group_tokens: bool = True,
        skip_special_tokens: bool = True,
        keep_word_delimiter: bool = False,
    ) -> str:
        """CTC decode: merge repeats (``group_tokens``), drop blanks, join.

        Label padding (IGNORE_INDEX) is ignored, so ``decode(labels[i], group_tokens=False)`` gives the
        reference text. Characters join into words at `|`; phones join with spaces and drop
        `|` unless ``keep_word_delimiter``.
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        ids = [int(i) for i in ids if int(i) != IGNORE_INDEX]
        if group_tokens:
            ids = [key for key, _ in itertools.groupby(ids)]
        tokens = []
        for tok in self.convert_ids_to_tokens(ids):
            # as in transformers, skip_special_tokens also drops <unk>
            if tok == PAD or (skip_special_tokens and tok in (BOS, EOS, UNK)):
                continue
            tokens.append(tok)
        if self.kind == "chars":
            return "".join(" " if t == WORD_DELIMITER else t for t in tokens).strip()
        if not keep_word_delimiter:
            tokens = [t for t in tokens if t != WORD_DELIMITER]
        return " ".join(tokens).strip()

    def batch_decode(self, sequences: Sequence[Sequence[int]] | torch.Tensor, **kwargs) -> list[str]:
        if isinstance(sequences, torch.Tensor):
            sequences = sequences.tolist()
        return [self.decode(seq, **kwargs) for seq in sequences]

    # -- serialisation -----------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path) -> Path:
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK, "pad_token": PAD}
        config: dict = {
            **specials,
            "word_delimiter_token": WORD_DELIMITER,
            "do_lower_case": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 1_000_000,
            "unispeech_kind": self.kind,
            "unispeech_language": self.language,
        }
        if self.kind == "chars":
            config.update(tokenizer_class="Wav2Vec2CTCTokenizer", replace_word_delimiter_char=" ")
        else:
            config.update(
                tokenizer_class="Wav2Vec2PhonemeCTCTokenizer",
                phone_delimiter_token=" ",
                do_phonemize=False,
                phonemizer_backend="espeak",
            )
            # the espeak voice the phones came from; an unknown one is left out, not guessed
            # (transformers then assumes en-us, as it does for any tokenizer without one)
            if self.language:
                config["phonemizer_lang"] = self.language
        (path / "tokenizer_config.json").write_text(
            json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        (path / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> CTCTokenizer:
        path = Path(directory)
        vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        config_file = path / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        kind = config.get("unispeech_kind")
        if kind is None:  # a foreign Wav2Vec2 tokenizer: infer from its class
            kind = "phones" if "Phoneme" in config.get("tokenizer_class", "") else "chars"
        return cls(vocab, kind=kind, language=config.get("unispeech_language", ""))

    def __repr__(self) -> str:
        return f"CTCTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, language={self.language!r})"


def _split(text: str, kind: str) -> list[str]:
    if kind == "phones":
        return text.split()
    # Characters: words are separated by the delimiter token, as Wav2Vec2CTCTokenizer does.
    return list(" ".join(text.split()).replace(" ", WORD_DELIMITER))
