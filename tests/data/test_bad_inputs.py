"""Every bad input gives a correct table or a message naming the culprit (file, line, clip):
the defects of `datafakes.write_defect_release`, one test each."""

from __future__ import annotations

import logging
import re
import shutil
import unicodedata

import pytest
import soundfile as sf

from unispeech.data.commonvoice import TSVEncodingError, build_finetune_subset, load_commonvoice, read_tsv
from unispeech.data.corpus import TRUNCATED, default_cache_dir, make_table
from unispeech.data.sources import load_manifest
from unispeech.data.targets import CTCTargets
from unispeech.data.tokenizer import normalize_text, strip_non_speech

from datafakes import BRULEE, CV_HEADER, HAPPY, cv_row, tone, write_tsv


def _rows(table):
    return {row["id"]: row for row in table}


# -- TSVs ------------------------------------------------------------------------------
def test_a_byte_order_mark_is_not_part_of_the_first_column(defect_cv):
    assert list(read_tsv(defect_cv / "en" / "train.tsv"))[0] == "client_id"
    table, _ = load_commonvoice(defect_cv, "en", "train", cache_dir=None)
    assert _rows(table)["a1"]["speaker"] == "spk_a"
    assert "" not in set(table["speaker"])


def test_the_speaker_disjoint_subset_survives_a_byte_order_mark(defect_cv):
    validated, _ = load_commonvoice(defect_cv, "en", "validated", cache_dir=None)
    dev, _ = load_commonvoice(defect_cv, "en", "dev", cache_dir=None)
    assert set(dev["speaker"]) == {"spk_dev"}
    subset = build_finetune_subset(validated, hours=1.0, exclude_speakers=set(dev["speaker"]))
    assert "spk_dev" not in set(subset["speaker"]) and not {"dev1", "dev2"} & set(subset["id"])


def test_a_stray_tab_skips_the_row_and_names_it(defect_cv, caplog):
    with caplog.at_level(logging.WARNING, logger="unispeech.data"):
        table, report = load_commonvoice(defect_cv, "en", "train", cache_dir=None)
    assert "tab" not in table["id"]  # not kept with the transcript cut at the tab ("We walk")
    assert "We walk" not in table["text"]
    assert report.skipped["wrong number of fields in train.tsv"] == ["tab"]
    tsv = defect_cv / "en" / "train.tsv"
    assert f"{tsv}: skipped 1 row(s) with a wrong number of fields (the header has 13" in caplog.text
    assert "line 4 (14 fields, path tab.mp3)" in caplog.text
    assert "skipped 1 utterance(s) (wrong number of fields in train.tsv): tab" in caplog.text


def test_a_stray_tab_in_a_manifest(tmp_path, caplog):
    sf.write(tmp_path / "a.wav", tone(1.0, 16_000), 16_000)
    sf.write(tmp_path / "b.wav", tone(1.0, 16_000), 16_000)
    write_tsv(tmp_path / "train.tsv", ["path", "text"], [["a.wav", "fine"], ["b.wav", "cut\there"]])
    (tmp_path / "train.tsv").write_text((tmp_path / "train.tsv").read_text() + "\n\n")  # blank lines are fine
    with caplog.at_level(logging.WARNING, logger="unispeech.data"):
        table, report = load_manifest(tmp_path / "train.tsv", cache_dir=None)
    assert table["id"] == ["a"] and table["text"] == ["fine"]
    assert report.skipped == {"wrong number of fields in train.tsv": ["b"]}
    assert "line 3 (3 fields, path b.wav)" in caplog.text
    write_tsv(tmp_path / "only.tsv", ["path", "text"], [["b.wav", "cut\there"]])
    with pytest.raises(ValueError, match=r"no usable utterance left.*wrong number of fields in only.tsv: 1"):
        load_manifest(tmp_path / "only.tsv", cache_dir=None)


def test_a_tsv_that_is_not_utf8_names_file_line_and_byte(tmp_path):
    loc = tmp_path / "en"
    (loc / "clips").mkdir(parents=True)
    write_tsv(loc / "train.tsv", CV_HEADER, [cv_row("s", "x.mp3", "fine"), cv_row("s", "y.mp3", "Café au lait")])
    data = (loc / "train.tsv").read_bytes()
    latin1 = data.replace("Café".encode(), "Café".encode("latin-1"))
    (loc / "train.tsv").write_bytes(latin1)
    offset = latin1.index(b"\xe9")
    message = (
        re.escape(f"{loc / 'train.tsv'}: line 3 is not UTF-8: byte 0xe9 at byte offset {offset} of the file ")
        + r"\(byte 22 of the line\), near '.*Caf\ufffd au lait.*The TSVs must be UTF-8.*iconv -f latin1 -t utf-8"
    )
    with pytest.raises(TSVEncodingError, match=message):
        load_commonvoice(tmp_path, "en", "train", cache_dir=None)
    with pytest.raises(ValueError):  # TSVEncodingError is a ValueError, like UnicodeDecodeError
        read_tsv(loc / "train.tsv")


# -- audio -------------------------------------------------------------------------------
def test_decode_check_skips_truncated_clips(defect_cv, caplog):
    header, _ = load_commonvoice(defect_cv, "en", "train", cache_dir=None, check="header")
    assert _rows(header)["cut"]["duration"] == pytest.approx(3.5, abs=0.06)  # the header lies
    with caplog.at_level(logging.WARNING, logger="unispeech.data"):
        decoded, report = load_commonvoice(defect_cv, "en", "train", cache_dir=None, check="decode")
    assert "cut" not in decoded["id"]
    assert report.skipped[TRUNCATED] == ["cut"]
    assert f"skipped 1 utterance(s) ({TRUNCATED}): cut" in caplog.text
    # complete clips are kept, with their decoded duration
    assert _rows(decoded)["a2"]["duration"] == pytest.approx(2.0, abs=0.06)


def test_truncation_is_measured_against_clip_durations_too(tmp_path):
    loc = tmp_path / "en"
    (loc / "clips").mkdir(parents=True)
    sf.write(loc / "clips" / "whole.wav", tone(1.0, 16_000), 16_000)  # a wav header that is right...
    sf.write(loc / "clips" / "near.wav", tone(1.9, 16_000), 16_000)
    write_tsv(loc / "train.tsv", CV_HEADER, [cv_row("s", "whole.wav", "one"), cv_row("s", "near.wav", "two")])
    # ... but CommonVoice measured 3 s: a clip re-encoded from a cut download
    write_tsv(loc / "clip_durations.tsv", ["clip", "duration[ms]"], [["whole.wav", "3000"], ["near.wav", "2000"]])
    table, report = load_commonvoice(tmp_path, "en", "train", cache_dir=None, check="decode")
    assert report.skipped == {TRUNCATED: ["whole"]}
    assert table["id"] == ["near"]  # 0.1 s short of 2 s: within the tolerance


# -- text --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phone_targets(defect_cv):
    table, _ = load_commonvoice(defect_cv, "en", "train", cache_dir=None)
    targets, _ = CTCTargets(kind="phones", cache_dir=None)(table, "defects")
    return {row["id"]: row["target"] for row in targets}


def test_nfc_and_nfd_spellings_get_the_same_phones(phone_targets):
    assert unicodedata.normalize("NFD", BRULEE) != BRULEE
    assert phone_targets["nfd"] == phone_targets["nfc"]
    assert phone_targets["nfc"].endswith("b ɹ uː l eɪ")  # not "b ɹ ʌ l ɛ"


def test_emoji_are_not_read_out(phone_targets):
    assert phone_targets["emoji"] == phone_targets["plain"] == "aɪ ɐ m | h æ p i"


def test_both_target_kinds_share_the_text_cleaning(defect_cv):
    table = make_table(
        {
            "path": ["x"] * 4,
            "text": [unicodedata.normalize("NFD", BRULEE), BRULEE, HAPPY + " 🙂", HAPPY],
        }
    )
    chars, _ = CTCTargets(kind="chars")(table, "chars")
    assert chars["target"] == ["crème brûlée", "crème brûlée", "i am happy", "i am happy"]


@pytest.mark.parametrize(
    "raw,spoken",
    [
        ("great👍🏽day", "great day"),  # an emoji with a skin tone (Sk) between two words
        ("I ❤️ you", "I you"),  # the variation selector (a mark, Mn) goes with its emoji
        ("a 👩‍👩‍👧 family", "a family"),  # zero-width joiners go too
        ("press 1️⃣ now", "press 1 now"),  # the keycap goes, the digit stays
        ("©2020 Acme™", "2020 Acme"),
        ("L'école coûte $5 + 3 %", "L'école coûte $5 + 3 %"),  # letters, apostrophes and spoken signs stay
        ("Привет, 你好!", "Привет, 你好!"),
        ("don´t ^_^ `x`", "don´t ^_^ `x`"),  # an accent used as an apostrophe, ASCII symbols
    ],
)
def test_strip_non_speech(raw, spoken):
    assert " ".join(strip_non_speech(raw).split()) == spoken


def test_chars_normalisation_drops_emoji_glue():
    assert normalize_text("I ❤️ you") == "i you"  # the variation selector used to stay, as a word


# -- the prepared cache --------------------------------------------------------------------
def test_a_cached_load_names_the_skipped_clips(defect_cv, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="unispeech.data"):
        _, first = load_commonvoice(defect_cv, "en", "train", cache_dir=tmp_path)
    first_log = caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unispeech.data"):
        table, second = load_commonvoice(defect_cv, "en", "train", cache_dir=tmp_path)
    expected = {"wrong number of fields in train.tsv": ["tab"], "missing audio file": ["late"]}
    assert first.skipped == expected and second.skipped == expected
    for message in (
        "skipped 1 utterance(s) (missing audio file): late",
        "skipped 1 utterance(s) (wrong number of fields in train.tsv): tab",
    ):
        assert message in first_log and message in caplog.text
    assert "prepared earlier, read from" in caplog.text
    assert "line 4" not in caplog.text  # the TSV itself was not read again


def test_a_restored_clip_is_used_without_deleting_the_cache(defect_cv, tmp_path, caplog):
    release = tmp_path / "release"
    shutil.copytree(defect_cv, release)
    cache = tmp_path / "cache"
    before, report = load_commonvoice(release, "en", "train", cache_dir=cache)
    assert "late" not in before["id"] and report.skipped["missing audio file"] == ["late"]
    again, _ = load_commonvoice(release, "en", "train", cache_dir=cache)
    assert again["id"] == before["id"]  # nothing changed: read from the cache
    sf.write(release / "en" / "clips" / "late.mp3", tone(1.0, 48_000), 48_000, format="MP3")
    with caplog.at_level(logging.INFO, logger="unispeech.data"):
        after, report = load_commonvoice(release, "en", "train", cache_dir=cache)
    assert "late" in after["id"] and "missing audio file" not in report.skipped
    assert "1 skipped clip(s) appeared or changed since it was prepared" in caplog.text
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1  # replaced, not added
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="unispeech.data"):
        cached, _ = load_commonvoice(release, "en", "train", cache_dir=cache)
    assert cached["id"] == after["id"] and "appeared or changed" not in caplog.text


def test_the_cache_defaults_to_the_home_cache_from_any_directory(tmp_path, monkeypatch):
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from unispeech.training.hydra_config import config_dir, register

    register()
    monkeypatch.delenv("UNISPEECH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cv-corpus-23.0-2025-09-05" / "tr" / "clips").mkdir(parents=True)
    home_cache = tmp_path / "home" / ".cache" / "unispeech"
    assert default_cache_dir() == home_cache
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(config_dir()).resolve()), version_base="1.3"):
        cfg = compose("train", ["recipe=commonvoice/finetune", "language=tr", f"paths.data_root={tmp_path}"])
    GlobalHydra.instance().clear()
    assert instantiate(cfg.data).read_options.cache_dir == home_cache / "prepared"
    monkeypatch.setenv("UNISPEECH_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
