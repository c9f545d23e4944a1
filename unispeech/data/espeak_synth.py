"""Minimal speech synthesis with the espeak-ng library from `espeakng-loader`, via ctypes.

Used only to build the offline demo corpus. Synchronous mode: `espeak_Synth` returns after
the whole utterance was passed to our callback in 16-bit chunks.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
PHONEMES_IPA = 0x02  # espeak_TextToPhonemes phonememode bit: IPA symbols
# espeak_PARAMETER values
RATE, VOLUME, PITCH, RANGE = 1, 2, 3, 4

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
# espeak_EVENT_TYPE values (speak_lib.h)
EVENT_LIST_TERMINATED, EVENT_WORD = 0, 1


class _EspeakEvent(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h; the callback gets an array of them ending with type 0."""

    _fields_ = [
        ("type", ctypes.c_int),  # espeak_EVENT_TYPE, an enum: int-sized
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # characters from the start of the text, 1-based
        ("length", ctypes.c_int),  # of the word, in characters (word events)
        ("audio_position", ctypes.c_int),  # milliseconds into the output
        ("sample", ctypes.c_int),  # samples into the output
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # union {int number; const char *name; char string[8]}
    ]


@dataclass(frozen=True)
class WordEvent:
    """Where espeak-ng began to speak a word of the text: ``text[start:start + length]`` at
    output sample ``sample`` (at the synthesiser's sampling rate)."""

    start: int
    length: int
    sample: int


class EspeakSynth:
    """One process-wide espeak-ng instance (the library keeps global state)."""

    _instance: EspeakSynth | None = None
    _lock = threading.Lock()

    def __init__(self, library_path: str | None = None) -> None:
        try:
            import espeakng_loader
        except ImportError as err:
            raise ImportError("the demo corpus needs espeak-ng: pip install 'unispeech[phonemes]'") from err
        data_path = espeakng_loader.get_data_path()
        os.environ.setdefault("ESPEAK_DATA_PATH", data_path)
        self.lib = ctypes.CDLL(library_path or espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        self.sampling_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if self.sampling_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (data path {data_path})")
        self._chunks: list[np.ndarray] = []
        self._word_events: list[WordEvent] | None = None  # collected only by synthesize_with_words
        # Keep a reference: ctypes callbacks must outlive every call into the library.
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> EspeakSynth:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    @classmethod
    def private(cls) -> EspeakSynth:
        """A new instance on its own copy of the library, so with its own global state.

        espeak-ng carries state from one utterance to the next (pitch-flutter phase, gain
        control, noise generators), so a waveform depends on what the process said before.
        The dynamic loader maps a copied file as a separate library whose state starts
        fresh, whatever `get()`'s shared instance (or a parent process) has spoken. libc's
        ``rand()``, which espeak-ng also draws from, is shared: reseed it where that matters.
        """
        import shutil
        import tempfile

        import espeakng_loader

        library = espeakng_loader.get_library_path()
        folder = tempfile.mkdtemp(prefix="espeak-")
        copy = os.path.join(folder, os.path.basename(library))
        try:
            shutil.copyfile(library, copy)
            return cls(copy)  # the mapping outlives the file
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        if self._word_events is not None and events:
            self._word_events.extend(_word_events(events))
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, voice: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50) -> np.ndarray:
        """Return float32 mono audio at ``self.sampling_rate`` (22,050 Hz for espeak-ng)."""
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(RATE, int(rate), 0)
            self.lib.espeak_SetParameter(PITCH, int(pitch), 0)
            self.lib.espeak_SetParameter(RANGE, int(pitch_range), 0)
            self._chunks = []
            data = text.encode("utf-8") + b"\0"
            status = self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
            if status != 0:
                raise RuntimeError(f"espeak_Synth failed with status {status}")
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32) / 32768.0

    def synthesize_with_words(
        self, text: str, voice: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50
    ) -> tuple[np.ndarray, list[WordEvent]]:
        """`synthesize`, and where each word of ``text`` begins in the audio (espeak-ng's word
        events, sample-exact). The audio is the same as `synthesize` gives. Meant for one
        thread: words another thread synthesises on this instance meanwhile would be collected too."""
        with self._lock:
            self._word_events = []
        try:
            audio = self.synthesize(text, voice, rate=rate, pitch=pitch, pitch_range=pitch_range)
        finally:
            with self._lock:
                events, self._word_events = self._word_events or [], None
        return audio, events

    def phonemes(self, text: str, voice: str) -> str:
        """IPA phonemes espeak-ng would speak for ``text`` (clauses joined by spaces).

        A check, not a phonemizer: it shows whether a made-up word is read through the
        letter-to-sound rules or spelled out as letter names / read as a numeral.
        """
        fn = self.lib.espeak_TextToPhonemes
        fn.restype = ctypes.c_char_p
        fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            buffer = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
            pointer = ctypes.c_void_p(ctypes.addressof(buffer))
            clauses = []
            while pointer.value:  # the library advances the pointer clause by clause, NULL at the end
                result = fn(ctypes.byref(pointer), ESPEAK_CHARS_UTF8, PHONEMES_IPA)
                if result:
                    clauses.append(result.decode("utf-8", errors="replace").strip())
        return " ".join(c for c in clauses if c)


def _word_events(address: int) -> list[WordEvent]:
    """The word events of the event list at ``address``; text positions made 0-based."""
    events = ctypes.cast(address, ctypes.POINTER(_EspeakEvent))
    found = []
    i = 0
    while events[i].type != EVENT_LIST_TERMINATED:
        event = events[i]
        if event.type == EVENT_WORD:
            found.append(WordEvent(event.text_position - 1, event.length, event.sample))
        i += 1
    return found


def _variants_dir() -> str:
    try:
        import espeakng_loader
    except ImportError as err:
        raise ImportError("espeak-ng voices need espeakng-loader: pip install 'unispeech[phonemes]'") from err
    return os.path.join(espeakng_loader.get_data_path(), "voices", "!v")


def voice_variants() -> list[str]:
    """Names of the voice variants shipped with espeak-ng (`voices/!v`), sorted.

    A variant is appended to a language voice as ``"<voice>+<variant>"``; it changes the
    timbre (formants, pitch base, breathiness, echo) but not the pronunciation rules.
    """
    return sorted(name for name in os.listdir(_variants_dir()) if not name.startswith("."))


def variant_gender(name: str) -> str:
    """``"male"``, ``"female"`` or ``""``, from the variant file's ``gender`` line (many have none)."""
    path = os.path.join(_variants_dir(), name)
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "gender" and fields[1].lower() in ("male", "female"):
                return fields[1].lower()
    return ""
