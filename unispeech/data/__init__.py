"""Speech data pipeline: audio I/O, corpora, phonemes, tokenizers, batching, DataModule.

Heavy or optional pieces (phonemizer, lightning) are imported lazily by the modules that
need them; importing `unispeech.data` itself stays cheap.
"""

from .audio import SAMPLING_RATE, audio_info, load_audio, normalize, resample
from .collate import Collator
from .commonvoice import build_finetune_subset, load_commonvoice, read_tsv
from .corpus import SkipReport, validate
from .dataset import SpeechDataset
from .feature_extractor import UniSpeechFeatureExtractor
from .loaders import ResumableLoader
from .read_options import ReadOptions
from .sampler import (
    DurationBucketSampler,
    LabeledUnlabeledMixing,
    TemperatureSampling,
    language_probabilities,
    padding_fraction,
)
from .sources import (
    SplitRequest,
    detect_source,
    load_audio_folder,
    load_hf_corpus,
    load_manifest,
    read_source,
    register_reader,
)
from .tokenizer import CTCTokenizer, normalize_text

__all__ = [
    "SAMPLING_RATE",
    "audio_info",
    "load_audio",
    "normalize",
    "resample",
    "Collator",
    "build_finetune_subset",
    "load_commonvoice",
    "read_tsv",
    "SkipReport",
    "validate",
    "SpeechDataset",
    "UniSpeechFeatureExtractor",
    "DurationBucketSampler",
    "LabeledUnlabeledMixing",
    "TemperatureSampling",
    "language_probabilities",
    "padding_fraction",
    "load_audio_folder",
    "load_hf_corpus",
    "load_manifest",
    "CTCTokenizer",
    "normalize_text",
    "ReadOptions",
    "ResumableLoader",
    "SplitRequest",
    "detect_source",
    "read_source",
    "register_reader",
    "UniSpeechDataModule",
    "ensure_demo_corpus",
    "ensure_replication_corpus",
]


def __getattr__(name: str):
    # Lazy: the DataModule pulls in lightning, the synthetic corpora pull in espeak-ng.
    if name == "UniSpeechDataModule":
        from .datamodule import UniSpeechDataModule

        return UniSpeechDataModule
    if name == "ensure_demo_corpus":
        from .demo_corpus import ensure_demo_corpus

        return ensure_demo_corpus
    if name == "ensure_replication_corpus":
        from .synthetic_corpus import ensure_replication_corpus

        return ensure_replication_corpus
    raise AttributeError(f"module 'unispeech.data' has no attribute {name!r}")
