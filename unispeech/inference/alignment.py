"""CTC forced alignment: the most likely frame-by-frame path of a known token sequence.

The target sequence ``y1 .. yL`` is interleaved with blanks into ``2L + 1`` states
(``blank y1 blank y2 ... yL blank``). A path starts in state 0 or 1, ends in state ``2L`` or
``2L - 1``, and from frame to frame stays in its state, moves to the next one, or skips a
blank (``s - 2 -> s``) when state ``s`` is a token that differs from the token two back (two
equal tokens in a row need a blank between them, which is also why a transcript needs
``L + number of adjacent repeats`` frames). `viterbi` finds the best path in log space for a
whole batch at once (one vectorised step per frame) and backtracks through stored argmax
pointers.

Times: a token's span is the frames the path gives it, which for a CTC model is where it
fires, usually a frame or two near the onset of its sound, not the sound's whole duration.
Words meet in the middle of the word delimiter between them (see `group_words`).

Scores: a token's ``log_prob`` is the mean log-posterior of its symbol over the frames the
path gives it; its ``score`` is ``exp(log_prob)``, the geometric mean of those posteriors, a
number in (0, 1]. A word's is the mean of its tokens' ``log_prob`` (each token counts once,
however many frames it holds), so one word the audio does not contain, squeezed into a frame
or two per token that the model spends on other sounds, scores near 0 even in a long,
otherwise well-aligned utterance. Frame numbers become seconds with `frame_seconds`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from unispeech.data.tokenizer import WORD_DELIMITER

BLANK_ID = 0
# pointer values: which predecessor state the best path came from
_STAY, _STEP, _SKIP = 0, 1, 2
PACK_FRAMES = 256  # frames of pointers packed at once (`_forward`)


class AlignmentError(ValueError):
    """A transcript that cannot be aligned to its audio; the message is one line."""


@dataclass(frozen=True)
class TokenSpan:
    """One target token on the best path: frames ``start`` (first) to ``end`` (one past the last)."""

    token: str
    start: int
    end: int
    log_prob: float  # mean log-posterior of the token over its frames

    @property
    def score(self) -> float:
        return math.exp(self.log_prob)


@dataclass(frozen=True)
class WordSpan:
    """A word: its tokens and its frames, ``start`` to ``end`` (fractional: a boundary can fall
    in the middle of a frame). See `group_words` for where a word begins and ends."""

    word: str
    tokens: tuple[TokenSpan, ...]
    start: float
    end: float

    @property
    def log_prob(self) -> float:
        return sum(t.log_prob for t in self.tokens) / len(self.tokens)

    @property
    def score(self) -> float:
        return math.exp(self.log_prob)


@dataclass
class Alignment:
    """One utterance: the token id of every frame (``BLANK_ID`` where the path is on a blank),
    every target token's span (word delimiters included) and the words."""

    frame_tokens: list[int]
    tokens: list[TokenSpan]
    words: list[WordSpan] = field(default_factory=list)

    @property
    def log_prob(self) -> float:
        """Mean ``log_prob`` of the words' tokens (delimiters left out); 0.0 without words."""
        spans = [t for w in self.words for t in w.tokens]
        return sum(t.log_prob for t in spans) / len(spans) if spans else 0.0

    @property
    def score(self) -> float:
        return math.exp(self.log_prob)


def frames_needed(target_ids: Sequence[int]) -> int:
    """The fewest frames a CTC path of ``target_ids`` takes: one per token, plus one blank
    between each pair of equal adjacent tokens."""
    repeats = sum(1 for a, b in zip(target_ids, target_ids[1:]) if a == b)
    return len(target_ids) + repeats


def pass_memory_bytes(num_frames: int, num_tokens: int) -> int:
    """The memory `viterbi`'s pointers take for one recording: a move per frame and state
    (2 bits; ``2 * num_tokens + 1`` states). It grows with the length times the transcript's."""
    return num_frames * -(-(2 * num_tokens + 1) // 4)


def check_alignable(target_ids: Sequence[int], num_frames: int, name: str = "", seconds_per_frame: float = 0.0) -> None:
    """Raise `AlignmentError` when ``num_frames`` cannot hold ``target_ids`` (too long a transcript)."""
    if not target_ids:
        raise AlignmentError(f"{name + ': ' if name else ''}empty transcript, nothing to align")
    needed = frames_needed(target_ids)
    if needed <= num_frames:
        return
    repeats = needed - len(target_ids)
    where = f"{name}: " if name else ""
    if seconds_per_frame:
        have = f"{num_frames} frames ({num_frames * seconds_per_frame:.2f} s of audio)"
        need = f"{needed} frames ({needed * seconds_per_frame:.2f} s)"
    else:
        have, need = f"{num_frames} frames", f"{needed} frames"
    what = f"{len(target_ids)} tokens"
    if repeats:
        what += f" and {repeats} blank{'s' if repeats > 1 else ''} between repeated tokens"
    raise AlignmentError(
        f"{where}transcript too long for the audio: {what} need at least {need}, the audio gives {have}"
    )


def viterbi(
    log_probs: torch.Tensor,
    frame_lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    blank_id: int = BLANK_ID,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best CTC paths of a batch.

    ``log_probs``: (B, T, V) log-posteriors; ``frame_lengths``: (B,) valid frames per row;
    ``targets``: (B, L) token ids, padded with anything past ``target_lengths`` (B,).
    Returns ``states`` (B, T): the path's state per frame (``2k + 1`` = token k, even = a
    blank), -1 past a row's frames; ``frame_log_probs`` (B, T): the log-posterior of the
    path's symbol at each frame (0 past the end); ``path_log_probs`` (B,): their sums.
    Raises `AlignmentError` naming the row when a row's transcript needs more frames than it has.
    """
    batch, num_frames, _ = log_probs.shape
    device = log_probs.device
    log_probs = log_probs.float()
    frame_lengths = frame_lengths.to(device=device, dtype=torch.long)
    target_lengths = target_lengths.to(device=device, dtype=torch.long)
    for row in range(batch):
        ids = targets[row, : int(target_lengths[row])].tolist()
        needed = frames_needed(ids)
        if needed > int(frame_lengths[row]) or not ids:
            check_alignable(ids, int(frame_lengths[row]), name=f"batch row {row}")

    symbols, state_valid, can_skip = _states(targets.to(device).long(), target_lengths, blank_id)
    neg_inf = torch.tensor(float("-inf"), device=device)

    def emissions(t: int) -> torch.Tensor:
        """Each state's log-posterior at frame ``t`` (B, S), -inf past a row's states. Taken
        frame by frame: a (B, T, S) table would cost 4 bytes per frame and state, four times
        the pointers' (a 10-minute file and its transcript: 4.7 GB against 1.2 GB)."""
        return log_probs[:, t].gather(1, symbols).masked_fill(~state_valid, float("-inf"))

    score, pointers = _forward(emissions, num_frames, can_skip, frame_lengths)

    # a path ends on the last token or on the blank after it
    last_blank = 2 * target_lengths
    end_blank = score.gather(1, last_blank[:, None]).squeeze(1)
    end_token = score.gather(1, (last_blank - 1).clamp(min=0)[:, None]).squeeze(1)
    end_token = torch.where(target_lengths > 0, end_token, neg_inf)
    current = torch.where(end_token > end_blank, last_blank - 1, last_blank)
    path_log_probs = torch.maximum(end_token, end_blank)

    states = _backtrack(pointers, current, frame_lengths)
    on_path = states >= 0
    # the path's symbol per frame, then its log-posterior: (B, T) on the device, not (B, T, S)
    path_symbols = symbols.gather(1, states.clamp(min=0).to(device))  # (B, T)
    frame_log_probs = log_probs.gather(2, path_symbols[:, :, None]).squeeze(2).cpu()
    frame_log_probs = torch.where(on_path, frame_log_probs, torch.zeros(()))
    return states, frame_log_probs, path_log_probs.cpu()


def _states(
    targets: torch.Tensor, target_lengths: torch.Tensor, blank_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The blank-interleaved state sequence of each row: its symbol per state (B, S), which
    states exist (B, S), and where a skip s-2 -> s is allowed (B, S): into a token state whose
    token differs from the one two back. S = 2 L + 1."""
    batch, max_len = targets.shape
    device = targets.device
    num_states = 2 * max_len + 1
    # padding states are blanks, masked out by state_valid
    symbols = torch.full((batch, num_states), blank_id, dtype=torch.long, device=device)
    token_valid = torch.arange(max_len, device=device) < target_lengths[:, None]
    symbols[:, 1::2] = torch.where(token_valid, targets, blank_id)
    state_valid = torch.arange(num_states, device=device) < (2 * target_lengths + 1)[:, None]
    can_skip = torch.zeros(batch, num_states, dtype=torch.bool, device=device)
    can_skip[:, 2:] = (symbols[:, 2:] != blank_id) & (symbols[:, 2:] != symbols[:, :-2])
    return symbols, state_valid, can_skip


def _forward(
    emissions: Callable[[int], torch.Tensor], num_frames: int, can_skip: torch.Tensor, frame_lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best path score into each state after each row's last frame (B, S), and per frame
    and state the move that got there: _STAY, _STEP (from s-1) or _SKIP (from s-2), packed
    four states to a byte (B, T, ceil(S / 4)), state ``s`` in bits ``2 (s % 4)`` of byte ``s // 4``.
    ``emissions(t)``: the states' log-posteriors at frame ``t`` (B, S)."""
    batch, num_states = can_skip.shape
    device = can_skip.device
    neg_inf = torch.tensor(float("-inf"), device=device)
    # a move is one of three values: 2 bits, four states to a byte (an hour of audio and its
    # transcript: 5 GB of pointers instead of 20). Moves are kept a block of frames at a time
    # and packed together, so that packing adds no per-frame operations.
    packed_states = -(-num_states // 4) * 4
    pointers = torch.zeros(batch, num_frames, packed_states // 4, dtype=torch.uint8, device=device)
    block = torch.zeros(batch, PACK_FRAMES, packed_states, dtype=torch.uint8, device=device)
    score = torch.full((batch, num_states), float("-inf"), device=device)  # (B, S)
    score[:, :2] = emissions(0)[:, :2]
    for t in range(1, num_frames):
        step = torch.nn.functional.pad(score[:, :-1], (1, 0), value=float("-inf"))
        skip = torch.nn.functional.pad(score[:, :-2], (2, 0), value=float("-inf"))
        skip = torch.where(can_skip, skip, neg_inf)
        # the best of the three predecessors, elementwise (a max over a stacked last dimension
        # of 3 is many times slower on a CPU); ties keep the earlier state
        from_step = step > score
        best = torch.where(from_step, step, score)
        from_skip = skip > best
        best = torch.where(from_skip, skip, best)
        block[:, t % PACK_FRAMES, :num_states] = torch.where(from_skip, _SKIP, torch.where(from_step, _STEP, _STAY))
        if t % PACK_FRAMES == PACK_FRAMES - 1 or t == num_frames - 1:
            first = t - t % PACK_FRAMES
            moves = block[:, : t - first + 1]  # (B, frames, S padded)
            pointers[:, first : t + 1] = (
                moves[..., 0::4] | (moves[..., 1::4] << 2) | (moves[..., 2::4] << 4) | (moves[..., 3::4] << 6)
            )
        active = (t < frame_lengths)[:, None]
        score = torch.where(active, best + emissions(t), score)
    return score, pointers


def _backtrack(pointers: torch.Tensor, current: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """The path's state per frame (B, T), -1 past a row's frames, from its end state back.
    On the host: T small steps, cheaper there than as T device launches."""
    pointers, current, frame_lengths = pointers.cpu(), current.cpu(), frame_lengths.cpu()
    batch, num_frames, _ = pointers.shape
    states = torch.full((batch, num_frames), -1, dtype=torch.long)
    rows = torch.arange(batch)
    for first in range((num_frames - 1) // PACK_FRAMES * PACK_FRAMES, -1, -PACK_FRAMES):
        packed = pointers[:, first : first + PACK_FRAMES]  # (B, n, S / 4): unpacked a block at a time
        moves = torch.stack([(packed >> shift) & 3 for shift in (0, 2, 4, 6)], dim=-1).flatten(2)  # (B, n, S)
        for t in range(min(num_frames, first + PACK_FRAMES) - 1, first - 1, -1):
            active = t < frame_lengths
            states[:, t] = torch.where(active, current, -1)
            moved = current - moves[rows, t - first, current].long()
            current = torch.where(active & (t > 0), moved, current)
    return states


def token_spans(
    states: torch.Tensor, frame_log_probs: torch.Tensor, target_ids: Sequence[int], vocabulary: Sequence[str]
) -> list[TokenSpan]:
    """The span of every target token on one row's path. ``states`` and ``frame_log_probs``: (T,)
    as `viterbi` returns them (trailing -1 frames are ignored)."""
    valid = states >= 0
    states, frame_log_probs = states[valid], frame_log_probs[valid].double()
    # runs of one state; the path is monotone and cannot skip a token state, so every token
    # is exactly one run, in order
    run_states, run_lengths = torch.unique_consecutive(states, return_counts=True)
    run_ends = run_lengths.cumsum(0)
    totals = torch.cat([torch.zeros(1, dtype=torch.float64), frame_log_probs.cumsum(0)])
    spans = []
    for state, length, end in zip(run_states.tolist(), run_lengths.tolist(), run_ends.tolist()):
        if state % 2 == 1:
            token = vocabulary[target_ids[(state - 1) // 2]]
            spans.append(TokenSpan(token, end - length, end, float(totals[end] - totals[end - length]) / length))
    return spans


def group_words(
    spans: Sequence[TokenSpan],
    labels: Sequence[str] | None = None,
    group_sizes: Sequence[int] | None = None,
    joiner: str = "",
    delimiter: str = WORD_DELIMITER,
) -> list[WordSpan]:
    """Split token spans into words at ``delimiter``. With ``labels``, word ``i`` is labelled
    ``labels[i]`` and takes ``group_sizes[i]`` (default 1) consecutive delimiter-separated
    groups; without, each group is a word labelled with its tokens joined by ``joiner``.

    Two neighbouring words meet in the middle of the delimiter between them: a CTC model
    fires a token a frame or two after the sound begins and for a frame or two only, so the
    first token's start is late and the last token's end is early (by the length of the last
    sound), while the delimiter's spike falls near the real boundary. Against espeak-ng's
    word timing (demo model, scripts/alignment_error.py) the mean error of the boundaries
    between words was 33 ms at the next word's first token, 51 ms at the previous word's
    last token and 23 ms in the middle of the delimiter. The first word starts at its first
    token, the last ends with its last token (early by about the length of its last sound);
    `unispeech.inference.pauses` moves the edges next to silence using the audio.
    """
    groups: list[list[TokenSpan]] = []
    # the delimiter spans right before each group (the first group's: leading ones, unused)
    before: list[list[TokenSpan]] = []
    pending: list[TokenSpan] = []
    for span in spans:
        if span.token == delimiter:
            pending.append(span)
            continue
        if not groups or pending:
            groups.append([])
            before.append(pending)
            pending = []
        groups[-1].append(span)
    if labels is None:
        labels = [joiner.join(s.token for s in group) for group in groups]
        group_sizes = None
    sizes = list(group_sizes) if group_sizes is not None else [1] * len(labels)
    if len(sizes) != len(labels) or sum(sizes) != len(groups) or min(sizes, default=1) < 1:
        raise AlignmentError(
            f"{len(labels)} word labels covering {sum(sizes)} token groups, but there are {len(groups)}"
        )

    def boundary(group: int) -> float:
        """The middle of the delimiter frames before ``group``."""
        return (before[group][0].start + before[group][-1].end) / 2

    words, first = [], 0
    for label, size in zip(labels, sizes):
        tokens = tuple(span for group in groups[first : first + size] for span in group)
        start = boundary(first) if first > 0 else tokens[0].start
        end = boundary(first + size) if first + size < len(groups) else tokens[-1].end
        words.append(WordSpan(label, tokens, start, end))
        first += size
    return words


def align(
    log_probs: torch.Tensor,
    frame_lengths: torch.Tensor,
    targets: Sequence[Sequence[int]],
    vocabulary: Sequence[str],
    word_labels: Sequence[Sequence[str] | None] | None = None,
    group_sizes: Sequence[Sequence[int] | None] | None = None,
    joiner: str = "",
    blank_id: int = BLANK_ID,
) -> list[Alignment]:
    """Align a batch: ``log_probs`` (B, T, V) and ``frame_lengths`` (B,) from the model, one
    target id list per row. ``word_labels`` and ``group_sizes``: per row, as `group_words`
    takes them (None: each delimiter-separated group is a word named by its tokens joined by
    ``joiner``)."""
    if len(targets) != log_probs.shape[0]:
        raise ValueError(f"{len(targets)} targets for a batch of {log_probs.shape[0]}")
    lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    padded = torch.full((len(targets), max(1, int(lengths.max()))), blank_id, dtype=torch.long)
    for row, ids in enumerate(targets):
        padded[row, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
    states, frame_log_probs, _ = viterbi(log_probs, frame_lengths, padded, lengths, blank_id)
    alignments = []
    for row, ids in enumerate(targets):
        valid = states[row] >= 0
        path = states[row][valid]
        frame_tokens = torch.where(path % 2 == 1, padded[row][((path - 1) // 2).clamp(min=0)], blank_id)
        spans = token_spans(states[row], frame_log_probs[row], ids, vocabulary)
        labels = word_labels[row] if word_labels is not None else None
        sizes = group_sizes[row] if group_sizes is not None else None
        alignments.append(Alignment(frame_tokens.tolist(), spans, group_words(spans, labels, sizes, joiner)))
    return alignments


def frame_seconds(config) -> float:
    """Seconds between two output frames of a model (320 samples at 16 kHz: 0.02 s)."""
    from unispeech.data.audio import SAMPLING_RATE

    ratio = getattr(config, "inputs_to_logits_ratio", None) or math.prod(config.conv_stride)
    return ratio / SAMPLING_RATE
