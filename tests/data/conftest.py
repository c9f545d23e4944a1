"""Fixtures for the data tests: fake CommonVoice folders with every known defect, and
the espeak demo corpus generated once per session into a temporary cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from datafakes import CV_HEADER, GOOD_CLIPS, cv_row, tone, write_defect_release, write_tsv


@pytest.fixture(scope="session")
def fake_cv(tmp_path_factory) -> Path:
    """`cv-corpus-fake/en/` with: a quoted sentence, an empty sentence, a sentence without
    letters, a missing clip, a corrupt mp3, a stereo 44.1 kHz clip and a 0.1 s clip."""
    root = tmp_path_factory.mktemp("cv") / "cv-corpus-fake"
    loc = root / "en"
    clips = loc / "clips"
    clips.mkdir(parents=True)
    for name, (seconds, rate, channels) in GOOD_CLIPS.items():
        sf.write(clips / name, tone(seconds, rate, channels=channels), rate, format="MP3")
    (clips / "corrupt.mp3").write_bytes(b"this is not an mp3 file" * 50)
    train = [
        cv_row("spk_a", "a1.mp3", "Hello world."),
        cv_row("spk_a", "a2.mp3", "The cat sat."),
        cv_row("spk_b", "b1.mp3", "A good day"),
        cv_row("spk_b", "b2.mp3", "Red house, green water"),
        cv_row("spk_c", "stereo.mp3", "Stereo sound"),
        cv_row("spk_c", "quoted.mp3", '"quoted" text'),
        cv_row("spk_c", "short.mp3", "Too short"),
        cv_row("spk_d", "empty_text.mp3", ""),
        cv_row("spk_d", "digits.mp3", "123 ..."),
        cv_row("spk_d", "missing.mp3", "This clip does not exist"),
        cv_row("spk_d", "corrupt.mp3", "This clip is broken"),
    ]
    write_tsv(loc / "train.tsv", CV_HEADER, train)
    write_tsv(loc / "dev.tsv", CV_HEADER, [cv_row("spk_e", "c1.mp3", "NA")])
    write_tsv(loc / "test.tsv", CV_HEADER, [cv_row("spk_e", "c1.mp3", "Nothing here")])
    write_tsv(loc / "validated.tsv", CV_HEADER, train)
    write_tsv(loc / "other.tsv", CV_HEADER, [cv_row("spk_f", "a1.mp3", ""), cv_row("spk_f", "b2.mp3", "")])
    # clip_durations.tsv covers only some clips, like a partial download
    write_tsv(loc / "clip_durations.tsv", ["clip", "duration[ms]"], [["a1.mp3", "1500"], ["b2.mp3", "2500"]])
    return root


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("unispeech_cache")


@pytest.fixture(scope="session")
def demo_root(demo_cache) -> Path:
    """The real embedded demo corpus, generated once for the session (a few seconds)."""
    from unispeech.data.demo_corpus import ensure_demo_corpus

    return ensure_demo_corpus(demo_cache / "demo")


@pytest.fixture
def unispeech_cache(demo_root, demo_cache, monkeypatch) -> Path:
    """Point $UNISPEECH_CACHE at the session cache, so corpus="demo" finds the corpus."""
    monkeypatch.setenv("UNISPEECH_CACHE", str(demo_cache))
    return demo_cache


@pytest.fixture(scope="session")
def defect_cv(tmp_path_factory) -> Path:
    """A CommonVoice release with the defects of `datafakes.write_defect_release` (BOMs, a
    stray tab, a truncated mp3, NFC/NFD and emoji spellings, a missing clip). Tests that
    change it work on a copy."""
    return write_defect_release(tmp_path_factory.mktemp("cv_defects") / "cv-corpus-defects")
