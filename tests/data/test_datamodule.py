"""UniSpeechDataModule end to end on the demo corpus and on fake CommonVoice folders."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import soundfile as sf
import torch

from unispeech.data import UniSpeechDataModule
from unispeech.data.tokenizer import CTCTokenizer

from datafakes import tone, write_tsv


def all_batches(loader):
    return list(loader)


def test_demo_ctc_phones(unispeech_cache, tmp_path):
    dm = UniSpeechDataModule(
        corpus="demo", locales=["en", "es"], num_workers=0, max_batch_seconds=30.0, tokenizer_dir=str(tmp_path / "tok")
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.summary["train"]["utterances"] == 80 and dm.summary["val"]["utterances"] == 16
    assert 0.02 < dm.summary["train"]["hours"] < 0.1
    assert dm.vocab_size == len(dm.tokenizer) > 30 and dm.tokenizer.kind == "phones"
    assert CTCTokenizer.from_pretrained(tmp_path / "tok").vocab == dm.tokenizer.vocab
    batches = all_batches(dm.train_dataloader())
    ids = [i for b in batches for i in b["ids"]]
    assert sorted(ids) == sorted(dm.tables["train"]["id"])
    targets = dict(zip(dm.tables["train"]["id"], dm.tables["train"]["target"]))
    batch = batches[0]
    assert batch["input_values"].dtype == torch.float32 and batch["attention_mask"].dtype == torch.int64
    assert batch["labeled"].all()
    for row, uid in enumerate(batch["ids"]):
        reference = dm.tokenizer.decode(batch["labels"][row], group_tokens=False, keep_word_delimiter=True)
        assert reference == targets[uid]
        n = int(batch["attention_mask"][row].sum())
        real = batch["input_values"][row, :n]
        assert abs(float(real.mean())) < 1e-3 and abs(float(real.std()) - 1) < 1e-2  # normalised
    for b in batches:
        longest = b["attention_mask"].sum(1).max().item() / 16_000
        assert len(b["ids"]) * longest <= 30.0 + 0.1
    assert dm.has_split("test") and len(all_batches(dm.test_dataloader())) >= 1


def test_ddp_ranks_split_the_epoch(unispeech_cache):
    ids_per_rank, lengths = [], []
    for rank in range(2):
        dm = UniSpeechDataModule(corpus="demo", locales=["fr"], num_workers=0, max_batch_seconds=12.0)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.batch_sampler.set_epoch(2)
        batches = all_batches(loader)
        lengths.append(len(batches))
        ids_per_rank.append({i for b in batches for i in b["ids"]})
    assert lengths[0] == lengths[1]
    assert not ids_per_rank[0] & ids_per_rank[1]
    assert len(ids_per_rank[0] | ids_per_rank[1]) == 40


def test_chars_on_fake_commonvoice_with_hour_subset(fake_cv, tmp_path, caplog):
    common = dict(
        corpus=str(fake_cv), label_type="chars", min_duration=0.5, num_workers=0, cache_dir=str(tmp_path / "cache")
    )
    dm = UniSpeechDataModule(**common, val_splits=["dev"], test_splits=[])
    dm.setup("fit")
    assert dm.summary["train"]["utterances"] == 6
    assert dm.skipped.total == 5
    assert "skipped 1 utterance(s) (undecodable audio): corrupt" in caplog.text
    assert dm.tables["val"]["target"] == ["na"]
    table = dict(zip(dm.tables["train"]["id"], dm.tables["train"]["target"]))
    assert table["quoted"] == "quoted text" and table["b2"] == "red house green water"
    assert dm.tokenizer.kind == "chars" and '"' not in dm.tokenizer.vocab
    assert not dm.has_split("test")
    batches = all_batches(dm.train_dataloader())
    assert sum(len(b["ids"]) for b in batches) == 6
    # 1-hour-style subset: a 3-second budget keeps whole speakers, never dev's speaker
    small = UniSpeechDataModule(**common, train_hours=3 / 3600, subset_seed=1, test_splits=[])
    small.setup("fit")
    assert 3.0 <= sum(small.tables["train"]["duration"]) < 6.0
    assert "spk_e" not in set(small.tables["train"]["speaker"])


def test_pretraining_mixes_labeled_and_cropped_unlabeled(unispeech_cache):
    dm = UniSpeechDataModule(
        corpus="demo",
        locales=["en", "fr", "es"],
        mode="pretraining",
        num_workers=0,
        labeled_fraction=0.5,
        language_alpha=0.5,
        max_sample_seconds=1.0,
        max_batch_seconds=20.0,
    )
    dm.setup("fit")
    assert dm.summary["unlabeled"]["utterances"] == 24
    batches = all_batches(dm.train_dataloader())
    labeled = torch.cat([b["labeled"] for b in batches])
    assert labeled.float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert len(labeled) == 240  # 120 labeled once + 120 unlabeled draws (24 clips, 5 passes)
    for b in batches:
        lengths = b["attention_mask"].sum(1)
        assert (lengths[~b["labeled"]] <= 16_000).all()  # crops
        assert ((b["labels"] != -100).any(1) == b["labeled"]).all()
    assert dm.vocab_size == len(dm.tokenizer)


def test_classification_language_id(unispeech_cache):
    dm = UniSpeechDataModule(corpus="demo", mode="classification", label_column="locale", num_workers=0)
    dm.setup("fit")
    assert dm.num_labels == 3 and dm.id2label == {0: "en", 1: "es", 2: "fr"}
    assert dm.tokenizer is None
    batch = next(iter(dm.val_dataloader()))
    locales = {uid: loc for uid, loc in zip(dm.tables["val"]["id"], dm.tables["val"]["locale"])}
    assert [dm.id2label[int(c)] for c in batch["class_labels"]] == [locales[i] for i in batch["ids"]]
    assert not batch["labeled"].any()


def test_folder_pretraining_and_manifest_ctc(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(6):
        sf.write(audio / f"u{i}.flac", tone(1.0 + 0.5 * i, 16_000), 16_000)
    dm = UniSpeechDataModule(
        corpus=str(audio),
        mode="pretraining",
        label_type="none",
        num_workers=0,
        val_splits=[],
        test_splits=[],
        unlabeled_splits=[],
        cache_dir=str(tmp_path / "c"),
    )
    assert dm.source == "folder"
    dm.setup("fit")
    batches = all_batches(dm.train_dataloader())
    assert sum(len(b["ids"]) for b in batches) == 6 and not any(b["labeled"].any() for b in batches)
    with pytest.raises(RuntimeError, match="setup"):
        _ = UniSpeechDataModule(corpus=str(audio), label_type="chars").vocab_size
    write_tsv(audio / "train.tsv", ["path", "text"], [[f"u{i}.flac", f"word number {i}"] for i in range(6)])
    write_tsv(audio / "dev.tsv", ["path", "text"], [["u0.flac", "word"]])
    man = UniSpeechDataModule(
        corpus=str(audio / "train.tsv"),
        label_type="chars",
        num_workers=0,
        val_splits=[str(audio / "dev.tsv")],
        test_splits=[],
        cache_dir=str(tmp_path / "c"),
    )
    assert man.source == "manifest"
    man.setup("fit")
    assert man.summary["train"]["utterances"] == 6 and man.summary["val"]["utterances"] == 1
    batch = next(iter(man.val_dataloader()))
    assert man.tokenizer.decode(batch["labels"][0], group_tokens=False) == "word"


def test_invalid_configurations():
    with pytest.raises(ValueError, match="mode"):
        UniSpeechDataModule(mode="asr")
    with pytest.raises(ValueError, match="labels"):
        UniSpeechDataModule(mode="ctc", label_type="none")
    with pytest.raises(ValueError, match="phone"):
        UniSpeechDataModule(mode="pretraining", label_type="chars")


def test_lightning_trainer_reshuffles_each_epoch(unispeech_cache, tmp_path):
    import lightning as L

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.seen: dict[int, list[str]] = {}

        def training_step(self, batch, batch_idx):
            self.seen.setdefault(self.current_epoch, []).extend(batch["ids"])
            return (self.weight * batch["input_values"].mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = UniSpeechDataModule(
        corpus="demo",
        locales=["es"],
        num_workers=1,
        persistent_workers=True,
        max_batch_seconds=15.0,
        val_splits=[],
        test_splits=[],
    )
    module = Recorder()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, datamodule=dm)
    assert sorted(module.seen[0]) == sorted(module.seen[1]) == sorted(dm.tables["train"]["id"])
    assert module.seen[0] != module.seen[1]  # Lightning's set_epoch reached the batch sampler


def test_dataset_survives_a_file_vanishing_mid_run(tmp_path, caplog):
    from unispeech.data.dataset import SpeechDataset

    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", tone(0.5 if name == "a" else 0.25, 16_000), 16_000)
    ds = SpeechDataset(
        [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")],
        ["a", "b"],
        [0.5, 0.25],
        labels=[[5], [6, 7]],
        do_normalize=False,
    )
    (tmp_path / "a.wav").unlink()
    item = ds[0]
    assert item["id"] == "b" and item["labels"] == [6, 7] and len(item["input_values"]) == 4_000
    assert "a.wav" in caplog.text
    (tmp_path / "b.wav").unlink()
    with pytest.raises(RuntimeError):
        ds[1]
