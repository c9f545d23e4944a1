"""Greedy CTC decoding and edit-distance error rates (PER, CER, WER).

Token sequences are lists of vocabulary symbols. ``|`` is the word delimiter of the
Wav2Vec2CTCTokenizer layout; special symbols (``<pad>`` ...) never count as errors or words.

``greedy_decode`` turns CTC logits into symbols (training, evaluation and transcription all
use it); ``ErrorRates`` is the one scorer: a torchmetrics metric, so its sums are reduced over
DDP ranks when it computes. Edit distances come from rapidfuzz (C++): scoring 2,000
utterances of 30 phones took 0.03-0.05 s, against 0.7-1.1 s with a Python Levenshtein and
0.8-1.6 s with torchmetrics' ``WordErrorRate``/``CharErrorRate`` (same numbers, pure Python).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rapidfuzz.distance import Levenshtein
from torchmetrics import Metric

from unispeech.data.tokenizer import BOS, EOS, PAD, UNK, WORD_DELIMITER

SPECIAL_TOKENS = frozenset({PAD, BOS, EOS, UNK})
RATES = ("per", "cer", "wer")


def greedy_decode(
    logits: torch.Tensor, lengths: torch.Tensor | None, vocabulary: Sequence[str], blank_id: int = 0
) -> list[list[str]]:
    """Best path decoding to vocabulary symbols: argmax per frame, merge repeats, drop blanks.

    ``logits``: (B, T, V); ``lengths``: valid frames per row (all frames when None).
    """
    best = logits.argmax(dim=-1).cpu()
    keep = best != blank_id
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]  # a repeat is merged unless a blank parts it
    if lengths is not None:
        keep &= torch.arange(best.shape[1]) < lengths.cpu().unsqueeze(1)
    return [_symbols(row[kept].tolist(), vocabulary) for row, kept in zip(best, keep)]


def reference_tokens(labels: torch.Tensor, vocabulary: Sequence[str]) -> list[list[str]]:
    """Reference symbols of a padded label batch (IGNORE_INDEX padding: any negative id)."""
    return [_symbols([i for i in row if i >= 0], vocabulary) for row in labels.cpu().tolist()]


def _symbols(ids: Sequence[int], vocabulary: Sequence[str]) -> list[str]:
    return [vocabulary[i] if 0 <= i < len(vocabulary) else UNK for i in ids]


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
    separator = f" {WORD_DELIMITER} " if token_joiner == " " else " "
    return separator.join(words(tokens, joiner=token_joiner))


class ErrorRates(Metric):
    """PER, CER and WER summed over ``update(hyps, refs)`` calls (batches of token sequences).

    ``compute()`` gives ``utterances`` and the three rates, each errors / reference length (a
    length of 0 counts as 1), over all DDP ranks unless built with ``sync_on_compute=False``.
    The first ``examples`` (hypothesis, reference) pairs of this process are kept, space-joined,
    in ``self.examples``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, examples: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        # per rate: edit distance and reference length; integers, so that sums stay exact
        self.add_state("errors", torch.zeros(len(RATES), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("lengths", torch.zeros(len(RATES), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("utterances", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.max_examples = int(examples)
        self.examples: list[tuple[str, str]] = []

    def update(self, hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> None:
        if len(hyps) != len(refs):
            raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
        errors, lengths = [0] * len(RATES), [0] * len(RATES)
        for hyp, ref in zip(hyps, refs):
            for index, scored in enumerate((units, characters, words)):  # in the order of RATES
                hyp_units, ref_units = scored(hyp), scored(ref)
                errors[index] += Levenshtein.distance(hyp_units, ref_units)
                lengths[index] += len(ref_units)
            if len(self.examples) < self.max_examples:
                self.examples.append((" ".join(hyp), " ".join(ref)))
        counts = torch.tensor([errors, lengths], dtype=torch.long, device=self.errors.device)
        self.errors += counts[0]
        self.lengths += counts[1]
        self.utterances += len(refs)

    def compute(self) -> dict[str, float]:
        errors, lengths = self.errors.tolist(), self.lengths.tolist()
        rates = {name: e / max(n, 1) for name, e, n in zip(RATES, errors, lengths)}
        return {"utterances": int(self.utterances), **rates}

    def reset(self) -> None:
        super().reset()
        self.examples = []
