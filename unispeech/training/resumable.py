"""Mid-epoch resume: the Lightning side of `unispeech.data.loaders.ResumableLoader`.

The DataModule's training loader is a ``ResumableLoader``: Lightning saves its position in
the epoch with the checkpoint and, on resume, the loader skips the batches already trained
on. It can only store how many batches the training loop *consumed* (not the ones Lightning
pre-fetched) if something tells it when a batch is done: ``CountConsumedBatches``.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from unispeech.data.loaders import ResumableLoader


class CountConsumedBatches(L.Callback):
    """Tells the ResumableLoader that the training loop finished one more batch."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            loader.consumed += 1
