"""Word edges at pauses, read from the audio's level.

A CTC model fires a token for a frame or two near the onset of its sound, so the path alone
puts a word that ends before silence too early (by about the length of its last sound:
~100 ms on the demo model) and, where the transcript runs across a pause, puts the boundary
in the middle of the pause. Where speech stops the audio goes quiet, so the level settles it:

- frames are "silent" when their level is in the bottom ``SILENCE_SHARE`` of the file's range,
  from its noise floor (10th percentile of the frame levels) to its speech level (95th); a
  file whose range is under ``MIN_CONTRAST_DB`` has no silence to read, and nothing changes;
- the last word ends at the first silent frame after its last token (at most
  ``MAX_REACH_S`` on); the first word starts after the last silent frame before its first
  token (the same reach);
- two words with a pause between them (a run of silent frames of at least ``MIN_PAUSE_S``
  between the first's last token and the second's first; the longest such run) meet it at
  its edges: the first ends where the pause begins, the second starts where it ends. Shorter
  silences are the closures of stops inside speech and leave the boundary where the path put
  it;
- a silence of at least ``SPLIT_PAUSE_S`` that the path put inside one word of a transcript
  (its first phone on the last sound before a pause) is moved out of it, to the side with
  fewer of the word's tokens.

In a transcription (where the words are the decoder's), a word whose tokens straddle a
silence of at least ``SPLIT_PAUSE_S`` is split there (`split_at_pauses`): a model trained on
single sentences often emits no word delimiter between two sentences.

Measured against espeak-ng's word timing in docs/inference.md ("How accurate").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from unispeech.inference.alignment import WordSpan

# the word-edge options of the inference commands: "pauses" reads the edges next to silence
# from the audio (this module), "ctc" leaves the CTC path's times
WORD_EDGES = ("pauses", "ctc")
SILENCE_SHARE = 0.15
MIN_CONTRAST_DB = 10.0
MAX_REACH_S = 0.5
MIN_PAUSE_S = 0.15
# A silence this long between two tokens of what the decoder output as one word is a word
# boundary it missed (models trained on single sentences emit no delimiter at a sentence's
# end); stop closures, and a geminate's, are shorter.
SPLIT_PAUSE_S = 0.25
FRAMES_PER_BLOCK = 4096  # frame_levels_db's working set: 4096 x 320 samples, 10 MB in float64


def frame_levels_db(wave: np.ndarray, hop: int) -> np.ndarray:
    """Mean power in dB of each model frame's ``hop`` samples (frame ``t``: samples
    ``t * hop`` to ``(t + 1) * hop``); (T,) for ``T = len(wave) // hop``. Computed a block of
    frames at a time, so an hour of audio needs no second copy of itself."""
    frames = len(wave) // hop
    power = np.empty(frames)
    for first in range(0, frames, FRAMES_PER_BLOCK):
        stop = min(frames, first + FRAMES_PER_BLOCK)
        block = np.asarray(wave[first * hop : stop * hop], dtype=np.float64).reshape(stop - first, hop)
        power[first:stop] = np.square(block).mean(axis=1)
    return 10.0 * np.log10(power + 1e-12)


def silent_frames(levels_db: np.ndarray) -> np.ndarray | None:
    """Which frames are silent (bool, (T,)), or None where the file's level range is too
    small to tell silence from speech."""
    if len(levels_db) == 0:
        return None
    floor, speech = np.percentile(levels_db, [10, 95])
    if speech - floor < MIN_CONTRAST_DB:
        return None
    return levels_db < floor + SILENCE_SHARE * (speech - floor)


def check_word_edges(word_edges: str) -> None:
    if word_edges not in WORD_EDGES:
        raise ValueError(f"word_edges must be one of {', '.join(WORD_EDGES)}, got {word_edges!r}")


def silent_frames_of(wave: np.ndarray, hop: int, word_edges: str) -> np.ndarray | None:
    """`silent_frames` of ``wave`` for ``word_edges="pauses"``; None (leave the path's times) for "ctc"."""
    return silent_frames(frame_levels_db(wave, hop)) if word_edges == "pauses" else None


def snap_to_pauses(words: Sequence[WordSpan], silent: np.ndarray | None, frame_seconds: float) -> list[WordSpan]:
    """``words`` with their edges at the pauses around them (see the module docstring);
    unchanged where ``silent`` is None. Frames are the model's (``frame_seconds`` long)."""
    words = list(words)
    if silent is None or not words:
        return words
    reach = round(MAX_REACH_S / frame_seconds)
    min_pause = round(MIN_PAUSE_S / frame_seconds)
    total = len(silent)
    first_start = words[0].tokens[0].start
    words[0] = replace(words[0], start=float(_speech_onset(silent, first_start, max(0, first_start - reach))))
    for i in range(len(words) - 1):
        pause = _longest_silent_run(silent, words[i].tokens[-1].end, words[i + 1].tokens[0].start)
        if pause is not None and pause[1] - pause[0] >= min_pause:
            words[i] = replace(words[i], end=float(pause[0]))
            words[i + 1] = replace(words[i + 1], start=float(pause[1]))
    last_end = words[-1].tokens[-1].end
    limit = min(total, last_end + reach)
    end = _first_silent(silent, last_end, limit)
    if end is not None or limit == total:  # silence found, or speech runs to the end of the file
        words[-1] = replace(words[-1], end=float(end if end is not None else total))
    _move_words_off_pauses_inside_them(words, silent, round(SPLIT_PAUSE_S / frame_seconds))
    return words


def _move_words_off_pauses_inside_them(words: list[WordSpan], silent: np.ndarray, min_run: int) -> None:
    """A word of the transcript holds no pause; where the path still put one inside a word
    (its first token on the last sound before the pause, the rest after), the side with fewer
    tokens is misplaced: the word starts after the pause (the word before ending where it
    begins), or ends where it begins (the word after starting after it)."""
    for i, word in enumerate(words):
        pauses = _pauses_between_tokens([(t.start, t.end) for t in word.tokens], silent, min_run)
        if not pauses:
            continue
        # the longest (the later of equals); `after` tokens of the word come before it
        after, (pause_start, pause_end) = max(pauses, key=lambda pause: (pause[1][1] - pause[1][0], pause[0]))
        if after <= len(word.tokens) - after:  # fewer tokens before the pause than after
            words[i] = replace(word, start=float(pause_end))
            if i > 0:
                words[i - 1] = replace(words[i - 1], end=float(pause_start))
        else:
            words[i] = replace(word, end=float(pause_start))
            if i + 1 < len(words):
                words[i + 1] = replace(words[i + 1], start=float(pause_end))


def _first_silent(silent: np.ndarray, start: int, stop: int) -> int | None:
    """The first silent frame in ``start .. stop - 1``, or None."""
    hits = np.flatnonzero(silent[start:stop])
    return start + int(hits[0]) if len(hits) else None


def split_at_pauses(frames: Sequence[tuple[int, int]], silent: np.ndarray, frame_seconds: float) -> list[int]:
    """Where one decoded word should be two or more: the indices ``i`` of its tokens (given as
    (first frame, one past the last)) that follow a silent run of at least ``SPLIT_PAUSE_S``."""
    return [i for i, _ in _pauses_between_tokens(frames, silent, round(SPLIT_PAUSE_S / frame_seconds))]


def _pauses_between_tokens(
    frames: Sequence[tuple[int, int]], silent: np.ndarray, min_run: int
) -> list[tuple[int, tuple[int, int]]]:
    """(i, (first, one past the last frame)) of the longest silent run between tokens ``i - 1``
    and ``i`` (given as (first frame, one past the last)), wherever it is ``min_run`` frames or more."""
    pauses = []
    for i in range(1, len(frames)):
        pause = _longest_silent_run(silent, frames[i - 1][1], frames[i][0])
        if pause is not None and pause[1] - pause[0] >= min_run:
            pauses.append((i, pause))
    return pauses


def _longest_silent_run(silent: np.ndarray, start: int, stop: int) -> tuple[int, int] | None:
    """The longest run of silent frames in ``start .. stop - 1`` as (first, one past the last),
    the earliest of equals; None without a silent frame."""
    best, run_start = None, None
    for frame in range(start, stop + 1):
        if frame < stop and silent[frame]:
            run_start = frame if run_start is None else run_start
        elif run_start is not None:
            if best is None or frame - run_start > best[1] - best[0]:
                best = (run_start, frame)
            run_start = None
    return best


def _speech_onset(silent: np.ndarray, token_start: int, lowest: int) -> int:
    """Where speech resumes before ``token_start``: one past the last silent frame in
    ``lowest .. token_start - 1``; ``token_start`` when that stretch has no silent frame
    (unless it reaches the file's start: then 0)."""
    hits = np.flatnonzero(silent[lowest:token_start])
    if len(hits):
        return lowest + int(hits[-1]) + 1
    return 0 if lowest == 0 else token_start
