"""Output formats of ``unispeech.transcribe``: JSON and TSV records, SRT and WebVTT subtitles, CTM.

Records are the dicts ``Transcriber.transcribe`` returns; subtitles and CTM read their
``words`` (word timestamps, see ``unispeech.inference.timestamps``).

Subtitle cues group consecutive words into one line of at most ``MAX_CUE_CHARS`` characters
and ``MAX_CUE_SECONDS`` seconds (the common subtitling guidelines: 42 characters a line, 7 s
on screen), and a pause of ``MAX_PAUSE_SECONDS`` or more between two words starts a new cue,
so that a cue is not left on screen over a silence. A word longer than the limits is a cue of
its own. A cue is shown from its first word's start to its last word's end. A phone word
(``p a n``) is shown as its phones run together (``pan``), as in a phonetic transcription,
so that the spaces in a cue separate words.

CTM (NIST sclite, Kaldi): ``<file-id> <channel> <start> <duration> <word>``, one line per
word, times in seconds. The file id is the audio file's name without its extension, the
channel is ``1``; fields are separated by spaces, so spaces inside a field become ``_`` (a
phone word ``p a n`` is written ``p_a_n``). There is no confidence column (it is optional).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

MAX_CUE_CHARS = 42
MAX_CUE_SECONDS = 7.0
MAX_PAUSE_SECONDS = 1.0
CTM_CHANNEL = "1"


def write_records(records: Sequence[dict[str, Any]], fmt: str, handle: TextIO) -> None:
    """JSON: the records as they are. TSV: ``path``, ``text`` and, when any file failed, ``error``."""
    if fmt == "json":
        json.dump(list(records), handle, ensure_ascii=False, indent=1)
        handle.write("\n")
        return
    if fmt != "tsv":
        raise ValueError(f"write_records writes json or tsv, not {fmt!r}")
    columns = ["path", "text"] + (["error"] if any(record.get("error") for record in records) else [])
    handle.write("\t".join(columns) + "\n")
    for record in records:
        fields = (" ".join(str(record.get(column) or "").split()) for column in columns)
        handle.write("\t".join(fields) + "\n")


def subtitle_cues(words: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Words ({word, start, end}) grouped into cues ({text, start, end}); see the module docstring."""
    cues: list[dict[str, Any]] = []
    for word in words:
        text = "".join(word["word"].split())
        cue = cues[-1] if cues else None
        if (
            cue is None
            or len(cue["text"]) + 1 + len(text) > MAX_CUE_CHARS
            or word["end"] - cue["start"] > MAX_CUE_SECONDS
            or word["start"] - cue["end"] >= MAX_PAUSE_SECONDS
        ):
            cues.append({"text": text, "start": word["start"], "end": word["end"]})
        else:
            cue["text"] += " " + text
            cue["end"] = word["end"]
    return cues


def write_srt(record: dict[str, Any], handle: TextIO) -> None:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    for number, cue in enumerate(subtitle_cues(record["words"]), start=1):
        handle.write(f"{number}\n{_clock(cue['start'], ',')} --> {_clock(cue['end'], ',')}\n{cue['text']}\n\n")


def write_vtt(record: dict[str, Any], handle: TextIO) -> None:
    """WebVTT: the ``WEBVTT`` header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm``."""
    handle.write("WEBVTT\n\n")
    for cue in subtitle_cues(record["words"]):
        handle.write(f"{_clock(cue['start'], '.')} --> {_clock(cue['end'], '.')}\n{cue['text']}\n\n")


def write_ctm(records: Iterable[dict[str, Any]], handle: TextIO) -> None:
    """One CTM line per word of every record that has words (failed files have none)."""
    for record in records:
        file_id = _ctm_field(Path(record["path"]).stem)
        for word in record.get("words", ()):
            duration = word["end"] - word["start"]
            handle.write(f"{file_id} {CTM_CHANNEL} {word['start']:.3f} {duration:.3f} {_ctm_field(word['word'])}\n")


SUBTITLE_WRITERS = {"srt": write_srt, "vtt": write_vtt}


def _clock(seconds: float, decimal_mark: str) -> str:
    """``HH:MM:SS<mark>mmm`` (SRT marks milliseconds with a comma, WebVTT with a full stop)."""
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{milliseconds:03d}"


def _ctm_field(text: str) -> str:
    return "_".join(text.split()) or "_"
