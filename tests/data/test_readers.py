"""The pieces the DataModule wires: source detection and readers, shared read options, the
mode list, and the resumable training loader."""

from __future__ import annotations

import datasets
import pytest
import soundfile as sf

from unispeech.data import UniSpeechDataModule, sources
from unispeech.data.loaders import ResumableLoader
from unispeech.data.read_options import ReadOptions
from unispeech.data.sources import SplitRequest, detect_source, load_manifest, read_source

from datafakes import tone, write_tsv


@pytest.fixture
def manifest_folder(tmp_path):
    """Six labelled 1-3.5 s clips: `train.tsv` and a one-row `dev.tsv`."""
    for i in range(6):
        sf.write(tmp_path / f"u{i}.flac", tone(1.0 + 0.5 * i, 16_000), 16_000)
    write_tsv(tmp_path / "train.tsv", ["path", "text"], [[f"u{i}.flac", f"word number {i}"] for i in range(6)])
    write_tsv(tmp_path / "dev.tsv", ["path", "text"], [["u0.flac", "word"]])
    return tmp_path


def test_detect_source(manifest_folder, tmp_path_factory):
    assert detect_source("demo") == "commonvoice"
    assert detect_source(str(manifest_folder / "train.tsv")) == "manifest"
    assert detect_source(str(manifest_folder)) == "manifest"  # a folder of <split>.tsv
    release = tmp_path_factory.mktemp("cv")
    (release / "fr" / "clips").mkdir(parents=True)
    assert detect_source(str(release)) == detect_source(str(release / "fr")) == "commonvoice"
    saved = tmp_path_factory.mktemp("saved")
    datasets.Dataset.from_dict({"audio": ["a.wav"]}).save_to_disk(str(saved))
    assert detect_source(str(saved)) == "hf"
    assert detect_source(str(tmp_path_factory.mktemp("empty"))) == "folder"
    assert detect_source("someone/some_dataset") == "hf"


def test_loaders_take_options_or_keywords(manifest_folder):
    by_keywords, _ = load_manifest(manifest_folder / "train.tsv", min_duration=1.6, cache_dir=None)
    by_options, _ = load_manifest(manifest_folder / "train.tsv", options=ReadOptions(min_duration=1.6))
    assert by_keywords["id"] == by_options["id"] and len(by_options) == 4
    assert ReadOptions.of(ReadOptions(check="none"), num_proc=2) == ReadOptions(check="none", num_proc=2)
    with pytest.raises(TypeError):
        load_manifest(manifest_folder / "train.tsv", min_seconds=1.0)


def test_a_split_given_as_a_tsv_is_read_as_a_manifest(manifest_folder):
    request = SplitRequest(str(manifest_folder), str(manifest_folder / "dev.tsv"))
    table, report = read_source("folder", request, ReadOptions())
    assert table["text"] == ["word"] and report.total == 0
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        read_source("nope", SplitRequest(str(manifest_folder), "train"), ReadOptions())


def test_a_registered_reader_is_a_source_of_the_datamodule(manifest_folder, monkeypatch):
    seen = []

    def read_reversed(request, options):
        seen.append((request.split, request.labeled, options.max_duration))
        table, report = load_manifest(manifest_folder / f"{request.split}.tsv", options=options)
        return [(table.select(range(len(table) - 1, -1, -1)), report)]

    monkeypatch.setitem(sources.READERS, "reversed", read_reversed)
    dm = UniSpeechDataModule(
        corpus=str(manifest_folder),
        source="reversed",
        label_type="chars",
        num_workers=0,
        max_duration=3.0,
        test_splits=[],
        cache_dir=str(manifest_folder / "cache"),
    )
    dm.setup("fit")
    assert seen == [("train", True, 3.0), ("dev", True, 3.0)]
    assert dm.tables["train"]["id"] == ["u4", "u3", "u2", "u1", "u0"]  # u5 (3.5 s) is too long


def test_modes_are_listed_and_checked():
    assert UniSpeechDataModule.MODES == ("ctc", "pretraining", "classification")
    assert UniSpeechDataModule(mode="pretraining").mode in UniSpeechDataModule.MODES
    with pytest.raises(ValueError, match="mode must be one of"):
        UniSpeechDataModule(mode="asr")


def test_training_loader_resumes_mid_epoch(manifest_folder):
    dm = UniSpeechDataModule(
        corpus=str(manifest_folder / "train.tsv"),
        label_type="chars",
        num_workers=0,
        max_batch_size=1,
        val_splits=[],
        test_splits=[],
        cache_dir=str(manifest_folder / "c"),
    )
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableLoader)
    loader.batch_sampler.set_epoch(3)
    batches = iter(loader)
    seen = [next(batches)["ids"] for _ in range(2)]
    loader.consumed = 2  # what CountConsumedBatches does after each training step
    resumed = dm.train_dataloader()
    resumed.load_state_dict(loader.state_dict())
    resumed.batch_sampler.set_epoch(3)
    assert seen + [b["ids"] for b in resumed] == [b["ids"] for b in loader]


def test_more_loader_workers_than_usable_cpus_are_capped_and_said_once(manifest_folder, monkeypatch, caplog):
    from unispeech.data import loaders

    monkeypatch.setattr(loaders, "usable_cpus", lambda: 2)
    monkeypatch.setattr(loaders, "_said_capped", set())
    dm = UniSpeechDataModule(
        corpus=str(manifest_folder),
        label_type="chars",
        num_workers=6,  # a GPU node's setting, run on a 2-core laptop
        test_splits=[],
        cache_dir=str(manifest_folder / "c"),
    )
    dm.setup("fit")
    with caplog.at_level("INFO", logger="unispeech.data"):
        train, val = dm.train_dataloader(), dm.val_dataloader()
    val = val[0] if isinstance(val, list) else val
    assert train.loader.num_workers == val.num_workers == 2
    said = [r.getMessage() for r in caplog.records if "num_workers" in r.getMessage()]
    assert said == ["data.num_workers=6 is more than the 2 CPUs this process may use: using 2"]
    assert loaders.worker_count(1) == 1 and loaders.worker_count(0) == 0
