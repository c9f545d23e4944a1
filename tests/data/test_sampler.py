"""Batch sampler invariants over simulated DDP ranks, padding, and the mixing pools."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from unispeech.data.collate import Collator
from unispeech.data.sampler import (
    DurationBucketSampler,
    LabeledUnlabeledMixing,
    TemperatureSampling,
    language_probabilities,
    padding_fraction,
)


def cv_like_durations(n: int, seed: int = 0) -> np.ndarray:
    """Log-normal, mean ~5 s, clipped to CommonVoice's 0.5-15 s range."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mean=np.log(4.6), sigma=0.4, size=n), 0.5, 15.0)


def rank_batches(durations, world, epoch=0, **kwargs):
    samplers = [DurationBucketSampler(durations, num_replicas=world, rank=r, **kwargs) for r in range(world)]
    for s in samplers:
        s.set_epoch(epoch)
    return [list(s) for s in samplers], samplers


@pytest.mark.parametrize("world", [1, 2, 4])
@pytest.mark.parametrize("n", [997, 50, 7])
def test_every_utterance_once_equal_batch_counts_and_cap(world, n):
    durations = cv_like_durations(n, seed=n)
    per_rank, samplers = rank_batches(durations, world, epoch=3, max_batch_seconds=40.0, max_batch_size=12)
    counts = [len(b) for b in per_rank]
    assert len(set(counts)) == 1, counts  # same number of batches everywhere
    assert counts[0] == len(samplers[0])  # __len__ is honest
    used = Counter(i for batches in per_rank for batch in batches for i in batch)
    assert sorted(used) == list(range(n)) and set(used.values()) == {1}  # no loss, no repeat
    for batches in per_rank:
        for batch in batches:
            assert len(batch) <= 12
            assert len(batch) * durations[batch].max() <= 40.0 + 1e-9
    assert samplers[0].repeated_batches == 0


def test_fewer_utterances_than_ranks_repeats_and_says_so():
    per_rank, samplers = rank_batches(np.array([2.0, 3.0, 4.0]), 4, max_batch_seconds=100.0)
    assert [len(b) for b in per_rank] == [1, 1, 1, 1]
    assert samplers[0].repeated_batches == 1
    used = [i for b in per_rank for batch in b for i in batch]
    assert set(used) == {0, 1, 2} and len(used) == 4  # one utterance seen twice, none lost


def test_overlong_utterance_gets_its_own_batch():
    batches = list(DurationBucketSampler([1.0, 30.0, 1.0], max_batch_seconds=10.0))
    assert [1] in batches and sum(len(b) for b in batches) == 3


def test_epochs_reshuffle_deterministically():
    durations = cv_like_durations(500)
    sampler = DurationBucketSampler(durations, max_batch_seconds=60.0, seed=1)
    first = list(sampler)
    assert list(sampler) == first  # same epoch -> same batches
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    assert sorted(map(sorted, first)) != sorted(map(sorted, second))  # composition changes too
    sampler.set_epoch(0)
    assert list(sampler) == first
    other_seed = DurationBucketSampler(durations, max_batch_seconds=60.0, seed=2)
    assert list(other_seed) != first


def test_bucketed_padding_is_small_and_beats_random():
    durations = cv_like_durations(20_000, seed=5)
    assert 4.5 < durations.mean() < 5.5
    sampler = DurationBucketSampler(durations, max_batch_seconds=120.0)
    bucketed = padding_fraction(list(sampler), durations)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(durations))
    random_batches = [order[i : i + 16] for i in range(0, len(order), 16)]
    random_pad = padding_fraction(random_batches, durations)
    assert bucketed <= 0.05, bucketed
    assert random_pad > 0.3, random_pad
    # eval order (no shuffle): sorted, so padding is tiny
    assert padding_fraction(list(DurationBucketSampler(durations, 120.0, shuffle=False)), durations) < 0.01


def test_padding_fraction_definition():
    assert padding_fraction([[0, 1]], [1.0, 3.0]) == pytest.approx(1 - 4 / 6)
    assert padding_fraction([[0], [1]], [1.0, 3.0]) == 0.0


def test_language_temperature():
    p = language_probabilities([900, 90, 10], alpha=0.5)
    expected = np.sqrt([0.9, 0.09, 0.01]) / np.sqrt([0.9, 0.09, 0.01]).sum()
    np.testing.assert_allclose(p, expected)
    np.testing.assert_allclose(language_probabilities([900, 90, 10], 1.0), [0.9, 0.09, 0.01])
    np.testing.assert_allclose(language_probabilities([900, 90, 10], 0.0), [1 / 3] * 3)
    groups = [np.arange(0, 900), np.arange(900, 990), np.arange(990, 1000)]
    pool = TemperatureSampling(groups, alpha=0.5, seed=0)(epoch=0)
    counts = [np.isin(pool, g).sum() for g in groups]
    np.testing.assert_allclose(np.array(counts) / len(pool), expected, atol=2e-3)
    small = pool[pool >= 990]
    assert set(Counter(small.tolist()).values()) <= {len(small) // 10, len(small) // 10 + 1}  # balanced upsampling


def test_labeled_unlabeled_mixing_ratio_and_exact_coverage():
    labeled, unlabeled = np.arange(100), np.arange(100, 1100)
    mix = LabeledUnlabeledMixing(labeled, unlabeled, labeled_fraction=0.25, seed=0)
    pool = mix(epoch=0)
    n_lab = np.isin(pool, labeled).sum()
    assert len(pool) == 1000 + n_lab and n_lab / len(pool) == pytest.approx(0.25, abs=0.01)
    assert sorted(pool[pool >= 100].tolist()) == list(range(100, 1100))  # bigger side exactly once
    lab_counts = Counter(pool[pool < 100].tolist())
    assert set(lab_counts) == set(range(100)) and max(lab_counts.values()) - min(lab_counts.values()) <= 1
    everything = LabeledUnlabeledMixing(labeled, unlabeled, None)(0)
    assert sorted(everything.tolist()) == list(range(1100))
    # the sampler consumes the pool: each pooled draw is batched exactly once across ranks
    durations = cv_like_durations(1100)
    per_rank, _ = rank_batches(durations, 2, max_batch_seconds=60.0, index_source=mix)
    batched = Counter(i for b in per_rank for batch in b for i in batch)
    assert batched == Counter(pool.tolist())


def test_collator_contract():
    items = [
        {"id": "a", "input_values": np.ones(5, np.float32), "labels": [7, 8, 9]},
        {"id": "b", "input_values": np.full(3, 2.0, np.float32), "labels": None},
        {"id": "c", "input_values": np.full(4, 3.0, np.float32), "labels": [5]},
    ]
    batch = Collator()(items)
    assert batch["input_values"].shape == (3, 5) and batch["input_values"].dtype.is_floating_point
    assert batch["attention_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    assert batch["input_values"][1].tolist() == [2, 2, 2, 0, 0]
    assert batch["labels"].tolist() == [[7, 8, 9], [-100] * 3, [5, -100, -100]]
    assert batch["labeled"].tolist() == [True, False, True] and batch["ids"] == ["a", "b", "c"]
    assert "class_labels" not in batch
    unlabeled = Collator(pad_to_multiple_of=4)([{**items[1], "class_label": 2}])
    assert unlabeled["labels"].tolist() == [[-100]] and unlabeled["input_values"].shape == (1, 4)
    assert unlabeled["class_labels"].tolist() == [2]
