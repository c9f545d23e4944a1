"""End-to-end runs of the training framework on the embedded demo corpus (tiny model, CPU).

Real runs, real numbers: losses are read back from the CSV log, checkpoints are reloaded,
the export is loaded by `transformers` and must give our logits.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch

from tests.tasks.conftest import FAST, column, compose_config, read_metrics
from unispeech.train import run
from unispeech.training.hydra_config import run_dir

pytestmark = pytest.mark.slow

LOSS_PARTS = [
    "train/loss",
    "train/contrastive_loss",
    "train/diversity_loss",
    "train/ctc_loss",
    "train/codevector_perplexity",
    "train/contrastive_accuracy",
    "train/gumbel_temperature",
    "train/lr",
    "train/audio_hours_per_s",
]


def test_default_job_logs_finite_loss_parts(tmp_path):
    cfg = compose_config(FAST + ["trainer.max_steps=6", "trainer.val_check_interval=3", "trainer.log_every_n_steps=1"])
    summary = run(cfg, tmp_path)
    rows = read_metrics(summary["metrics_csv"])
    for name in LOSS_PARTS:
        values = column(rows, name)
        assert len(values) >= 5, name
        assert all(math.isfinite(v) for v in values), name
    assert all(v > 0 for v in column(rows, "train/ctc_loss"))  # labeled English rows carry CTC
    perplexity = column(rows, "train/codevector_perplexity")
    assert all(1.0 <= p <= 64.0 for p in perplexity)  # G·V = 2·32 for the tiny model
    per = column(rows, "val/per")
    assert per and all(v >= 0 for v in per)
    # audio per step: positive, and never more than a batch may hold (data.max_batch_seconds)
    seconds = column(rows, "train/audio_seconds")
    assert seconds and all(0 < v <= cfg.data.max_batch_seconds for v in seconds)
    temperatures = column(rows, "train/gumbel_temperature")
    assert temperatures[0] == pytest.approx(2.0) and temperatures[-1] < 2.0
    assert Path(summary["checkpoint"]).is_file() and Path(summary["last_checkpoint"]).is_file()
    assert (Path(summary["export"]) / "config.json").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["checkpoint"] == summary["checkpoint"]
    png = Path(summary["curves"])  # loss parts and perplexity, next to the checkpoints
    assert png.parent == Path(summary["checkpoint"]).parent and png.read_bytes()[:4] == b"\x89PNG"


# six steps with a loss logged at each; the schedule fixed so that a resumed run lines up
SIX_STEPS = FAST + [
    "trainer.log_every_n_steps=1",
    "trainer.val_check_interval=100",
    "task.module.scheduler.total_steps=6",
    "export_after_fit=false",
    "trainer.max_steps=6",
]


def train_losses(summary) -> dict[int, float]:
    return {int(r["step"]): float(r["train/loss"]) for r in read_metrics(summary["metrics_csv"]) if r.get("train/loss")}


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    """Six steps without a break. It also keeps a mid-epoch checkpoint every 3 steps, as a
    preempted run would have (checkpointing draws no random numbers: the losses are the same)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    return run(
        compose_config(
            SIX_STEPS
            + [
                "callbacks.model_checkpoint.every_n_train_steps=3",
                "callbacks.model_checkpoint.monitor=null",
                "callbacks.model_checkpoint.save_top_k=-1",
            ]
        ),
        out,
    )


def assert_resumed_from_step_3(resumed, uninterrupted) -> None:
    full_losses, resumed_losses = train_losses(uninterrupted), train_losses(resumed)
    assert sorted(resumed_losses) == [3, 4, 5]
    for step in (3, 4, 5):  # same data order, temperature, masks, dropout and optimizer state
        assert resumed_losses[step] == pytest.approx(full_losses[step], rel=1e-5), step


def test_resume_gives_the_next_step_loss_of_an_uninterrupted_run(uninterrupted_run, tmp_path):
    step3 = Path(uninterrupted_run["output_dir"]) / "checkpoints" / "best-3.ckpt"
    assert step3.is_file()
    resumed = run(compose_config(SIX_STEPS + [f"ckpt_path={step3}"]), tmp_path / "resumed")
    assert_resumed_from_step_3(resumed, uninterrupted_run)
    temperature = {
        int(r["step"]): float(r["train/gumbel_temperature"])
        for r in read_metrics(resumed["metrics_csv"])
        if r.get("train/gumbel_temperature")
    }
    # the default anneals τ from 2.0 to 0.5 over the run's 6 updates: halfway it is 1.0
    assert temperature[3] == pytest.approx(2.0 * (0.5 / 2.0) ** (3 / 6))


def test_extending_a_finished_run_goes_on_with_its_epoch_and_keeps_its_log(uninterrupted_run, tmp_path):
    # three steps end the run inside the first epoch; the same run directory then goes on to six
    first = run(compose_config(SIX_STEPS + ["trainer.max_steps=3"]), tmp_path)
    assert sorted(train_losses(first)) == [0, 1, 2]
    extended = run(compose_config(SIX_STEPS + ["ckpt_path=last"]), tmp_path)
    losses, full = train_losses(extended), train_losses(uninterrupted_run)
    assert sorted(losses) == [0, 1, 2, 3, 4, 5]  # the CSV keeps the first run's rows, each step once
    for step in range(6):  # the rest of epoch 0, not a new epoch: the uninterrupted run's losses
        assert losses[step] == pytest.approx(full[step], rel=1e-5), step


def test_sigterm_after_the_step_hooks_still_saves_a_checkpoint_that_resumes_exactly(uninterrupted_run, tmp_path):
    # no every-3-steps checkpoint here: last.ckpt can only come from the preemption callback
    with pytest.raises(SystemExit):  # Lightning stops a SIGTERM'd run with SIGTERMException
        run(
            compose_config(
                SIX_STEPS
                + [
                    "+callbacks.late_sigterm._target_=tests.tasks.conftest.LateSigterm",
                    "+callbacks.late_sigterm.at_step=3",
                ]
            ),
            tmp_path / "preempted",
        )
    last = tmp_path / "preempted" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    resumed = run(compose_config(SIX_STEPS + [f"ckpt_path={last}"]), tmp_path / "resumed")
    assert_resumed_from_step_3(resumed, uninterrupted_run)


def test_overfits_a_tiny_batch(tmp_path):
    import lightning as L

    from unispeech.data import UniSpeechDataModule, ensure_demo_corpus
    from unispeech.tasks import PretrainingTask

    cfg = compose_config([])
    datamodule = UniSpeechDataModule(
        corpus=f"{ensure_demo_corpus()}/en",
        mode="pretraining",
        label_type="phones",
        unlabeled_splits=[],
        max_batch_seconds=3.0,
        num_workers=0,
        persistent_workers=False,
    )
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    vocabulary = [datamodule.tokenizer.id_to_token[i] for i in range(len(datamodule.tokenizer))]
    model = dict(cfg.model) | {"hidden_dropout": 0.0, "attention_dropout": 0.0, "feat_proj_dropout": 0.0}
    task = PretrainingTask(
        model,
        vocabulary,
        optimizer=functools.partial(torch.optim.AdamW, lr=3e-3, weight_decay=0.0),
        feature_grad_mult=1.0,
    )
    trainer = L.Trainer(
        max_steps=40,
        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="", version=""),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader([batch] * 40, batch_size=None))
    rows = read_metrics(tmp_path / "metrics.csv")
    ctc, total = column(rows, "train/ctc_loss"), column(rows, "train/loss")
    assert sum(ctc[-5:]) / 5 < 0.5 * sum(ctc[:5]) / 5
    assert sum(total[-5:]) / 5 < 0.8 * sum(total[:5]) / 5


@pytest.fixture(scope="module")
def two_stage_run(tmp_path_factory):
    """The demo's two stages, one command each: stage 2 finds stage 1's best checkpoint by run name."""
    out = tmp_path_factory.mktemp("two_stage")
    shared = FAST + [f"paths.root={out}", "run_name=two"]
    pretrain = run(
        compose_config(["recipe=demo/pretrain", *shared, "trainer.max_steps=4", "trainer.val_check_interval=2"]),
        run_dir(str(out), "two", "pretrain"),
    )
    finetune_cfg = compose_config(
        ["recipe=demo/finetune", *shared, "trainer.max_steps=6", "trainer.val_check_interval=3"]
    )
    assert finetune_cfg.task.module.pretrained == pretrain["checkpoint"]
    return [pretrain, run(finetune_cfg, run_dir(str(out), "two", "finetune"))]


def test_finetune_from_pretrained_checkpoint_then_transcribe(two_stage_run, tmp_path):
    from unispeech.data import ensure_demo_corpus
    from unispeech.tasks.inference import load_trained_model
    from unispeech.transcribe import Transcriber, main as transcribe_main

    pretrain, finetune = two_stage_run
    assert Path(finetune["output_dir"]).name == "finetune"
    metrics = finetune["metrics"]
    for name in ("val/per", "test/per", "test/cer", "test/wer"):
        assert 0.0 <= metrics[name] < 10.0
    # the fine-tuned encoder starts from the pretrained one: the frozen feature encoder is identical
    pre, _ = load_trained_model(pretrain["checkpoint"])
    ft, info = load_trained_model(finetune["checkpoint"])
    assert info["task"] == "ctc" and info["tokenizer_kind"] == "phones"
    for (name, a), b in zip(
        pre.unispeech.feature_extractor.state_dict().items(), ft.unispeech.feature_extractor.state_dict().values()
    ):
        assert torch.equal(a, b), name

    clips = sorted((ensure_demo_corpus() / "es" / "clips").iterdir())[:3]
    for source in (finetune["checkpoint"], finetune["export"]):
        records = Transcriber(source).transcribe(clips, batch_size=2, progress=False)
        assert [r["path"] for r in records] == [str(c) for c in clips]
        assert all(set(r["tokens"]) <= set(info["vocabulary"]) for r in records)
    # decoding threads and their look-ahead change the speed, not the records
    serial = Transcriber(finetune["export"], workers=1).transcribe(clips, batch_size=1, progress=False)
    assert serial == Transcriber(finetune["export"], workers=3).transcribe(clips, batch_size=1, progress=False)
    half = Transcriber(finetune["export"], precision="bf16").transcribe(clips, batch_size=2, progress=False)
    assert [r["seconds"] for r in half] == [r["seconds"] for r in serial]
    assert all(set(r["tokens"]) <= set(info["vocabulary"]) for r in half)
    # a corrupt file is reported in its own record; the others are still transcribed
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"not audio at all")
    transcriber = Transcriber(finetune["export"])
    records = transcriber.transcribe([clips[0], broken, clips[1]], batch_size=2, progress=False)
    assert [bool(r.get("error")) for r in records] == [False, True, False]
    assert records[0]["tokens"] and records[1]["tokens"] == []
    assert transcriber.speed["audio_seconds"] == pytest.approx(records[0]["seconds"] + records[2]["seconds"], abs=1e-3)
    output = tmp_path / "out.tsv"
    transcribe_main(
        ["--model", finetune["export"], "--format", "tsv", "--output", str(output), "--no-progress", *map(str, clips)]
    )
    lines = output.read_text().splitlines()
    assert lines[0] == "path\ttext" and len(lines) == 4


def test_evaluate_scores_the_checkpoint(two_stage_run):
    from hydra.utils import instantiate

    from unispeech.evaluate import evaluate

    finetune = two_stage_run[1]
    cfg = compose_config(["data=demo_ctc"])
    result = evaluate(finetune["checkpoint"], instantiate(cfg.data), "test")
    assert result["utterances"] == 8
    # the same checkpoint and split as the run's own test: the same PER
    assert result["per"] == pytest.approx(finetune["metrics"]["test/per"], abs=1e-6)


def test_export_loads_in_transformers_with_the_same_logits(two_stage_run):
    transformers = pytest.importorskip("transformers")
    from unispeech.tasks.inference import load_trained_model

    export = two_stage_run[1]["export"]
    ours, _ = load_trained_model(export)
    theirs = transformers.UniSpeechForCTC.from_pretrained(export).eval()
    torch.manual_seed(0)
    audio = torch.randn(2, 16000)
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 12000:] = 0
    with torch.no_grad():
        a = ours(audio, attention_mask=mask).logits
        b = theirs(audio, attention_mask=mask).logits
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    extractor = transformers.AutoFeatureExtractor.from_pretrained(export)
    assert extractor.sampling_rate == 16000
    vocab = json.loads((Path(export) / "vocab.json").read_text())
    assert vocab["<pad>"] == 0 and theirs.config.vocab_size == len(vocab)


def test_classification_language_id_on_the_demo_corpus(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = compose_config(
        FAST
        + [
            "task=classification",
            "data=demo_langid",
            "trainer.max_steps=6",
            "trainer.val_check_interval=3",
            "trainer.log_every_n_steps=1",
            "task.module.optimizer.lr=1e-3",
        ]
    )
    summary = run(cfg, tmp_path)
    metrics = summary["metrics"]
    assert 0.0 <= metrics["val/accuracy"] <= 1.0 and 0.0 <= metrics["test/accuracy"] <= 1.0
    assert all(math.isfinite(v) for v in column(read_metrics(summary["metrics_csv"]), "train/loss"))
    theirs = transformers.UniSpeechForSequenceClassification.from_pretrained(summary["export"]).eval()
    assert theirs.config.id2label == {0: "en", 1: "es", 2: "fr"} and theirs.config.use_weighted_layer_sum


def test_bf16_mixed_with_gradient_accumulation(tmp_path):
    cfg = compose_config(
        FAST
        + [
            "trainer.precision=bf16-mixed",
            "trainer.accumulate_grad_batches=2",
            "trainer.max_steps=2",
            "trainer.val_check_interval=4",
            "trainer.log_every_n_steps=1",
            "export_after_fit=false",
        ]
    )
    summary = run(cfg, tmp_path)
    rows = read_metrics(summary["metrics_csv"])
    losses = column(rows, "train/loss")
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)  # logged once per update
    checkpoint = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    # the training loader consumed 2 x 2 micro-batches (what a resumed run skips)
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "consumed": 4}]


def test_language_recipe_both_stages_on_a_fake_commonvoice_root(tmp_path):
    """recipe=commonvoice/pretrain and recipe=commonvoice/finetune wired to real CommonVoice folders (the demo's)."""
    from unispeech.data import ensure_demo_corpus

    release = tmp_path / "data" / "cv-corpus-23.0-2025-09-05"
    release.mkdir(parents=True)
    for locale in ("en", "es"):
        (release / locale).symlink_to(ensure_demo_corpus() / locale)
    root = tmp_path / "outputs"
    small = FAST + [
        f"paths.data_root={tmp_path / 'data'}",
        f"paths.root={root}",
        "language=es",
        "model=tiny",
        "trainer=cpu",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "trainer.log_every_n_steps=1",
        "trainer.accumulate_grad_batches=1",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "data.num_proc=1",
        "data.max_batch_seconds=12",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    pretrain = run(
        compose_config(
            [
                "recipe=commonvoice/pretrain",
                *small,
                "task.module.scheduler.warmup_steps=1",
                "task.module.scheduler.total_steps=3",
            ]
        ),
        run_dir(str(root), "commonvoice_es", "pretrain"),
    )
    rows = read_metrics(pretrain["metrics_csv"])
    assert 0.0 < max(column(rows, "train/labeled_fraction")) and min(column(rows, "train/labeled_fraction")) < 1.0
    # the demo's Spanish clips are not the paper's: the release's own splits
    finetune = run(
        compose_config(
            ["recipe=commonvoice/finetune", *small, "task.module.freeze_transformer_steps=1", "data.paper_splits=false"]
        ),
        run_dir(str(root), "commonvoice_es", "finetune"),
    )
    assert "test/per" in finetune["metrics"]


def test_each_epoch_uses_every_utterance_in_a_new_order(tmp_path):
    # through the ResumableLoader wrapper, Lightning's set_epoch must still reach the batch sampler
    cfg = compose_config(
        [
            "logger=csv",
            "callbacks=debug",
            "+trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "trainer.max_epochs=2",
            "trainer.max_steps=-1",
            "trainer.val_check_interval=null",
            "trainer.check_val_every_n_epoch=2",
            "export_after_fit=false",
        ]
    )
    run(cfg, tmp_path)
    epochs = [(tmp_path / "seen_ids" / f"epoch{e}_rank0.txt").read_text().split() for e in (0, 1)]
    assert sorted(epochs[0]) == sorted(epochs[1]) and len(set(epochs[0])) == len(epochs[0])
    assert epochs[0] != epochs[1]
