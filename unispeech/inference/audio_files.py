"""Audio files into an inference command: finding them, checking them before the model runs,
decoding them ahead of the model, and saying in one line why one cannot be used.

Shared by ``unispeech.transcribe`` and ``unispeech.align``, whose command lines report a bad
file in its record and go on with the others.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from unispeech.data.audio import AUDIO_EXTENSIONS, SAMPLING_RATE, AudioInfo, audio_info, load_audio
from unispeech.inference.chunking import FrameGrid

# batches decoded ahead of the one the model is running: enough to hide decoding, little memory
LOOKAHEAD_BATCHES = 2


class UnreadableAudio(ValueError):
    """A file that cannot be transcribed or aligned; the message is the one-line reason."""


def find_audio(inputs: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such audio file or directory: {item}")
    return files


def min_input_samples(config: Any) -> int:
    """The fewest samples from which the feature encoder makes one frame (400 at the default
    strides and kernels, 25 ms at 16 kHz); a shorter input makes its convolutions fail."""
    return FrameGrid.of(config).field


def check_audio(path: Path, min_samples: int = 1) -> AudioInfo:
    """The header of ``path``, or ``UnreadableAudio`` with a one-line reason.

    The header is read from an open file object, not the path: libsndfile then identifies
    the format by the file's first bytes only. Given a path, it falls back on the extension
    and hands a non-audio ``.mp3`` to libmpg123, which prints resync notes to the terminal.
    (A real MP3 whose frames are corrupt still reaches libmpg123, and its notes, on decoding.)
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UnreadableAudio("no such file") from None
    except OSError as error:
        raise UnreadableAudio(f"cannot read it ({error.strerror or error})") from None
    if size == 0:
        raise UnreadableAudio("empty file (0 bytes)")
    try:
        with path.open("rb") as handle:
            info = audio_info(handle)
    except (RuntimeError, OSError) as error:  # soundfile.LibsndfileError is a RuntimeError
        raise UnreadableAudio(describe_audio_error(path, error)) from None
    if info.frames <= 0 or info.sampling_rate <= 0:
        raise UnreadableAudio("empty audio (0 samples)")
    samples = info.frames * SAMPLING_RATE // info.sampling_rate
    if samples < min_samples:
        raise UnreadableAudio(too_short(samples, min_samples))
    return info


def describe_audio_error(path: Path, error: Exception) -> str:
    """One line on why ``path`` could not be read, without libsndfile's misleading "File does
    not exist or is not a regular file" for a file that exists."""
    if isinstance(error, UnreadableAudio):
        return str(error)
    if not path.exists():
        return "no such file"
    reason = getattr(error, "error_string", None)  # soundfile.LibsndfileError: libsndfile's own words
    if reason is None:
        return f"cannot decode it ({getattr(error, 'strerror', None) or error})"
    reason = reason.strip().rstrip(".")
    if reason.startswith("File does not exist or is not a regular file"):
        # what libsndfile says when its decoder (libmpg123 for MP3) gives up on an existing file
        reason = "corrupt or truncated, the decoder found no audio in it"
    elif reason:
        reason = reason[0].lower() + reason[1:]
    return f"not a readable audio file (soundfile: {reason})"


def too_short(samples: int, min_samples: int) -> str:
    return (
        f"too short: {1000 * samples / SAMPLING_RATE:.1f} ms of audio, the model needs at least "
        f"{1000 * min_samples / SAMPLING_RATE:.1f} ms"
    )


def decode_ahead(batches: Sequence[Sequence[Path]], workers: int) -> Iterator[tuple[Sequence[Path], list[Any]]]:
    """Yields (batch, waveforms) in order; each waveform is an array, or the exception that
    stopped its file from loading. The next LOOKAHEAD_BATCHES batches decode in `workers`
    threads meanwhile, so on a GPU decoding overlaps the model instead of adding to it."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[tuple[Sequence[Path], list[Future]]] = deque()
        upcoming = iter(batches)

        def submit_next() -> None:
            batch = next(upcoming, None)
            if batch is not None:
                pending.append((batch, [pool.submit(load_or_error, path) for path in batch]))

        for _ in range(1 + LOOKAHEAD_BATCHES):
            submit_next()
        while pending:
            batch, futures = pending.popleft()
            submit_next()
            yield batch, [future.result() for future in futures]


def load_or_error(path: Path) -> Any:
    try:
        return load_audio(path)
    except (RuntimeError, OSError, ValueError) as error:  # corrupt, missing, unsupported
        return error
