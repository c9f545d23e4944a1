"""`UniSpeechDataModule`: corpora -> validated, labelled tables -> bucketed DataLoaders.

Built by Hydra from plain arguments (`_target_: unispeech.data.UniSpeechDataModule`).
Modes:
  - "ctc": labelled train/val/test splits; targets are phones (`label_type="phones"`) or
    characters (`"chars"`); exposes `tokenizer` and `vocab_size` after `setup()`.
  - "pretraining": labelled (phone) train splits mixed with unlabeled audio
    (`unlabeled_splits` of the same corpus, or `unlabeled_corpus`), at `labeled_fraction`.
  - "classification": one label per utterance from `label_column`; exposes `num_labels`,
    `label_names` and `id2label`.
`paper_splits` swaps train/dev/test of a CommonVoice locale for the UniSpeech paper's
1-hour lists (`paper_splits.py`); `phone_labels="paper"` then takes the paper's phones as
targets instead of our espeak phonemization.
With several locales, `language_alpha` re-balances languages each epoch (p_l ∝ (n_l/N)^α).

The DataModule only wires the pieces: `sources` reads each split (one reader per source
kind, `ReadOptions` built once here), `targets` adds CTC targets or class ids and the
tokenizer, `pools` draws each epoch's rows, `loaders` batches them; the training loader is
a `ResumableLoader`, so a resumed run continues mid-epoch with the next batch.

DDP: batches are split between ranks by our sampler, so the Trainer must run with
`use_distributed_sampler=False`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import datasets
import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from .audio import SAMPLING_RATE
from .commonvoice import build_finetune_subset
from .corpus import SEGMENT_COLUMNS, SkipReport, default_cache_dir
from .dataset import SpeechDataset
from .loaders import LoaderOptions, ResumableLoader
from .paper_splits import PAPER_SPLITS, PHONE_LABELS, languages, paper_language, require_language
from .pools import EpochPool
from .read_options import ReadOptions
from .sources import SplitRequest, concatenate, detect_source, read_source
from .targets import CTCTargets, class_ids, class_names, load_or_build_tokenizer
from .tokenizer import CTCTokenizer

logger = logging.getLogger("unispeech.data")

MODES = ("ctc", "pretraining", "classification")
LABEL_TYPES = ("phones", "chars", "none")
STAGES = ("train", "val", "test")


def _as_list(value: Sequence[str] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _check_choices(mode: str, label_type: str, phone_labels: str) -> None:
    """Fail at construction, before any data is read, on a combination that cannot train."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if label_type not in LABEL_TYPES:
        raise ValueError(f"label_type must be one of {LABEL_TYPES}, got {label_type!r}")
    if mode == "pretraining" and label_type == "chars":
        raise ValueError("UniSpeech pretraining uses phone targets: label_type must be 'phones' or 'none'")
    if mode == "ctc" and label_type == "none":
        raise ValueError("CTC fine-tuning needs labels: label_type must be 'phones' or 'chars'")
    if phone_labels not in PHONE_LABELS:
        raise ValueError(f"phone_labels must be one of {PHONE_LABELS}, got {phone_labels!r}")


def _audio_columns(table: datasets.Dataset) -> datasets.Dataset:
    """Where each utterance's audio is: path, id, duration and (whole files: 0, -1) segment."""
    table = table.select_columns([c for c in ("path", "id", "duration", *SEGMENT_COLUMNS) if c in table.column_names])
    for column, value in zip(SEGMENT_COLUMNS, (0.0, -1.0)):
        if column not in table.column_names:
            table = table.add_column(column, [value] * len(table))
    return table


class UniSpeechDataModule(L.LightningDataModule):
    """See the module docstring and docs/data.md for every argument."""

    MODES: ClassVar[tuple[str, ...]] = MODES  # what `mode` may be (the task side checks it matches)

    # the parameters stay grouped as their comments say
    # fmt: off
    def __init__(
        self,
        # what to read
        corpus: str = "demo", locales: Sequence[str] | str | None = None, source: str = "auto",
        mode: str = "ctc", label_type: str = "phones",
        train_splits: Sequence[str] | str = ("train",), val_splits: Sequence[str] | str = ("dev",),
        test_splits: Sequence[str] | str = ("test",),
        unlabeled_corpus: str | None = None, unlabeled_splits: Sequence[str] | str = ("other",),
        # which rows: labeled/unlabeled mix, languages, the fine-tuning hour, the paper's splits
        labeled_fraction: float | None = None, language_alpha: float | None = None,
        train_hours: float | None = None, subset_seed: int = 0,
        paper_splits: bool | str | None = None, phone_labels: str = "phonemizer",
        # columns and targets
        audio_column: str = "audio", text_column: str = "sentence", label_column: str = "label",
        speaker_column: str | None = None, hf_config: str | None = None, word_boundary: bool = True,
        # clips, batches, caches and workers
        min_duration: float | None = 0.5, max_duration: float | None = 20.0,
        max_batch_seconds: float = 80.0, max_batch_size: int | None = None, bucket_width: float = 0.05,
        max_sample_seconds: float | None = None, do_normalize: bool = True,
        check: str = "header", tokenizer_dir: str | None = None, cache_dir: str | None = None,
        num_workers: int = 2, num_proc: int = 1, pin_memory: bool = True, persistent_workers: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_choices(mode, label_type, phone_labels)
        self.corpus, self.locales, self.mode = str(corpus), _as_list(locales), mode
        self.source = detect_source(self.corpus) if source == "auto" else source
        self.label_type = "none" if mode == "classification" else label_type
        self.train_splits, self.val_splits, self.test_splits = map(_as_list, (train_splits, val_splits, test_splits))
        self.unlabeled_corpus = unlabeled_corpus
        self.unlabeled_splits = _as_list(unlabeled_splits) if mode == "pretraining" else []
        self.labeled_fraction, self.language_alpha = labeled_fraction, language_alpha
        self.train_hours, self.subset_seed, self.phone_labels = train_hours, subset_seed, phone_labels
        self._request = SplitRequest(self.corpus, "", locales=tuple(self.locales), audio_column=audio_column,
                                    text_column=text_column, speaker_column=speaker_column,
                                    label_column=label_column if mode == "classification" else None,
                                    hf_config=hf_config, phone_labels=phone_labels)
        self.label_column, self.word_boundary, self.tokenizer_dir = label_column, word_boundary, tokenizer_dir
        self.max_sample_seconds, self.do_normalize, self.seed = max_sample_seconds, do_normalize, seed
        cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir() / "prepared"
        self.read_options = ReadOptions(min_duration, max_duration, check, cache, num_proc)
        self.loader_options = LoaderOptions(max_batch_seconds, max_batch_size, bucket_width, num_workers,
                                            pin_memory, persistent_workers, seed)
        self.paper_locale = self._use_paper_splits(paper_splits)
        self._reset()
    # fmt: on

    def _reset(self) -> None:
        """What `prepare_data`/`setup` fill in."""
        self.tokenizer: CTCTokenizer | None = None
        self.label_names: list[str] = []
        self.tables: dict[str, datasets.Dataset] = {}
        self.datasets: dict[str, SpeechDataset] = {}
        self.skipped = SkipReport(corpus=self.corpus)
        self.summary: dict[str, dict[str, float]] = {}
        self._pool: EpochPool | None = None
        self._prepared = False

    # -- public properties -------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        if self.tokenizer is None:
            raise RuntimeError("call setup() first: the vocabulary is built from the training split")
        return len(self.tokenizer)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    def splits(self, stage: str) -> list[str]:
        """The splits of a stage: "train", "val" (or "validate"), "test"; [] for others."""
        return {
            "train": self.train_splits,
            "val": self.val_splits,
            "validate": self.val_splits,
            "test": self.test_splits,
        }.get(stage, [])

    def has_split(self, split: str) -> bool:
        return self.splits(split) != []

    # -- paper splits ------------------------------------------------------------------
    def _use_paper_splits(self, paper_splits: bool | str | None) -> str | None:
        """Swap train/dev/test for the paper's lists when they apply; their locale, or None."""
        locale = self._resolve_paper_splits(paper_splits)
        if locale:
            # The paper's lists replace the configured splits (an empty one stays empty) and
            # the seeded `train_hours` subset, which would only cut the paper's hour down.
            self.train_splits, self.val_splits, self.test_splits = (
                [name] if splits else []
                for name, splits in zip(PAPER_SPLITS, (self.train_splits, self.val_splits, self.test_splits))
            )
            self.train_hours = None
        if self.phone_labels == "paper" and (not locale or self.label_type != "phones"):
            raise ValueError(
                "phone_labels='paper' needs label_type='phones' and paper_splits on, for a "
                f"CommonVoice locale of: {', '.join(languages())}"
            )
        return locale

    def _resolve_paper_splits(self, paper_splits: bool | str | None) -> str | None:
        """The locale whose paper splits replace train/dev/test, or None.

        None/False: off. True or "1h": on, an error if the locale has none. "auto" (what the
        recipes use): on for the paper's languages, the configured splits for the others.
        """
        choice = "1h" if paper_splits is True else str(paper_splits or "off").lower()
        if choice in ("off", "none", "false"):
            return None
        if choice not in ("1h", "true", "auto"):
            raise ValueError(f"paper_splits must be null/false, true/'1h' or 'auto', got {paper_splits!r}")
        # One CommonVoice locale: the one in `locales`, or the name of the locale folder.
        locale = self.locales[0] if len(self.locales) == 1 else ("" if self.locales else Path(self.corpus).name)
        if self.source == "commonvoice" and paper_language(locale):
            return locale
        if choice == "auto":
            logger.info("no UniSpeech paper split for %r: using the configured splits", locale or self.corpus)
            return None
        if self.source != "commonvoice" or len(self.locales) > 1:
            raise ValueError(
                f"paper_splits needs one CommonVoice locale (corpus={self.corpus!r}, "
                f"source={self.source!r}, locales={self.locales}); "
                f"paper splits exist for: {', '.join(languages())}"
            )
        require_language(locale)  # raises, listing the languages that have paper splits
        return None

    # -- corpus reading ----------------------------------------------------------------
    def _read(self, corpus: str, source: str, splits: list[str], labeled: bool) -> datasets.Dataset | None:
        """Splits of one corpus (all selected locales), validated, cached and concatenated."""
        options = self.read_options
        if not labeled and self.max_sample_seconds:
            # Unlabeled audio and classification clips may be longer than labelled ones.
            options = replace(options, max_duration=None)
        tables = []
        for split in splits:
            request = replace(self._request, corpus=corpus, split=split, labeled=labeled)
            kind = source
            if self.paper_locale and split in PAPER_SPLITS:
                kind, request = "paper", replace(request, locales=(self.paper_locale,))
            table, report = read_source(kind, request, options)
            self.skipped.merge(report)
            tables.append(table)
        return concatenate(tables) if tables else None

    def _targets(self) -> CTCTargets:
        return CTCTargets(
            self.label_type,
            self.phone_labels,
            self.word_boundary,
            self.locales[0] if self.locales else "en",
            self.read_options.num_proc,
            self.read_options.cache_dir,
        )

    # -- Lightning hooks ---------------------------------------------------------------
    def prepare_data(self) -> None:
        """Runs on one process: build every cache so the other ranks only read it."""
        self._prepare_tables()

    def _prepare_tables(self) -> None:
        if self._prepared:
            return
        labeled = self.label_type != "none"
        for stage in STAGES:
            table = self._read(self.corpus, self.source, self.splits(stage), labeled)
            if table is None:
                continue
            if labeled:
                table, report = self._targets()(table, f"{self.corpus}/{stage}")
                self.skipped.merge(report)
            self.tables[stage] = table
        if "train" not in self.tables:
            raise ValueError("no training split configured (train_splits is empty)")
        if self.train_hours:
            self.tables["train"] = self._hour_subset(self.tables["train"])
        if self.unlabeled_splits:
            corpus = self.unlabeled_corpus or self.corpus
            source = detect_source(corpus) if self.unlabeled_corpus else self.source
            self.tables["unlabeled"] = self._read(corpus, source, self.unlabeled_splits, labeled=False)
        self._prepared = True

    def _hour_subset(self, train: datasets.Dataset) -> datasets.Dataset:
        """`train_hours` of training audio, from speakers that val/test do not have."""
        exclude = {s for stage in ("val", "test") if stage in self.tables for s in self.tables[stage]["speaker"]}
        exclude.discard("")
        return build_finetune_subset(train, self.train_hours, self.subset_seed, exclude)

    def setup(self, stage: str | None = None) -> None:
        self._prepare_tables()
        if self.tokenizer is None and self.label_type != "none":
            self.tokenizer = load_or_build_tokenizer(
                self.tables["train"],
                self.label_type,
                self.read_options.cache_dir,
                directory=self.tokenizer_dir,
                locales=self.locales,
                paper_locale=self.paper_locale if self.phone_labels == "paper" else None,
            )
        if self.mode == "classification" and not self.label_names:
            self.label_names = sorted(set(class_names(self.tables["train"], self.label_column)))
        if not self.datasets:
            self._build_datasets()
            self._log_summary()

    # -- datasets ----------------------------------------------------------------------
    def _build_datasets(self) -> None:
        for stage in STAGES:
            if stage in self.tables:
                self.datasets[stage] = self._make_dataset(stage, crop=stage == "train")
        if self.language_alpha is not None or self.labeled_fraction is not None:
            unlabeled = list(self.tables["unlabeled"]["locale"]) if "unlabeled" in self.tables else []
            alpha = 1.0 if self.language_alpha is None else self.language_alpha
            self._pool = EpochPool.from_locales(
                list(self.tables["train"]["locale"]), unlabeled, self.labeled_fraction, alpha, self.seed
            )

    def _make_dataset(self, stage: str, crop: bool) -> SpeechDataset:
        """The dataset of one stage; "train" has the unlabeled rows (if any) after the labeled."""
        table = self.tables[stage]
        class_labels = None
        if self.mode == "classification":
            table, class_labels, report = class_ids(table, self.label_column, self.label2id, stage)
            self.skipped.merge(report)
        labels = [self.tokenizer.encode(t) for t in table["target"]] if self.tokenizer is not None else None
        if stage == "train" and "unlabeled" in self.tables:
            unlabeled = self.tables["unlabeled"]
            labels = (labels or [None] * len(table)) + [None] * len(unlabeled)
            table = concatenate([_audio_columns(t) for t in (table, unlabeled)])
        max_samples = int(self.max_sample_seconds * SAMPLING_RATE) if (crop and self.max_sample_seconds) else None
        return SpeechDataset(
            table["path"],
            table["id"],
            table["duration"],
            labels=labels,
            class_labels=class_labels,
            do_normalize=self.do_normalize,
            max_sample_size=max_samples,
            seed=self.seed,
            segments=list(zip(table["start"], table["end"])) if "start" in table.column_names else None,
        )

    def _log_summary(self) -> None:
        for stage, table in self.tables.items():
            durations = np.asarray(table["duration"], dtype=np.float64)
            self.summary[stage] = {"utterances": len(table), "hours": float(durations.sum() / 3600)}
        lines = [
            f"{stage:>9}: {s['utterances']:>7} utterances, {s['hours']:8.3f} h" for stage, s in self.summary.items()
        ]
        lines.append(
            f"  skipped: {self.skipped.total} utterances"
            + "".join(f"\n    {reason}: {len(ids)}" for reason, ids in self.skipped.skipped.items())
        )
        if self.paper_locale:
            lines.append(
                f"   splits: the UniSpeech paper's 1-hour lists for {self.paper_locale} "
                f"({self.phone_labels} phone labels)"
            )
        if self.tokenizer is not None:
            lines.append(f"tokenizer: {self.tokenizer.kind}, {len(self.tokenizer)} symbols")
        if self.label_names:
            lines.append(f"   labels: {len(self.label_names)} ({', '.join(self.label_names[:10])})")
        logger.info("data summary for %s (%s, mode=%s)\n%s", self.corpus, self.source, self.mode, "\n".join(lines))

    # -- loaders -----------------------------------------------------------------------
    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        if stage not in self.datasets:
            self.setup(stage)
        trainer = getattr(self, "trainer", None)
        rank, world = (int(trainer.global_rank), int(trainer.world_size)) if trainer is not None else (0, 1)
        return self.loader_options.loader(
            self.datasets[stage], shuffle, rank, world, index_source=self._pool if stage == "train" else None
        )

    def train_dataloader(self) -> ResumableLoader:
        # Resumable: a checkpoint stores how far into the epoch the run was (loaders.py).
        return ResumableLoader(self._loader("train", shuffle=True))

    def val_dataloader(self) -> DataLoader | list:
        # An empty list tells Lightning there is no validation loop.
        return self._loader("val", shuffle=False) if self.val_splits else []

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False) if self.test_splits else []

    def state_dict(self) -> dict[str, Any]:
        return {"label_names": self.label_names}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.label_names = list(state_dict.get("label_names", self.label_names))
