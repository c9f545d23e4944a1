"""`ReadOptions`: how every corpus reader validates and caches what it reads.

All readers (CommonVoice, `datasets`, folder, manifest, the paper's splits) take the same
options; they live in one object so the DataModule builds them once and a new reader gets
them without repeating five keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import datasets

from .corpus import SkipReport, cache_key, cached_table, validate


@dataclass(frozen=True)
class ReadOptions:
    """Duration limits and file check of `corpus.validate`, the Arrow cache folder (None: no
    cache) and the processes used for validation."""

    min_duration: float | None = None
    max_duration: float | None = None
    check: str = "header"
    cache_dir: Path | None = None
    num_proc: int | None = None

    @classmethod
    def of(cls, options: ReadOptions | None = None, **fields: Any) -> ReadOptions:
        """``options`` (default: the defaults) with ``fields`` replaced: lets the public
        loaders take either ``options=`` or the individual keywords."""
        return replace(options or cls(), **fields)

    def validate(
        self, table: datasets.Dataset, name: str, require_text: bool, skipped: dict[str, list[str]] | None = None
    ) -> tuple[datasets.Dataset, SkipReport]:
        """`corpus.validate` with these limits; ``skipped``: rows the reader already dropped."""
        return validate(
            table,
            name,
            require_text=require_text,
            min_duration=self.min_duration,
            max_duration=self.max_duration,
            check=self.check,
            num_proc=self.num_proc,
            skipped=skipped,
        )

    def cached(
        self, parts: tuple[object, ...], build: Callable[[], tuple[datasets.Dataset, SkipReport]]
    ) -> tuple[datasets.Dataset, SkipReport]:
        """`cached_table` keyed on ``parts`` plus the options that change the table's rows."""
        key = cache_key(*parts, self.min_duration, self.max_duration, self.check)
        return cached_table(self.cache_dir, key, build)
