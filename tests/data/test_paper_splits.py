"""The UniSpeech paper's 1-hour CommonVoice lists: shipped files, loading from a release, the
DataModule switch and the recipes' per-language default."""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import pytest
import soundfile as sf

import unispeech.data
from unispeech.data import UniSpeechDataModule, paper_splits as ps

from datafakes import CV_HEADER, cv_row, tone, write_tsv

PAPER_LANGUAGES = ("es", "fr", "it", "ky", "nl", "ru", "sv")
LISTED = "es, fr, it, ky, nl, ru, sv"
# The fake release holds the first COUNTS clips of each fr list, less (split, line) NO_ROW
# (neither TSV row nor mp3) and NO_AUDIO (a row, no mp3); ONLY_IN_OTHER's row is in
# other.tsv only, and DECOY is in the release but in no list.
COUNTS = {"train_1h": 6, "val_1h": 3, "test_1h": 3}
NO_ROW = ("train_1h", 2)
ONLY_IN_OTHER = ("train_1h", 4)
NO_AUDIO = ("val_1h", 1)
DECOY = "common_voice_fr_1"


def first_clips(split: str) -> list[str]:
    return list(ps.read_paper_split("fr", split).clips[: COUNTS[split]])


def expected_ids(split: str) -> list[str]:
    gone = {NO_ROW, NO_AUDIO}
    return [clip for i, clip in enumerate(first_clips(split)) if (split, i) not in gone]


@pytest.fixture(scope="module")
def short_lists(tmp_path_factory) -> Path:
    """The shipped fr lists cut to their first lines (COUNTS), so that a small fake release
    holds all of them but the clips left out on purpose."""
    folder = tmp_path_factory.mktemp("lists")
    (folder / "fr").mkdir()
    shipped = ps.data_dir() / "fr"
    (folder / "fr" / "phones.json").write_bytes((shipped / "phones.json").read_bytes())
    for split, count in COUNTS.items():
        for suffix in (".clips", ".phone", ".text"):
            lines = (shipped / f"{split}{suffix}").read_text(encoding="utf-8").split("\n")[:count]
            (folder / "fr" / f"{split}{suffix}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def paper_lists(short_lists, monkeypatch) -> Path:
    monkeypatch.setattr(ps, "data_dir", lambda: short_lists)
    return short_lists


@pytest.fixture(scope="module")
def release(tmp_path_factory, short_lists) -> Path:
    """`cv-corpus-fake/fr/` holding the clips of the short fr lists, 1 s tones."""
    root = tmp_path_factory.mktemp("paper") / "cv-corpus-fake"
    clips = root / "fr" / "clips"
    clips.mkdir(parents=True)
    validated, other = [], []
    for split in COUNTS:
        sentences = ps.read_paper_split("fr", split).sentences
        for i, clip in enumerate(first_clips(split)):
            if (split, i) == NO_ROW:
                continue
            row = cv_row(f"spk_{split}_{i}", f"{clip}.mp3", sentences[clip], "fr")
            (other if (split, i) == ONLY_IN_OTHER else validated).append(row)
            if (split, i) != NO_AUDIO:
                sf.write(clips / f"{clip}.mp3", tone(1.0, 48_000), 48_000, format="MP3")
    sf.write(clips / f"{DECOY}.mp3", tone(1.0, 48_000), 48_000, format="MP3")
    validated.append(cv_row("spk_decoy", f"{DECOY}.mp3", "Pas dans la liste.", "fr"))
    # Reversed: the order of a loaded split must come from the paper's list, not the TSV.
    write_tsv(root / "fr" / "validated.tsv", CV_HEADER, validated[::-1])
    write_tsv(root / "fr" / "other.tsv", CV_HEADER, other)
    return root


def test_shipped_files_are_found_in_the_installed_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may depend on being run from a checkout
    folder = ps.data_dir()
    assert folder == Path(str(resources.files("unispeech.data"))) / "paper_splits"
    assert folder == Path(unispeech.data.__file__).parent / "paper_splits"
    assert ps.languages() == PAPER_LANGUAGES
    assert (folder / "README.md").is_file()
    assert len(json.loads((folder / "en_pretrain_vocab.json").read_text(encoding="utf-8"))) == 76
    for language in PAPER_LANGUAGES:
        for split in ps.PAPER_SPLITS:
            paper = ps.read_paper_split(language, split)
            assert len(paper.clips) == len(paper.phones) > 100
            assert all(clip.startswith("common_voice_") for clip in paper.clips)
            if paper.sentences:
                assert list(paper.sentences) == list(paper.clips)
        assert len(ps.phone_inventory(language)) > 30
    assert ps.read_paper_split("nl", "test").sentences == {}
    assert ps.read_paper_split("sv-SE", "dev").split == "val_1h"


def test_paper_lines_become_our_phone_target_format():
    assert ps.paper_target("s ɔ̃ | t ʁ y k | ") == "s ɔ̃ | t ʁ y k"
    assert ps.paper_target(" a |  (en) ɛ l (fr) | | b | ") == "a | ɛ l | b"
    assert ps.paper_target("a | b | ", word_boundary=False) == "a b"
    raw = (ps.data_dir() / "fr" / "train_1h.phone").read_text(encoding="utf-8").split("\n")[0]
    assert raw.endswith(" | ") and ps.read_paper_split("fr", "train").phones[0] == raw[: -len(" | ")]


def test_exactly_the_listed_clips_in_order(paper_lists, release, tmp_path, caplog):
    train_clips = first_clips("train_1h")
    missing = train_clips[NO_ROW[1]]
    for _ in range(2):  # the second call reads the Arrow cache and still warns
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="unispeech.data"):
            table, report = ps.load_paper_split(release, "fr", "train", cache_dir=tmp_path / "cache")
        assert table["id"] == expected_ids("train_1h")
        assert report.to_dict() == {"missing from the release: no TSV row": [missing]}
        assert f"skipped 1 utterance(s) (missing from the release: no TSV row): {missing}" in caplog.text
    rows = {row["id"]: row for row in table}
    only_in_other = train_clips[ONLY_IN_OTHER[1]]
    assert rows[only_in_other]["speaker"] == f"spk_train_1h_{ONLY_IN_OTHER[1]}"
    assert [r["speaker"] for r in table] == [f"spk_train_1h_{i}" for i in range(6) if i != NO_ROW[1]]
    sentences = ps.read_paper_split("fr", "train").sentences
    assert all(rows[c]["text"] == sentences[c] and rows[c]["locale"] == "fr" for c in rows)
    assert all(rows[c]["duration"] == pytest.approx(1.0, abs=0.06) for c in rows)
    paper = dict(zip(train_clips, ps.read_paper_split("fr", "train").phones))
    assert all(rows[c]["paper_phones"] == paper[c] for c in rows)
    val, val_report = ps.load_paper_split(release / "fr", None, "val_1h", cache_dir=None)
    assert val["id"] == expected_ids("val_1h") and DECOY not in val["id"]
    assert val_report.to_dict() == {"missing from the release: no audio file": [first_clips("val_1h")[NO_AUDIO[1]]]}


def test_a_release_without_any_listed_clip_is_a_clear_error(paper_lists, tmp_path):
    folder = tmp_path / "fr"
    (folder / "clips").mkdir(parents=True)
    write_tsv(folder / "validated.tsv", CV_HEADER, [cv_row("s", f"{DECOY}.mp3", "Pas listé.", "fr")])
    with pytest.raises(FileNotFoundError) as error:
        ps.load_paper_split(tmp_path, "fr", "test", cache_dir=None)
    assert str(folder) in str(error.value)
    assert str(paper_lists / "fr" / "test_1h.clips") in str(error.value) and "none of the 3 clips" in str(error.value)
    assert "data.paper_splits=false" in str(error.value)  # the way out, for a release without the paper's clips


def test_locales_without_paper_splits_list_the_ones_with(tmp_path):
    (tmp_path / "tr" / "clips").mkdir(parents=True)
    with pytest.raises(ValueError, match=f"'tr'.*{LISTED}"):
        ps.load_paper_split(tmp_path, "tr", "train", cache_dir=None)
    with pytest.raises(ValueError, match=LISTED):
        UniSpeechDataModule(corpus=str(tmp_path / "tr"), paper_splits=True)
    with pytest.raises(ValueError, match=LISTED):
        UniSpeechDataModule(corpus=str(tmp_path / "tr"), paper_splits="auto", phone_labels="paper")
    auto = UniSpeechDataModule(corpus=str(tmp_path / "tr"), paper_splits="auto", train_hours=1.0)
    assert auto.paper_locale is None and auto.train_splits == ["train"] and auto.train_hours == 1.0
    assert ps.paper_language("sv-SE") == "sv" and ps.paper_language("zh-CN") is None


def test_datamodule_trains_on_the_paper_phones(paper_lists, release, tmp_path, caplog):
    dm = UniSpeechDataModule(
        corpus=str(release / "fr"),
        paper_splits=True,
        phone_labels="paper",
        train_hours=3 / 3600,
        num_workers=0,
        max_batch_seconds=30.0,
        cache_dir=str(tmp_path / "cache"),
    )
    assert (dm.train_splits, dm.val_splits, dm.test_splits) == (["train_1h"], ["val_1h"], ["test_1h"])
    with caplog.at_level(logging.INFO, logger="unispeech.data"):
        dm.setup("fit")
    for stage, split in (("train", "train_1h"), ("val", "val_1h"), ("test", "test_1h")):
        paper = dict(zip(ps.read_paper_split("fr", split).clips, ps.read_paper_split("fr", split).phones))
        table = dm.tables[stage]
        assert table["id"] == expected_ids(split)  # train_hours does not cut the paper's hour
        assert table["target"] == [paper[c] for c in table["id"]]
    assert dm.skipped.total == 2 and "skipped: 2 utterances" in caplog.text
    assert "missing from the release: no TSV row: 1" in caplog.text
    inventory = set(ps.phone_inventory("fr"))
    assert inventory <= set(dm.tokenizer.vocab) and dm.tokenizer.kind == "phones"
    assert list(dm.tokenizer.vocab)[:5] == ["<pad>", "<s>", "</s>", "<unk>", "|"]
    batch = next(iter(dm.train_dataloader()))
    targets = dict(zip(dm.tables["train"]["id"], dm.tables["train"]["target"]))
    for row, clip in enumerate(batch["ids"]):
        assert dm.tokenizer.unk_token_id not in batch["labels"][row].tolist()
        assert dm.tokenizer.decode(batch["labels"][row], group_tokens=False, keep_word_delimiter=True) == targets[clip]


def test_default_labels_phonemize_the_release_sentences(paper_lists, release, tmp_path):
    pytest.importorskip("phonemizer")
    from unispeech.data.phonemes import phonemize

    dm = UniSpeechDataModule(
        corpus=str(release),
        locales=["fr"],
        paper_splits="1h",
        val_splits=[],
        test_splits=[],
        num_workers=0,
        cache_dir=str(tmp_path / "cache"),
    )
    dm.setup("fit")
    table = dm.tables["train"]
    assert table["id"] == expected_ids("train_1h") and not dm.has_split("val")
    assert dm.phone_labels == "phonemizer" and dm.tokenizer.kind == "phones"
    assert table["target"] == phonemize(table["text"], "fr")  # espeak on the release's sentences


def test_recipes_use_the_paper_splits_where_the_paper_has_them(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from unispeech.training.hydra_config import config_dir, register

    register()

    release = tmp_path / "cv-corpus-23.0-2025-09-05"
    for locale, expected in (("sv-SE", "sv-SE"), ("tr", None)):
        (release / locale / "clips").mkdir(parents=True)
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(Path(config_dir()).resolve()), version_base="1.3"):
            cfg = compose(
                "train",
                [
                    "recipe=commonvoice/finetune",
                    f"language={locale}",
                    f"paths.data_root={tmp_path}",
                    f"paths.cache_dir={tmp_path}/cache",
                ],
            )
        GlobalHydra.instance().clear()
        assert cfg.data.paper_splits == "auto" and cfg.data.phone_labels == "phonemizer"
        dm = instantiate(cfg.data)
        assert dm.paper_locale == expected
        assert dm.train_hours == (None if expected else 1.0)
