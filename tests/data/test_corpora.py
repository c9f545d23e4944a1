"""CommonVoice folders, datasets ids/folders, audio folders and manifests."""

from __future__ import annotations

import logging
import shutil

import datasets
import numpy as np
import pytest
import soundfile as sf

from unispeech.data.audio import load_audio
from unispeech.data.commonvoice import build_finetune_subset, load_commonvoice, read_tsv
from unispeech.data.corpus import TRUNCATED, make_table
from unispeech.data.sources import load_audio_folder, load_hf_corpus, load_manifest

from datafakes import CV_HEADER, cv_row, tone, write_tsv


def test_read_tsv_keeps_quotes_and_empty_fields(fake_cv):
    table = read_tsv(fake_cv / "en" / "train.tsv")
    assert list(table) == CV_HEADER
    sentences = table["sentence"]
    assert '"quoted" text' in sentences  # pandas' default quoting would strip the quotes
    assert "" in sentences  # ... and turn this into NaN
    assert table["accents"][0] == ""
    dev = read_tsv(fake_cv / "en" / "dev.tsv")
    assert dev["sentence"] == ["NA"]  # not a missing value


def test_commonvoice_train_skips_every_defect_with_counts(fake_cv, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="unispeech.data"):
        table, report = load_commonvoice(
            fake_cv, "en", "train", min_duration=0.5, max_duration=20.0, cache_dir=tmp_path
        )
    assert sorted(table["id"]) == ["a1", "a2", "b1", "b2", "quoted", "stereo"]
    assert report.skipped["missing audio file"] == ["missing"]
    assert report.skipped["undecodable audio"] == ["corrupt"]
    assert report.skipped["empty sentence"] == ["empty_text"]
    assert report.skipped["sentence without letters"] == ["digits"]
    assert report.skipped["duration outside [0.5, 20.0] s"] == ["short"]
    assert report.total == 5
    assert "skipped 1 utterance(s) (missing audio file): missing" in caplog.text
    rows = {r["id"]: r for r in table}
    assert rows["quoted"]["text"] == '"quoted" text'
    assert rows["a1"]["speaker"] == "spk_a" and rows["a1"]["locale"] == "en"
    assert rows["a1"]["duration"] == pytest.approx(1.5)  # from clip_durations.tsv
    assert rows["stereo"]["duration"] == pytest.approx(2.0, abs=0.06)  # from the mp3 header
    stereo = load_audio(rows["stereo"]["path"])
    assert abs(len(stereo) - 32_000) < 0.06 * 16_000


def test_commonvoice_release_root_or_locale_folder(fake_cv):
    by_root, _ = load_commonvoice(fake_cv, "en", "dev", cache_dir=None)
    by_locale, _ = load_commonvoice(fake_cv / "en", None, "dev", cache_dir=None)
    assert by_root["id"] == by_locale["id"] == ["c1"]
    assert by_root["text"] == ["NA"]


def test_other_split_is_unlabeled_audio(fake_cv):
    table, report = load_commonvoice(fake_cv, "en", "other", cache_dir=None)
    assert table["id"] == ["a1", "b2"] and table["text"] == ["", ""]
    assert report.total == 0


def test_nothing_left_is_a_clear_error(tmp_path):
    loc = tmp_path / "xx"
    (loc / "clips").mkdir(parents=True)
    write_tsv(loc / "train.tsv", CV_HEADER, [cv_row("s", "gone.mp3", "hello", "xx")])
    with pytest.raises(ValueError, match="no usable utterance.*missing audio file: 1"):
        load_commonvoice(tmp_path, "xx", "train", cache_dir=None)


def test_prepared_tables_are_cached_as_arrow(fake_cv, tmp_path):
    copy = tmp_path / "cv"
    shutil.copytree(fake_cv, copy)
    first, _ = load_commonvoice(copy, "en", "train", min_duration=0.5, cache_dir=tmp_path / "cache")
    (copy / "en" / "clips" / "a1.mp3").unlink()  # not re-validated: the cache is keyed on the TSV
    second, report = load_commonvoice(copy, "en", "train", min_duration=0.5, cache_dir=tmp_path / "cache")
    assert second["id"] == first["id"] and report.total == 5
    assert len(list((tmp_path / "cache").iterdir())) == 1
    # editing the TSV invalidates the cache
    write_tsv(copy / "en" / "train.tsv", CV_HEADER, [cv_row("s", "a2.mp3", "only one")])
    third, _ = load_commonvoice(copy, "en", "train", min_duration=0.5, cache_dir=tmp_path / "cache")
    assert third["id"] == ["a2"]


def test_decode_check_catches_truncated_clips(tmp_path):
    loc = tmp_path / "en"
    (loc / "clips").mkdir(parents=True)
    sf.write(loc / "clips" / "ok.mp3", tone(2.0, 48_000), 48_000)
    data = (loc / "clips" / "ok.mp3").read_bytes()
    (loc / "clips" / "cut.mp3").write_bytes(data[: len(data) // 4])
    write_tsv(loc / "train.tsv", CV_HEADER, [cv_row("s", "ok.mp3", "fine"), cv_row("s", "cut.mp3", "cut")])
    header, _ = load_commonvoice(tmp_path, "en", "train", cache_dir=None, check="header")
    decoded, report = load_commonvoice(tmp_path, "en", "train", cache_dir=None, check="decode")
    dur_header = dict(zip(header["id"], header["duration"]))
    assert dur_header["cut"] == pytest.approx(2.0, abs=0.06)  # the header lies
    assert decoded["id"] == ["ok"]  # decoding tells the truth: the cut clip is dropped, and named
    assert report.skipped == {TRUNCATED: ["cut"]}


def _speaker_table(n_speakers=30, per_speaker=10, seconds=4.0):
    rows = {"id": [], "path": [], "speaker": [], "duration": []}
    for s in range(n_speakers):
        for u in range(per_speaker):
            rows["id"].append(f"s{s}_u{u}")
            rows["path"].append(f"/x/s{s}_u{u}.mp3")
            rows["speaker"].append(f"spk{s}")
            rows["duration"].append(seconds + 0.1 * u)
    return make_table(rows)


def test_finetune_subset_is_seeded_speaker_disjoint_and_sized():
    table = _speaker_table()  # 30 speakers x 10 x ~4.45 s = 22 minutes
    excluded = {"spk0", "spk1", "spk2"}
    subset = build_finetune_subset(table, hours=0.1, seed=7, exclude_speakers=excluded)
    total = sum(subset["duration"])
    assert 360.0 <= total < 360.0 + 5.0  # 0.1 h reached, overshoot below one clip
    assert not excluded & set(subset["speaker"])
    again = build_finetune_subset(table, hours=0.1, seed=7, exclude_speakers=excluded)
    other = build_finetune_subset(table, hours=0.1, seed=8, exclude_speakers=excluded)
    assert again["id"] == subset["id"] and other["id"] != subset["id"]
    # whole speakers except possibly the last one
    counts = {s: subset["speaker"].count(s) for s in set(subset["speaker"])}
    assert sum(c < 10 for c in counts.values()) <= 1


def _write_clips(folder, names, seconds=1.0, rate=16_000):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        sf.write(folder / name, tone(seconds, rate), rate)


def test_hf_save_to_disk_with_audio_bytes_and_path_strings(tmp_path):
    _write_clips(tmp_path / "wavs", ["x.wav", "y.flac"], seconds=1.0)
    blob = (tmp_path / "wavs" / "x.wav").read_bytes()
    ds = datasets.Dataset.from_dict(
        {
            "audio": [
                {"bytes": blob, "path": "in_memory.wav"},
                {"bytes": blob, "path": "again.wav"},
                {"bytes": None, "path": str(tmp_path / "wavs" / "y.flac")},
            ],
            "transcription": ["one", "two", 3],
            "spk": ["a", "b", "a"],
        },
        features=datasets.Features(
            {
                "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                "transcription": datasets.Value("string"),
                "spk": datasets.Value("string"),
            }
        ),
    )
    # A real Audio feature, as hub datasets have (cast in Arrow: no torchcodec needed).
    ds = ds.cast_column("audio", datasets.Audio())
    assert isinstance(ds.features["audio"], datasets.Audio)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved"))
    table, report = load_hf_corpus(
        str(tmp_path / "saved"),
        "train",
        audio_column="audio",
        text_column="transcription",
        speaker_column="spk",
        cache_dir=tmp_path / "cache",
    )
    # the number 3 became the string "3": no letters, so skipped and named
    assert report.skipped == {"sentence without letters": ["train-00000002"]}
    assert table["text"] == ["one", "two"] and table["speaker"] == ["a", "b"]
    assert all(d == pytest.approx(1.0) for d in table["duration"])
    # both byte rows share one content-addressed file written under the cache
    assert table["path"][0] == table["path"][1] and table["path"][0].startswith(str(tmp_path / "cache"))
    assert len(load_audio(table["path"][0])) == 16_000


def test_hf_embedded_audio_is_materialised_once(tmp_path):
    _write_clips(tmp_path / "wavs", ["y.flac"], seconds=0.75)
    ds = datasets.Dataset.from_dict(
        {"audio": [{"bytes": None, "path": str(tmp_path / "wavs" / "y.flac")}], "sentence": ["hi"]},
        features=datasets.Features(
            {
                "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                "sentence": datasets.Value("string"),
            }
        ),
    ).cast_column("audio", datasets.Audio())
    ds.save_to_disk(str(tmp_path / "one"))
    # save_to_disk embeds the file's bytes; we write them back once, keeping the suffix
    table, _ = load_hf_corpus(str(tmp_path / "one"), "train", cache_dir=tmp_path / "c")
    path = table["path"][0]
    assert path.startswith(str(tmp_path / "c" / "blobs")) and path.endswith(".flac")
    assert table["duration"] == [0.75] and table["text"] == ["hi"]


def test_hf_string_paths_relative_to_saved_folder_and_bad_rows(tmp_path):
    saved = tmp_path / "ds"
    datasets.Dataset.from_dict(
        {"file": ["clips/a.wav", "clips/missing.wav", "clips/b.wav"], "text": ["ok", "gone", None]}
    ).save_to_disk(str(saved))
    _write_clips(saved / "clips", ["a.wav", "b.wav"])
    table, report = load_hf_corpus(
        str(saved), "train", audio_column="file", text_column="text", id_column=None, cache_dir=None
    )
    assert table["text"] == ["ok"]
    assert report.skipped["missing audio file"] == ["train-00000001"]
    assert report.skipped["empty sentence"] == ["train-00000002"]


def test_audio_folder_and_manifest(tmp_path):
    _write_clips(tmp_path / "audio" / "sub", ["a.wav", "b.flac"], seconds=1.0)
    _write_clips(tmp_path / "audio", ["c.wav"], seconds=0.2)
    (tmp_path / "audio" / "notes.txt").write_text("not audio")
    table, report = load_audio_folder(tmp_path / "audio", min_duration=0.5, cache_dir=None)
    assert sorted(table["id"]) == ["sub/a", "sub/b"] and report.skipped  # c.wav too short
    assert table["text"] == ["", ""]
    write_tsv(
        tmp_path / "audio" / "train.tsv",
        ["path", "text"],
        [["sub/a.wav", '"quoted" words'], ["sub/b.flac", ""], ["nope.wav", "x"]],
    )
    table, report = load_manifest(tmp_path / "audio" / "train.tsv", cache_dir=None)
    assert table["id"] == ["sub/a"] and table["text"] == ['"quoted" words']
    assert report.total == 2
    assert np.isclose(table["duration"][0], 1.0)
