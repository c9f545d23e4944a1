"""Readers for the layouts users keep real corpora in: Kaldi/ESPnet data directories,
Speech Commands-style label folders and `file,class` CSV lists (docs/data.md)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from unispeech.data import UniSpeechDataModule
from unispeech.data.kaldi import KaldiFormatError, load_kaldi_dir, write_subset
from unispeech.data.read_options import ReadOptions
from unispeech.data.sources import detect_source, load_label_folder, load_manifest

from datafakes import tone


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture
def kaldi_corpus(tmp_path):
    """`corpus/{train,test}/` as speechocean762 ships them: wav.scp paths relative to the
    corpus folder (the data directories' parent), upper-case transcripts, speaker files."""
    root = tmp_path / "corpus"
    for split, speakers in (("train", ("s1", "s2")), ("test", ("s3",))):
        data = root / split
        data.mkdir(parents=True)
        scp, text, utt2spk = [], [], []
        for speaker in speakers:
            (root / "WAVE" / speaker).mkdir(parents=True, exist_ok=True)
            for i in range(2):
                utt = f"{speaker}u{i}"
                sf.write(root / "WAVE" / speaker / f"{utt}.flac", tone(1.0 + i, 16_000), 16_000)
                scp.append(f"{utt}\tWAVE/{speaker}/{utt}.flac")
                text.append(f"{utt}\tWE CALL IT BEAR {i}")
                utt2spk.append(f"{utt} {speaker}")
        _write(data / "wav.scp", scp)
        _write(data / "text", text)
        _write(data / "utt2spk", utt2spk)
        _write(data / "spk2age", [f"{s} {8 if s == 's1' else 30}" for s in speakers])
        _write(data / "spk2gender", [f"{s} f" for s in speakers])
    return root


def test_kaldi_dir_reads_paths_text_speakers_and_ages(kaldi_corpus, tmp_path):
    table, report = load_kaldi_dir(kaldi_corpus / "train", locale="en", options=ReadOptions(cache_dir=tmp_path / "c"))
    assert report.total == 0
    rows = {row["id"]: row for row in table}
    assert sorted(rows) == ["s1u0", "s1u1", "s2u0", "s2u1"]
    assert rows["s1u1"]["path"] == str((kaldi_corpus / "WAVE" / "s1" / "s1u1.flac").resolve())
    assert rows["s1u1"]["text"] == "WE CALL IT BEAR 1"
    assert rows["s2u0"]["speaker"] == "s2" and rows["s2u0"]["age"] == "30" and rows["s1u0"]["age"] == "8"
    assert rows["s1u1"]["duration"] == pytest.approx(2.0)
    assert detect_source(str(kaldi_corpus)) == detect_source(str(kaldi_corpus / "train")) == "kaldi"


def test_kaldi_segments_read_only_their_span(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    wav = np.concatenate([np.full(16_000, 0.1), np.full(16_000, -0.2), np.full(8_000, 0.3)]).astype(np.float32)
    sf.write(tmp_path / "long.wav", wav, 16_000)
    _write(data / "wav.scp", [f"rec1 {tmp_path / 'long.wav'}"])
    _write(data / "segments", ["a rec1 0.0 1.0", "b rec1 1.0 2.0", "c rec1 2.0 -1", "d gone 0 1"])
    _write(data / "text", ["a one", "b two", "c three", "d four"])
    table, report = load_kaldi_dir(data, options=ReadOptions(check="decode"))
    assert report.skipped == {"no wav.scp entry for its recording": ["d"]}
    assert dict(zip(table["id"], table["duration"])) == pytest.approx({"a": 1.0, "b": 1.0, "c": 0.5})
    from unispeech.data.dataset import SpeechDataset

    dataset = SpeechDataset(
        table["path"],
        table["id"],
        table["duration"],
        segments=list(zip(table["start"], table["end"])),
        do_normalize=False,
    )
    means = [float(dataset[i]["input_values"].mean()) for i in range(3)]
    assert means == pytest.approx([0.1, -0.2, 0.3], abs=1e-3)
    assert [len(dataset[i]["input_values"]) for i in range(3)] == [16_000, 16_000, 8_000]


def test_kaldi_errors_name_the_file_and_line(tmp_path):
    data = tmp_path / "bad"
    data.mkdir()
    _write(data / "wav.scp", ["u1 a.wav", "u1 b.wav"])
    with pytest.raises(KaldiFormatError, match=r"wav.scp: line 2: id 'u1' appears twice"):
        load_kaldi_dir(data, labeled=False)
    _write(data / "wav.scp", ["u1 sox a.wav -t wav - |"])
    with pytest.raises(KaldiFormatError, match="only plain file paths"):
        load_kaldi_dir(data, labeled=False)
    _write(data / "wav.scp", ["u1 a.wav"])
    with pytest.raises(FileNotFoundError, match="no `text` file"):
        load_kaldi_dir(data)
    _write(data / "segments", ["u1 u1 2.0 1.0"])
    with pytest.raises(KaldiFormatError, match=r"segments: utterance 'u1': segment \[2.0, 1.0\] is empty"):
        load_kaldi_dir(data, labeled=False)


def test_kaldi_datamodule_lower_cases_capital_transcripts_and_subsets_by_speaker(kaldi_corpus, tmp_path):
    """The DataModule reads `<corpus>/<split>/` directories; an all-capitals transcript is
    phonemized as words ("IT" is "ɪ t", not the letters "aɪ t iː")."""
    write_subset(kaldi_corpus / "test", tmp_path / "sub" / "dev", {"s3"})
    write_subset(kaldi_corpus / "train", tmp_path / "sub" / "train", {"s1"})
    dm = UniSpeechDataModule(
        corpus=str(tmp_path / "sub"), locales=["en"], test_splits=[], cache_dir=str(tmp_path / "cache"), num_workers=0
    )
    dm.setup()
    assert dm.source == "kaldi"
    assert sorted(dm.tables["train"]["id"]) == ["s1u0", "s1u1"] and sorted(dm.tables["val"]["id"]) == ["s3u0", "s3u1"]
    assert dm.tables["train"]["target"][0].startswith("w iː | k ɔː l | ɪ t | b ɛɹ")
    with pytest.raises(FileNotFoundError, match="data directories of .* are: dev, train"):
        UniSpeechDataModule(corpus=str(tmp_path / "sub"), test_splits=["test"], cache_dir=str(tmp_path / "c2")).setup()


@pytest.fixture
def label_folder(tmp_path):
    """Speech Commands' layout: a folder per keyword, `_background_noise_`, split lists."""
    root = tmp_path / "commands"
    for label in ("yes", "no", "_background_noise_"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            sf.write(root / label / f"spk{i}_nohash_0.wav", tone(1.0, 16_000, freq=200 + 50 * i), 16_000)
    (root / "validation_list.txt").write_text("yes/spk1_nohash_0.wav\nno/spk1_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/spk2_nohash_0.wav\nno/spk2_nohash_0.wav\n")
    return root


def test_label_folder_splits_follow_the_lists(label_folder):
    tables = {split: load_label_folder(label_folder, split)[0] for split in ("train", "validation", "test")}
    assert sorted(tables["train"]["id"]) == ["no/spk0_nohash_0", "yes/spk0_nohash_0"]
    assert sorted(tables["validation"]["label"]) == ["no", "yes"]
    assert all("spk2" in i for i in tables["test"]["id"])
    assert load_label_folder(label_folder, "dev")[0]["id"] == tables["validation"]["id"]
    with pytest.raises(ValueError, match="has the splits"):
        load_label_folder(label_folder, "other")


def test_classification_on_a_label_folder_and_on_csv_lists(label_folder, tmp_path):
    dm = UniSpeechDataModule(
        corpus=str(label_folder), mode="classification", val_splits=["validation"],
        cache_dir=str(tmp_path / "cache"), num_workers=0, min_duration=0.1,
    )  # fmt: skip
    dm.setup()
    assert dm.source == "folder" and dm.label_names == ["no", "yes"]
    # The Arabic Speech Commands layout: `file,class` CSVs whose paths start at the CSV's folder.
    rows = "file,class\n" + "".join(f"{w}/spk{i}_nohash_0.wav,{w}\n" for w in ("yes", "no") for i in (0, 1))
    (label_folder / "train.csv").write_text(rows)
    (label_folder / "val.csv").write_text('file,class\n"yes/spk2_nohash_0.wav",yes\nbroken\n')
    table, report = load_manifest(label_folder / "val.csv", text_column=None, label_column="class")
    assert list(table["label"]) == ["yes"] and report.skipped == {
        "wrong number of fields in val.csv": ["val.csv line 3"]
    }
    dm = UniSpeechDataModule(
        corpus=str(label_folder), source="manifest", mode="classification", label_column="class",
        val_splits=["val"], test_splits=[], cache_dir=str(tmp_path / "cache"), num_workers=0, min_duration=0.1,
    )  # fmt: skip
    dm.setup()
    assert dm.label_names == ["no", "yes"] and len(dm.tables["train"]) == 4 and len(dm.tables["val"]) == 1
    with pytest.raises(ValueError, match="no label column 'label'"):
        load_manifest(label_folder / "val.csv", text_column=None, label_column="label")
