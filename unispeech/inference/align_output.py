"""Writers of `python -m unispeech.align` records: JSON, CTM and Praat TextGrid.

A record is a dict: ``path``, ``transcript``, ``duration`` (s), ``score``, ``words`` and
``tokens`` (each a list of ``{"word"|"token", "start", "end", "score"}`` in seconds, words
with ``low_score`` too), or ``path``, ``transcript`` and ``error`` for a file that failed.
TextGrids need praatio (the optional ``align`` extra); JSON and CTM need nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

ALIGN_INSTALL_HINT = "pip install 'unispeech[align]'"
FORMATS = ("json", "ctm", "textgrid")
CTM_LEVELS = ("words", "tokens")


def require_praatio() -> None:
    """Fail early, in one line, when TextGrids are asked for without praatio."""
    try:
        import praatio.textgrid  # noqa: F401
    except ImportError:
        raise ImportError(f"TextGrid output needs praatio: {ALIGN_INSTALL_HINT}") from None


def write_json(records: Sequence[dict[str, Any]], handle: IO[str]) -> None:
    json.dump(list(records), handle, ensure_ascii=False, indent=1)
    handle.write("\n")


def write_ctm(records: Sequence[dict[str, Any]], handle: IO[str], level: str = "words") -> None:
    """NIST CTM: ``<file id> 1 <start> <duration> <word> <score>`` per word (or per token with
    ``level="tokens"``); the file id is the audio file's name without its extension. CTM
    fields cannot hold spaces: a label of two written words ("of the") is written ``of_the``."""
    if level not in CTM_LEVELS:
        raise ValueError(f"CTM level must be one of {CTM_LEVELS}, got {level!r}")
    key = "word" if level == "words" else "token"
    for record in records:
        if record.get("error"):
            continue
        utterance = Path(record["path"]).stem.replace(" ", "_")
        for segment in record[level]:
            label = "_".join(segment[key].split())
            duration = segment["end"] - segment["start"]
            handle.write(f"{utterance} 1 {segment['start']:.3f} {duration:.3f} {label} {segment['score']:.4f}\n")


def textgrid_tiers(record: dict[str, Any], token_tier: str) -> list[tuple[str, list[tuple[float, float, str]]]]:
    """The (name, intervals) of a record's two tiers: words, then tokens named ``token_tier``."""
    words = [(w["start"], w["end"], w["word"]) for w in record["words"]]
    tokens = [(t["start"], t["end"], t["token"]) for t in record["tokens"]]
    return [("words", words), (token_tier, tokens)]


def save_textgrid(record: dict[str, Any], path: str | os.PathLike, token_tier: str = "phones") -> None:
    """A long-format TextGrid with a ``words`` and a ``phones`` (or ``chars``) interval tier over
    the whole file; the gaps between segments are empty intervals."""
    from praatio import textgrid

    grid = textgrid.Textgrid(minTimestamp=0.0, maxTimestamp=record["duration"])
    for name, intervals in textgrid_tiers(record, token_tier):
        grid.addTier(textgrid.IntervalTier(name, intervals, 0.0, record["duration"]))
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)


def textgrid_text(record: dict[str, Any], token_tier: str = "phones") -> str:
    """The TextGrid of `save_textgrid` as a string (praatio writes only files)."""
    with tempfile.TemporaryDirectory(prefix="unispeech-align-") as folder:
        path = Path(folder) / "out.TextGrid"
        save_textgrid(record, path, token_tier)
        return path.read_text(encoding="utf-8")


def textgrid_names(records: Sequence[dict[str, Any]]) -> list[str]:
    """``<audio name>.TextGrid`` per record; a name taken already gets ``-2``, ``-3``... (two
    ``a.mp3`` in different folders of a manifest)."""
    names, taken = [], set()
    for record in records:
        stem = Path(record["path"]).stem
        name, copy = f"{stem}.TextGrid", 1
        while name in taken:
            copy += 1
            name = f"{stem}-{copy}.TextGrid"
        taken.add(name)
        names.append(name)
    return names
