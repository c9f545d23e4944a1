"""Kaldi / ESPnet data directories: `wav.scp`, `text`, `utt2spk` and their optional friends.

A data directory (Kaldi's `data/train`, ESPnet's `dump/raw/train`, icefall's ...) is a set
of two-column text files keyed by utterance or speaker id:

    wav.scp     <recording-id> <path>            (plain paths; no `cmd |` pipes, no ark:)
    text        <utterance-id> <transcript>      (optional for unlabeled audio)
    utt2spk     <utterance-id> <speaker-id>      (optional)
    segments    <utterance-id> <recording-id> <start-s> <end-s>   (optional; end -1: to the end)
    utt2dur     <utterance-id> <seconds>         (optional; saves opening each file)
    spk2gender  <speaker-id> m|f                 (optional, kept as a `gender` column)
    spk2age     <speaker-id> <years>             (optional, kept as an `age` column)

Without `segments` every recording is one utterance (ids shared between `wav.scp` and
`text`). Relative paths in `wav.scp` are resolved against the data directory, else its
parent, else its grandparent (Kaldi recipes keep `data/<split>/` two levels below the folder
that their paths start from): the first of these in which the first listed file exists.

Why our own reader and not lhotse's `load_kaldi_data_dir`: the files are five lines of
parsing each, lhotse would add its own manifest model (recordings, supervisions, cuts) that
we would convert straight back into our table, and our validation already opens each file
once, fills durations and names every skipped utterance. A malformed line stops the read
with `KaldiFormatError` naming the file and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from .corpus import SkipReport, file_fingerprint, make_table
from .read_options import ReadOptions

KALDI_FILES = ("wav.scp", "text", "utt2spk", "segments", "utt2dur", "spk2gender", "spk2age")
NO_RECORDING = "no wav.scp entry for its recording"


class KaldiFormatError(ValueError):
    """A line of a data directory's file that cannot be read (file and line named)."""


def is_kaldi_dir(path: str | Path) -> bool:
    return (Path(path) / "wav.scp").is_file()


def read_table(path: Path, columns: int = 2) -> dict[str, list[str]]:
    """A Kaldi table: the key, then ``columns - 1`` fields; with 2 columns the rest of the
    line (a transcript may hold spaces) is the value, and it may be empty."""
    entries: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            fields = line.split(maxsplit=1) if columns == 2 else line.split()
            if columns == 2 and len(fields) == 1:
                fields.append("")
            if len(fields) != columns:
                raise KaldiFormatError(
                    f"{path}: line {number} has {len(fields)} field(s), expected {columns}: {line[:80]!r}"
                )
            key = fields[0]
            if key in entries:
                raise KaldiFormatError(f"{path}: line {number}: id {key!r} appears twice")
            entries[key] = fields[1:]
    return entries


def _recordings(data_dir: Path) -> dict[str, str]:
    """`wav.scp` as recording id -> absolute path; pipes and archives are refused."""
    scp = data_dir / "wav.scp"
    raw = {key: value[0].strip() for key, value in read_table(scp).items()}
    for key, value in raw.items():
        if (
            not value
            or value.endswith("|")
            or value.startswith("ark:")
            or ":" in value
            and value.rsplit(":", 1)[-1].isdigit()
        ):
            raise KaldiFormatError(
                f"{scp}: recording {key!r} is {value!r}: only plain file paths are read (no `command |` pipes, "
                f"no ark offsets). Convert those recordings to files (e.g. with sox or ffmpeg) and list the "
                f"files, or write a manifest (docs/data.md)."
            )
    base = _path_base(data_dir, next(iter(raw.values()), ""))
    return {key: str(Path(p) if Path(p).is_absolute() else (base / p).resolve()) for key, p in raw.items()}


def _path_base(data_dir: Path, first: str) -> Path:
    """Where relative `wav.scp` paths start: see the module docstring."""
    data_dir = data_dir.resolve()
    for base in (data_dir, data_dir.parent, data_dir.parent.parent):
        if (base / first).exists():
            return base
    return data_dir  # nothing found: validation names the missing files


def _optional(data_dir: Path, name: str) -> dict[str, str]:
    path = data_dir / name
    return {key: value[0].strip() for key, value in read_table(path).items()} if path.is_file() else {}


def _utterances(data_dir: Path, recordings: dict[str, str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Utterance id -> {path, start, end}; ids whose recording is not in wav.scp."""
    segments_file = data_dir / "segments"
    if not segments_file.is_file():
        return {key: {"path": path, "start": 0.0, "end": -1.0} for key, path in recordings.items()}, []
    utterances, orphans = {}, []
    for utt, (rec, start, end) in read_table(segments_file, columns=4).items():
        try:
            begin, stop = float(start), float(end)
        except ValueError:
            message = f"{segments_file}: utterance {utt!r}: start/end {start!r} {end!r} are not numbers"
            raise KaldiFormatError(message) from None
        if begin < 0 or (stop >= 0 and stop <= begin):
            raise KaldiFormatError(f"{segments_file}: utterance {utt!r}: segment [{start}, {end}] is empty or negative")
        if rec not in recordings:
            orphans.append(utt)
            continue
        utterances[utt] = {"path": recordings[rec], "start": begin, "end": stop}
    return utterances, orphans


def load_kaldi_dir(
    data_dir: str | Path,
    *,
    labeled: bool = True,
    locale: str = "",
    options: ReadOptions | None = None,
    **fields: Any,
) -> tuple[datasets.Dataset, SkipReport]:
    """One Kaldi data directory as a corpus table (columns of `corpus.COLUMNS`, plus `start`
    and `end` seconds within the recording, `gender` and `age` where the directory has them).

    ``labeled``: read `text` (an utterance absent from it is skipped as an empty sentence);
    False reads audio only. ``options`` and/or the `ReadOptions` fields as keywords.
    """
    options = ReadOptions.of(options, **fields)
    data_dir = Path(data_dir).expanduser().resolve()
    if not is_kaldi_dir(data_dir):
        raise FileNotFoundError(f"{data_dir}: not a Kaldi data directory (no wav.scp)")
    present = [name for name in KALDI_FILES if (data_dir / name).is_file()]
    if labeled and "text" not in present:
        raise FileNotFoundError(f"{data_dir}: no `text` file, so no transcripts (unlabeled audio: labeled=False)")

    def build() -> tuple[datasets.Dataset, SkipReport]:
        utterances, orphans = _utterances(data_dir, _recordings(data_dir))
        text = _optional(data_dir, "text") if labeled else {}
        speakers = _optional(data_dir, "utt2spk")
        durations = _optional(data_dir, "utt2dur")
        gender, age = _optional(data_dir, "spk2gender"), _optional(data_dir, "spk2age")
        ids = list(utterances)
        speaker = [speakers.get(u, "") for u in ids]
        rows: dict[str, list] = {
            "id": ids,
            "path": [utterances[u]["path"] for u in ids],
            "text": [text.get(u, "") for u in ids],
            "speaker": speaker,
            "locale": [locale] * len(ids),
            "duration": [_duration(utterances[u], durations.get(u)) for u in ids],
            "start": [utterances[u]["start"] for u in ids],
            "end": [utterances[u]["end"] for u in ids],
        }
        if gender:
            rows["gender"] = [gender.get(s, "") for s in speaker]
        if age:
            rows["age"] = [age.get(s, "") for s in speaker]
        return options.validate(
            make_table(rows), str(data_dir), require_text=labeled, skipped={NO_RECORDING: orphans} if orphans else None
        )

    fingerprints = [file_fingerprint(data_dir / name) for name in present]
    return options.cached(("kaldi", str(data_dir), fingerprints, labeled, locale), build)


def _duration(utterance: dict[str, Any], listed: str | None) -> float:
    """Seconds when known without opening the file (a closed segment, or utt2dur); else -1."""
    if utterance["end"] >= 0:
        return utterance["end"] - utterance["start"]
    try:
        return float(listed) if listed else -1.0
    except ValueError:
        return -1.0


def write_subset(source: str | Path, target: str | Path, speakers: set[str]) -> int:
    """Kaldi's `utils/subset_data_dir.sh --spk-list`: the utterances of ``speakers`` from the
    data directory ``source`` into ``target``, every file filtered by its key, `wav.scp` with
    absolute paths (so the subset may live anywhere). Returns the number of utterances."""
    source, target = Path(source).expanduser().resolve(), Path(target).expanduser()
    utt2spk = _optional(source, "utt2spk")
    if not utt2spk:
        raise FileNotFoundError(f"{source}: no utt2spk, so utterances cannot be chosen by speaker")
    utterances = {utt for utt, spk in utt2spk.items() if spk in speakers}
    target.mkdir(parents=True, exist_ok=True)
    recordings = _recordings(source)
    segments = read_table(source / "segments", columns=4) if (source / "segments").is_file() else {}
    kept_recordings = {segments[u][0] for u in utterances if u in segments} if segments else utterances
    for name in KALDI_FILES:
        if not (source / name).is_file():
            continue
        if name == "wav.scp":
            lines = [f"{rec} {path}" for rec, path in recordings.items() if rec in kept_recordings]
        elif name.startswith("spk2"):
            lines = [f"{key} {value[0]}" for key, value in read_table(source / name).items() if key in speakers]
        elif name == "segments":
            lines = [f"{key} {' '.join(value)}" for key, value in segments.items() if key in utterances]
        else:
            lines = [
                f"{key} {value[0]}".rstrip() for key, value in read_table(source / name).items() if key in utterances
            ]
        (target / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(utterances)
