"""Minimal speech synthesis with the espeak-ng library from `espeakng-loader`, via ctypes.

Used only to build the offline demo corpus. Synchronous mode: `espeak_Synth` returns after
the whole utterance was passed to our callback in 16-bit chunks.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
# espeak_PARAMETER values
RATE, VOLUME, PITCH, RANGE = 1, 2, 3, 4

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakSynth:
    """One process-wide espeak-ng instance (the library keeps global state)."""

    _instance: "EspeakSynth | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as err:
            raise ImportError("the demo corpus needs espeak-ng: pip install 'unispeech[phonemes]'") from err
        data_path = espeakng_loader.get_data_path()
        os.environ.setdefault("ESPEAK_DATA_PATH", data_path)
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        self.sampling_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if self.sampling_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (data path {data_path})")
        self._chunks: list[np.ndarray] = []
        # Keep a reference: ctypes callbacks must outlive every call into the library.
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "EspeakSynth":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
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
