"""Other corpus sources: any `datasets` dataset, a folder of audio, a TSV manifest.

Audio stays a path string in the table and is decoded by soundfile later. For `datasets`
datasets whose audio column is an `Audio` feature we cast it to `Audio(decode=False)`
(never letting torchcodec decode) and, when a row only carries bytes, write those bytes
once to a content-addressed file under the cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import datasets

from .audio import AUDIO_EXTENSIONS
from .commonvoice import read_tsv
from .corpus import SkipReport, cache_key, cached_table, default_cache_dir, file_fingerprint, make_table, validate


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
    min_duration: float | None = None,
    max_duration: float | None = None,
    check: str = "header",
    cache_dir: Path | None = None,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, SkipReport]:
    """A hub dataset id (from the local HF cache when offline) or a `save_to_disk` folder."""
    source_path = Path(name_or_path).expanduser()
    fingerprint = file_fingerprint(source_path) if source_path.exists() else name_or_path
    key = cache_key("hf", fingerprint, config, split, audio_column, text_column, speaker_column,
                    label_column, id_column, locale, min_duration, max_duration, check)
    blob_dir = Path(cache_dir or default_cache_dir() / "prepared") / "blobs"

    def build() -> tuple[datasets.Dataset, SkipReport]:
        ds, base = _open_hf(name_or_path, split, config)
        if audio_column not in ds.column_names:
            raise KeyError(f"{name_or_path}: no audio column {audio_column!r} (columns: {ds.column_names})")
        if isinstance(ds.features[audio_column], datasets.Audio):
            ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
        converted = ds.map(
            _convert_batch, batched=True, batch_size=64, remove_columns=ds.column_names,
            fn_kwargs={"audio_column": audio_column, "base": str(base) if base else None,
                       "blob_dir": str(blob_dir)},
            num_proc=num_proc if num_proc and num_proc > 1 else None, desc="resolving audio paths",
        )
        n = len(ds)
        rows: dict[str, list] = {"path": converted["path"]}
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
        return validate(
            make_table(rows), f"{name_or_path}/{split}", require_text=bool(text_column),
            min_duration=min_duration, max_duration=max_duration, check=check, num_proc=num_proc,
        )

    return cached_table(cache_dir, key, build)


def _as_text(value: Any) -> str:
    """Non-string transcripts (None, numbers, lists) count as empty: they are skipped."""
    return value if isinstance(value, str) else ""


def load_audio_folder(
    folder: str | Path,
    *,
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
    locale: str = "",
    min_duration: float | None = None,
    max_duration: float | None = None,
    check: str = "header",
    cache_dir: Path | None = None,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, SkipReport]:
    """Every audio file below ``folder`` (recursively) as unlabeled speech."""
    folder = Path(folder).expanduser().resolve()
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in extensions and p.is_file())
    if not files:
        raise ValueError(f"no audio files ({', '.join(extensions)}) found under {folder}")
    listing = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = cache_key("folder", str(folder), listing, locale, min_duration, max_duration, check)

    def build() -> tuple[datasets.Dataset, SkipReport]:
        rows = {
            "id": [str(p.relative_to(folder).with_suffix("")) for p in files],
            "path": [str(p) for p in files],
            "locale": [locale] * len(files),
        }
        return validate(make_table(rows), str(folder), require_text=False, min_duration=min_duration,
                        max_duration=max_duration, check=check, num_proc=num_proc)

    return cached_table(cache_dir, key, build)


def load_manifest(
    manifest: str | Path,
    *,
    text_column: str | None = "text",
    label_column: str | None = None,
    locale: str = "",
    min_duration: float | None = None,
    max_duration: float | None = None,
    check: str = "header",
    cache_dir: Path | None = None,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, SkipReport]:
    """A TSV with a header: `path` (relative to the manifest's folder or absolute), optional
    `text`, `speaker`, `id`, `duration` (seconds) and a label column."""
    manifest = Path(manifest).expanduser().resolve()
    key = cache_key("manifest", file_fingerprint(manifest), text_column, label_column, locale,
                    min_duration, max_duration, check)

    def build() -> tuple[datasets.Dataset, SkipReport]:
        raw = read_tsv(manifest)
        if "path" not in raw:
            raise ValueError(f"{manifest}: a manifest needs a 'path' column (columns: {list(raw)})")
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
        return validate(make_table(rows), str(manifest), require_text=labeled, min_duration=min_duration,
                        max_duration=max_duration, check=check, num_proc=num_proc)

    return cached_table(cache_dir, key, build)
