"""The common corpus table and its preparation-time validation.

Every source (CommonVoice release, `datasets` dataset, folder, manifest) is turned into a
`datasets.Dataset` with the columns in `COLUMNS`. Clips are validated here, once, so a
training epoch never meets a missing, undecodable or (with `check="decode"`) truncated file:
anything bad is dropped with a counted warning that names the first few culprits, again
when the prepared table is read back from the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

from .audio import audio_info, keep_duration, read_frames

logger = logging.getLogger("unispeech.data")

# id: unique utterance id; path: absolute audio path; text: transcript ("" when unlabeled);
# speaker: speaker id (CommonVoice client_id); locale: language code; duration: seconds
# (-1.0 until validated).
COLUMNS = ("id", "path", "text", "speaker", "locale", "duration")
# 2: TSVs without their BOM and without rows of the wrong width, truncated clips dropped,
# NFC/emoji-free phones, the skipped clips' files kept with the report.
CACHE_VERSION = 2
# Optional columns of segmented recordings (Kaldi `segments`): seconds within `path`; an
# `end` below 0 reads to the end of the file. `duration` is then the segment's.
SEGMENT_COLUMNS = ("start", "end")
MAX_NAMED = 5  # culprits named in a skip warning
# check="decode" drops a clip whose decoded audio is shorter than TRUNCATED_FRACTION of the
# declared duration (clip_durations.tsv, else the file's header) by more than
# TRUNCATED_SECONDS: a cut download keeps the header of the whole file, so it would be kept
# with the transcript of the whole sentence. MP3 encoder padding is well within both.
TRUNCATED_FRACTION = 0.9
TRUNCATED_SECONDS = 0.25
TRUNCATED = "truncated audio (decodes shorter than declared)"


def default_cache_dir() -> Path:
    """`$UNISPEECH_CACHE` or `~/.cache/unispeech`, whatever the working directory."""
    return Path(os.environ.get("UNISPEECH_CACHE") or Path.home() / ".cache" / "unispeech").expanduser()


def build_in_place(final: Path, fill: Callable[[Path], None], marker: str) -> None:
    """Make the folder ``final`` by filling a private temporary folder beside it (``fill``
    writes ``marker`` last) and renaming that into place: concurrent processes (tests, DDP
    ranks) never read a half-written folder. The loser of a race keeps the winner's folder
    and discards its own; any other failure to rename is raised."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        fill(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / marker).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_table(rows: dict[str, list]) -> datasets.Dataset:
    """Build a corpus table, filling absent standard columns with neutral values."""
    n = len(rows["path"])
    rows = dict(rows)
    rows.setdefault("id", [Path(p).stem for p in rows["path"]])
    rows.setdefault("text", [""] * n)
    rows.setdefault("speaker", [""] * n)
    rows.setdefault("locale", [""] * n)
    rows.setdefault("duration", [-1.0] * n)
    rows["duration"] = [float(d) for d in rows["duration"]]
    features = {c: datasets.Value("float64" if c == "duration" else "string") for c in COLUMNS}
    for extra in rows:
        if extra not in features:
            features[extra] = datasets.Value("float64" if extra in SEGMENT_COLUMNS else "string")
    return datasets.Dataset.from_dict(rows, features=datasets.Features(features))


@dataclass
class SkipReport:
    """Utterances dropped during preparation, grouped by reason.

    ``files``: the audio files of clips dropped for their audio (missing, undecodable,
    truncated, too short/long). The cache stores them with their size and mtime and
    prepares the table again once one appears or changes (a restored clip is not kept out).
    """

    corpus: str = ""
    skipped: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def add(self, reason: str, ids: list[str], files: list[str] | tuple[str, ...] = ()) -> None:
        if ids:
            self.skipped.setdefault(reason, []).extend(ids)
        self.files.extend(files)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def merge(self, other: SkipReport) -> None:
        for reason, ids in other.skipped.items():
            self.add(reason, ids)
        self.files.extend(other.files)

    def warn(self, note: str = "") -> None:
        """One warning per reason: the count and the first `MAX_NAMED` ids (then ``note``)."""
        for reason, ids in self.skipped.items():
            named = ", ".join(ids[:MAX_NAMED]) + (", ..." if len(ids) > MAX_NAMED else "")
            logger.warning("%s: skipped %d utterance(s) (%s): %s%s", self.corpus, len(ids), reason, named, note)

    def to_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.skipped.items()}


def has_letters(text: str) -> bool:
    """A usable transcript contains at least one letter (any script)."""
    return any(unicodedata.category(ch).startswith("L") for ch in text)


def is_truncated(decoded: float, declared: float) -> bool:
    """Decoded audio much shorter than the declared duration (see `TRUNCATED_FRACTION`)."""
    return declared > 0 and decoded < TRUNCATED_FRACTION * declared and declared - decoded > TRUNCATED_SECONDS


def _probe_batch(batch: dict[str, list], check: str) -> dict[str, list]:
    """Fill `duration` from the file (or keep a known one) and record why a clip is bad."""
    durations, problems = [], []
    n = len(batch["path"])
    starts, ends = batch.get("start") or [0.0] * n, batch.get("end") or [-1.0] * n
    for path, known, start, end in zip(batch["path"], batch["duration"], starts, ends):
        problem = ""
        duration = float(known)
        try:
            if not os.path.isfile(path):
                problem = "missing audio file"
            elif check == "decode":
                declared = duration if duration > 0 else audio_info(path).duration - start
                wav, sr = read_frames(path, start, end)  # decoded, not resampled: only its length counts
                duration = len(wav) / sr
                if is_truncated(duration, declared):
                    problem = TRUNCATED
            else:
                info = audio_info(path)
                if info.frames <= 0:
                    problem = "empty audio"
                elif start > 0 and start >= info.duration:
                    problem = "segment starts after the end of its recording"
                elif duration < 0:
                    duration = info.duration - start
        except (RuntimeError, ValueError, OSError):
            problem = "undecodable audio"
        if check == "decode" and not problem and duration <= 0:
            problem = "empty audio"
        durations.append(duration)
        problems.append(problem)
    return {"duration": durations, "_problem": problems}


def validate(
    table: datasets.Dataset,
    name: str,
    *,
    require_text: bool,
    min_duration: float | None = None,
    max_duration: float | None = None,
    check: str = "header",
    num_proc: int | None = None,
    skipped: dict[str, list[str]] | None = None,
) -> tuple[datasets.Dataset, SkipReport]:
    """Drop unusable rows: missing/undecodable clips, out-of-range durations, bad text.

    ``check``: "header" (open each file and read its header: cheap, catches missing and
    corrupt files), "decode" (decode every clip fully: slow, also catches truncated files,
    whose decoded audio is much shorter than clip_durations.tsv or the header declares; the
    decoded duration is kept) or "none" (trust the table). ``skipped``: rows the reader
    could not read (reason -> ids), reported with the others.
    """
    if check not in ("header", "decode", "none"):
        raise ValueError(f"check must be 'header', 'decode' or 'none', got {check!r}")
    report = SkipReport(corpus=name)
    for reason, ids in (skipped or {}).items():
        report.add(reason, ids)
    if len(table) == 0 and not report.total:
        raise ValueError(f"{name}: the corpus is empty (no rows were read)")
    if check != "none" and len(table):
        num_proc = num_proc if num_proc and num_proc > 1 and len(table) >= 4 * num_proc else None
        table = table.map(
            _probe_batch,
            batched=True,
            batch_size=64,
            fn_kwargs={"check": check},
            num_proc=num_proc,
            desc=f"validating {name}",
        )
        problems = np.asarray(table["_problem"], dtype=object)
        ids, paths = table["id"], table["path"]
        for reason in sorted(set(problems) - {""}):
            rows = np.flatnonzero(problems == reason)
            report.add(reason, [ids[i] for i in rows], [paths[i] for i in rows])
        table = table.select(np.flatnonzero(problems == "")).remove_columns("_problem")
    table = _drop_bad_rows(table, report, require_text, min_duration, max_duration)
    report.warn()
    if len(table) == 0:
        raise ValueError(
            f"{name}: no usable utterance left after validation "
            f"(skipped {report.total}: {', '.join(f'{k}: {len(v)}' for k, v in report.skipped.items())})"
        )
    return table, report


def _drop_bad_rows(
    table: datasets.Dataset,
    report: SkipReport,
    require_text: bool,
    min_duration: float | None,
    max_duration: float | None,
) -> datasets.Dataset:
    """Rows with a duration out of range or (where text is required) no usable sentence,
    dropped and added to ``report``."""
    durations = np.asarray(table["duration"], dtype=np.float64)
    texts = table["text"]
    ids, paths = table["id"], table["path"]
    keep = np.ones(len(table), dtype=bool)
    for i, (duration, text) in enumerate(zip(durations, texts)):
        if duration >= 0 and not keep_duration(duration, min_duration, max_duration):
            report.add(f"duration outside [{min_duration}, {max_duration}] s", [ids[i]], [paths[i]])
            keep[i] = False
        elif require_text and not (text or "").strip():
            report.add("empty sentence", [ids[i]])
            keep[i] = False
        elif require_text and not has_letters(text):
            report.add("sentence without letters", [ids[i]])
            keep[i] = False
    return table.select(np.flatnonzero(keep))


# -- Arrow cache -----------------------------------------------------------------------
def cache_key(*parts: object) -> str:
    """Stable short hash of everything a cached table depends on."""
    blob = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def file_fingerprint(path: str | Path) -> list:
    """Size + mtime: enough to notice that a TSV or manifest changed."""
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def _file_state(path: str) -> list[int] | None:
    """Size and mtime of a file, None while it does not exist."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _changed(files: dict[str, list[int] | None]) -> list[str]:
    """The skipped clips' files that appeared, vanished or changed since they were stored."""
    return [path for path, state in files.items() if _file_state(path) != state]


def _discard(target: Path) -> None:
    """Remove a stale cache entry: renamed away first, so a reader never sees half of it."""
    trash = target.with_name(f".{target.name}-stale-{os.getpid()}")
    try:
        os.rename(target, trash)
    except OSError:  # another process removed or replaced it already
        return
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def quiet_progress():
    """`datasets` progress bars off for the duration (restored as they were)."""
    enabled = datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            datasets.utils.logging.enable_progress_bar()


def cached_table(
    cache_dir: Path | None,
    key: str,
    build: Callable[[], tuple[datasets.Dataset, SkipReport]],
) -> tuple[datasets.Dataset, SkipReport]:
    """Load a prepared table (Arrow, `save_to_disk`) or build and store it.

    Its `SkipReport` is stored alongside, ids and all, and warned again on every load from the
    cache, so a second run names the skipped clips like the first. The files of the clips it
    skipped for their audio are stored with their size and mtime: if one of them appeared
    or changed since (a missing clip restored, a corrupt one replaced), the entry is stale
    and the table is prepared again. The key itself (the TSVs, the options) does not see them.

    Written to a temporary folder then renamed, so two processes preparing the same corpus
    (e.g. two DDP ranks) never see half-written files.
    """
    if cache_dir is None:
        return build()
    target = Path(cache_dir).expanduser() / key
    report_file = target / "skipped.json"
    if report_file.exists():
        stored = json.loads(report_file.read_text())
        files = stored.get("files", {})
        changed = _changed(files)
        if not changed:
            report = SkipReport(corpus=stored["corpus"], skipped=stored["skipped"], files=list(files))
            report.warn(f" (prepared earlier, read from {target})")
            return datasets.load_from_disk(str(target)), report
        logger.info(
            "%s: %d skipped clip(s) appeared or changed since it was prepared (%s): preparing it again",
            stored["corpus"],
            len(changed),
            ", ".join(changed[:MAX_NAMED]) + (", ..." if len(changed) > MAX_NAMED else ""),
        )
        _discard(target)
    table, report = build()
    table = table.flatten_indices() if table._indices is not None else table

    def fill(folder: Path) -> None:
        with quiet_progress():  # a bar per save and per split is noise next to the work bars
            table.save_to_disk(str(folder))
        stored = {
            "corpus": report.corpus,
            "skipped": report.to_dict(),
            "files": {path: _file_state(path) for path in report.files},
        }
        (folder / "skipped.json").write_text(json.dumps(stored))

    build_in_place(target, fill, marker="skipped.json")
    return datasets.load_from_disk(str(target)), report
