"""Local CommonVoice releases (`cv-corpus-*/<locale>/*.tsv` + `clips/*.mp3`).

CommonVoice left the Hugging Face hub in 2025; releases now come from the Mozilla Data
Collective as folders. TSVs are read with quoting disabled and every field kept as a
string: pandas' defaults would turn `"quoted" text` into `quoted text` and an empty
field or a sentence like "NA" into NaN.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from .corpus import SkipReport, file_fingerprint, make_table
from .read_options import ReadOptions

logger = logging.getLogger("unispeech.data")

# v17+ column order; older releases have `accent` and no `sentence_id`: we only rely on
# client_id, path, sentence (and locale when present).
CV_COLUMNS = (
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
)
LABELED_SPLITS = ("train", "dev", "test", "validated")
UNLABELED_SPLITS = ("other", "invalidated")


def read_tsv(path: str | Path) -> dict[str, list[str]]:
    """Read a TSV exactly as written: no quote handling, empty strings stay empty."""
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = next(reader)
        except StopIteration:
            return {}
        columns: dict[str, list[str]] = {name: [] for name in header}
        malformed = 0
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                # A stray tab inside a field: pad/truncate rather than shift every column.
                malformed += 1
                row = (row + [""] * len(header))[: len(header)]
            for name, value in zip(header, row):
                columns[name].append(value)
    if malformed:
        logger.warning("%s: %d row(s) with a wrong number of fields", path, malformed)
    return columns


def find_locale_dir(root: str | Path, locale: str | None = None) -> Path:
    """Accept the release root (`cv-corpus-X/`) plus a locale, or the locale folder itself."""
    root = Path(root).expanduser()
    if locale and (root / locale).is_dir():
        return root / locale
    if (root / "clips").is_dir() or any(root.glob("*.tsv")):
        return root
    raise FileNotFoundError(
        f"{root} is not a CommonVoice locale folder (no clips/ or *.tsv)"
        + (f" and has no {locale}/ subfolder" if locale else "")
    )


def list_locales(root: str | Path) -> list[str]:
    """Locales present in a release root (folders that contain clips/)."""
    return sorted(p.name for p in Path(root).iterdir() if (p / "clips").is_dir())


def read_clip_durations(locale_dir: Path) -> dict[str, float]:
    """`clip_durations.tsv` (clip, duration[ms]) -> seconds; {} when absent."""
    path = locale_dir / "clip_durations.tsv"
    if not path.exists():
        return {}
    table = read_tsv(path)
    clips = table.get("clip", [])
    millis = table.get("duration[ms]", [])
    out = {}
    for clip, ms in zip(clips, millis):
        try:
            out[clip] = float(ms) / 1000.0
        except ValueError:
            continue
    return out


def read_split(locale_dir: Path, split: str, locale: str, labeled: bool) -> datasets.Dataset:
    """One split TSV -> corpus table (not yet validated)."""
    tsv = locale_dir / f"{split}.tsv"
    if not tsv.exists():
        raise FileNotFoundError(f"CommonVoice split not found: {tsv}")
    raw = read_tsv(tsv)
    if "path" not in raw:
        raise ValueError(f"{tsv}: no 'path' column (columns: {list(raw)})")
    durations = read_clip_durations(locale_dir)
    clips = locale_dir / "clips"
    paths = raw["path"]
    n = len(paths)
    locales = raw.get("locale") or [locale] * n
    return make_table(
        {
            "id": [Path(p).stem for p in paths],
            "path": [str(clips / p) for p in paths],
            "text": raw.get("sentence", [""] * n) if labeled else [""] * n,
            "speaker": raw.get("client_id", [""] * n),
            "locale": [loc or locale for loc in locales],
            "duration": [durations.get(p, -1.0) for p in paths],
        }
    )


def load_commonvoice(
    root: str | Path,
    locale: str | None,
    split: str,
    *,
    labeled: bool | None = None,
    options: ReadOptions | None = None,
    **fields: Any,
) -> tuple[datasets.Dataset, SkipReport]:
    """Read and validate one split of one locale (cached as Arrow under ``cache_dir``).

    ``labeled`` defaults to False for `other`/`invalidated` (used as unlabeled audio).
    ``options`` and/or the `ReadOptions` fields as keywords (min_duration, max_duration,
    check, cache_dir, num_proc).
    """
    options = ReadOptions.of(options, **fields)
    locale_dir = find_locale_dir(root, locale)
    locale = locale or locale_dir.name
    if labeled is None:
        labeled = split not in UNLABELED_SPLITS
    tsv = locale_dir / f"{split}.tsv"
    fingerprint = [file_fingerprint(tsv)] if tsv.exists() else []
    if (locale_dir / "clip_durations.tsv").exists():
        fingerprint.append(file_fingerprint(locale_dir / "clip_durations.tsv"))

    def build() -> tuple[datasets.Dataset, SkipReport]:
        table = read_split(locale_dir, split, locale, labeled)
        return options.validate(table, f"commonvoice/{locale}/{split}", require_text=labeled)

    return options.cached(("commonvoice", fingerprint, split, locale, labeled), build)


def build_finetune_subset(
    table: datasets.Dataset,
    hours: float = 1.0,
    seed: int = 0,
    exclude_speakers: set[str] | frozenset[str] = frozenset(),
) -> datasets.Dataset:
    """A seeded, speaker-disjoint fine-tuning subset of about ``hours`` of audio.

    Whole speakers (client_id) are drawn in a seeded random order, skipping any speaker in
    ``exclude_speakers`` (pass the dev/test speakers), until the budget is reached; the
    last speaker is taken only as far as needed. The result never shares a speaker with
    the excluded sets, and the same seed always gives the same subset.
    """
    budget = hours * 3600.0
    speakers = np.asarray(table["speaker"], dtype=object)
    durations = np.asarray(table["duration"], dtype=np.float64)
    order = sorted(set(speakers) - set(exclude_speakers))
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    chosen: list[int] = []
    total = 0.0
    for speaker in order:
        rows = np.flatnonzero(speakers == speaker)
        rng.shuffle(rows)
        for row in rows:
            if total >= budget:
                break
            chosen.append(int(row))
            total += max(durations[row], 0.0)
        if total >= budget:
            break
    if not chosen:
        raise ValueError("the fine-tuning subset is empty: every speaker was excluded")
    return table.select(sorted(chosen))
