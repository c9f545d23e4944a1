"""Greedy CTC decoding and edit-distance error rates (PER, CER, WER).

Token sequences are lists of vocabulary symbols. ``|`` is the word delimiter of the
Wav2Vec2CTCTokenizer layout; special symbols (``<pad>`` ...) never count as errors or words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

WORD_DELIMITER = "|"
SPECIAL_TOKENS = frozenset({"<pad>", "<s>", "</s>", "<unk>"})


def edit_distance(hyp: Sequence, ref: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(hyp) < len(ref):
        hyp, ref = ref, hyp
    previous = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, start=1):
        current = [i] + [0] * len(ref)
        for j, r in enumerate(ref, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r))
        previous = current
    return previous[-1]


def ctc_greedy_decode(logits: torch.Tensor, lengths: torch.Tensor | None = None, blank_id: int = 0) -> list[list[int]]:
    """Best path decoding: argmax per frame, merge repeats, drop blanks.

    ``logits``: (B, T, V); ``lengths``: valid frames per row (all frames when None).
    """
    best = logits.argmax(dim=-1).cpu()
    frames = best.shape[1]
    lengths_list = [frames] * best.shape[0] if lengths is None else lengths.cpu().tolist()
    decoded = []
    for row, length in zip(best, lengths_list):
        row = torch.unique_consecutive(row[: int(length)])
        decoded.append([int(t) for t in row if int(t) != blank_id])
    return decoded


def labels_to_ids(labels: torch.Tensor) -> list[list[int]]:
    """Reference ids from a padded label batch (-100 padding)."""
    return [[int(t) for t in row if int(t) >= 0] for row in labels.cpu()]


def ids_to_tokens(ids: Sequence[int], vocabulary: Sequence[str]) -> list[str]:
    return [vocabulary[i] if 0 <= i < len(vocabulary) else "<unk>" for i in ids]


def units(tokens: Sequence[str]) -> list[str]:
    """Tokens that count for a token error rate (PER for phone vocabularies)."""
    return [t for t in tokens if t not in SPECIAL_TOKENS and t != WORD_DELIMITER]


def words(tokens: Sequence[str], joiner: str = "") -> list[str]:
    """Split tokens at the word delimiter; a word is its tokens joined (chars → "", phones → " ")."""
    out, current = [], []
    for token in tokens:
        if token == WORD_DELIMITER:
            if current:
                out.append(joiner.join(current))
            current = []
        elif token not in SPECIAL_TOKENS:
            current.append(token)
    if current:
        out.append(joiner.join(current))
    return out


def characters(tokens: Sequence[str]) -> list[str]:
    """Characters of the transcript, with one space between words (CER counts spaces)."""
    return list(" ".join(words(tokens)))


def tokens_to_text(tokens: Sequence[str], token_joiner: str = "") -> str:
    """Human-readable transcript: phones separated by spaces or characters joined, words by spaces."""
    separator = " | " if token_joiner == " " else " "
    return separator.join(words(tokens, joiner=token_joiner))


@dataclass
class ErrorCounts:
    """Summed edit distances and reference lengths; rates are errors / reference length."""

    token_errors: int = 0
    tokens: int = 0
    char_errors: int = 0
    chars: int = 0
    word_errors: int = 0
    words: int = 0
    utterances: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)

    def update(self, hyp: Sequence[str], ref: Sequence[str], keep_example: bool = False) -> None:
        self.token_errors += edit_distance(units(hyp), units(ref))
        self.tokens += len(units(ref))
        self.char_errors += edit_distance(characters(hyp), characters(ref))
        self.chars += len(characters(ref))
        self.word_errors += edit_distance(words(hyp), words(ref))
        self.words += len(words(ref))
        self.utterances += 1
        if keep_example:
            self.examples.append((" ".join(hyp), " ".join(ref)))

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor(
            [self.token_errors, self.tokens, self.char_errors, self.chars, self.word_errors, self.words],
            dtype=torch.float64,
        )

    @staticmethod
    def rates_from_tensor(counts: torch.Tensor) -> dict[str, float]:
        te, t, ce, c, we, w = counts.tolist()
        return {"per": te / max(t, 1), "cer": ce / max(c, 1), "wer": we / max(w, 1)}

    def rates(self) -> dict[str, float]:
        return self.rates_from_tensor(self.as_tensor())
