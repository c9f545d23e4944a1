"""Unit tests: greedy CTC decoding, error rates, LR schedules, Gumbel τ."""

import math

import pytest
import torch
from hydra.utils import instantiate

from unispeech.tasks.metrics import ErrorRates, greedy_decode, reference_tokens, tokens_to_text, words
from unispeech.tasks.pretraining import gumbel_temperature
from unispeech.tasks.schedules import (
    geometric_decay_per_step,
    linear_ramp_factor,
    polynomial,
    polynomial_decay_factor,
    tri_stage_factor,
)


@pytest.mark.parametrize(
    "hyp, ref, expected",
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("abc", "abc", 0), ("ab", "ba", 2), ("flaw", "lawn", 2)],
)
def test_per_is_the_edit_distance(hyp, ref, expected):
    # a character vocabulary without word delimiters: PER is the edit distance / len(ref)
    for a, b in ((hyp, ref), (ref, hyp)):
        scores = ErrorRates()
        scores.update([list(a)], [list(b)])
        assert scores.compute()["per"] * max(len(b), 1) == pytest.approx(expected)


VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b", "c"]


def test_greedy_decode_merges_repeats_drops_blanks_and_respects_lengths():
    # frames: a a _ a b b _ | then padding frames that would decode to "c"
    ids = [5, 5, 0, 5, 6, 6, 0, 7, 7]
    logits = torch.full((2, len(ids), 9), -5.0)
    logits[:, torch.arange(len(ids)), torch.tensor(ids)] = 5.0
    logits[1, 2:4, 8] = 9.0  # an id past the vocabulary
    assert greedy_decode(logits, None, VOCAB) == [list("aabc"), ["a", "<unk>", "b", "c"]]
    assert greedy_decode(logits, torch.tensor([7, 0]), VOCAB) == [list("aab"), []]


def test_reference_tokens_drop_padding():
    labels = torch.tensor([[5, 4, 6, -100], [7, 9, -100, -100]])
    assert reference_tokens(labels, VOCAB) == [list("a|b"), ["c", "<unk>"]]


def test_error_rates_per_cer_wer():
    scores = ErrorRates()
    # reference "ab|cd", hypothesis "ab|ce": one phone of 4, one word of 2, one char of 5 ("ab cd")
    scores.update([list("ab|ce")], [list("ab|cd")])
    rates = scores.compute()
    assert rates["per"] == pytest.approx(1 / 4)
    assert rates["wer"] == pytest.approx(1 / 2)
    assert rates["cer"] == pytest.approx(1 / 5)
    assert rates["utterances"] == 1
    # special tokens never count
    scores = ErrorRates()
    scores.update([["<unk>", "a", "<s>"]], [["a"]])
    assert scores.compute()["per"] == 0.0


def test_error_rates_sum_over_updates_and_reset():
    scores = ErrorRates(examples=2)
    scores.update([list("ab"), list("x")], [list("ab"), list("cd")])  # 0 of 2, 2 of 2
    scores.update([list("a|b")], [[]])  # an empty reference adds 2 errors, no length
    assert scores.compute() == {
        "utterances": 3,
        "per": pytest.approx(4 / 4),
        "cer": pytest.approx(5 / 4),
        "wer": pytest.approx(3 / 2),
    }
    assert scores.examples == [("a b", "a b"), ("x", "c d")]
    scores.reset()
    assert scores.examples == []
    scores.update([list("ab")], [[]])
    assert scores.compute() == {"utterances": 1, "per": 2.0, "cer": 2.0, "wer": 1.0}  # lengths of 0 count as 1


def test_words_and_text():
    assert words(["h", "i", "|", "|", "y", "o", "|"]) == ["hi", "yo"]
    assert tokens_to_text(["h", "i", "|", "y", "o"]) == "hi yo"
    assert tokens_to_text(["ə", "b", "|", "k"], token_joiner=" ") == "ə b | k"


def test_polynomial_schedule_warmup_peak_decay():
    assert polynomial_decay_factor(0, 10, 100) == pytest.approx(0.1)
    assert polynomial_decay_factor(9, 10, 100) == pytest.approx(1.0)
    assert polynomial_decay_factor(55, 10, 100) == pytest.approx(0.5)
    assert polynomial_decay_factor(100, 10, 100) == 0.0
    assert polynomial_decay_factor(200, 10, 100) == 0.0


def test_tri_stage_schedule_shape():
    total = 1000
    f = [tri_stage_factor(s, total) for s in range(total + 50)]
    assert f[0] == pytest.approx(0.01)
    assert all(a <= b for a, b in zip(f[:100], f[1:100]))  # warm-up rises
    assert f[100:500] == [1.0] * 400  # hold
    assert f[750] == pytest.approx(math.sqrt(0.05), rel=1e-3)  # exponential: half-way is the geometric mean
    assert f[1000] == pytest.approx(0.05)
    assert f[-1] == pytest.approx(0.05)  # stays at the floor
    with pytest.raises(ValueError, match="sum to 1"):
        tri_stage_factor(0, total, 0.2, 0.4, 0.5)


def test_the_configured_scheduler_drives_the_optimizer_lr():
    # what the task does with the task config's scheduler: a Hydra partial, completed with the run length
    factory = instantiate({"_target_": "unispeech.tasks.schedules.polynomial", "_partial_": True, "warmup_steps": 4})
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    scheduler = factory(optimizer, total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[3] == pytest.approx(2.0) and lrs[-1] < 0.2
    with pytest.raises(TypeError, match="warmup"):
        polynomial(optimizer, total_steps=10, warmup=3)


def test_gumbel_temperature_anneals_to_floor():
    assert gumbel_temperature(0, 2.0, 0.5, 0.999995) == 2.0
    assert gumbel_temperature(100_000, 2.0, 0.5, 0.999995) == pytest.approx(2.0 * 0.999995**100_000)
    assert gumbel_temperature(10_000_000, 2.0, 0.5, 0.999995) == 0.5


def test_warmup_fraction_scales_with_the_run_and_an_overlong_warmup_warns():
    param = torch.nn.Parameter(torch.zeros(1))
    for total in (100, 5000):
        optimizer = torch.optim.SGD([param], lr=1.0)
        scheduler = polynomial(optimizer, total_steps=total, warmup_fraction=0.1)
        assert scheduler.lr_lambdas[0](total // 10 - 1) == pytest.approx(1.0)  # peak at 10 % of any run
        assert scheduler.lr_lambdas[0](total // 20 - 1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not both"):
        polynomial(optimizer, total_steps=10, warmup_steps=2, warmup_fraction=0.1)
    with pytest.warns(UserWarning, match="never reaches its peak"):
        polynomial(optimizer, total_steps=20, warmup_steps=25_000)


def test_run_relative_gumbel_anneal_and_ctc_ramp():
    decay = geometric_decay_per_step(2.0, 0.5, 500)
    assert gumbel_temperature(500, 2.0, 0.5, decay) == pytest.approx(0.5)
    assert gumbel_temperature(250, 2.0, 0.5, decay) == pytest.approx(1.0)
    # the paper's per-update decay barely moves in a 500-update run: why the demo anneals by fraction
    assert gumbel_temperature(500, 2.0, 0.5, 0.999995) > 1.99
    assert [linear_ramp_factor(s, 100, 0.3, 0.6) for s in (0, 30, 45, 60, 99)] == pytest.approx([0, 0, 0.5, 1, 1])
