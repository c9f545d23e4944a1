"""What a model learns from a validated corpus table: CTC targets, class ids, the tokenizer.

`CTCTargets` adds the `target` column (espeak phones, the paper's phones or normalised
characters); `class_ids` turns a label column into ids. Both drop and report the rows they
cannot label (an empty transcript, a class unseen in training) rather than failing, like
the readers' validation. `load_or_build_tokenizer` gives the vocabulary of the targets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from .corpus import SkipReport, cache_key, cached_table
from .paper_splits import paper_target, paper_tokenizer
from .phonemes import add_phones_column, locale_to_voice
from .tokenizer import WORD_DELIMITER, CTCTokenizer, normalize_text

logger = logging.getLogger("unispeech.data")


@dataclass(frozen=True)
class CTCTargets:
    """Transcripts -> CTC targets of ``kind`` ("phones" or "chars").

    Phones come from espeak (``phone_labels="phonemizer"``, cached under ``cache_dir``, in the
    voice of each row's locale, ``locale`` for rows without one) or are the paper's own
    (``"paper"``: the `paper_phones` column of a paper split).
    """

    kind: str = "phones"
    phone_labels: str = "phonemizer"
    word_boundary: bool = True
    locale: str = "en"
    num_proc: int | None = 1
    cache_dir: Path | None = None

    def __call__(self, table: datasets.Dataset, name: str) -> tuple[datasets.Dataset, SkipReport]:
        """``table`` with a `target` column, less the rows whose target is empty (reported)."""
        if self.phone_labels == "paper":
            targets = [paper_target(t, self.word_boundary) for t in table["paper_phones"]]
        elif self.kind == "phones":
            table = self._phonemized(table)
            targets = table["phones"]
        else:
            targets = [normalize_text(t) for t in table["text"]]
        return _with_target(table, targets, name, self.kind)

    def _phonemized(self, table: datasets.Dataset) -> datasets.Dataset:
        """``table`` with a `phones` column, phonemized once and cached (espeak is slow)."""
        key = cache_key("phones", "caps-lowered", table._fingerprint, len(table), self.word_boundary)

        def build() -> tuple[datasets.Dataset, SkipReport]:
            return add_phones_column(table, self.word_boundary, self.locale, self.num_proc), SkipReport()

        return cached_table(self.cache_dir, key, build)[0]


def _with_target(
    table: datasets.Dataset, targets: list[str], name: str, kind: str
) -> tuple[datasets.Dataset, SkipReport]:
    report = SkipReport(corpus=name)
    empty = [i for i, t in enumerate(targets) if not t.replace(WORD_DELIMITER, "").strip()]
    if empty:
        ids = table["id"]
        report.add(f"empty {kind} transcript", [ids[i] for i in empty])
        report.warn()
        keep = np.setdiff1d(np.arange(len(table)), empty)
        if len(keep) == 0:
            raise ValueError(f"{name}: no utterance has a usable {kind} transcript")
        table = table.select(keep)
        targets = [targets[i] for i in keep]
    if "target" in table.column_names:
        table = table.remove_columns("target")
    return table.add_column("target", targets), report


# -- class labels ---------------------------------------------------------------------
def class_names(table: datasets.Dataset, column: str) -> list[str]:
    """Each row's class: ``column``, else the `label` column readers fill for classification."""
    found = column if column in table.column_names else "label"
    if found not in table.column_names:
        raise KeyError(f"classification needs a label column {column!r} (columns: {table.column_names})")
    return [str(v) for v in table[found]]


def class_ids(
    table: datasets.Dataset, column: str, label2id: dict[str, int], name: str
) -> tuple[datasets.Dataset, list[int], SkipReport]:
    """The rows of ``table`` whose class is in ``label2id``, and their ids; the others are
    reported (a class that only val/test have cannot be predicted)."""
    names = class_names(table, column)
    keep = [i for i, n in enumerate(names) if n in label2id]
    report = SkipReport(corpus=name)
    if len(keep) < len(names):
        ids = table["id"]
        report.add("label unseen in training", [ids[i] for i, n in enumerate(names) if n not in label2id])
        report.warn()
        table = table.select(keep)
        names = [names[i] for i in keep]
    return table, [label2id[n] for n in names], report


# -- tokenizer ------------------------------------------------------------------------
def phone_language(train: datasets.Dataset, locales: Sequence[str] = ()) -> str:
    """The espeak voice the phone targets of ``train`` come from: its one locale (the
    ``locales`` asked for, else the table's ``locale`` column), "" for several."""
    found = list(locales) if locales else sorted(set(train["locale"])) if "locale" in train.column_names else []
    found = [locale for locale in found if locale]
    return locale_to_voice(found[0]) if len(found) == 1 else ""


def load_or_build_tokenizer(
    train: datasets.Dataset,
    kind: str,
    cache_dir: Path,
    *,
    directory: str | None = None,
    locales: Sequence[str] = (),
    paper_locale: str | None = None,
) -> CTCTokenizer:
    """The tokenizer saved in ``directory`` (default: a cache entry of this training split),
    else one built from the `target` column of ``train`` and saved there.

    ``paper_locale``: use the paper's phone inventory, the same whichever clips the release has.
    """
    paper = paper_tokenizer(paper_locale) if paper_locale else None
    key = cache_key("tokenizer", "paper", paper.vocab) if paper else cache_key("tokenizer", train._fingerprint, kind)
    folder = Path(directory) if directory else cache_dir / "tokenizers" / key
    language = phone_language(train, locales) if kind == "phones" else ""
    if (folder / "vocab.json").exists():
        tokenizer = CTCTokenizer.from_pretrained(folder)
        if tokenizer.kind != kind:
            raise ValueError(f"{folder} holds a {tokenizer.kind} tokenizer but label_type={kind!r}")
        tokenizer.language = tokenizer.language or language  # saved before the language was recorded
        return tokenizer
    tokenizer = paper or CTCTokenizer.from_texts(train["target"], kind=kind, language=language)
    tokenizer.save_pretrained(folder)
    logger.info("tokenizer (%s, %d symbols) saved to %s", kind, len(tokenizer), folder)
    return tokenizer
