"""`UniSpeechFeatureExtractor`: waveforms -> padded `input_values` + `attention_mask`.

The saved `preprocessor_config.json` uses the `Wav2Vec2FeatureExtractor` format, so exported
checkpoints load in `transformers` with `AutoFeatureExtractor.from_pretrained(dir)`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audio import SAMPLING_RATE, normalize

CONFIG_NAME = "preprocessor_config.json"


class UniSpeechFeatureExtractor:
    """Pads and (optionally) normalises raw 16 kHz mono waveforms.

    Normalisation is per utterance over its *real* samples only, and padding is filled with
    ``padding_value`` afterwards. This equals transformers' output whenever an attention
    mask is used (``return_attention_mask=True``); transformers without a mask would also
    count the padding zeros in the statistics, which we consider a bug and do not copy.
    """

    def __init__(
        self,
        sampling_rate: int = SAMPLING_RATE,
        do_normalize: bool = True,
        return_attention_mask: bool = True,
        padding_value: float = 0.0,
        feature_size: int = 1,
    ) -> None:
        if feature_size != 1:
            raise ValueError("UniSpeech consumes raw waveforms: feature_size must be 1")
        self.sampling_rate = int(sampling_rate)
        self.do_normalize = bool(do_normalize)
        self.return_attention_mask = bool(return_attention_mask)
        self.padding_value = float(padding_value)
        self.feature_size = 1

    def __call__(
        self,
        raw_speech: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor | Sequence[float]],
        sampling_rate: int | None = None,
        pad_to_multiple_of: int | None = None,
        max_length: int | None = None,
        return_tensors: str = "pt",
    ) -> dict[str, Any]:
        if sampling_rate is not None and int(sampling_rate) != self.sampling_rate:
            raise ValueError(
                f"The audio was sampled at {sampling_rate} Hz but this feature extractor expects "
                f"{self.sampling_rate} Hz: resample it first (unispeech.data.audio.resample)."
            )
        waves = _as_list_of_arrays(raw_speech)
        if max_length is not None:
            waves = [w[:max_length] for w in waves]
        lengths = [len(w) for w in waves]
        target = max(lengths) if lengths else 0
        if pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        values = np.full((len(waves), target), self.padding_value, dtype=np.float32)
        mask = np.zeros((len(waves), target), dtype=np.int64)
        for row, wav in enumerate(waves):
            if self.do_normalize and len(wav):
                wav = normalize(wav)
            values[row, : len(wav)] = wav
            mask[row, : len(wav)] = 1
        out: dict[str, Any] = {"input_values": values}
        if self.return_attention_mask:
            out["attention_mask"] = mask
        if return_tensors == "pt":
            out = {k: torch.from_numpy(v) for k, v in out.items()}
        elif return_tensors != "np":
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        return out

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "do_normalize": self.do_normalize,
            "feature_extractor_type": "Wav2Vec2FeatureExtractor",
            "feature_size": self.feature_size,
            "padding_side": "right",
            "padding_value": self.padding_value,
            "return_attention_mask": self.return_attention_mask,
            "sampling_rate": self.sampling_rate,
        }

    def save_pretrained(self, save_directory: str | Path) -> Path:
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path / CONFIG_NAME

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> UniSpeechFeatureExtractor:
        config = json.loads((Path(directory) / CONFIG_NAME).read_text())
        return cls(
            sampling_rate=config.get("sampling_rate", SAMPLING_RATE),
            do_normalize=config.get("do_normalize", True),
            return_attention_mask=config.get("return_attention_mask", True),
            padding_value=config.get("padding_value", 0.0),
            feature_size=config.get("feature_size", 1),
        )

    def __repr__(self) -> str:
        return f"UniSpeechFeatureExtractor({self.to_dict()})"


def _as_list_of_arrays(raw: Any) -> list[np.ndarray]:
    """Accept one waveform or a batch, as numpy, torch or nested lists."""
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    if isinstance(raw, np.ndarray):
        if raw.ndim == 1:
            return [raw.astype(np.float32)]
        if raw.ndim == 2:
            return [row.astype(np.float32) for row in raw]
        raise ValueError(f"expected 1-D or 2-D audio, got shape {raw.shape}")
    raw = list(raw)
    if raw and np.isscalar(raw[0]):
        return [np.asarray(raw, dtype=np.float32)]
    out = []
    for wav in raw:
        if isinstance(wav, torch.Tensor):
            wav = wav.detach().cpu().numpy()
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"each waveform must be 1-D mono, got shape {wav.shape}")
        out.append(wav)
    return out
