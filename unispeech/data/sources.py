"""Corpus sources: how `source` is detected and read, and the `datasets`, folder and TSV
manifest loaders (CommonVoice: commonvoice.py; the paper's splits: paper_splits.py).

Each source kind has one reader in `READERS` (`register_reader`): it takes a `SplitRequest`
(which split, which columns) and the shared `ReadOptions`, and returns validated tables.
Audio stays a path string in the table and is decoded by soundfile later. For `datasets`
datasets whose audio column is an `Audio` feature we cast it to `Audio(decode=False)`
(never letting torchcodec decode) and, when a row only carries bytes, write those bytes
once to a content-addressed file under the cache.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import datasets

from .audio import AUDIO_EXTENSIONS
from .commonvoice import BadRow, bad_row_ids, list_locales, load_commonvoice, read_tsv
from .corpus import SkipReport, default_cache_dir, file_fingerprint, make_table
from .kaldi import is_kaldi_dir, load_kaldi_dir
from .paper_splits import load_paper_split
from .read_options import ReadOptions


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in ("dataset_dict.json", "state.json"))


def _open_hf(name_or_path: str, split: str, config: str | None) -> tuple[datasets.Dataset, Path | None]:
    path = Path(name_or_path).expanduser()
    if _is_saved_dataset(path):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise KeyError(f"{path} has splits {list(loaded)}, not {split!r}")
            return loaded[split], path
        return loaded, path
    return datasets.load_dataset(name_or_path, config, split=split), None


def _audio_to_path(value: Any, base: Path | None, blob_dir: Path) -> str:
    """Turn a str or an undecoded Audio dict {path, bytes} into a readable file path."""
    if isinstance(value, dict):
        path, blob = value.get("path"), value.get("bytes")
        if path:
            candidate = Path(path) if Path(path).is_absolute() or base is None else base / path
            if candidate.is_file():
                return str(candidate.resolve())
        if blob:
            suffix = Path(path).suffix if path and Path(path).suffix else ".wav"
            target = blob_dir / (hashlib.sha1(blob).hexdigest() + suffix)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(target.suffix + f".{id(blob)}.tmp")
                tmp.write_bytes(blob)
                tmp.replace(target)
            return str(target)
        return str(path or "")
    value = str(value or "")
    if value and base is not None and not Path(value).is_absolute():
        return str((base / value).resolve())
    return value


def _convert_batch(batch: dict[str, list], audio_column: str, base: str | None, blob_dir: str) -> dict[str, list]:
    base_path = Path(base) if base else None
    return {"path": [_audio_to_path(v, base_path, Path(blob_dir)) for v in batch[audio_column]]}


def _audio_paths(
    ds: datasets.Dataset, audio_column: str, base: Path | None, blob_dir: Path, num_proc: int | None
) -> list[str]:
    """The audio column as readable file paths, never decoding through `datasets`."""
    if isinstance(ds.features[audio_column], datasets.Audio):
        ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
    converted = ds.map(
        _convert_batch,
        batched=True,
        batch_size=64,
        remove_columns=ds.column_names,
        fn_kwargs={"audio_column": audio_column, "base": str(base) if base else None, "blob_dir": str(blob_dir)},
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        desc="resolving audio paths",
    )
    return list(converted["path"])


def load_hf_corpus(
    name_or_path: str,
    split: str,
    *,
    audio_column: str = "audio",
    text_column: str | None = "sentence",
    speaker_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    config: str | None = None,
    locale: str = "",
    options: ReadOptions | None = None,
    **fields: Any,
) -> tuple[datasets.Dataset, SkipReport]:
    """A hub dataset id (from the local HF cache when offline) or a `save_to_disk` folder.

    ``options`` and/or the `ReadOptions` fields as keywords (min_duration, ..., num_proc).
    """
    options = ReadOptions.of(options, **fields)
    source_path = Path(name_or_path).expanduser()
    fingerprint = file_fingerprint(source_path) if source_path.exists() else name_or_path
    blob_dir = Path(options.cache_dir or default_cache_dir() / "prepared") / "blobs"

    def build() -> tuple[datasets.Dataset, SkipReport]:
        ds, base = _open_hf(name_or_path, split, config)
        if audio_column not in ds.column_names:
            raise KeyError(f"{name_or_path}: no audio column {audio_column!r} (columns: {ds.column_names})")
        n = len(ds)
        rows: dict[str, list] = {"path": _audio_paths(ds, audio_column, base, blob_dir, options.num_proc)}
        rows["id"] = [str(v) for v in ds[id_column]] if id_column else [f"{split}-{i:08d}" for i in range(n)]
        rows["text"] = [_as_text(v) for v in ds[text_column]] if text_column else [""] * n
        rows["speaker"] = [str(v) for v in ds[speaker_column]] if speaker_column else [""] * n
        rows["locale"] = [locale] * n
        if label_column:
            feature = ds.features[label_column]
            values = ds[label_column]
            if isinstance(feature, datasets.ClassLabel):
                rows["label"] = [feature.int2str(int(v)) for v in values]
            else:
                rows["label"] = [str(v) for v in values]
        return options.validate(make_table(rows), f"{name_or_path}/{split}", require_text=bool(text_column))

    return options.cached(
        ("hf", fingerprint, config, split, audio_column, text_column, speaker_column, label_column, id_column, locale),
        build,
    )


def _as_text(value: Any) -> str:
    """Non-string transcripts (None, numbers, lists) count as empty: they are skipped."""
    return value if isinstance(value, str) else ""


def load_audio_folder(
    folder: str | Path,
    *,
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
    locale: str = "",
    options: ReadOptions | None = None,
    **fields: Any,
) -> tuple[datasets.Dataset, SkipReport]:
    """Every audio file below ``folder`` (recursively) as unlabeled speech. ``options``
    and/or the `ReadOptions` fields as keywords (min_duration, ..., num_proc)."""
    options = ReadOptions.of(options, **fields)
    folder = Path(folder).expanduser().resolve()
    files = _audio_files(folder, extensions)
    listing = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]

    def build() -> tuple[datasets.Dataset, SkipReport]:
        rows = {
            "id": [str(p.relative_to(folder).with_suffix("")) for p in files],
            "path": [str(p) for p in files],
            "locale": [locale] * len(files),
        }
        return options.validate(make_table(rows), str(folder), require_text=False)

    return options.cached(("folder", str(folder), listing, locale), build)


def _audio_files(folder: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in extensions and p.is_file())
    if not files:
        raise ValueError(f"no audio files ({', '.join(extensions)}) found under {folder}")
    return files


# Speech Commands' split lists (paths relative to the folder, one a line); the training
# split is every file in neither.
SPLIT_LISTS = {"validation": "validation_list.txt", "test": "testing_list.txt"}
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "testing": "test"}


def load_label_folder(
    folder: str | Path,
    split: str = "train",
    *,
    locale: str = "",
    options: ReadOptions | None = None,
    **fields: Any,
) -> tuple[datasets.Dataset, SkipReport]:
    """A Speech Commands-style folder for classification: `<folder>/<label>/<clip>`, the
    label being the sub-folder's name; folders whose name starts with `_` or `.` (Speech
    Commands' `_background_noise_`) are not classes. With `validation_list.txt` and
    `testing_list.txt` beside them, ``split`` "validation" (or val/dev) and "test" (or
    testing) are those lists and "train" is every other clip; without the lists the folder
    has only a "train" split (a `file,label` CSV per split is a manifest, docs/data.md)."""
    options = ReadOptions.of(options, **fields)
    folder = Path(folder).expanduser().resolve()
    split = SPLIT_ALIASES.get(split, split)
    files = [p for p in _audio_files(folder) if p.parent != folder and p.relative_to(folder).parts[0][0] not in "_."]
    relative = [p.relative_to(folder).as_posix() for p in files]
    lists = {name: folder / file for name, file in SPLIT_LISTS.items() if (folder / file).is_file()}
    if split not in ("train", *SPLIT_LISTS) or (split != "train" and split not in lists):
        have = ["train", *lists]
        raise ValueError(
            f"{folder}: a label folder has the splits {have}, not {split!r} "
            f"(validation/test come from {' and '.join(SPLIT_LISTS.values())}; or give a CSV manifest per split)"
        )
    listed = {name: set(path.read_text(encoding="utf-8").split()) for name, path in lists.items()}
    if split == "train":
        held_out = set().union(*listed.values()) if listed else set()
        chosen = [i for i, r in enumerate(relative) if r not in held_out]
    else:
        chosen = [i for i, r in enumerate(relative) if r in listed[split]]
    fingerprint = [file_fingerprint(path) for path in lists.values()]

    def build() -> tuple[datasets.Dataset, SkipReport]:
        rows = {
            "id": [str(Path(relative[i]).with_suffix("")) for i in chosen],
            "path": [str(files[i]) for i in chosen],
            "label": [Path(relative[i]).parts[0] for i in chosen],
            "locale": [locale] * len(chosen),
        }
        return options.validate(make_table(rows), f"{folder}/{split}", require_text=False)

    return options.cached(("label-folder", str(folder), relative, fingerprint, split, locale), build)


def load_manifest(
    manifest: str | Path,
    *,
    text_column: str | None = "text",
    label_column: str | None = None,
    locale: str = "",
    options: ReadOptions | None = None,
    **fields: Any,
) -> tuple[datasets.Dataset, SkipReport]:
    """A TSV (or comma-separated `.csv`) with a header: `path` or `file` (relative to the
    manifest's folder or absolute), optional
    `text`, `speaker`, `id`, `duration` (seconds) and a label column. ``options`` and/or the
    `ReadOptions` fields as keywords (min_duration, ..., num_proc)."""
    options = ReadOptions.of(options, **fields)
    manifest = Path(manifest).expanduser().resolve()

    def build() -> tuple[datasets.Dataset, SkipReport]:
        bad: list[BadRow] = []
        raw = read_csv(manifest, bad) if manifest.suffix == ".csv" else read_tsv(manifest, bad)
        path_column = next((name for name in PATH_COLUMNS if name in raw), None)
        if path_column is None:
            raise ValueError(f"{manifest}: a manifest needs a 'path' (or 'file') column (columns: {list(raw)})")
        if label_column and label_column not in raw:
            raise ValueError(
                f"{manifest}: no label column {label_column!r} (columns: {list(raw)}); set data.label_column"
            )
        raw["path"] = raw[path_column]
        base = manifest.parent
        paths = [str(Path(p) if Path(p).is_absolute() else (base / p)) for p in raw["path"]]
        n = len(paths)
        labeled = bool(text_column) and text_column in raw
        rows: dict[str, list] = {
            "path": paths,
            "id": raw.get("id") or [str(Path(p).with_suffix("")) for p in raw["path"]],
            "text": raw[text_column] if labeled else [""] * n,
            "speaker": raw.get("speaker", [""] * n),
            "locale": [locale] * n,
            "duration": [float(d) if d else -1.0 for d in raw["duration"]] if "duration" in raw else [-1.0] * n,
        }
        if label_column:
            rows["label"] = raw[label_column]
        unreadable = bad_row_ids(bad, list(raw), manifest.name)
        return options.validate(make_table(rows), str(manifest), require_text=labeled, skipped=unreadable)

    return options.cached(("manifest", file_fingerprint(manifest), text_column, label_column, locale), build)


PATH_COLUMNS = ("path", "file")  # the audio column of a manifest, first found


def read_csv(path: Path, bad_rows: list[BadRow]) -> dict[str, list[str]]:
    """A comma-separated manifest (standard CSV quoting) as columns; a row of the wrong
    width is skipped and reported, as in `read_tsv`."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0] if rows else []
    columns: dict[str, list[str]] = {name: [] for name in header}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            bad_rows.append(BadRow(number, tuple(row)))
            continue
        for name, value in zip(header, row):
            columns[name].append(value)
    return columns


# -- source kinds: detection and one reader per kind -----------------------------------
@dataclass(frozen=True)
class SplitRequest:
    """One split of one corpus to read, with what the DataModule knows about its columns.

    ``labeled``: read the transcripts (False: unlabeled audio). ``label_column``: the class
    column (classification only). ``phone_labels``: the targets a paper split is read for
    ("paper" keeps clips without a sentence, see `paper_splits.load_paper_split`).
    """

    corpus: str
    split: str
    labeled: bool = True
    locales: tuple[str, ...] = ()
    audio_column: str = "audio"
    text_column: str = "sentence"
    speaker_column: str | None = None
    label_column: str | None = None
    hf_config: str | None = None
    phone_labels: str = "phonemizer"

    @property
    def locale(self) -> str:
        """The locale written into tables of sources that do not carry one."""
        return self.locales[0] if self.locales else ""


Result = tuple[datasets.Dataset, SkipReport]
Reader = Callable[[SplitRequest, ReadOptions], list[Result]]
READERS: dict[str, Reader] = {}


def register_reader(kind: str) -> Callable[[Reader], Reader]:
    """Decorator: ``kind`` becomes a `source` of `read_source` (and of the DataModule)."""

    def register(reader: Reader) -> Reader:
        READERS[kind] = reader
        return reader

    return register


def detect_source(corpus: str) -> str:
    """Guess the source kind of ``corpus`` (see docs/data.md)."""
    if corpus == "demo":
        return "commonvoice"
    path = Path(corpus).expanduser()
    if path.is_file() and path.suffix == ".tsv":
        return "manifest"
    if path.is_file() and path.suffix == ".csv":
        return "manifest"
    if not path.is_dir() or _is_saved_dataset(path):
        return "hf"
    subfolders = [p for p in path.iterdir() if p.is_dir()]
    if (path / "clips").is_dir() or any((p / "clips").is_dir() for p in subfolders):
        return "commonvoice"
    if is_kaldi_dir(path) or any(is_kaldi_dir(p) for p in subfolders):
        return "kaldi"
    return "manifest" if any(path.glob("*.tsv")) or any(path.glob("*.csv")) else "folder"


def concatenate(tables: list[datasets.Dataset]) -> datasets.Dataset:
    """One table from several with the same columns (one alone is returned as it is)."""
    return tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)


def read_source(source: str, request: SplitRequest, options: ReadOptions) -> Result:
    """One split through the reader of ``source``: a table (several locales concatenated)
    and the merged report of what validation dropped."""
    if request.split.endswith((".tsv", ".csv")) and Path(request.split).expanduser().is_file():
        source = "manifest"  # a split given as a TSV file is a manifest, whatever the corpus
    if source not in READERS:
        raise ValueError(f"unknown source {source!r} ({', '.join(READERS)})")
    results = READERS[source](request, options)
    report = SkipReport(corpus=request.corpus)
    for _, part in results:
        report.merge(part)
    return concatenate([table for table, _ in results]), report


def corpus_root(corpus: str) -> Path:
    """The folder of ``corpus``; "demo" is the embedded corpus, generated on first use."""
    if corpus == "demo":
        from .demo_corpus import ensure_demo_corpus

        return ensure_demo_corpus()
    return Path(corpus).expanduser()


@register_reader("commonvoice")
def _read_commonvoice(request: SplitRequest, options: ReadOptions) -> list[Result]:
    """Every selected locale (default: all of a release root; a locale folder is its own)."""
    root = corpus_root(request.corpus)
    locales = [root.name] if (root / "clips").is_dir() else list(request.locales) or list_locales(root)
    return [
        load_commonvoice(root, locale, request.split, labeled=request.labeled, options=options) for locale in locales
    ]


@register_reader("paper")
def _read_paper_split(request: SplitRequest, options: ReadOptions) -> list[Result]:
    """Exactly the paper's clips: no duration filter, so val/test are the paper's."""
    return [
        load_paper_split(
            corpus_root(request.corpus),
            request.locale or None,
            request.split,
            phone_labels=request.phone_labels,
            options=replace(options, min_duration=None, max_duration=None),
        )
    ]


@register_reader("hf")
def _read_hf(request: SplitRequest, options: ReadOptions) -> list[Result]:
    """A hub id or a `save_to_disk` folder; unlabeled splits do not read the text column."""
    return [
        load_hf_corpus(
            request.corpus,
            request.split,
            audio_column=request.audio_column,
            text_column=request.text_column if request.labeled else None,
            speaker_column=request.speaker_column,
            label_column=request.label_column,
            config=request.hf_config,
            locale=request.locale,
            options=options,
        )
    ]


@register_reader("manifest")
def _read_manifest(request: SplitRequest, options: ReadOptions) -> list[Result]:
    """``split``: a TSV path, `<corpus>/<split>.tsv`, or the corpus file itself for "train"."""
    split, corpus = request.split, Path(request.corpus)
    if split.endswith((".tsv", ".csv")):
        path = Path(split)
    elif corpus.is_file() and split == "train":
        path = corpus
    else:
        path = next(
            (p for p in (corpus / f"{split}.tsv", corpus / f"{split}.csv") if p.is_file()), corpus / f"{split}.tsv"
        )
    return [
        load_manifest(
            path,
            text_column="text" if request.labeled else None,
            label_column=request.label_column,
            locale=request.locale,
            options=options,
        )
    ]


@register_reader("folder")
def _read_folder(request: SplitRequest, options: ReadOptions) -> list[Result]:
    """Every audio file of the folder, whatever the split; for classification (a label
    column asked for) a label folder, its sub-folders the classes (`load_label_folder`)."""
    if request.label_column:
        return [load_label_folder(request.corpus, request.split, locale=request.locale, options=options)]
    return [load_audio_folder(request.corpus, locale=request.locale, options=options)]


@register_reader("kaldi")
def _read_kaldi(request: SplitRequest, options: ReadOptions) -> list[Result]:
    """``split``: the data directory `<corpus>/<split>`, or the corpus itself when it is one
    (for any split name: a single directory has no splits)."""
    corpus = corpus_root(request.corpus)
    data_dir = corpus if is_kaldi_dir(corpus) else corpus / request.split
    if not is_kaldi_dir(data_dir):
        found = sorted(p.name for p in corpus.iterdir() if is_kaldi_dir(p)) if corpus.is_dir() else []
        raise FileNotFoundError(
            f"{data_dir}: no Kaldi data directory for split {request.split!r} (no wav.scp); "
            f"the data directories of {corpus} are: {', '.join(found) or 'none'}"
        )
    return [load_kaldi_dir(data_dir, labeled=request.labeled, locale=request.locale, options=options)]
