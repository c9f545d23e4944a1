"""Local CommonVoice releases (`cv-corpus-*/<locale>/*.tsv` + `clips/*.mp3`).

CommonVoice left the Hugging Face hub in 2025; releases now come from the Mozilla Data
Collective as folders. TSVs are read with quoting disabled and every field kept as a
string: pandas' defaults would turn `"quoted" text` into `quoted text` and an empty
field or a sentence like "NA" into NaN. They must be UTF-8 (a byte-order mark is dropped);
a row with a wrong number of fields is skipped and named, never kept with shifted fields.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from .corpus import MAX_NAMED, SkipReport, file_fingerprint, make_table
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


class TSVEncodingError(ValueError):
    """A TSV that is not UTF-8; the message names the file, the line and the byte."""


@dataclass(frozen=True)
class BadRow:
    """A TSV row skipped for its number of fields (a tab inside a sentence, a cut line)."""

    line: int  # 1-based, the header is line 1
    fields: tuple[str, ...]

    def describe(self, header: list[str]) -> str:
        """Where to look in the file, e.g. `line 7 (14 fields, path x.mp3)`."""
        path = self.field(header, "path")
        return f"line {self.line} ({len(self.fields)} fields" + (f", path {path})" if path else ")")

    def field(self, header: list[str], column: str) -> str:
        """The row's value of ``column`` ("" if the row is too short). Only the fields left of a
        stray tab are in place; in CommonVoice `path` comes before `sentence`, where they occur."""
        if column not in header:
            return ""
        at = header.index(column)
        return self.fields[at] if at < len(self.fields) else ""


def iter_tsv(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-empty line of a UTF-8 TSV, the header first.

    No quote handling: a field is whatever lies between two tabs. A UTF-8 byte-order mark
    (Excel writes one) is dropped: the first column must read `client_id`, not U+FEFF `client_id`.
    Streamed: a million-row validated.tsv is never held as bytes. A line that is not UTF-8
    raises `TSVEncodingError` naming the file, the line and the byte offset: decoding it
    with replacement characters would silently put wrong letters into the transcripts.
    """
    path = Path(path)
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            start = offset
            offset += len(raw)
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw, start = raw[len(codecs.BOM_UTF8) :], start + len(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise _encoding_error(path, number, start, raw, err) from err
            line = line.rstrip("\r\n")
            if line:
                yield number, line.split("\t")


def _encoding_error(path: Path, number: int, start: int, raw: bytes, err: UnicodeDecodeError) -> TSVEncodingError:
    shown = raw[max(0, err.start - 30) : err.end + 30].decode("utf-8", errors="replace").strip()
    return TSVEncodingError(
        f"{path}: line {number} is not UTF-8: byte 0x{raw[err.start]:02x} at byte offset {start + err.start} "
        f"of the file (byte {err.start + 1} of the line), near {shown!r}. The TSVs must be UTF-8, as "
        f"CommonVoice ships them: re-encode the file (e.g. `iconv -f latin1 -t utf-8`, if it is Latin-1) "
        f"or fix that line."
    )


def read_tsv(path: str | Path, bad_rows: list[BadRow] | None = None) -> dict[str, list[str]]:
    """Read a UTF-8 TSV exactly as written: no quote handling, empty strings stay empty.

    A row whose number of fields differs from the header's is skipped, never padded or cut
    (a tab inside a sentence would keep the row with a truncated transcript): one warning
    names the file and its first such lines, and the rows are appended to ``bad_rows`` for a
    caller that reports them per utterance. A file that is not UTF-8 raises
    `TSVEncodingError` (see `iter_tsv`).
    """
    path = Path(path)
    rows = iter_tsv(path)
    _, header = next(rows, (0, []))
    if not header:
        return {}
    columns: dict[str, list[str]] = {name: [] for name in header}
    bad: list[BadRow] = []
    for number, row in rows:
        if len(row) != len(header):
            bad.append(BadRow(number, tuple(row)))
            continue
        for name, value in zip(header, row):
            columns[name].append(value)
    if bad:
        named = ", ".join(b.describe(header) for b in bad[:MAX_NAMED]) + (", ..." if len(bad) > MAX_NAMED else "")
        logger.warning(
            "%s: skipped %d row(s) with a wrong number of fields (the header has %d; a tab inside a field?): %s",
            path,
            len(bad),
            len(header),
            named,
        )
        if bad_rows is not None:
            bad_rows.extend(bad)
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


def read_split(
    locale_dir: Path, split: str, locale: str, labeled: bool
) -> tuple[datasets.Dataset, dict[str, list[str]]]:
    """One split TSV -> corpus table (not yet validated), and the rows it could not read
    (reason -> clip ids, or "<file> line N" for a row without a path)."""
    tsv = locale_dir / f"{split}.tsv"
    if not tsv.exists():
        raise FileNotFoundError(f"CommonVoice split not found: {tsv}")
    bad: list[BadRow] = []
    raw = read_tsv(tsv, bad)
    if "path" not in raw:
        raise ValueError(f"{tsv}: no 'path' column (columns: {list(raw)})")
    durations = read_clip_durations(locale_dir)
    clips = locale_dir / "clips"
    paths = raw["path"]
    n = len(paths)
    locales = raw.get("locale") or [locale] * n
    table = make_table(
        {
            "id": [Path(p).stem for p in paths],
            "path": [str(clips / p) for p in paths],
            "text": raw.get("sentence", [""] * n) if labeled else [""] * n,
            "speaker": raw.get("client_id", [""] * n),
            "locale": [loc or locale for loc in locales],
            "duration": [durations.get(p, -1.0) for p in paths],
        }
    )
    return table, bad_row_ids(bad, list(raw), tsv.name)


def bad_row_ids(bad: list[BadRow], header: list[str], file_name: str) -> dict[str, list[str]]:
    """Skipped TSV rows as a `SkipReport` entry: the clip id when the row names its clip,
    else "<file> line N"."""
    if not bad:
        return {}
    ids = []
    for row in bad:
        clip = row.field(header, "id") or Path(row.field(header, "path")).stem
        ids.append(clip or f"{file_name} line {row.line}")
    return {f"wrong number of fields in {file_name}": ids}


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
        table, unreadable = read_split(locale_dir, split, locale, labeled)
        return options.validate(table, f"commonvoice/{locale}/{split}", require_text=labeled, skipped=unreadable)

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
