"""The espeak-ng replication corpus at its `smoke` size: layout, speakers, determinism,
durations, vocabulary and loading through the real CommonVoice reader."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import soundfile as sf

from unispeech.data.commonvoice import CV_COLUMNS, load_commonvoice, read_tsv
from unispeech.data.synthetic_corpus import (
    COMMON_WORDS,
    EVAL_SPLITS,
    MAX_SECONDS,
    MIN_SECONDS,
    SIZES,
    SPLITS,
    VERSION,
    ensure_replication_corpus,
    generate_replication_corpus,
    main,
    make_sentence,
    make_vocabulary,
    plan_speakers,
)

TSVS = ("train", "dev", "test", "validated", "other", "clip_durations", "speakers")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("replication_cache")


@pytest.fixture(scope="module")
def smoke(cache):
    """The smoke corpus, generated through the cache with two workers (a few seconds)."""
    return ensure_replication_corpus("smoke", cache_dir=cache, num_workers=2, progress=False)


@pytest.fixture(scope="module")
def smoke_one_worker(tmp_path_factory):
    """The same corpus again, into another folder, with a single worker."""
    folder = tmp_path_factory.mktemp("one_worker")
    return generate_replication_corpus(folder, "smoke", num_workers=1, progress=False)


def _speakers(root, locale: str, split: str) -> set[str]:
    return set(read_tsv(root / locale / f"{split}.tsv")["client_id"])


def test_layout_and_header(smoke, cache):
    assert smoke == cache / "replication" / f"v{VERSION}" / "smoke" / "cv-corpus-replication-smoke"
    assert sorted(p.name for p in smoke.iterdir()) == ["en", "es"]
    spec = SIZES["smoke"]
    for locale in ("en", "es"):
        loc = smoke / locale
        tables = {split: read_tsv(loc / f"{split}.tsv") for split in ("train", "dev", "test", "validated", "other")}
        for split, table in tables.items():
            assert (loc / f"{split}.tsv").read_text(encoding="utf-8").split("\n")[0] == "\t".join(CV_COLUMNS)
            assert set(table.get("locale", [])) <= {locale}
        for split in SPLITS[locale]:
            speakers, per_speaker = spec.split(locale, split)
            assert len(tables[split]["path"]) == speakers * per_speaker
        if locale == "en":
            assert tables["other"]["path"] == []  # the source language has no unlabeled split
        assert tables["validated"]["path"] == tables["train"]["path"] + tables["dev"]["path"] + tables["test"]["path"]
        durations = read_tsv(loc / "clip_durations.tsv")
        all_paths = [p for s in SPLITS[locale] for p in tables[s]["path"]]
        assert sorted(durations["clip"]) == sorted(all_paths) == sorted(p.name for p in (loc / "clips").iterdir())
        info = sf.info(loc / "clips" / all_paths[0])
        assert (info.samplerate, info.channels, info.format) == (48_000, 1, "MP3")


def test_eval_speakers_appear_nowhere_else(smoke):
    every = {(loc, s): _speakers(smoke, loc, s) for loc in ("en", "es") for s in ("train", "dev", "test", "other")}
    for (locale, split), ids in every.items():
        if split in EVAL_SPLITS:
            assert len(ids) == SIZES["smoke"].split(locale, split)[0]
            others = set().union(*(v for k, v in every.items() if k != (locale, split)))
            assert not ids & others, f"{locale}/{split} shares speakers with another split"
    # ...and not even their timbre: a dev/test voice variant is used by no other speaker.
    rows = [
        (loc, s, v)
        for loc in ("en", "es")
        for s, v in zip(*(read_tsv(smoke / loc / "speakers.tsv")[c] for c in ("split", "variant")))
    ]
    for locale, split, variant in rows:
        if split in EVAL_SPLITS:
            assert [r for r in rows if r[2] == variant] == [(locale, split, variant)]


def test_same_seed_gives_identical_corpus_whatever_the_workers(smoke, smoke_one_worker):
    for locale in ("en", "es"):
        for name in TSVS:
            a = (smoke / locale / f"{name}.tsv").read_bytes()
            assert a == (smoke_one_worker / locale / f"{name}.tsv").read_bytes(), f"{locale}/{name}.tsv differs"
        # The audio too: every worker synthesises from a fresh espeak-ng state.
        for clip in sorted((smoke / locale / "clips").iterdir()):
            assert clip.read_bytes() == (smoke_one_worker / locale / "clips" / clip.name).read_bytes(), clip.name


def test_durations_within_range(smoke):
    for locale in ("en", "es"):
        table = read_tsv(smoke / locale / "clip_durations.tsv")
        for clip, ms in zip(table["clip"], table["duration[ms]"]):
            assert MIN_SECONDS * 1000 <= int(ms) <= MAX_SECONDS * 1000, (clip, ms)
            assert sf.info(smoke / locale / "clips" / clip).duration == pytest.approx(int(ms) / 1000, abs=0.002)


def test_vocabulary_is_large_and_in_each_orthography():
    letters = {"en": re.compile(r"^[a-z]+$"), "es": re.compile(r"^[a-zñáéíóú]+$")}
    for locale in ("en", "es"):
        vocab = make_vocabulary(locale)
        assert len(vocab) == len(set(vocab)) == 4000
        assert all(letters[locale].match(w) for w in vocab)
        assert not set(vocab) & set(COMMON_WORDS[locale])
        assert len(COMMON_WORDS[locale]) >= 200
        assert make_vocabulary(locale, seed=1) != vocab
    spanish = make_vocabulary("es")
    assert any("ñ" in w for w in spanish) and any(re.search("[áéíóú]", w) for w in spanish)


def test_sentences_are_varied(smoke):
    rng = np.random.default_rng(0)
    words = {w.strip("¿?.,").lower() for _ in range(100) for w in make_sentence(rng, "es", 10).split()}
    assert len(words) > 400  # the demo corpus has 40 words per language
    for locale in ("en", "es"):
        sentences = [
            s for split in ("validated", "other") for s in read_tsv(smoke / locale / f"{split}.tsv")["sentence"]
        ]
        assert len({w.strip("¿?.,").lower() for s in sentences for w in s.split()}) > 60


def test_espeak_reads_the_made_up_words():
    from unispeech.data.espeak_synth import EspeakSynth

    synth = EspeakSynth.private()
    for locale, voice in (("en", "en-us"), ("es", "es")):
        vocab = make_vocabulary(locale)
        phones = {w: synth.phonemes(w, voice) for w in vocab[:1000]}
        assert all(phones.values())
        # Spelled-out words get a stress mark per letter ("ces" -> sˌiːˌiːˈɛs); numerals
        # become several words ("vi" -> ɹˌoʊmən sˈɪks).
        spelled = [w for w, p in phones.items() if " " in p or p.count("ˈ") + p.count("ˌ") >= max(3, len(w) // 2 + 1)]
        assert len(spelled) <= 2, spelled


def test_loads_through_the_commonvoice_loader(smoke, tmp_path):
    other, report = load_commonvoice(smoke, "es", "other", cache_dir=tmp_path, check="decode")
    assert report.total == 0 and len(other) == 8
    assert set(other["text"]) == {""}  # used as unlabeled audio
    train, report = load_commonvoice(smoke, "en", "train", cache_dir=tmp_path, check="decode")
    assert report.total == 0 and len(train) == 8 and all(train["text"])
    assert len(set(train["speaker"])) == 4 and min(train["duration"]) >= MIN_SECONDS


def test_second_call_is_cached_and_cli_prints_summary(smoke, cache, capsys):
    start = time.perf_counter()
    assert ensure_replication_corpus("smoke", cache_dir=cache) == smoke
    assert time.perf_counter() - start < 0.5
    assert [p.name for p in (cache / "replication" / f"v{VERSION}").iterdir()] == ["smoke"]  # no temp leftovers
    main(["--size", "smoke", "--out", str(cache)])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == str(smoke)
    assert re.search(r"es/other\s+8 clips\s+[\d.]+ h\s+4 speakers", out)


def test_size_table_and_speaker_plans():
    mean_clip = (MIN_SECONDS + MAX_SECONDS) / 2
    cpu = SIZES["cpu"]
    hours = {
        (loc, s): cpu.split(loc, s)[0] * cpu.split(loc, s)[1] * mean_clip / 3600
        for loc in ("en", "es")
        for s in SPLITS[loc]
    }
    assert hours[("en", "train")] == pytest.approx(1.0, rel=0.1)
    assert hours[("es", "other")] == pytest.approx(1.0, rel=0.1)
    assert hours[("es", "train")] * 60 == pytest.approx(10, rel=0.1)
    assert hours[("es", "dev")] * 60 == pytest.approx(5, rel=0.1)
    assert hours[("es", "test")] * 60 == pytest.approx(5, rel=0.1)
    assert cpu.en_train[0] >= 60 and cpu.es_other[0] >= 60
    for size in ("cpu", "gpu"):
        assert all(4 <= SIZES[size].split(loc, s)[0] <= 8 for loc in ("en", "es") for s in EVAL_SPLITS)
        speakers = plan_speakers(size)
        assert len({s.client_id for s in speakers}) == len(speakers)
        eval_variants = [s.variant for s in speakers if s.split in EVAL_SPLITS]
        assert len(set(eval_variants)) == len(eval_variants)
        assert not set(eval_variants) & {s.variant for s in speakers if s.split not in EVAL_SPLITS}
    assert SIZES["gpu"].en_train[0] * SIZES["gpu"].en_train[1] >= 4 * cpu.en_train[0] * cpu.en_train[1]
    assert plan_speakers("cpu", seed=3) != plan_speakers("cpu") and plan_speakers("cpu") == plan_speakers("cpu")
