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

DDP: batches are split between ranks by our sampler, so the Trainer must run with
`use_distributed_sampler=False`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import datasets
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from .audio import AUDIO_EXTENSIONS, SAMPLING_RATE
from .collate import Collator
from .commonvoice import UNLABELED_SPLITS, build_finetune_subset, list_locales, load_commonvoice
from .corpus import SkipReport, cache_key, cached_table, default_cache_dir
from .dataset import SpeechDataset
from .paper_splits import (
    PAPER_SPLITS, PHONE_LABELS, languages, load_paper_split, paper_language, paper_target, paper_tokenizer,
    require_language,
)
from .sampler import DurationBucketSampler, LabeledUnlabeledMixing, TemperatureSampling
from .sources import load_audio_folder, load_hf_corpus, load_manifest
from .tokenizer import CTCTokenizer, normalize_text

logger = logging.getLogger("unispeech.data")

MODES = ("ctc", "pretraining", "classification")
LABEL_TYPES = ("phones", "chars", "none")


def detect_source(corpus: str) -> str:
    """Guess the source kind of ``corpus`` (see docs/data.md)."""
    if corpus == "demo":
        return "commonvoice"
    path = Path(corpus).expanduser()
    if path.is_file() and path.suffix == ".tsv":
        return "manifest"
    if path.is_dir():
        if any((path / n).exists() for n in ("dataset_dict.json", "state.json")):
            return "hf"
        if (path / "clips").is_dir() or any((p / "clips").is_dir() for p in path.iterdir() if p.is_dir()):
            return "commonvoice"
        if any(path.glob("*.tsv")):
            return "manifest"
        return "folder"
    return "hf"


def _as_list(value: Sequence[str] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


class _EpochPool:
    """Per-epoch index pool: labeled/unlabeled counts from the mixing ratio, each side
    spread over languages with temperature sampling. Picklable (no closures)."""

    def __init__(self, labeled_groups: list[np.ndarray], unlabeled_groups: list[np.ndarray],
                 labeled_fraction: float | None, alpha: float, seed: int) -> None:
        lab = np.concatenate(labeled_groups) if labeled_groups else np.empty(0, np.int64)
        unl = np.concatenate(unlabeled_groups) if unlabeled_groups else np.empty(0, np.int64)
        n_lab, n_unl = LabeledUnlabeledMixing(lab, unl, labeled_fraction, seed).counts()
        self.sides = []
        if n_lab:
            self.sides.append(TemperatureSampling(labeled_groups, alpha, seed, epoch_size=n_lab))
        if n_unl:
            self.sides.append(TemperatureSampling(unlabeled_groups, alpha, seed + 1, epoch_size=n_unl))

    def __call__(self, epoch: int) -> np.ndarray:
        return np.concatenate([side(epoch) for side in self.sides])


class UniSpeechDataModule(L.LightningDataModule):
    """See the module docstring and docs/data.md for every argument."""

    def __init__(
        self,
        corpus: str = "demo",
        locales: Sequence[str] | str | None = None,
        source: str = "auto",
        mode: str = "ctc",
        label_type: str = "phones",
        train_splits: Sequence[str] | str = ("train",),
        val_splits: Sequence[str] | str = ("dev",),
        test_splits: Sequence[str] | str = ("test",),
        unlabeled_corpus: str | None = None,
        unlabeled_splits: Sequence[str] | str = ("other",),
        labeled_fraction: float | None = None,
        language_alpha: float | None = None,
        train_hours: float | None = None,
        subset_seed: int = 0,
        paper_splits: bool | str | None = None,
        phone_labels: str = "phonemizer",
        audio_column: str = "audio",
        text_column: str = "sentence",
        label_column: str = "label",
        speaker_column: str | None = None,
        hf_config: str | None = None,
        word_boundary: bool = True,
        min_duration: float | None = 0.5,
        max_duration: float | None = 20.0,
        max_batch_seconds: float = 80.0,
        max_batch_size: int | None = None,
        bucket_width: float = 0.05,
        max_sample_seconds: float | None = None,
        do_normalize: bool = True,
        check: str = "header",
        tokenizer_dir: str | None = None,
        cache_dir: str | None = None,
        num_workers: int = 2,
        num_proc: int = 1,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
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
        self.corpus = str(corpus)
        self.locales = _as_list(locales)
        self.source = detect_source(self.corpus) if source == "auto" else source
        self.mode = mode
        self.label_type = "none" if mode == "classification" else label_type
        self.train_splits = _as_list(train_splits)
        self.val_splits = _as_list(val_splits)
        self.test_splits = _as_list(test_splits)
        self.unlabeled_corpus = unlabeled_corpus
        self.unlabeled_splits = _as_list(unlabeled_splits) if mode == "pretraining" else []
        self.labeled_fraction = labeled_fraction
        self.language_alpha = language_alpha
        self.train_hours = train_hours
        self.subset_seed = subset_seed
        self.audio_column = audio_column
        self.text_column = text_column
        self.label_column = label_column
        self.speaker_column = speaker_column
        self.hf_config = hf_config
        self.word_boundary = word_boundary
        self.min_duration = min_duration
        self.max_duration = max_duration
        self.max_batch_seconds = max_batch_seconds
        self.max_batch_size = max_batch_size
        self.bucket_width = bucket_width
        self.max_sample_seconds = max_sample_seconds
        self.do_normalize = do_normalize
        self.check = check
        self.tokenizer_dir = tokenizer_dir
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir() / "prepared"
        self.num_workers = num_workers
        self.num_proc = num_proc
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.seed = seed
        self.phone_labels = phone_labels
        self.paper_locale = self._resolve_paper_splits(paper_splits)
        if self.paper_locale:
            # The paper's lists replace the configured splits (an empty one stays empty) and
            # the seeded `train_hours` subset, which would only cut the paper's hour down.
            self.train_splits, self.val_splits, self.test_splits = (
                [name] if splits else [] for name, splits in
                zip(PAPER_SPLITS, (self.train_splits, self.val_splits, self.test_splits)))
            self.train_hours = None
        if phone_labels == "paper" and (not self.paper_locale or self.label_type != "phones"):
            raise ValueError("phone_labels='paper' needs label_type='phones' and paper_splits on, for a "
                             f"CommonVoice locale of: {', '.join(languages())}")

        self.tokenizer: CTCTokenizer | None = None
        self.label_names: list[str] = []
        self.tables: dict[str, datasets.Dataset] = {}
        self.datasets: dict[str, SpeechDataset] = {}
        self.skipped = SkipReport(corpus=self.corpus)
        self.summary: dict[str, dict[str, float]] = {}
        self._pool: _EpochPool | None = None
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

    def has_split(self, split: str) -> bool:
        return {"train": self.train_splits, "val": self.val_splits, "validate": self.val_splits,
                "test": self.test_splits}.get(split, []) != []

    # -- paper splits ------------------------------------------------------------------
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
            raise ValueError(f"paper_splits needs one CommonVoice locale (corpus={self.corpus!r}, "
                             f"source={self.source!r}, locales={self.locales}); "
                             f"paper splits exist for: {', '.join(languages())}")
        require_language(locale)  # raises, listing the languages that have paper splits
        return None

    # -- corpus reading ----------------------------------------------------------------
    def _root(self, corpus: str) -> Path:
        if corpus == "demo":
            from .demo_corpus import ensure_demo_corpus

            return ensure_demo_corpus()
        return Path(corpus).expanduser()

    def _read(self, corpus: str, source: str, split: str, labeled: bool) -> datasets.Dataset:
        """One split of one corpus (all selected locales), validated and cached."""
        common = dict(min_duration=self.min_duration, max_duration=self.max_duration, check=self.check,
                      cache_dir=self.cache_dir, num_proc=self.num_proc)
        if labeled is False or self.mode == "classification":
            # Unlabeled audio and classification clips may be longer than labelled ones.
            common["max_duration"] = None if self.max_sample_seconds else self.max_duration
        if split.endswith(".tsv") and Path(split).expanduser().is_file():
            source = "manifest"
        locale = self.locales[0] if self.locales else ""
        label_column = self.label_column if self.mode == "classification" else None
        if self.paper_locale and split in PAPER_SPLITS:
            # Exactly the paper's clips: no duration filter, so val/test are the paper's.
            table, report = load_paper_split(
                self._root(corpus), self.paper_locale, split, phone_labels=self.phone_labels, check=self.check,
                cache_dir=self.cache_dir, num_proc=self.num_proc)
            self.skipped.merge(report)
            return table
        if source == "commonvoice":
            root = self._root(corpus)
            if (root / "clips").is_dir():  # a locale folder: its name is the locale
                locales = [root.name]
            else:
                locales = self.locales or list_locales(root)
            results = [load_commonvoice(root, loc, split, labeled=labeled, **common) for loc in locales]
        elif source == "hf":
            results = [load_hf_corpus(
                corpus, split, audio_column=self.audio_column, text_column=self.text_column if labeled else None,
                speaker_column=self.speaker_column, label_column=label_column, config=self.hf_config,
                locale=locale, **common)]
        elif source == "manifest":
            path = Path(split) if split.endswith(".tsv") else (
                Path(corpus) if Path(corpus).is_file() and split == "train" else Path(corpus) / f"{split}.tsv")
            results = [load_manifest(path, text_column="text" if labeled else None, label_column=label_column,
                                     locale=locale, **common)]
        elif source == "folder":
            results = [load_audio_folder(corpus, locale=locale, **common)]
        else:
            raise ValueError(f"unknown source {source!r} (commonvoice, hf, manifest, folder)")
        for _, report in results:
            self.skipped.merge(report)
        tables = [table for table, _ in results]
        return tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)

    def _with_targets(self, table: datasets.Dataset, name: str) -> datasets.Dataset:
        """Add the `target` column (phones or normalised characters), dropping empties."""
        if self.phone_labels == "paper":
            targets = [paper_target(t, self.word_boundary) for t in table["paper_phones"]]
        elif self.label_type == "phones":
            from .phonemes import add_phones_column

            key = cache_key("phones", table._fingerprint, len(table), self.word_boundary)
            default_locale = self.locales[0] if self.locales else "en"

            def build() -> tuple[datasets.Dataset, SkipReport]:
                phoned = add_phones_column(table, self.word_boundary, default_locale, self.num_proc)
                return phoned, SkipReport(corpus=name)

            table, _ = cached_table(self.cache_dir, key, build)
            targets = table["phones"]
        else:
            targets = [normalize_text(t) for t in table["text"]]
        empty = [i for i, t in enumerate(targets) if not t.replace("|", "").strip()]
        if empty:
            report = SkipReport(corpus=name)
            ids = table["id"]
            report.add(f"empty {self.label_type} transcript", [ids[i] for i in empty])
            report.warn()
            self.skipped.merge(report)
            keep = np.setdiff1d(np.arange(len(table)), empty)
            if len(keep) == 0:
                raise ValueError(f"{name}: no utterance has a usable {self.label_type} transcript")
            table = table.select(keep)
            targets = [targets[i] for i in keep]
        if "target" in table.column_names:
            table = table.remove_columns("target")
        return table.add_column("target", targets)

    # -- Lightning hooks ---------------------------------------------------------------
    def prepare_data(self) -> None:
        """Runs on one process: build every cache so the other ranks only read it."""
        self._prepare_tables()

    def _prepare_tables(self) -> None:
        if self._prepared:
            return
        labeled = self.label_type != "none" or self.mode == "classification"
        for stage, splits in (("train", self.train_splits), ("val", self.val_splits), ("test", self.test_splits)):
            parts = [self._read(self.corpus, self.source, s, labeled=labeled if self.mode != "classification" else False)
                     for s in splits]
            if not parts:
                continue
            table = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
            if self.label_type != "none":
                table = self._with_targets(table, f"{self.corpus}/{stage}")
            self.tables[stage] = table
        if "train" not in self.tables:
            raise ValueError("no training split configured (train_splits is empty)")
        if self.train_hours:
            exclude = set()
            for stage in ("val", "test"):
                if stage in self.tables:
                    exclude.update(self.tables[stage]["speaker"])
            exclude.discard("")
            self.tables["train"] = build_finetune_subset(self.tables["train"], self.train_hours, self.subset_seed, exclude)
        if self.mode == "pretraining" and self.unlabeled_splits:
            corpus = self.unlabeled_corpus or self.corpus
            source = detect_source(corpus) if self.unlabeled_corpus else self.source
            parts = [self._read(corpus, source, s, labeled=False) for s in self.unlabeled_splits]
            self.tables["unlabeled"] = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        self._prepared = True

    def setup(self, stage: str | None = None) -> None:
        self._prepare_tables()
        if self.tokenizer is None and self.label_type != "none":
            self.tokenizer = self._load_or_build_tokenizer()
        if self.mode == "classification" and not self.label_names:
            self.label_names = sorted(set(self._class_column(self.tables["train"])))
        if not self.datasets:
            self._build_datasets()
            self._log_summary()

    def _load_or_build_tokenizer(self) -> CTCTokenizer:
        kind = self.label_type
        language = ""
        if len(self.locales) == 1 and kind == "phones":
            from .phonemes import locale_to_voice

            language = locale_to_voice(self.locales[0])
        # Paper labels: the paper's inventory, the same whichever clips the release has.
        paper = paper_tokenizer(self.paper_locale) if self.phone_labels == "paper" else None
        key = cache_key("tokenizer", "paper", paper.vocab) if paper else cache_key(
            "tokenizer", self.tables["train"]._fingerprint, kind)
        directory = Path(self.tokenizer_dir) if self.tokenizer_dir else self.cache_dir / "tokenizers" / key
        if (directory / "vocab.json").exists():
            tokenizer = CTCTokenizer.from_pretrained(directory)
            if tokenizer.kind != kind:
                raise ValueError(f"{directory} holds a {tokenizer.kind} tokenizer but label_type={kind!r}")
            return tokenizer
        tokenizer = paper or CTCTokenizer.from_texts(self.tables["train"]["target"], kind=kind, language=language)
        tokenizer.save_pretrained(directory)
        logger.info("tokenizer (%s, %d symbols) saved to %s", kind, len(tokenizer), directory)
        return tokenizer

    def _class_column(self, table: datasets.Dataset) -> list[str]:
        column = self.label_column if self.label_column in table.column_names else "label"
        if column not in table.column_names:
            raise KeyError(f"classification needs a label column {self.label_column!r} (columns: {table.column_names})")
        return [str(v) for v in table[column]]

    def _make_dataset(self, table: datasets.Dataset, labeled: bool, crop: bool, name: str) -> SpeechDataset:
        labels = None
        class_labels = None
        if labeled and self.tokenizer is not None:
            labels = [self.tokenizer.encode(t) for t in table["target"]]
        if self.mode == "classification":
            mapping = self.label2id
            names = self._class_column(table)
            keep = [i for i, n in enumerate(names) if n in mapping]
            if len(keep) < len(names):
                report = SkipReport(corpus=name)
                ids = table["id"]
                report.add("label unseen in training", [ids[i] for i in range(len(names)) if names[i] not in mapping])
                report.warn()
                self.skipped.merge(report)
                table = table.select(keep)
                names = [names[i] for i in keep]
            class_labels = [mapping[n] for n in names]
        max_samples = int(self.max_sample_seconds * SAMPLING_RATE) if (crop and self.max_sample_seconds) else None
        return SpeechDataset(
            table["path"], table["id"], table["duration"], labels=labels, class_labels=class_labels,
            do_normalize=self.do_normalize, max_sample_size=max_samples, seed=self.seed,
        )

    def _build_datasets(self) -> None:
        labeled = self.label_type != "none"
        train = self.tables["train"]
        if "unlabeled" in self.tables:
            unl = self.tables["unlabeled"]
            lab_ds = self._make_dataset(train, labeled, crop=True, name="train")
            unl_ds = self._make_dataset(unl, False, crop=True, name="unlabeled")
            merged = SpeechDataset(
                lab_ds.paths + unl_ds.paths, lab_ds.ids + unl_ds.ids,
                np.concatenate([np.asarray(train["duration"]), np.asarray(unl["duration"])]),
                labels=lab_ds.labels + unl_ds.labels, do_normalize=self.do_normalize,
                max_sample_size=unl_ds.max_sample_size, seed=self.seed)
            self.datasets["train"] = merged
            n_lab = len(lab_ds)
            locales = list(train["locale"]) + list(unl["locale"])
            lab_groups = self._groups(locales[:n_lab], 0)
            unl_groups = self._groups(locales[n_lab:], n_lab)
        else:
            self.datasets["train"] = self._make_dataset(train, labeled, crop=True, name="train")
            lab_groups = self._groups(list(train["locale"]), 0)
            unl_groups = []
        if self.language_alpha is not None or self.labeled_fraction is not None:
            alpha = 1.0 if self.language_alpha is None else self.language_alpha
            self._pool = _EpochPool(lab_groups, unl_groups, self.labeled_fraction, alpha, self.seed)
        for stage in ("val", "test"):
            if stage in self.tables:
                self.datasets[stage] = self._make_dataset(self.tables[stage], labeled, crop=False, name=stage)

    @staticmethod
    def _groups(locales: list[str], offset: int) -> list[np.ndarray]:
        groups: dict[str, list[int]] = {}
        for i, loc in enumerate(locales):
            groups.setdefault(loc, []).append(offset + i)
        return [np.asarray(v, dtype=np.int64) for _, v in sorted(groups.items())]

    def _log_summary(self) -> None:
        for stage, table in self.tables.items():
            durations = np.asarray(table["duration"], dtype=np.float64)
            self.summary[stage] = {"utterances": len(table), "hours": float(durations.sum() / 3600)}
        lines = [f"{stage:>9}: {s['utterances']:>7} utterances, {s['hours']:8.3f} h" for stage, s in self.summary.items()]
        lines.append(f"  skipped: {self.skipped.total} utterances"
                     + "".join(f"\n    {reason}: {len(ids)}" for reason, ids in self.skipped.skipped.items()))
        if self.paper_locale:
            lines.append(f"   splits: the UniSpeech paper's 1-hour lists for {self.paper_locale} "
                         f"({self.phone_labels} phone labels)")
        if self.tokenizer is not None:
            lines.append(f"tokenizer: {self.tokenizer.kind}, {len(self.tokenizer)} symbols")
        if self.label_names:
            lines.append(f"   labels: {len(self.label_names)} ({', '.join(self.label_names[:10])})")
        logger.info("data summary for %s (%s, mode=%s)\n%s", self.corpus, self.source, self.mode, "\n".join(lines))

    # -- loaders -----------------------------------------------------------------------
    def _distributed(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        if stage not in self.datasets:
            self.setup(stage)
        dataset = self.datasets[stage]
        rank, world = self._distributed()
        sampler = DurationBucketSampler(
            dataset.durations, self.max_batch_seconds, self.max_batch_size, self.bucket_width,
            shuffle=shuffle, seed=self.seed, num_replicas=world, rank=rank,
            index_source=self._pool if stage == "train" else None)
        workers = self.num_workers
        return DataLoader(
            dataset, batch_sampler=sampler, collate_fn=Collator(), num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        # An empty list tells Lightning there is no validation loop.
        return self._loader("val", shuffle=False) if self.val_splits else []

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False) if self.test_splits else []

    def state_dict(self) -> dict[str, Any]:
        return {"label_names": self.label_names}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.label_names = list(state_dict.get("label_names", self.label_names))
