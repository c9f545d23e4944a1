"""The UniSpeech paper's 1-hour CommonVoice splits, shipped in `unispeech/data/paper_splits/`.

The paper fine-tuned on fixed lists of clips (the CPC_audio splits of Rivière et al. 2020)
with its own phone transcripts; using the same lists is what makes a PER comparable to the
paper's. The lists name clips only: audio, speakers and sentences come from the user's
CommonVoice release, and a listed clip the release lacks is dropped and reported, never
replaced. Provenance, license (CC BY-SA 3.0) and file formats: paper_splits/README.md.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import datasets

from .commonvoice import find_locale_dir, iter_tsv, read_clip_durations
from .corpus import MAX_NAMED, SkipReport, file_fingerprint, make_table
from .phonemes import locale_to_voice
from .read_options import ReadOptions
from .tokenizer import WORD_DELIMITER, CTCTokenizer

logger = logging.getLogger("unispeech.data")

PAPER_SPLITS = ("train_1h", "val_1h", "test_1h")
SPLIT_ALIASES = {"train": "train_1h", "dev": "val_1h", "val": "val_1h", "test": "test_1h"}
PHONE_LABELS = ("phonemizer", "paper")
# The release's TSVs, in the order a clip's row is looked up: validated.tsv holds nearly
# every clip; the others only matter for clips a later release moved out of it.
TSV_ORDER = ("validated", "train", "dev", "test", "other", "invalidated")
MISSING = "missing from the release"
NO_ROW, NO_AUDIO = f"{MISSING}: no TSV row", f"{MISSING}: no audio file"
# espeak's language-switch marks ("(en) ... (fr)") left in a few paper transcripts: they
# are not phones (our phonemizer removes them too).
_LANGUAGE_FLAG = re.compile(r"^\([a-z]{2,3}(-[a-z]+)?\)$")


def data_dir() -> Path:
    """The shipped lists, found through the installed package (works from a wheel too)."""
    return Path(str(resources.files("unispeech.data").joinpath("paper_splits")))


def languages() -> tuple[str, ...]:
    """Languages that have paper splits (folder names: es fr it ky nl ru sv)."""
    return tuple(sorted(p.name for p in data_dir().iterdir() if (p / "phones.json").is_file()))


def paper_language(locale: str) -> str | None:
    """CommonVoice locale -> paper language ("sv-SE" -> "sv"), None when it has no split."""
    language = locale.split("-")[0].lower() if locale else ""
    return language if language in languages() else None


def require_language(locale: str) -> str:
    """`paper_language`, or a ValueError that lists the languages with paper splits."""
    language = paper_language(locale)
    if language is None:
        raise ValueError(
            f"the UniSpeech paper has no 1-hour CommonVoice split for locale {locale!r}; "
            f"paper splits exist for: {', '.join(languages())} (CommonVoice sv-SE for sv)"
        )
    return language


def split_name(split: str) -> str:
    """ "train"/"dev"/"val"/"test" or a file stem ("val_1h") -> the file stem."""
    name = SPLIT_ALIASES.get(split, split)
    if name not in PAPER_SPLITS:
        raise ValueError(f"unknown paper split {split!r}: one of {PAPER_SPLITS} (or train/dev/test)")
    return name


def paper_target(line: str, word_boundary: bool = True) -> str:
    """A paper transcript line -> our phone-target format ("a b | c d", see phonemes.py).

    The paper ends every word with `|` (so lines end in "| "); our targets put `|` only
    between words. Language-switch marks are dropped.
    """
    tokens: list[str] = []
    for token in line.split():
        if _LANGUAGE_FLAG.match(token):
            continue
        if token == WORD_DELIMITER and (not word_boundary or not tokens or tokens[-1] == WORD_DELIMITER):
            continue
        tokens.append(token)
    while tokens and tokens[-1] == WORD_DELIMITER:
        tokens.pop()
    return " ".join(tokens)


@dataclass(frozen=True)
class PaperSplit:
    """One language's split: clips in the paper's order, their phones (our target format,
    with `|` between words) and the paper's sentences (empty where it ships none)."""

    language: str
    split: str
    clips: tuple[str, ...]
    phones: tuple[str, ...]
    sentences: dict[str, str]

    @property
    def clips_file(self) -> Path:
        return data_dir() / self.language / f"{self.split}.clips"


def _lines(path: Path) -> list[str]:
    # Not str.splitlines(): it would also split at U+2028/U+0085 inside a sentence.
    text = path.read_text(encoding="utf-8")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_paper_split(language: str, split: str) -> PaperSplit:
    """Read `<language>/<split>.{clips,phone,text}` (split: train/dev/val/test or *_1h)."""
    language = require_language(language)
    split = split_name(split)
    folder = data_dir() / language
    clips = _lines(folder / f"{split}.clips")
    phones = _lines(folder / f"{split}.phone")
    if len(clips) != len(phones):
        raise ValueError(f"{folder}/{split}: {len(clips)} clips but {len(phones)} phone lines")
    sentences: dict[str, str] = {}
    if (folder / f"{split}.text").exists():
        for line in _lines(folder / f"{split}.text"):
            clip, _, sentence = line.partition("\t")
            sentences[clip] = sentence
    return PaperSplit(language, split, tuple(clips), tuple(paper_target(p) for p in phones), sentences)


def phone_inventory(language: str) -> list[str]:
    """The paper's phone inventory for ``language`` (phones.json), in the paper's index order.

    es/phones.json has an empty-string entry, which is no phone and is left out.
    """
    inventory = json.loads((data_dir() / require_language(language) / "phones.json").read_text(encoding="utf-8"))
    return [phone for phone in sorted(inventory, key=inventory.__getitem__) if phone.strip()]


def paper_tokenizer(locale: str) -> CTCTokenizer:
    """Phone tokenizer for the paper's labels: the specials, phones.json, and the few phones
    the paper's transcripts use that phones.json lacks (e.g. Russian `nʲ`), so no paper
    phone becomes <unk>. It depends on the language only, not on which clips a release has."""
    language = require_language(locale)
    texts = [" ".join(phone_inventory(language))]
    for split in PAPER_SPLITS:
        texts.extend(read_paper_split(language, split).phones)
    return CTCTokenizer.from_texts(texts, kind="phones", language=locale_to_voice(locale))


def _find_rows(locale_dir: Path, wanted: set[str]) -> dict[str, dict[str, str]]:
    """TSV fields of the wanted clips (by clip name), first row found in `TSV_ORDER`.

    Streamed and filtered while reading: validated.tsv of a large locale has about a
    million rows, which `read_tsv` would keep in memory for the sake of a thousand. Read
    like `read_tsv` (`iter_tsv`): UTF-8 without a BOM, no quote handling, empty fields stay
    empty, and a row with a wrong number of fields is skipped (a warning names its line).
    """
    found: dict[str, dict[str, str]] = {}
    for name in TSV_ORDER:
        tsv = locale_dir / f"{name}.tsv"
        if len(found) == len(wanted) or not tsv.exists():
            continue
        rows = iter_tsv(tsv)
        _, header = next(rows, (0, []))
        if "path" not in header:
            continue
        columns = {
            column: header.index(column) for column in ("path", "client_id", "sentence", "locale") if column in header
        }
        at_path = columns["path"]
        bad: list[str] = []
        for number, row in rows:
            if len(row) <= at_path:
                continue
            clip = os.path.splitext(row[at_path])[0]
            if clip in wanted and clip not in found:
                if len(row) != len(header):  # a tab inside the sentence: its fields are shifted
                    bad.append(f"line {number} ({clip})")
                    continue
                found[clip] = {c: row[i] for c, i in columns.items()}
        if bad:
            logger.warning(
                "%s: skipped %d row(s) of listed clips with a wrong number of fields (the header has %d): %s",
                tsv,
                len(bad),
                len(header),
                ", ".join(bad[:MAX_NAMED]) + (", ..." if len(bad) > MAX_NAMED else ""),
            )
    return found


def _clips_in_release(
    paper: PaperSplit, rows: dict[str, dict[str, str]], locale_dir: Path, report: SkipReport
) -> list[int]:
    """Indices of the listed clips that have a TSV row and an audio file; the others go to
    ``report``. None at all means a wrong folder: a FileNotFoundError says so."""
    keep = []
    for i, clip in enumerate(paper.clips):
        if clip not in rows:
            report.add(NO_ROW, [clip])
        elif not (locale_dir / "clips" / rows[clip]["path"]).is_file():
            report.add(NO_AUDIO, [clip], [str(locale_dir / "clips" / rows[clip]["path"])])
        else:
            keep.append(i)
    if not keep:
        counts = ", ".join(f"{reason.split(': ')[1]}: {len(ids)}" for reason, ids in report.skipped.items())
        raise FileNotFoundError(
            f"none of the {len(paper.clips)} clips listed in {paper.clips_file} is in the CommonVoice "
            f"release at {locale_dir} ({counts}); is this the right locale folder, with its TSVs and clips/? "
            "(data.paper_splits=false fine-tunes on a seeded 1-hour subset of the release's own train split)"
        )
    return keep


def load_paper_split(
    root: str | Path,
    locale: str | None,
    split: str,
    *,
    phone_labels: str = "phonemizer",
    options: ReadOptions | None = None,
    **fields: Any,
) -> tuple[datasets.Dataset, SkipReport]:
    """The corpus table of exactly the paper's clips of ``split``, in the paper's order.

    ``root``: the release root plus ``locale``, or the locale folder. Speakers and sentences
    come from the release's TSVs (validated.tsv, then the other splits); the extra column
    `paper_phones` holds the paper's transcript (our target format). A listed clip with no
    TSV row or no audio file is dropped and reported ("missing from the release: ...").
    With ``phone_labels="paper"`` an empty sentence is kept (the targets do not need it).
    No duration limits by default: the paper's lists are used as they are. ``options``
    and/or the `ReadOptions` fields as keywords (min_duration, ..., num_proc).
    """
    options = ReadOptions.of(options, **fields)
    if phone_labels not in PHONE_LABELS:
        raise ValueError(f"phone_labels must be one of {PHONE_LABELS}, got {phone_labels!r}")
    locale_dir = find_locale_dir(root, locale)
    locale = locale or locale_dir.name
    paper = read_paper_split(require_language(locale), split)
    name = f"commonvoice/{locale}/{paper.split}"
    sources = [locale_dir / f"{n}.tsv" for n in (*TSV_ORDER, "clip_durations")]
    shipped = [paper.clips_file, paper.clips_file.with_suffix(".phone")]
    fingerprint = [file_fingerprint(p) for p in [*sources, *shipped] if p.exists()]

    def build() -> tuple[datasets.Dataset, SkipReport]:
        rows = _find_rows(locale_dir, set(paper.clips))
        clips_dir = locale_dir / "clips"
        report = SkipReport(corpus=name)
        keep = _clips_in_release(paper, rows, locale_dir, report)
        durations = read_clip_durations(locale_dir)
        found = [rows[paper.clips[i]] for i in keep]
        table = make_table(
            {
                "id": [paper.clips[i] for i in keep],
                "path": [str(clips_dir / row["path"]) for row in found],
                "text": [row.get("sentence", "") for row in found],
                "speaker": [row.get("client_id", "") for row in found],
                "locale": [row.get("locale") or locale for row in found],
                "duration": [durations.get(row["path"], -1.0) for row in found],
                "paper_phones": [paper.phones[i] for i in keep],
            }
        )
        # validate() warns about what it drops; the clips missing from the release are ours.
        # (A run that reads the cache warns about all of them again, see `cached_table`.)
        SkipReport(name, dict(report.skipped)).warn()
        table, checked = options.validate(table, name, require_text=phone_labels == "phonemizer")
        report.merge(checked)
        return table, report

    return options.cached(("paper_split", fingerprint, locale, paper.split, phone_labels), build)
