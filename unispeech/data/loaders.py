"""DataLoaders of the DataModule: duration-bucketed batches, and a training loader that
resumes mid-epoch.

Lightning saves the state of a training loader that has ``state_dict``/``load_state_dict``
and, on resume, continues the batch count from where it stopped; a plain DataLoader would
instead start the epoch over and serve its first batches again. ``ResumableLoader`` wraps
the training loader: it counts the batches the training loop *consumed* (not the ones
Lightning pre-fetched; `unispeech.training.resumable.CountConsumedBatches` counts them),
and on resume skips that many index batches of the same, epoch-seeded batch sampler, so
the next batch is exactly the one the interrupted run would have seen. Skipping happens on
indices: no audio is decoded for the skipped batches.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from .collate import Collator
from .cpus import usable_cpus
from .dataset import SpeechDataset
from .sampler import DurationBucketSampler

logger = logging.getLogger("unispeech.data")
_said_capped: set[tuple[int, int]] = set()


def worker_count(requested: int) -> int:
    """``requested`` loader workers, at most one per CPU this process may use: more only
    compete for the same cores (and torch warns about each loader). Said once."""
    cpus = usable_cpus()
    if requested <= cpus:
        return requested
    if (requested, cpus) not in _said_capped:
        _said_capped.add((requested, cpus))
        logger.info(
            "data.num_workers=%d is more than the %d CPUs this process may use: using %d", requested, cpus, cpus
        )
    return cpus


@dataclass(frozen=True)
class LoaderOptions:
    """How a dataset is batched (at most ``max_batch_seconds`` of padded audio, see
    `DurationBucketSampler`) and loaded."""

    max_batch_seconds: float = 80.0
    max_batch_size: int | None = None
    bucket_width: float = 0.05
    num_workers: int = 2
    pin_memory: bool = True
    persistent_workers: bool = True
    seed: int = 0

    def loader(
        self,
        dataset: SpeechDataset,
        shuffle: bool,
        rank: int = 0,
        world_size: int = 1,
        index_source: Callable[[int], np.ndarray] | None = None,
    ) -> DataLoader:
        """The loader of this rank's share of ``dataset`` (``index_source``: the rows an
        epoch draws, default each once)."""
        sampler = DurationBucketSampler(
            dataset.durations,
            self.max_batch_seconds,
            self.max_batch_size,
            self.bucket_width,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=world_size,
            rank=rank,
            index_source=index_source,
        )
        workers = worker_count(self.num_workers)
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=Collator(),
            num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and workers > 0,
        )


class _SkipBatches(Sampler):
    def __init__(self, batch_sampler: Any, skip: int) -> None:
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(iter(self.batch_sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.skip)


class ResumableLoader:
    """A training DataLoader whose position in the epoch survives a checkpoint."""

    def __init__(self, loader: DataLoader) -> None:
        if loader.batch_sampler is None:
            raise TypeError("ResumableLoader needs a DataLoader built with a batch sampler")
        self.loader = loader
        self.consumed = 0
        self._epoch = 0
        self._skip = 0

    # Lightning calls set_epoch on these attributes
    @property
    def batch_sampler(self) -> Any:
        return self.loader.batch_sampler

    @property
    def sampler(self) -> Any:
        return self.loader.sampler

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        # A generator: the body runs at the first next(), after Lightning's set_epoch(), so
        # the saved position is only applied to the epoch it was saved in. (A checkpoint
        # written when max_steps ended an epoch early counts that epoch as done: continuing
        # from it starts the next epoch from its first batch, as Lightning's counters say.)
        epoch = int(getattr(self.loader.batch_sampler, "epoch", 0))
        skip = self._skip if epoch == self._epoch else 0
        self._skip, self._epoch, self.consumed = 0, epoch, skip
        yield from self.loader if skip == 0 else _skipping_loader(self.loader, skip)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._epoch = int(state.get("epoch", 0))
        self._skip = int(state.get("consumed", 0))


def _skipping_loader(loader: DataLoader, skip: int) -> DataLoader:
    workers = loader.num_workers
    return DataLoader(
        loader.dataset,
        batch_sampler=_SkipBatches(loader.batch_sampler, skip),
        num_workers=workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context if workers else None,
        prefetch_factor=loader.prefetch_factor if workers else None,
        persistent_workers=False,
    )
