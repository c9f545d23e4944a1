"""What the inference command lines (``transcribe``, ``align``) share: exit statuses, option
types and the progress bar."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from unispeech.inference.chunking import DEFAULT_CHUNK_LENGTH_S
from unispeech.inference.pauses import WORD_EDGES

# Exit statuses: every file done (0), some failed, or all failed / a usage error (a bad option,
# a missing input or model). A failed file never stops the others.
SOME_FAILED, ALL_FAILED_OR_USAGE = 1, 2


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def progress_bar(items: Iterable, description: str, enabled: bool, total: int) -> Iterable:
    """``items``, behind a progress bar on stderr (stdout may be the output) when ``enabled``;
    the bar goes away when done."""
    if not enabled:
        return items
    from rich.console import Console
    from rich.progress import track

    return track(items, description=description, total=total, transient=True, console=Console(stderr=True))


def add_word_edges_option(parser: argparse.ArgumentParser) -> None:
    """--word-edges: where timed words next to silence begin and end (unispeech.inference.pauses)."""
    parser.add_argument(
        "--word-edges",
        choices=WORD_EDGES,
        default="pauses",
        help="pauses: words before and after silence end and start where the audio's level says (and, "
        "transcribing, a word decoded across a pause is split there); ctc: the CTC path's times alone "
        "(default: pauses)",
    )


def seconds(text: str) -> float:
    """An argparse type: a number of seconds, at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def stride(text: str) -> float | tuple[float, float]:
    """An argparse type: seconds of window context, one number for both sides or LEFT,RIGHT."""
    parts = text.split(",")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"one number of seconds or two (LEFT,RIGHT), got {text!r}")
    values = tuple(seconds(part) for part in parts)
    return values[0] if len(values) == 1 else values


def add_chunk_options(parser: argparse.ArgumentParser) -> None:
    """--chunk-length-s and --stride-length-s: long recordings in windows (docs/inference.md)."""
    parser.add_argument(
        "--chunk-length-s",
        type=seconds,
        default=DEFAULT_CHUNK_LENGTH_S,
        help=f"run longer files through the model in windows of this many seconds, 0 = never "
        f"(default: {DEFAULT_CHUNK_LENGTH_S:g})",
    )
    parser.add_argument(
        "--stride-length-s",
        type=stride,
        metavar="SECONDS[,SECONDS]",
        default=None,
        help="context computed and dropped at each side of a window: one value for both, or LEFT,RIGHT "
        "(default: chunk length / 6)",
    )
