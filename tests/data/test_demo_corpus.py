"""The espeak-ng demo corpus: CommonVoice layout, sizes, speakers, determinism."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest
import soundfile as sf

from unispeech.data.commonvoice import CV_COLUMNS, read_tsv
from unispeech.data.demo_corpus import ensure_demo_corpus, generate_demo_corpus


def test_layout_and_columns(demo_root):
    assert demo_root.name == "cv-corpus-demo"
    assert sorted(p.name for p in demo_root.iterdir()) == ["en", "es", "fr"]
    for locale in ("en", "es", "fr"):
        loc = demo_root / locale
        sizes = {}
        for split in ("train", "dev", "test", "validated", "other"):
            table = read_tsv(loc / f"{split}.tsv")
            assert tuple(table) == CV_COLUMNS
            assert set(table["locale"]) == {locale}
            sizes[split] = len(table["path"])
        assert sizes == {"train": 40, "dev": 8, "test": 8, "validated": 56, "other": 8}
        durations = read_tsv(loc / "clip_durations.tsv")
        assert len(durations["clip"]) == 64 == len(list((loc / "clips").glob("*.mp3")))


def test_clips_are_48k_mp3_of_1_to_4_seconds(demo_root):
    loc = demo_root / "fr"
    table = read_tsv(loc / "clip_durations.tsv")
    for clip, ms in zip(table["clip"][:10], table["duration[ms]"][:10]):
        info = sf.info(loc / "clips" / clip)
        assert (info.samplerate, info.channels, info.format) == (48_000, 1, "MP3")
        assert 1000 <= int(ms) <= 4100  # mp3 frames may add a few ms
        assert info.duration == pytest.approx(int(ms) / 1000, abs=0.002)
        wav, _ = sf.read(loc / "clips" / clip)
        assert np.abs(wav).max() > 0.05  # speech, not silence


def test_speakers_disjoint_and_varied(demo_root):
    speakers = {s: set(read_tsv(demo_root / "en" / f"{s}.tsv")["client_id"]) for s in ("train", "dev", "test")}
    assert len(speakers["train"]) == 6 and len(speakers["dev"]) == 1 and len(speakers["test"]) == 1
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    sentences = read_tsv(demo_root / "en" / "train.tsv")["sentence"]
    assert len(set(sentences)) > 30


def test_second_call_is_cached(demo_root, demo_cache):
    start = time.perf_counter()
    assert ensure_demo_corpus(demo_cache / "demo") == demo_root
    assert time.perf_counter() - start < 0.5


@pytest.mark.slow
def test_generation_is_deterministic(demo_root, tmp_path):
    again = generate_demo_corpus(tmp_path, locales=("es",))
    assert (again / "es" / "train.tsv").read_text() == (demo_root / "es" / "train.tsv").read_text()
    # espeak-ng's waveform is not bit-exact between calls (a few samples of jitter, even with
    # espeak_ng_SetRandSeed), so audio is compared by length only.
    for clip in ("common_voice_es_1001.mp3", "common_voice_es_1050.mp3"):
        a = sf.info(again / "es" / "clips" / clip).duration
        b = sf.info(demo_root / "es" / "clips" / clip).duration
        assert a == pytest.approx(b, abs=0.03)


def _ensure(path: str, queue) -> None:
    queue.put(str(ensure_demo_corpus(path)))


@pytest.mark.slow
def test_two_processes_racing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ensure, args=(str(tmp_path / "race"), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    results = {queue.get(), queue.get()}
    assert results == {str(tmp_path / "race" / "v1" / "cv-corpus-demo")}
    assert [p.name for p in (tmp_path / "race").iterdir()] == ["v1"]  # no temp leftovers
    assert len(read_tsv(tmp_path / "race" / "v1" / "cv-corpus-demo" / "es" / "train.tsv")["path"]) == 40
