"""Training-health diagnostics: codebook usage and collapse, gradient norm, training PER,
and the non-finite update guard (skip, count, stop with a message that says what to try).

Short real runs of the tiny model: the demo corpus through the Hydra configs for the
logged metrics, a fixed synthetic batch through a bare Trainer where a step is forced to
collapse or to give a NaN loss.
"""

from __future__ import annotations

import json
import logging
import math

import lightning as L
import pytest
import torch

from tests.tasks.conftest import FAST, column, compose_config, read_metrics
from unispeech.modeling.quantizer import count_codevector_picks
from unispeech.tasks import CTCFinetuningTask, PretrainingTask
from unispeech.tasks.base import NonFiniteLossError
from unispeech.tasks.diagnostics import NonFiniteUpdates
from unispeech.train import run

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b", "c", "d"]
NUM_CODEVECTORS = 2 * 32  # G·V of the tiny model


def tiny_model(**changes) -> dict:
    return dict(compose_config([]).model) | {"layerdrop": 0.0} | changes


def synthetic_batch() -> dict:
    """Three 1 s utterances (the last padded), two with phone labels."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.full((3, 4), -100)
    labels[:2, :3] = torch.tensor([5, 6, 7])
    mask = torch.ones(3, 16000, dtype=torch.long)
    mask[-1, 12000:] = 0
    return {
        "input_values": torch.randn(3, 16000, generator=generator),
        "attention_mask": mask,
        "labels": labels,
        "labeled": torch.tensor([True, True, False]),
        "ids": ["0", "1", "2"],
    }


def fit(task: L.LightningModule, tmp_path, steps: int, callbacks=(), **trainer_args) -> L.Trainer:
    """``steps`` updates on the synthetic batch; every step logged to ``tmp_path/metrics.csv``."""
    trainer_args = {"log_every_n_steps": 1, "gradient_clip_val": 10.0} | trainer_args
    trainer = L.Trainer(
        max_steps=steps,
        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="", version=""),
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=list(callbacks),
        **trainer_args,
    )
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader([synthetic_batch()] * steps, batch_size=None))
    return trainer


def by_step(tmp_path, name: str) -> dict[int, float]:
    return {int(r["step"]): float(r[name]) for r in read_metrics(tmp_path / "metrics.csv") if r.get(name)}


def nan_loss_at(cls: type, steps: set[int]) -> type:
    """``cls`` whose training loss is NaN at the given optimizer steps."""

    class NaNLossAt(cls):
        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            return loss * float("nan") if self.global_step in steps else loss

    return NaNLossAt


class Snapshots(L.Callback):
    """Weights and AdamW state at the start of every step: what a skipped update must not change."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.adam_steps: dict[int, dict[int, float]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        self.weights[step] = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
        state = trainer.optimizers[0].state
        self.adam_steps[step] = {id(p): float(s["step"]) for p, s in state.items()}

    def same_weights(self, a: int, b: int, prefix: str = "") -> bool:
        return all(torch.equal(w, self.weights[b][n]) for n, w in self.weights[a].items() if n.startswith(prefix))


# -- what a run logs -------------------------------------------------------------------------
def test_a_pretraining_run_logs_the_diagnostics(tmp_path):
    cfg = compose_config(
        FAST
        + [
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
            "trainer.log_every_n_steps=1",
            "export_after_fit=false",
        ]
    )
    rows = read_metrics(run(cfg, tmp_path)["metrics_csv"])
    usage, perplexity = column(rows, "train/codebook_usage"), column(rows, "train/codevector_perplexity")
    assert len(usage) == 4 and all(0.0 < u <= 1.0 for u in usage)
    assert usage == pytest.approx([p / NUM_CODEVECTORS for p in perplexity])
    unused = column(rows, "train/unused_codevectors")
    assert len(unused) == 4 and all(u.is_integer() and 0 <= u <= NUM_CODEVECTORS for u in unused)
    grad_norm = column(rows, "train/grad_norm")
    assert len(grad_norm) == 4 and all(math.isfinite(g) and g > 0 for g in grad_norm)
    per = column(rows, "train/per")  # every step is a logging step here, and the demo rows are labeled
    assert len(per) == 4 and all(math.isfinite(p) and p >= 0 for p in per)
    assert column(rows, "train/skipped_nonfinite") == [0.0] * 4
    assert len(column(rows, "train/gumbel_temperature")) == 4 and len(column(rows, "train/ctc_alpha")) == 4
    val_usage, val_unused = column(rows, "val/codebook_usage"), column(rows, "val/unused_codevectors")
    assert len(val_usage) == 2 and all(0.0 < u <= 1.0 for u in val_usage)
    assert len(val_unused) == 2 and all(u.is_integer() and 0 <= u <= NUM_CODEVECTORS for u in val_unused)


def test_train_per_is_decoded_on_logging_steps_only(tmp_path, monkeypatch):
    decoded_at = []
    count = PretrainingTask._count_phone_errors

    def counting(self, counts, ctc_logits, batch):
        decoded_at.append(self.global_step)
        count(self, counts, ctc_logits, batch)

    monkeypatch.setattr(PretrainingTask, "_count_phone_errors", counting)
    fit(PretrainingTask(tiny_model(), VOCAB), tmp_path, steps=6, log_every_n_steps=3)
    assert decoded_at == [2, 5]  # decoding costs CPU: not at the steps nobody sees
    assert sorted(by_step(tmp_path, "train/per")) == [2, 5]
    assert sorted(by_step(tmp_path, "train/loss")) == [2, 5]  # the steps Lightning writes


def test_grad_norm_is_measured_before_clipping(tmp_path):
    fit(PretrainingTask(tiny_model(), VOCAB), tmp_path, steps=2, gradient_clip_val=1e-6)
    assert all(g > 1e-3 for g in by_step(tmp_path, "train/grad_norm").values())


def test_unused_codevectors_counts_only_real_frames():
    indices = torch.tensor([[[0, 1], [2, 1], [3, 3]]])  # (B=1, T=3, G=2), V=4
    real = torch.tensor([[True, True, False]])  # the last frame is padding: its picks do not count
    counts = count_codevector_picks(indices, real, num_vars=4)
    assert counts.tolist() == [1, 0, 1, 0, 0, 2, 0, 0]
    assert int((counts == 0).sum()) == 5


# -- codebook collapse --------------------------------------------------------------------------
class ForceCodebook(L.Callback):
    """Before each step, sets the quantizer's logits: one entry per group far ahead of the
    others at ``collapsed`` steps (every frame picks it: perplexity ≈ G), all equal otherwise
    (perplexity = G·V)."""

    def __init__(self, collapsed: set[int]) -> None:
        self.collapsed = collapsed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        projection = pl_module.model.quantizer.weight_proj
        bias = torch.zeros_like(projection.bias).view(2, 32)
        if trainer.global_step in self.collapsed:
            bias[:, 0] = 100.0
        with torch.no_grad():
            projection.weight.zero_()
            projection.bias.copy_(bias.view(-1))


def test_codebook_collapse_warns_once_per_episode_naming_the_step(tmp_path, caplog):
    task = PretrainingTask(tiny_model(), VOCAB, codebook_collapse_fraction=0.1)
    with caplog.at_level(logging.WARNING, logger="unispeech.diagnostics"):
        fit(task, tmp_path, steps=6, callbacks=[ForceCodebook(collapsed={1, 2, 4})])
    warnings = [r.getMessage() for r in caplog.records if "codebook collapse" in r.getMessage()]
    assert len(warnings) == 2  # steps 1-2 are one episode, step 4 the next
    assert warnings[0].startswith("codebook collapse at step 1:")
    assert warnings[1].startswith("codebook collapse at step 4:")
    assert "62 entries picked by no frame" in warnings[0] and "of G·V = 64 entries" in warnings[0]
    unused, usage = by_step(tmp_path, "train/unused_codevectors"), by_step(tmp_path, "train/codebook_usage")
    assert unused[1] == unused[4] == NUM_CODEVECTORS - 2 and unused[3] < NUM_CODEVECTORS - 2
    assert usage[1] == pytest.approx(2 / NUM_CODEVECTORS, rel=1e-3) and usage[3] == pytest.approx(1.0)


def test_codebook_collapse_warning_can_be_switched_off(tmp_path, caplog):
    task = PretrainingTask(tiny_model(), VOCAB, codebook_collapse_fraction=None)
    with caplog.at_level(logging.WARNING, logger="unispeech.diagnostics"):
        fit(task, tmp_path, steps=2, callbacks=[ForceCodebook(collapsed={0, 1})])
    assert not [r for r in caplog.records if "codebook collapse" in r.getMessage()]


# -- non-finite updates ---------------------------------------------------------------------
def test_nan_updates_are_skipped_counted_and_training_goes_on(tmp_path, caplog):
    snapshots = Snapshots()
    task = nan_loss_at(PretrainingTask, {2, 3, 5})(tiny_model(), VOCAB, max_consecutive_nonfinite=3)
    with caplog.at_level(logging.WARNING, logger="unispeech.diagnostics"):
        trainer = fit(task, tmp_path, steps=7, callbacks=[snapshots])
    assert trainer.global_step == 7  # a streak of 2 < 3: no stop
    for skipped in (2, 3, 5):  # neither the weights nor AdamW's state moved
        assert snapshots.same_weights(skipped, skipped + 1), skipped
        assert snapshots.adam_steps[skipped] == snapshots.adam_steps[skipped + 1], skipped
    for trained in (1, 4):
        assert not snapshots.same_weights(trained, trained + 1), trained
    assert set(snapshots.adam_steps[6].values()) == {3.0}  # before step 6, AdamW stepped at 0, 1 and 4 only
    skipped = by_step(tmp_path, "train/skipped_nonfinite")
    assert skipped == {0: 0.0, 1: 0.0, 2: 1.0, 3: 2.0, 4: 2.0, 5: 3.0, 6: 3.0}
    assert math.isnan(by_step(tmp_path, "train/grad_norm")[2])
    assert all(math.isfinite(by_step(tmp_path, "train/loss")[s]) for s in range(7))  # the model's loss is fine
    messages = [r.getMessage() for r in caplog.records if "update skipped" in r.getMessage()]
    assert messages[0].startswith("step 2: non-finite gradients (the loss was NaN/inf)") and len(messages) == 3


def test_consecutive_nan_updates_stop_the_run_with_a_clear_message(tmp_path):
    snapshots = Snapshots()
    task = nan_loss_at(PretrainingTask, set(range(2, 100)))(tiny_model(), VOCAB, max_consecutive_nonfinite=3)
    with pytest.raises(NonFiniteLossError) as stopped:
        fit(task, tmp_path, steps=10, callbacks=[snapshots])
    message = str(stopped.value)
    assert message.startswith("training stopped at step 4: 3 updates in a row (steps 2 to 4) had non-finite")
    assert "the loss itself was NaN/inf" in message and "weights are those after step 1" in message
    for hint in ("lower learning rate", "gradient clipping", "check the data", "max_consecutive_nonfinite=null"):
        assert hint in message, hint
    assert "precision" not in message  # 32-true: nothing to try there
    assert snapshots.same_weights(2, 4)  # the weights stay those of the last good update


@pytest.mark.parametrize(("precision", "hint"), [("16-mixed", "use bf16-mixed"), ("bf16-mixed", "try 32-true")])
def test_the_stop_message_names_what_to_try_about_precision(precision, hint):
    updates = NonFiniteUpdates(limit=2)
    for step in (0, 1):
        updates.record(step, finite=False)
    message = updates.stop_message(1, loss_finite=True, precision=precision)
    assert f"trainer.precision={precision}" in message and hint in message
    assert "steps 0 to 1" in message and "the weights are the initial ones" in message
    assert "the gradients overflowed" in message


def test_ctc_fine_tuning_skips_nan_updates_and_keeps_its_frozen_transformer(tmp_path):
    snapshots = Snapshots()
    task = nan_loss_at(CTCFinetuningTask, {1})(tiny_model(), VOCAB, freeze_transformer_steps=3)
    trainer = fit(task, tmp_path, steps=4, callbacks=[snapshots])
    assert trainer.global_step == 4
    assert snapshots.same_weights(0, 3, prefix="model.unispeech.")  # frozen for 3 updates
    assert not snapshots.same_weights(3, 0, prefix="model.lm_head.")
    assert snapshots.same_weights(1, 2, prefix="model.lm_head.")  # the NaN update of the head was skipped
    assert not snapshots.same_weights(0, 1, prefix="model.lm_head.")
    assert by_step(tmp_path, "train/skipped_nonfinite")[3] == 1.0


@pytest.mark.parametrize("fused", [False, True])
def test_fp16_grad_scaler_skips_nan_updates_itself_and_they_are_counted(tmp_path, fused):
    """fp16 AMP (GradScaler, emulated on the CPU): the scaler skips the update and needs the
    gradients to record why; a fused AdamW unscales in its own step, so the grads the check
    sees are still scaled (no clipping there: Lightning refuses it for fused optimizers)."""
    from lightning.pytorch.plugins import MixedPrecision

    class Task(nan_loss_at(PretrainingTask, {2})):
        def configure_optimizers(self):
            if not fused:
                return super().configure_optimizers()
            return torch.optim.AdamW(self.model.parameters(), lr=1e-3, fused=True)

    snapshots = Snapshots()
    trainer = fit(
        Task(tiny_model(), VOCAB),
        tmp_path,
        steps=5,
        callbacks=[snapshots],
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))],
        gradient_clip_val=None if fused else 10.0,
    )
    assert snapshots.same_weights(2, 3) and not snapshots.same_weights(1, 2) and not snapshots.same_weights(3, 4)
    assert snapshots.adam_steps[2] == snapshots.adam_steps[3]
    assert trainer.precision_plugin.scaler.get_scale() == 2.0**15  # halved once, by the scaler
    assert by_step(tmp_path, "train/skipped_nonfinite") == {0: 0.0, 1: 0.0, 2: 1.0, 3: 1.0, 4: 1.0}
    norms = by_step(tmp_path, "train/grad_norm")
    assert all(0 < norms[s] < 1e3 for s in (0, 1, 3, 4))  # unscaled: not ~2^16 times the fp32 norm


# -- DDP: the decision is the same on every rank ---------------------------------------------------
class NaNOnOneRank(PretrainingTask):
    """The loss is NaN on rank ``nan_rank`` only, at ``nan_steps`` (a bad utterance on one GPU)."""

    nan_rank, nan_steps = 1, frozenset()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        bad = self.global_rank == self.nan_rank and self.global_step in self.nan_steps
        return loss * float("nan") if bad else loss


class WeightSums(L.Callback):
    """Per rank, a fingerprint of the weights at the start of every step, written to a file."""

    def __init__(self, directory) -> None:
        self.directory = directory
        self.sums: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.sums[trainer.global_step] = float(sum(p.detach().double().sum() for p in pl_module.parameters()))
        (self.directory / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.sums))


def fit_ddp(tmp_path, nan_steps: set[int], limit: int, steps: int) -> None:
    """Two gloo processes (forked: the task needs no pickling)."""
    task = NaNOnOneRank(tiny_model(), VOCAB, max_consecutive_nonfinite=limit)
    task.nan_steps = frozenset(nan_steps)
    fit(
        task,
        tmp_path,
        steps,
        callbacks=[WeightSums(tmp_path)],
        devices=2,
        strategy="ddp_fork",
        use_distributed_sampler=False,
    )


def test_ddp_a_nan_on_one_rank_skips_the_update_on_every_rank(tmp_path):
    fit_ddp(tmp_path, nan_steps={1}, limit=3, steps=3)
    sums = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert sums[0] == sums[1]  # the ranks stay in step
    assert sums[0]["1"] == sums[0]["2"] and sums[0]["0"] != sums[0]["1"]


def test_ddp_every_rank_stops_at_the_same_update(tmp_path):
    with pytest.raises(Exception, match="training stopped at step 3: 2 updates in a row"):  # not a hang
        fit_ddp(tmp_path, nan_steps=set(range(2, 10)), limit=2, steps=10)
    sums = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert sums[0] == sums[1] and sorted(sums[0], key=int)[-1] == "3"
