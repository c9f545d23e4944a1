"""Duration-bucketed, DDP-aware batching, plus per-epoch index pools for data mixing.

`DurationBucketSampler` is a batch sampler in the fairseq `max_tokens` style: a batch holds
as many utterances as fit in `max_batch_seconds` of *padded* audio (batch size x longest
clip), which is what bounds memory. Utterances are grouped in geometric duration buckets
(each bucket spans a factor `1 + bucket_width`), shuffled inside their bucket every epoch,
and batches are formed bucket by bucket, so padding stays near `bucket_width / 2` while the
batch composition still changes every epoch.

DDP: every rank builds the same batch list from (seed, epoch) and keeps every
`num_replicas`-th batch. To give all ranks the same number of batches without dropping
or repeating utterances, the largest batches are split in two until the count divides
evenly. Only when that is impossible (fewer utterances than ranks) are batches repeated.

Note for Lightning: pass `Trainer(use_distributed_sampler=False)`; this sampler already
splits the data between ranks (the DataModule gives it the trainer's rank and world size).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

IndexSource = Callable[[int], np.ndarray]


class DurationBucketSampler(Sampler[list[int]]):
    """Batches of dataset indices whose padded audio stays under ``max_batch_seconds``.

    Args:
        durations: seconds per dataset index (after any cropping).
        max_batch_seconds: cap on batch size x longest duration in the batch. A single
            utterance longer than the cap forms a batch of its own.
        max_batch_size: optional cap on utterances per batch.
        bucket_width: relative width of a duration bucket (0.05 -> buckets span 5%).
        shuffle: shuffle inside buckets and the batch order each epoch (False for eval:
            batches in ascending duration, fixed).
        seed: base seed; the epoch's randomness is drawn from (seed, epoch).
        num_replicas, rank: DDP world size and this process's rank.
        index_source: optional ``epoch -> indices`` pool (mixing, language sampling);
            default: every index once.
    """

    def __init__(
        self,
        durations: Sequence[float] | np.ndarray,
        max_batch_seconds: float,
        max_batch_size: int | None = None,
        bucket_width: float = 0.05,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        index_source: IndexSource | None = None,
    ) -> None:
        if max_batch_seconds <= 0:
            raise ValueError("max_batch_seconds must be positive")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        if bucket_width <= 0:
            raise ValueError("bucket_width must be positive")
        self.durations = np.asarray(durations, dtype=np.float64)
        if len(self.durations) == 0:
            raise ValueError("cannot batch an empty dataset")
        self.max_batch_seconds = float(max_batch_seconds)
        self.max_batch_size = max_batch_size
        self.bucket_width = float(bucket_width)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.index_source = index_source
        self.epoch = 0
        # Lightning calls set_epoch on `dataloader.batch_sampler.sampler`, not on the batch
        # sampler itself: expose a tiny object that forwards the call to us.
        self.sampler = _EpochForwarder(self)
        self._cache: tuple[int, list[list[int]]] | None = None
        self.repeated_batches = 0  # > 0 only in the degenerate "fewer utterances than ranks" case

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- batch construction --------------------------------------------------------------
    def _bucket_of(self, durations: np.ndarray) -> np.ndarray:
        safe = np.maximum(durations, 1e-3)
        return np.floor(np.log(safe) / math.log1p(self.bucket_width)).astype(np.int64)

    def global_batches(self, epoch: int | None = None) -> list[list[int]]:
        """All batches of an epoch, before the split between ranks (identical on every rank)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        pool = np.arange(len(self.durations)) if self.index_source is None else np.asarray(self.index_source(epoch))
        pool_durations = self.durations[pool]
        buckets = self._bucket_of(pool_durations)
        if self.shuffle:
            # random order inside each bucket, buckets in ascending duration
            order = np.lexsort((rng.random(len(pool)), buckets))
        else:
            order = np.lexsort((pool, pool_durations))
        batches = self._fill(pool[order], pool_durations[order])
        if self.shuffle:
            rng.shuffle(batches)
        return self._make_divisible(batches)

    def _fill(self, indices: np.ndarray, durations: np.ndarray) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for index, duration in zip(indices.tolist(), durations.tolist()):
            new_longest = max(longest, duration)
            too_long = (len(current) + 1) * new_longest > self.max_batch_seconds
            too_many = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (too_long or too_many):
                batches.append(current)
                current, new_longest = [], duration
            current.append(index)
            longest = new_longest
        if current:
            batches.append(current)
        return batches

    def _make_divisible(self, batches: list[list[int]]) -> list[list[int]]:
        replicas = self.num_replicas
        self.repeated_batches = 0
        while len(batches) % replicas:
            sizes = [len(b) for b in batches]
            largest = int(np.argmax(sizes))
            if sizes[largest] < 2:
                break
            batch = batches[largest]
            half = len(batch) // 2
            batches[largest : largest + 1] = [batch[:half], batch[half:]]
        if len(batches) % replicas:
            # Degenerate: fewer utterances than ranks. Repeat batches so DDP does not hang.
            missing = replicas - len(batches) % replicas
            self.repeated_batches = missing
            batches = batches + [list(batches[i % len(batches)]) for i in range(missing)]
        return batches

    def _epoch_batches(self) -> list[list[int]]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self.global_batches(self.epoch))
        return self._cache[1]

    # -- Sampler API ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[list[int]]:
        batches = self._epoch_batches()
        yield from batches[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        return len(self._epoch_batches()) // self.num_replicas


class _EpochForwarder:
    """Stands in as `batch_sampler.sampler` so frameworks that set the epoch there reach us."""

    def __init__(self, owner: DurationBucketSampler) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)

    def __len__(self) -> int:
        return sum(len(b) for b in self.owner)


def padding_fraction(batches: Sequence[Sequence[int]], durations: Sequence[float] | np.ndarray) -> float:
    """Share of padded (wasted) samples: 1 - real audio / (batch size x longest), summed."""
    durations = np.asarray(durations, dtype=np.float64)
    real = padded = 0.0
    for batch in batches:
        d = durations[list(batch)]
        real += d.sum()
        padded += len(batch) * d.max()
    return 1.0 - real / padded if padded else 0.0


# -- per-epoch index pools -----------------------------------------------------------------
def _draw(indices: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` draws from ``indices``: whole shuffled passes, then a partial one, so no
    index repeats before every index has been used."""
    if count <= 0 or len(indices) == 0:
        return np.empty(0, dtype=np.int64)
    passes = [rng.permutation(indices) for _ in range(count // len(indices))]
    remainder = count % len(indices)
    if remainder:
        passes.append(rng.permutation(indices)[:remainder])
    return np.concatenate(passes).astype(np.int64)


def language_probabilities(counts: Sequence[int], alpha: float) -> np.ndarray:
    """p_l ∝ (n_l / N)^α: α=1 keeps natural frequencies, α→0 flattens to uniform."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = (counts / counts.sum()) ** alpha
    return weights / weights.sum()


class TemperatureSampling:
    """Index pool that re-balances languages with temperature α (XLSR / UniSpeech style).

    ``groups`` holds the dataset indices of each language. Each epoch draws about N
    utterances (N = all of them) with language l getting round(p_l · N), up-sampling small
    languages (repeats only after a full pass) and down-sampling big ones.
    """

    def __init__(
        self, groups: Sequence[Sequence[int]], alpha: float = 0.5, seed: int = 0, epoch_size: int | None = None
    ) -> None:
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups if len(g)]
        self.alpha = float(alpha)
        self.seed = int(seed)
        total = sum(len(g) for g in self.groups)
        self.epoch_size = int(epoch_size or total)
        self.probabilities = language_probabilities([len(g) for g in self.groups], self.alpha)

    def counts(self) -> np.ndarray:
        return np.maximum(np.round(self.probabilities * self.epoch_size).astype(np.int64), 1)

    def __call__(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch, 1])
        return np.concatenate([_draw(g, int(c), rng) for g, c in zip(self.groups, self.counts())])


class LabeledUnlabeledMixing:
    """Index pool mixing labeled and unlabeled utterances at a fixed ratio.

    ``labeled_fraction`` is the share of labeled utterances in each epoch. The larger side
    is used exactly once per epoch; the smaller side is sampled to match the ratio (whole
    shuffled passes before any repeat). ``None`` simply uses everything once.
    """

    def __init__(
        self, labeled: Sequence[int], unlabeled: Sequence[int], labeled_fraction: float | None = None, seed: int = 0
    ) -> None:
        if labeled_fraction is not None and not 0.0 < labeled_fraction < 1.0:
            raise ValueError("labeled_fraction must be in (0, 1)")
        self.labeled = np.asarray(labeled, dtype=np.int64)
        self.unlabeled = np.asarray(unlabeled, dtype=np.int64)
        self.labeled_fraction = labeled_fraction
        self.seed = int(seed)

    def counts(self) -> tuple[int, int]:
        n_lab, n_unl = len(self.labeled), len(self.unlabeled)
        f = self.labeled_fraction
        if f is None or n_lab == 0 or n_unl == 0:
            return n_lab, n_unl
        if n_lab / f >= n_unl / (1 - f):  # labeled side is the binding one: use it whole
            return n_lab, round(n_lab * (1 - f) / f)
        return round(n_unl * f / (1 - f)), n_unl

    def __call__(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch, 2])
        n_lab, n_unl = self.counts()
        return np.concatenate([_draw(self.labeled, n_lab, rng), _draw(self.unlabeled, n_unl, rng)])
