"""CTC prefix beam search, lexicon-free, with optional n-gram LM shallow fusion and hotwords.

Greedy decoding keeps the single most likely frame-by-frame path; many paths collapse to the
same output ("a a _" and "_ a a" both give "a"), and the beam search scores an output by the
sum over all its paths. It keeps the ``beam_width`` best output prefixes, each with two
log probabilities: its paths that end in a blank and those that end in its last token (a
repeated token only starts a new symbol after a blank).

What each prefix is ranked by::

    ln P_ctc(prefix) + alpha * ln P_lm(units) + beta * units + hotword bonus

- the LM (``ngram.load_language_model``) scores "units": words for a character model (a
  word is scored when the word delimiter ``|`` or the end completes it), phones for a phone
  model (every phone and ``|`` as it is emitted), or words for either with
  ``lm_unit="word"`` (a phone word is its phones joined without spaces);
- ``beta`` is a bonus per unit, against the LM's preference for fewer, shorter outputs;
- hotwords: a listed word gets ``hotword_weight`` per token once it is complete, and a
  word being spelled that begins a hotword gets the same bonus for its tokens so far, so
  that it survives the pruning until it is complete; a word that turns out not to be a
  hotword loses that bonus. A hotword of several words favours each of them, wherever it
  is (no phrase matching).

Pruning, for speed: per frame only tokens with a log probability of at least
``token_min_log_prob`` (and at most ``top_k`` of them) extend prefixes, and prefixes more
than ``beam_prune`` below the best are dropped.

``decode(log_probs, length)`` takes one utterance's (T, V) log probabilities and returns
symbols as ``unispeech.tasks.metrics.greedy_decode`` does (``|`` word delimiters
included); ``decode_batch(logits, lengths)`` takes a model's (B, T, V) logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from unispeech.data.tokenizer import BOS, EOS, PAD, UNK, WORD_DELIMITER, normalize_text

from .ngram import LanguageModel, load_language_model

NEG_INF = float("-inf")
KINDS = ("chars", "phones")
LM_UNITS = ("auto", "word", "token")
# never parts of a word nor LM units: kept in the output as greedy decoding keeps them
NOT_SPELLED = frozenset({PAD, BOS, EOS, UNK})


def _log_add(a: float, b: float) -> float:
    """ln(e^a + e^b) without overflow (math is much faster than numpy on scalars)."""
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


class _Context(NamedTuple):
    """What a prefix's non-acoustic score depends on; the same prefix always has the same one.
    (A NamedTuple: one is made per prefix tried, and they are made faster than dataclasses.)"""

    bonus: float = 0.0  # alpha * LM + beta * units + completed hotwords
    lm_state: Any = None
    word: tuple[str, ...] = ()  # tokens of the word being spelled
    word_bonus: float = 0.0  # hotword bonus of the word being spelled (kept if it completes one)
    rank: float = 0.0  # bonus + word_bonus: what ranks the prefix on top of its CTC log probability


def _context(bonus: float, lm_state: Any, word: tuple[str, ...] = (), word_bonus: float = 0.0) -> _Context:
    return _Context(bonus, lm_state, word, word_bonus, bonus + word_bonus)


@dataclass
class Hypothesis:
    """A finished output: its symbols, the ranking score and ln P_ctc (the sum over its paths)."""

    tokens: list[str]
    score: float
    acoustic: float
    ids: tuple[int, ...] = field(default=(), repr=False)


class BeamSearchDecoder:
    """CTC prefix beam search over ``vocabulary`` (id order; id ``blank_id`` is the CTC blank).

    ``tokenizer_kind``: "chars" or "phones". ``lm``: a ``LanguageModel`` (or None), fused with
    weight ``alpha`` and a bonus ``beta`` per LM unit; ``lm_unit``: "word", "token" or
    "auto" (words for characters, tokens for phones). ``hotwords``: words to favour (for a
    phone model, phones separated by spaces), ``hotword_weight`` per token. Pruning:
    ``token_min_log_prob``, ``top_k``, ``beam_prune`` (see the module's docstring).
    """

    def __init__(
        self,
        vocabulary: Sequence[str],
        tokenizer_kind: str = "chars",
        beam_width: int = 16,
        lm: LanguageModel | None = None,
        alpha: float = 0.5,
        beta: float = 1.0,
        lm_unit: str = "auto",
        hotwords: Iterable[str] = (),
        hotword_weight: float = 3.0,
        token_min_log_prob: float = -8.0,
        top_k: int = 16,
        beam_prune: float = 20.0,
        blank_id: int = 0,
    ) -> None:
        if tokenizer_kind not in KINDS:
            raise ValueError(f"tokenizer_kind must be one of {KINDS}, got {tokenizer_kind!r}")
        if int(beam_width) < 1:
            raise ValueError(f"beam_width must be at least 1, got {beam_width}")
        if lm_unit not in LM_UNITS:
            raise ValueError(f"lm_unit must be one of {LM_UNITS}, got {lm_unit!r}")
        if not 0 <= blank_id < len(vocabulary):
            raise ValueError(f"blank_id {blank_id} is not an id of the {len(vocabulary)}-symbol vocabulary")
        self.vocabulary = list(vocabulary)
        self.kind = tokenizer_kind
        self.beam_width = int(beam_width)
        self.lm = lm
        self.alpha, self.beta = float(alpha), float(beta)
        self.lm_unit = ("word" if tokenizer_kind == "chars" else "token") if lm_unit == "auto" else lm_unit
        self.token_min_log_prob = float(token_min_log_prob)
        self.top_k = max(1, int(top_k))
        self.beam_prune = float(beam_prune)
        self.blank_id = blank_id
        self.hotword_weight = float(hotword_weight)
        self.hotwords = {word for phrase in hotwords for word in self._spell(phrase)}
        self._hotword_prefixes = {word[:n] for word in self.hotwords for n in range(1, len(word) + 1)}

    def _spell(self, hotword: str) -> list[tuple[str, ...]]:
        """The words of a hotword as vocabulary tokens: characters, normalised as the character
        tokenizer's targets are ("San José!" -> "san", "josé"), or space-separated phones, words
        parted by ``|`` ("s a n | x o s e")."""
        if self.kind == "phones":
            words = [tuple(word.split()) for word in hotword.split(WORD_DELIMITER)]
        else:
            words = [tuple(word) for word in normalize_text(hotword).split()]
        symbols = set(self.vocabulary) - NOT_SPELLED - {WORD_DELIMITER}
        missing = sorted({token for word in words for token in word if token not in symbols})
        if missing:
            raise ValueError(f"hotword {hotword!r} has symbols the model's vocabulary lacks: {' '.join(missing)}")
        return [word for word in words if word]

    # -- public API ------------------------------------------------------------------------
    def decode(self, log_probs: np.ndarray | torch.Tensor, length: int | None = None) -> list[str]:
        """The best output for (T, V) log probabilities, of which the first ``length`` frames count."""
        return self.decode_beams(log_probs, length)[0].tokens

    def decode_batch(self, logits: torch.Tensor | np.ndarray, lengths: torch.Tensor | None = None) -> list[list[str]]:
        """``decode`` of each row of a model's (B, T, V) logits (log-softmaxed here); ``lengths``:
        valid frames per row (all frames when None), as ``greedy_decode`` takes them."""
        logits = torch.as_tensor(logits)
        if logits.dim() != 3 or logits.shape[-1] != len(self.vocabulary):
            raise ValueError(f"logits must be (B, T, {len(self.vocabulary)}), got {tuple(logits.shape)}")
        log_probs = torch.log_softmax(logits.detach().float().cpu(), dim=-1).numpy()  # (B, T, V)
        frames = [None] * len(log_probs) if lengths is None else [int(n) for n in torch.as_tensor(lengths).tolist()]
        return [self.decode(row, n) for row, n in zip(log_probs, frames)]

    def decode_beams(self, log_probs: np.ndarray | torch.Tensor, length: int | None = None) -> list[Hypothesis]:
        """Every prefix left in the beam at the end, finished (last word and ``</s>`` scored), best first."""
        if isinstance(log_probs, torch.Tensor):
            log_probs = log_probs.detach().cpu().numpy()
        log_probs = np.asarray(log_probs, dtype=np.float64)  # (T, V)
        if log_probs.ndim != 2 or log_probs.shape[1] != len(self.vocabulary):
            raise ValueError(f"log_probs must be (T, {len(self.vocabulary)}), got {log_probs.shape}")
        if length is not None:
            log_probs = log_probs[: int(length)]
        tree = _PrefixTree(self._start_context())
        # prefix node -> [ln P(its paths ending in a blank), ln P(those ending in its last token)]
        beams: dict[int, list[float]] = {_PrefixTree.ROOT: [0.0, NEG_INF]}
        for frame, candidates in zip(log_probs.tolist(), self._candidates(log_probs)):
            beams = self._prune(self._step(beams, frame, candidates, tree), tree)
        finished = [self._finish(tree, node, probs) for node, probs in beams.items()]
        return sorted(finished, key=lambda hypothesis: hypothesis.score, reverse=True)

    # -- one frame ---------------------------------------------------------------------------
    def _candidates(self, log_probs: np.ndarray) -> list[list[int]]:
        """Per frame, the non-blank tokens worth extending a prefix with, best first."""
        k = min(self.top_k + 1, log_probs.shape[1])  # + 1: the blank may be among them
        best = np.argsort(-log_probs, axis=1, kind="stable")[:, :k]  # (T, k)
        good = np.take_along_axis(log_probs, best, axis=1) >= self.token_min_log_prob  # (T, k)
        return [
            [token for token, ok in zip(row, keep) if ok and token != self.blank_id][: self.top_k]
            for row, keep in zip(best.tolist(), good.tolist())
        ]

    def _step(
        self, beams: dict[int, list[float]], frame: list[float], candidates: list[int], tree: _PrefixTree
    ) -> dict[int, list[float]]:
        """The prefixes after one more frame, from those before it (``frame``: ln P per token)."""
        blank = frame[self.blank_id]
        # every prefix of ``beams`` stays, by a blank or by its last token once more: one entry
        # each, written without a lookup; the extensions below may add to them ("a" + "b" = "ab")
        following: dict[int, list[float]] = {}
        for node, (p_blank, p_token) in beams.items():
            last = tree.tokens[node]
            stay = p_token + frame[last] if last is not None else NEG_INF  # the last token again, merged
            following[node] = [_log_add(p_blank, p_token) + blank, stay]  # or a blank
        # (the loops below are the hot path: plain dict and list operations, no helper calls)
        children = tree.children
        for node, (p_blank, p_token) in beams.items():
            total = _log_add(p_blank, p_token)
            last = tree.tokens[node]
            for token in candidates:
                child = children.get((node, token))
                if child is None:
                    child = tree.add(node, token, self._extend)
                # a repeat of the last token is a new symbol only after a blank
                log_prob = (p_blank if token == last else total) + frame[token]
                probs = following.get(child)
                if probs is None:
                    following[child] = [NEG_INF, log_prob]
                else:
                    probs[1] = _log_add(probs[1], log_prob)
        return following

    def _prune(self, beams: dict[int, list[float]], tree: _PrefixTree) -> dict[int, list[float]]:
        """The ``beam_width`` best prefixes, less those ``beam_prune`` below the best."""
        contexts = tree.contexts
        scored = [(_log_add(*probs) + contexts[node].rank, node) for node, probs in beams.items()]
        scored.sort(key=lambda item: item[0], reverse=True)
        floor = scored[0][0] - self.beam_prune
        return {node: beams[node] for score, node in scored[: self.beam_width] if score >= floor}

    # -- LM and hotwords -----------------------------------------------------------------------
    def _start_context(self) -> _Context:
        return _context(0.0, self.lm.start() if self.lm is not None else None)

    def _extend(self, context: _Context, token: int) -> _Context:
        """The context of a prefix one ``token`` longer."""
        symbol = self.vocabulary[token]
        if symbol in NOT_SPELLED:
            return context
        bonus, lm_state = context.bonus, context.lm_state
        if self.lm is not None and self.lm_unit == "token":
            log_prob, lm_state = self.lm.score(lm_state, symbol)
            bonus += self.alpha * log_prob + self.beta
        if symbol == WORD_DELIMITER:
            return self._complete_word(_context(bonus, lm_state, context.word, context.word_bonus))
        word = context.word + (symbol,)
        word_bonus = self.hotword_weight * len(word) if word in self._hotword_prefixes else 0.0
        return _context(bonus, lm_state, word, word_bonus)

    def _complete_word(self, context: _Context) -> _Context:
        """The word being spelled is complete: scored by a word LM, kept as a hotword or not."""
        if not context.word:
            return context
        bonus, lm_state = context.bonus, context.lm_state
        if self.lm is not None and self.lm_unit == "word":
            log_prob, lm_state = self.lm.score(lm_state, "".join(context.word))
            bonus += self.alpha * log_prob + self.beta
        if context.word in self.hotwords:
            bonus += context.word_bonus
        return _context(bonus, lm_state)

    def _finish(self, tree: _PrefixTree, node: int, probs: list[float]) -> Hypothesis:
        """The prefix as a whole output: its last word completed, the end of sentence scored."""
        context = self._complete_word(tree.contexts[node])
        score = context.bonus
        if self.lm is not None:
            score += self.alpha * self.lm.finish(context.lm_state)
        acoustic = _log_add(*probs)
        ids = tree.ids(node)
        return Hypothesis([self.vocabulary[i] for i in ids], acoustic + score, acoustic, ids)


class _PrefixTree:
    """Every prefix an utterance's search has made, as nodes of a tree of tokens: a prefix is
    one int (a dict key as cheap as any), however long, and its context is computed once."""

    ROOT = 0

    def __init__(self, root_context: _Context) -> None:
        self.parents: list[int] = [-1]
        self.tokens: list[int | None] = [None]  # the last token of each prefix (None: the empty one)
        self.contexts: list[_Context] = [root_context]
        self.children: dict[tuple[int, int], int] = {}  # (node, token) -> the node one token longer

    def add(self, node: int, token: int, extend: Callable[[_Context, int], _Context]) -> int:
        """A new node for prefix ``node`` + ``token``, its context computed by ``extend``."""
        child = self.children[(node, token)] = len(self.parents)
        self.parents.append(node)
        self.tokens.append(token)
        self.contexts.append(extend(self.contexts[node], token))
        return child

    def ids(self, node: int) -> tuple[int, ...]:
        """The tokens of prefix ``node``, first to last."""
        out = []
        while node != self.ROOT:
            out.append(self.tokens[node])
            node = self.parents[node]
        return tuple(reversed(out))


def build_decoder(
    vocabulary: Sequence[str],
    tokenizer_kind: str,
    beam_width: int = 16,
    lm_path: str | None = None,
    lm_alpha: float = 0.5,
    lm_beta: float = 1.0,
    lm_unit: str = "auto",
    hotwords: Iterable[str] = (),
    hotword_weight: float = 3.0,
    **options: Any,
) -> BeamSearchDecoder:
    """A decoder for a model's vocabulary, its LM (if any) read from ``lm_path``: what the
    command-line tools call. Raises FileNotFoundError or ValueError (LanguageModelError) naming the problem."""
    lm = load_language_model(lm_path) if lm_path else None
    return BeamSearchDecoder(
        vocabulary,
        tokenizer_kind,
        beam_width=beam_width,
        lm=lm,
        alpha=lm_alpha,
        beta=lm_beta,
        lm_unit=lm_unit,
        hotwords=hotwords,
        hotword_weight=hotword_weight,
        **options,
    )
