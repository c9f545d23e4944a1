"""Token and word timestamps from CTC frames.

A decoder gives, for every token it outputs, the frames the token was read from: its
``TokenSpan``. Greedy decoding reads them off the best path: a token is a run of equal
non-blank frame ids (a repeat is a new token only where a blank parts it), from its first
frame to its last; blank frames belong to no token. Frame ``t`` starts at ``t * hop``
samples (20 ms at the default strides), so a token spans ``first * frame_seconds`` to
``(last + 1) * frame_seconds``: the start of its first frame to the end of its last.

Words are runs of tokens between word delimiters (``|``, the space of character
vocabularies too); a word spans its first token's start to its last token's end, except next
to silence when the audio's level is given (``unispeech.inference.pauses``: the last word
then ends where speech does, not ~100 ms early with its last token's onset, and a word whose
tokens straddle a pause of 0.25 s or more is two words). A phone word's text is its phones
joined by spaces, a character word's its characters joined.
Special symbols (``<unk>`` ...) are in the token list but in no word, as in
``unispeech.tasks.metrics.words``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from unispeech.data.tokenizer import UNK, WORD_DELIMITER
from unispeech.inference.alignment import TokenSpan as PathToken, WordSpan
from unispeech.inference.pauses import snap_to_pauses, split_at_pauses
from unispeech.tasks.metrics import SPECIAL_TOKENS

# JSON times are rounded to the millisecond: frames are 20 ms, and this hides float noise
DECIMALS = 3


@dataclass(frozen=True)
class TokenSpan:
    """One output token and the frames ``first_frame .. last_frame`` (inclusive) it was read from."""

    token: str
    first_frame: int
    last_frame: int


@dataclass(frozen=True)
class Segment:
    """A token or a word and its time in seconds."""

    text: str
    start: float
    end: float


def greedy_token_spans(frame_ids: Sequence[int], vocabulary: Sequence[str], blank_id: int = 0) -> list[TokenSpan]:
    """The tokens of the best path ``frame_ids`` (one id per frame) with their frames: runs of
    one id, blank runs dropped. The tokens are those of ``metrics.greedy_decode``."""
    spans: list[TokenSpan] = []
    frame = 0
    for token_id, run in itertools.groupby(frame_ids):
        length = sum(1 for _ in run)
        if token_id != blank_id:
            token = vocabulary[token_id] if 0 <= token_id < len(vocabulary) else UNK
            spans.append(TokenSpan(token, frame, frame + length - 1))
        frame += length
    return spans


def token_segments(spans: Sequence[TokenSpan], frame_seconds: float) -> list[Segment]:
    """Every token, ``|`` and special symbols included, with its start and end in seconds."""
    return [
        Segment(span.token, _seconds(span.first_frame, frame_seconds), _seconds(span.last_frame + 1, frame_seconds))
        for span in spans
    ]


def word_segments(
    spans: Sequence[TokenSpan], frame_seconds: float, tokenizer_kind: str, silent: np.ndarray | None = None
) -> list[Segment]:
    """Words (split at ``|``) with their start and end in seconds; see the module docstring.
    ``silent`` (one flag per frame, `pauses.silent_frames`) splits a word at a pause inside it
    (`pauses.split_at_pauses`) and moves the edges of words next to silence to where the audio
    says speech stops and starts (`pauses.snap_to_pauses`)."""
    joiner = " " if tokenizer_kind == "phones" else ""
    words: list[WordSpan] = []
    current: list[TokenSpan] = []

    def close_word() -> None:
        if not current:
            return
        tokens = [PathToken(s.token, s.first_frame, s.last_frame + 1, 0.0) for s in current]
        splits = [] if silent is None else split_at_pauses([(t.start, t.end) for t in tokens], silent, frame_seconds)
        for first, stop in zip([0, *splits], [*splits, len(tokens)]):
            part = tuple(tokens[first:stop])
            words.append(WordSpan(joiner.join(t.token for t in part), part, part[0].start, part[-1].end))
        current.clear()

    for span in spans:
        if span.token in (WORD_DELIMITER, " "):
            close_word()
        elif span.token not in SPECIAL_TOKENS:
            current.append(span)
    close_word()
    if silent is not None:
        words = snap_to_pauses(words, silent, frame_seconds)
    return [Segment(w.word, _seconds(w.start, frame_seconds), _seconds(w.end, frame_seconds)) for w in words]


def timestamp_fields(
    spans: Sequence[TokenSpan], frame_seconds: float, tokenizer_kind: str, silent: np.ndarray | None = None
) -> dict[str, list]:
    """The ``token_timestamps`` and ``words`` of a JSON record (``silent``: as `word_segments`)."""
    return {
        "token_timestamps": [
            {"token": s.text, "start": s.start, "end": s.end} for s in token_segments(spans, frame_seconds)
        ],
        "words": [
            {"word": s.text, "start": s.start, "end": s.end}
            for s in word_segments(spans, frame_seconds, tokenizer_kind, silent)
        ],
    }


def _seconds(frame: float, frame_seconds: float) -> float:
    return round(frame * frame_seconds, DECIMALS)
