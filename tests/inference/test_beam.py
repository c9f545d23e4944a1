"""The CTC prefix beam search of unispeech.inference.beam, on hand-made and random log probabilities."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from unispeech.inference.beam import BeamSearchDecoder, build_decoder
from unispeech.inference.ngram import UnigramModel, estimate_kneser_ney
from unispeech.tasks.metrics import greedy_decode

CHARS = ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b", "c", "t"]
PHONES = ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "k", "s", "t", "tʃ"]
# no pruning at all: every prefix of a tiny example is kept
EXHAUSTIVE = {"token_min_log_prob": -1e9, "top_k": 1000, "beam_prune": 1e9}


def frames(vocabulary, *rows, floor=1e-4):
    """(T, V) log probabilities from rows of {symbol: probability}; the blank "<pad>" takes
    what is left, every other symbol ``floor``."""
    out = np.full((len(rows), len(vocabulary)), floor)
    for t, row in enumerate(rows):
        for symbol, p in row.items():
            out[t, vocabulary.index(symbol)] = p
        blank = 1.0 - out[t].sum() + out[t, 0]
        assert blank > 0, row
        out[t, 0] = blank
    return np.log(out / out.sum(axis=1, keepdims=True))


def path_sums(log_probs):
    """ln P of every output, by enumerating all V^T frame paths (collapse repeats, drop blanks)."""
    steps, size = log_probs.shape
    found: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(size), repeat=steps):
        output = tuple(token for token, _ in itertools.groupby(path) if token != 0)
        found[output] = np.logaddexp(found.get(output, -np.inf), sum(log_probs[t, i] for t, i in enumerate(path)))
    return found


def test_prefix_probabilities_are_the_sums_over_all_paths():
    rng = np.random.default_rng(1)
    vocabulary = ["<pad>", "|", "a", "b"]
    for steps in (1, 3, 5):
        log_probs = torch.log_softmax(torch.tensor(rng.normal(size=(steps, 4))), -1).numpy()
        exact = path_sums(log_probs)
        decoder = BeamSearchDecoder(vocabulary, "chars", beam_width=10_000, beta=0.0, **EXHAUSTIVE)
        hypotheses = decoder.decode_beams(log_probs)
        assert {h.ids for h in hypotheses} == set(exact)  # every possible output, once
        for hypothesis in hypotheses:
            assert hypothesis.acoustic == pytest.approx(exact[hypothesis.ids], abs=1e-9)
        assert hypotheses[0].ids == max(exact, key=exact.get)  # and the best is the most likely output
        assert math.fsum(math.exp(v) for v in exact.values()) == pytest.approx(1.0)


def test_the_beam_finds_the_output_whose_paths_add_up():
    # two frames of P(blank) = 0.6, P(a) = 0.4: greedy reads "_ _" (0.36) and outputs nothing,
    # but "a" has three paths, "a a", "a _", "_ a": 0.16 + 0.24 + 0.24 = 0.64
    log_probs = frames(CHARS, {"a": 0.4}, {"a": 0.4}, floor=1e-12)
    assert greedy_decode(torch.tensor(log_probs)[None], None, CHARS) == [[]]
    best = BeamSearchDecoder(CHARS, "chars", beam_width=4).decode_beams(log_probs)[0]
    assert best.tokens == ["a"] and math.exp(best.acoustic) == pytest.approx(0.64)
    # and in a longer word: greedy's "cat" is less likely than "ca" whose t is split by blanks
    log_probs = frames(CHARS, {"c": 0.9}, {"a": 0.9}, {"t": 0.35}, {"t": 0.35}, {"t": 0.35})
    greedy = greedy_decode(torch.tensor(log_probs)[None], None, CHARS)[0]
    beam = BeamSearchDecoder(CHARS, "chars", beam_width=8).decode(log_probs)
    assert greedy == ["c", "a"] and beam == ["c", "a", "t"]
    exact = path_sums(log_probs[:, [0, 5, 7, 8]])  # blank, a, c, t: the floor symbols do not matter here
    assert exact[(2, 1, 3)] > exact[(2, 1)]


def confident_logits(rng, batch, steps, size, confidence=0.95):
    """Random (B, T, V) logits whose every frame gives its (random) best token ``confidence``, as
    a trained CTC model's frames do; on flat ones a one-prefix beam still sums paths, and may
    keep a prefix whose paths add up to more than the best single path's (see the test above)."""
    best = rng.integers(0, size, size=(batch, steps))
    probs = rng.dirichlet(np.ones(size - 1), size=(batch, steps)) * (1 - confidence)
    out = np.zeros((batch, steps, size))
    for b, t in np.ndindex(batch, steps):
        out[b, t] = np.insert(probs[b, t], 0, 0.0)[np.argsort(np.argsort(np.arange(size) != best[b, t]))]
        out[b, t, best[b, t]] = confidence
    return torch.tensor(np.log(out + 1e-12), dtype=torch.float32)


def test_beam_width_one_is_greedy_on_random_logits():
    rng = np.random.default_rng(0)
    logits = confident_logits(rng, batch=64, steps=40, size=len(CHARS))
    lengths = torch.tensor(rng.integers(1, 41, size=64))
    greedy = greedy_decode(logits, lengths, CHARS)
    beam = BeamSearchDecoder(CHARS, "chars", beam_width=1).decode_batch(logits, lengths)
    assert beam == greedy
    assert sum(map(len, greedy)) > 64 * 10  # real outputs, specials and delimiters among them
    assert {"<s>", "|", "<unk>"} <= {symbol for row in greedy for symbol in row}


def test_a_wider_beam_is_never_less_likely_than_greedy_on_peaky_logits():
    rng = np.random.default_rng(3)
    logits = confident_logits(rng, batch=16, steps=30, size=len(PHONES), confidence=0.7)
    decoder = BeamSearchDecoder(PHONES, "phones", beam_width=16)
    for row in torch.log_softmax(logits, -1).numpy():
        greedy = greedy_decode(torch.tensor(row)[None], None, PHONES)[0]
        hypotheses = decoder.decode_beams(row)
        greedy_hypothesis = next((h for h in hypotheses if h.tokens == greedy), None)
        if greedy_hypothesis is not None:  # still in the beam: ranked below (or as) the best
            assert hypotheses[0].acoustic >= greedy_hypothesis.acoustic - 1e-9


def cat_or_cab(t_prob=0.48, b_prob=0.42):
    """'c a t' against 'c a b': acoustically a near tie that greedy reads as 'cat'."""
    return frames(CHARS, {"c": 0.95}, {"a": 0.95}, {"t": t_prob, "b": b_prob})


def test_a_word_lm_that_prefers_a_word_flips_a_near_tie():
    log_probs = cat_or_cab()
    assert BeamSearchDecoder(CHARS, "chars", beam_width=8).decode(log_probs) == ["c", "a", "t"]
    lm = estimate_kneser_ney([["cab"]] * 20 + [["cat"]], order=2)
    with_lm = BeamSearchDecoder(CHARS, "chars", beam_width=8, lm=lm, alpha=0.5, beta=0.0)
    assert with_lm.decode(log_probs) == ["c", "a", "b"]
    # a clear acoustic winner is kept: the LM only weighs in where the acoustics hesitate
    assert with_lm.decode(cat_or_cab(t_prob=0.85, b_prob=0.05)) == ["c", "a", "t"]
    # alpha = 0: the LM does not count
    assert BeamSearchDecoder(CHARS, "chars", beam_width=8, lm=lm, alpha=0.0).decode(log_probs) == ["c", "a", "t"]


def test_the_word_lm_scores_words_in_context_at_the_delimiter_and_the_end():
    # "a cat" / "a cab": after "a", the bigram LM prefers "cat"; alone, "cab"
    log_probs = frames(CHARS, {"a": 0.95}, {"|": 0.95}, {"c": 0.95}, {"a": 0.95}, {"t": 0.42, "b": 0.48})
    sentences = [["a", "cat"]] * 10 + [["cab"]] * 30
    lm = estimate_kneser_ney(sentences, order=2)
    decoder = BeamSearchDecoder(CHARS, "chars", beam_width=8, lm=lm, alpha=1.0, beta=0.0)
    assert BeamSearchDecoder(CHARS, "chars", beam_width=8).decode(log_probs) == ["a", "|", "c", "a", "b"]
    assert decoder.decode(log_probs) == ["a", "|", "c", "a", "t"]
    assert decoder.decode(log_probs[2:]) == ["c", "a", "b"]
    # the end of the sentence counts too: "cab" mostly begins sentences and never ends one
    lm = estimate_kneser_ney([["cab", "taxi"]] * 20 + [["cat"]] * 3, order=2)
    log_probs = cat_or_cab(t_prob=0.42, b_prob=0.48)
    decoder = BeamSearchDecoder(CHARS, "chars", beam_width=8, lm=lm, alpha=1.0, beta=0.0)
    assert decoder.decode(log_probs) == ["c", "a", "t"]
    followed = np.concatenate([log_probs, frames(CHARS, {"|": 0.95}, {"t": 0.95}, {"a": 0.95})])
    assert decoder.decode(followed) == list("cab|ta")  # not at the end: "cab" is the likelier first word


def test_a_unigram_list_favours_listed_words():
    log_probs = cat_or_cab()
    words = UnigramModel.from_words(["cab", "taxi"], oov_penalty=-5.0)
    decoder = BeamSearchDecoder(CHARS, "chars", beam_width=8, lm=words, alpha=0.5, beta=0.0)
    assert decoder.decode(log_probs) == ["c", "a", "b"]
    listed_cat = UnigramModel.from_words(["cat"], oov_penalty=-5.0)
    assert BeamSearchDecoder(CHARS, "chars", beam_width=8, lm=listed_cat).decode(log_probs) == ["c", "a", "t"]


def test_hotwords_win_near_ties_and_only_complete_ones_keep_their_bonus():
    log_probs = cat_or_cab()
    assert BeamSearchDecoder(CHARS, "chars", hotwords=["cab"], hotword_weight=1.0).decode(log_probs) == ["c", "a", "b"]
    assert BeamSearchDecoder(CHARS, "chars", hotwords=["cat"], hotword_weight=1.0).decode(log_probs) == ["c", "a", "t"]
    # a partial bonus lasts only while the word may still become the hotword: "cab" begins "cabt"
    # (+3 while spelled) but ends as "cab", so finished it has no bonus, like "cat"
    decoder = BeamSearchDecoder(CHARS, "chars", beam_width=8, hotwords=["cabt"], hotword_weight=1.0)
    hypotheses = {tuple(h.tokens): h for h in decoder.decode_beams(log_probs)}
    for word in (("c", "a", "t"), ("c", "a", "b")):
        assert hypotheses[word].score == pytest.approx(hypotheses[word].acoustic)
    assert decoder.decode(log_probs) == ["c", "a", "t"]
    # a completed hotword keeps its bonus: weight x its 3 tokens
    complete = BeamSearchDecoder(CHARS, "chars", hotwords=["cab"], hotword_weight=1.0).decode_beams(log_probs)[0]
    assert complete.score == pytest.approx(complete.acoustic + 3.0)


def test_hotwords_are_spelled_as_the_tokenizer_spells_words():
    decoder = BeamSearchDecoder(CHARS, "chars", hotwords=["¡Cab, Tab!", "  "])
    assert decoder.hotwords == {("c", "a", "b"), ("t", "a", "b")}
    upper_case = BeamSearchDecoder(CHARS, "chars", hotwords=["CAB"], hotword_weight=1.0)
    assert upper_case.decode(cat_or_cab()) == ["c", "a", "b"]
    phones = BeamSearchDecoder(PHONES, "phones", hotwords=["t a tʃ | k a s", "s a"])
    assert phones.hotwords == {("t", "a", "tʃ"), ("k", "a", "s"), ("s", "a")}


def test_phone_models_use_a_phone_lm_and_phone_hotwords():
    # "t a k" against "t a tʃ", near tie for k; a phone 3-gram trained on "t a tʃ" flips it
    log_probs = frames(PHONES, {"t": 0.95}, {"a": 0.95}, {"k": 0.46, "tʃ": 0.44})
    assert BeamSearchDecoder(PHONES, "phones").decode(log_probs) == ["t", "a", "k"]
    lm = estimate_kneser_ney([["t", "a", "tʃ"]] * 10 + [["s", "a", "k"]] * 10, order=3)
    decoder = BeamSearchDecoder(PHONES, "phones", lm=lm, alpha=0.5, beta=0.0)
    assert decoder.lm_unit == "token"
    assert decoder.decode(log_probs) == ["t", "a", "tʃ"]
    hot = BeamSearchDecoder(PHONES, "phones", hotwords=["t a tʃ"], hotword_weight=0.5)
    assert hot.decode(log_probs) == ["t", "a", "tʃ"]


def test_decode_batch_reads_logits_and_lengths_as_greedy_decode_does():
    rng = np.random.default_rng(5)
    logits = confident_logits(rng, batch=3, steps=12, size=len(CHARS)) * 3.0  # unnormalised: log-softmaxed
    lengths = torch.tensor([12, 5, 0])
    decoded = BeamSearchDecoder(CHARS, "chars", beam_width=1).decode_batch(logits, lengths)
    assert decoded == greedy_decode(logits, lengths, CHARS) and decoded[2] == []
    assert len(BeamSearchDecoder(CHARS, "chars").decode_batch(logits)) == 3
    with pytest.raises(ValueError, match=r"logits must be \(B, T, 9\)"):
        BeamSearchDecoder(CHARS, "chars").decode_batch(logits[..., :5])


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="hotword 'cax' has symbols the model's vocabulary lacks: x"):
        BeamSearchDecoder(CHARS, "chars", hotwords=["cax"])
    with pytest.raises(ValueError, match="hotword 'a b' has symbols the model's vocabulary lacks: a b"):
        BeamSearchDecoder(PHONES[:5], "phones", hotwords=["a b"])
    with pytest.raises(ValueError, match="beam_width must be at least 1"):
        BeamSearchDecoder(CHARS, "chars", beam_width=0)
    with pytest.raises(ValueError, match="lm_unit must be one of"):
        BeamSearchDecoder(CHARS, "chars", lm_unit="sentence")
    with pytest.raises(FileNotFoundError, match="gone.arpa does not exist"):
        build_decoder(CHARS, "chars", lm_path="gone.arpa")
