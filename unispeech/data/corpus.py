"""The common corpus table and its preparation-time validation.

Every source (CommonVoice release, `datasets` dataset, folder, manifest) is turned into a
`datasets.Dataset` with the columns in `COLUMNS`. Clips are validated here, once, so a
training epoch never meets a missing or undecodable file: anything bad is dropped with a
counted warning that names the first few culprits.
"""

from __future__ import annotations

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
import soundfile as sf

from .audio import audio_info, keep_duration

logger = logging.getLogger("unispeech.data")

# id: unique utterance id; path: absolute audio path; text: transcript ("" when unlabeled);
# speaker: speaker id (CommonVoice client_id); locale: language code; duration: seconds
# (-1.0 until validated).
COLUMNS = ("id", "path", "text", "speaker", "locale", "duration")
CACHE_VERSION = 1
MAX_NAMED = 5  # culprits named in a skip warning


def default_cache_dir() -> Path:
    """`$UNISPEECH_CACHE` or `~/.cache/unispeech`."""
    return Path(os.environ.get("UNISPEECH_CACHE", Path.home() / ".cache" / "unispeech"))


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
            features[extra] = datasets.Value("string")
    return datasets.Dataset.from_dict(rows, features=datasets.Features(features))


@dataclass
class SkipReport:
    """Utterances dropped during preparation, grouped by reason."""

    corpus: str = ""
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, ids: list[str]) -> None:
        if ids:
            self.skipped.setdefault(reason, []).extend(ids)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def merge(self, other: SkipReport) -> None:
        for reason, ids in other.skipped.items():
            self.add(reason, ids)

    def warn(self) -> None:
        for reason, ids in self.skipped.items():
            named = ", ".join(ids[:MAX_NAMED]) + (", ..." if len(ids) > MAX_NAMED else "")
            logger.warning("%s: skipped %d utterance(s) (%s): %s", self.corpus, len(ids), reason, named)

    def to_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.skipped.items()}


def has_letters(text: str) -> bool:
    """A usable transcript contains at least one letter (any script)."""
    return any(unicodedata.category(ch).startswith("L") for ch in text)


def _probe_batch(batch: dict[str, list], check: str) -> dict[str, list]:
    """Fill `duration` from the file (or keep a known one) and record why a clip is bad."""
    durations, problems = [], []
    for path, known in zip(batch["path"], batch["duration"]):
        problem = ""
        duration = float(known)
        try:
            if not os.path.isfile(path):
                problem = "missing audio file"
            elif check == "decode":
                wav, sr = sf.read(path, dtype="float32", always_2d=True)
                duration = len(wav) / sr
            else:
                info = audio_info(path)
                if info.frames <= 0:
                    problem = "empty audio"
                elif duration < 0:
                    duration = info.duration
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
) -> tuple[datasets.Dataset, SkipReport]:
    """Drop unusable rows: missing/undecodable clips, out-of-range durations, bad text.

    ``check``: "header" (open each file and read its header: cheap, catches missing and
    corrupt files), "decode" (decode every clip fully: slow, also catches truncated files)
    or "none" (trust the table).
    """
    if check not in ("header", "decode", "none"):
        raise ValueError(f"check must be 'header', 'decode' or 'none', got {check!r}")
    report = SkipReport(corpus=name)
    if len(table) == 0:
        raise ValueError(f"{name}: the corpus is empty (no rows were read)")
    if check != "none":
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
        ids = table["id"]
        for reason in sorted(set(problems) - {""}):
            report.add(reason, [ids[i] for i in np.flatnonzero(problems == reason)])
        table = table.select(np.flatnonzero(problems == "")).remove_columns("_problem")
    durations = np.asarray(table["duration"], dtype=np.float64)
    texts = table["text"]
    ids = table["id"]
    keep = np.ones(len(table), dtype=bool)
    for i, (duration, text) in enumerate(zip(durations, texts)):
        if duration >= 0 and not keep_duration(duration, min_duration, max_duration):
            report.add(f"duration outside [{min_duration}, {max_duration}] s", [ids[i]])
            keep[i] = False
        elif require_text and not (text or "").strip():
            report.add("empty sentence", [ids[i]])
            keep[i] = False
        elif require_text and not has_letters(text):
            report.add("sentence without letters", [ids[i]])
            keep[i] = False
    table = table.select(np.flatnonzero(keep))
    report.warn()
    if len(table) == 0:
        raise ValueError(
            f"{name}: no usable utterance left after validation "
            f"(skipped {report.total}: {', '.join(f'{k}: {len(v)}' for k, v in report.skipped.items())})"
        )
    return table, report


# -- Arrow cache -----------------------------------------------------------------------
def cache_key(*parts: object) -> str:
    """Stable short hash of everything a cached table depends on."""
    blob = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def file_fingerprint(path: str | Path) -> list:
    """Size + mtime: enough to notice that a TSV or manifest changed."""
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def cached_table(
    cache_dir: Path | None,
    key: str,
    build: Callable[[], tuple[datasets.Dataset, SkipReport]],
) -> tuple[datasets.Dataset, SkipReport]:
    """Load a prepared table (Arrow, `save_to_disk`) or build and store it.

    Written to a temporary folder then renamed, so two processes preparing the same corpus
    (e.g. two DDP ranks) never see half-written files.
    """
    if cache_dir is None:
        return build()
    target = Path(cache_dir) / key
    report_file = target / "skipped.json"
    if report_file.exists():
        stored = json.loads(report_file.read_text())
        report = SkipReport(corpus=stored["corpus"], skipped=stored["skipped"])
        return datasets.load_from_disk(str(target)), report
    table, report = build()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    table = table.flatten_indices() if table._indices is not None else table
    table.save_to_disk(str(tmp))
    (tmp / "skipped.json").write_text(json.dumps({"corpus": report.corpus, "skipped": report.to_dict()}))
    try:
        os.rename(tmp, target)
    except OSError:  # another process won the race: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(target)), report
