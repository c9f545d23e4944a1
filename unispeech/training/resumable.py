"""Mid-epoch resume with the data order restored.

Lightning saves the state of a training loader that has ``state_dict``/``load_state_dict``
and, on resume, continues the batch count from where it stopped; a plain DataLoader would
instead start the epoch over and serve its first batches again. ``ResumableLoader`` wraps
the data module's loader: it counts the batches the training loop *consumed* (not the ones
Lightning pre-fetched), and on resume skips that many index batches of the same, epoch-
seeded batch sampler, so the next batch is exactly the one the interrupted run would have
seen. Skipping happens on indices: no audio is decoded for the skipped batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Sampler


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


class CountConsumedBatches(L.Callback):
    """Tells the ResumableLoader that the training loop finished one more batch."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            loader.consumed += 1


def make_resumable(datamodule: L.LightningDataModule) -> L.LightningDataModule:
    """Wrap the data module's training loader in a ResumableLoader (idempotent)."""
    original = datamodule.train_dataloader
    if getattr(original, "_unispeech_resumable", False):
        return datamodule

    def train_dataloader() -> ResumableLoader:
        return ResumableLoader(original())

    train_dataloader._unispeech_resumable = True  # type: ignore[attr-defined]
    datamodule.train_dataloader = train_dataloader  # type: ignore[method-assign]
    return datamodule
