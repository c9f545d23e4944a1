"""Day-two paths of a training run, through the real command line: a rerun continues and
never overwrites, a run that cannot work stops in seconds naming the setting, and a run
shorter than its intervals still validates and logs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.tasks.conftest import FAST, column, compose_config, read_metrics
from unispeech.train import run
from unispeech.training.config_checks import ConfigError, check_config
from unispeech.training.console import RunProgressBar

ROOT = Path(__file__).resolve().parents[2]
SHORT = [*FAST, "recipe=null", "export_after_fit=false", "trainer.log_every_n_steps=1", "trainer.val_check_interval=2"]


def train(args: list[str], **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "unispeech.train", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_running_the_same_command_again_continues_the_run_and_never_overwrites_it(tmp_path):
    where = [f"paths.root={tmp_path}", "run_name=again"]
    first = train([*SHORT, *where, "trainer.max_steps=2"])
    assert first.returncode == 0, first.stderr[-2000:]
    # ads, deprecations, "Epoch 0/-2", and Lightning saying which checkpoint contents it defaulted to
    for noise in ("litlogger", "LeafSpec", "on_before_batch_transfer", "/-2", "weights_only"):
        assert noise not in first.stdout + first.stderr, noise
    again = train([*SHORT, *where, "trainer.max_steps=4"])  # the default ckpt_path=auto
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stdout and "last.ckpt" in again.stdout
    rows = read_metrics(tmp_path / "runs" / "again" / "csv" / "metrics.csv")
    steps = [int(r["step"]) for r in rows if r.get("train/loss")]
    assert steps == [0, 1, 2, 3]  # the first run's rows are kept, each step once
    fresh = train([*SHORT, *where, "trainer.max_steps=4", "ckpt_path=null"])
    assert fresh.returncode == 2 and "already holds a run" in fresh.stderr and "ckpt_path=auto" in fresh.stderr
    assert "Traceback" not in fresh.stderr


@pytest.mark.slow
def test_a_gpu_recipe_on_a_machine_without_one_stops_in_seconds_and_leaves_nothing(tmp_path):
    started = time.perf_counter()
    where = [f"paths.root={tmp_path}", f"paths.data_root={tmp_path}"]
    # CUDA_VISIBLE_DEVICES="": a machine without a GPU, wherever the test runs
    result = train(["recipe=commonvoice/pretrain", "language=fr", *where], CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 2 and "trainer.accelerator=gpu" in result.stderr and "trainer=cpu" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.perf_counter() - started < 60  # before any data work
    assert not (tmp_path / "runs" / "commonvoice_fr" / "pretrain").exists()  # no empty run directory left


def test_a_mistyped_trainer_number_is_named():
    with pytest.raises(ConfigError, match=r"trainer\.max_steps='abc' must be a number"):
        check_config(compose_config(["recipe=null", "trainer.max_steps=abc"]))


def test_a_run_shorter_than_its_intervals_still_validates_and_writes_its_log(tmp_path):
    cfg = compose_config(
        [
            *FAST,
            "recipe=null",
            "export_after_fit=false",
            "trainer.max_steps=3",
            "trainer.val_check_interval=100",
            "trainer.log_every_n_steps=100",
        ]
    )
    summary = run(cfg, tmp_path)
    rows = read_metrics(summary["metrics_csv"])
    assert column(rows, "val/loss") and column(rows, "train/loss")  # validated at step 3, logged
    assert "val/loss" in summary["metrics"]


def test_half_precision_on_a_cpu_is_said(capsys):
    check_config(compose_config(["recipe=null", "trainer.precision=bf16-mixed"]))
    assert "trainer.precision=bf16-mixed on the CPU" in capsys.readouterr().out


@pytest.mark.slow
def test_the_progress_bar_counts_updates_and_shows_the_lr(tmp_path):
    bar_on = [a for a in SHORT if a not in ("callbacks.progress_bar=null", "+trainer.enable_progress_bar=false")]
    result = train([*bar_on, f"paths.root={tmp_path}", "trainer.max_steps=3"], COLUMNS="200")
    assert result.returncode == 0, result.stderr[-2000:]
    shown = result.stdout + result.stderr
    assert "Epoch 0 · 3 updates" in shown and "/-2" not in shown  # not Lightning's "Epoch 0/-2"
    assert re.search(r"train/lr: \d\.\d\de-0\d", shown), shown[-1500:]  # not "train/lr: 0.000"


def bar_total(max_steps, global_step, num_batches, restarting=False, done=0):

    epoch_loop = SimpleNamespace(
        restarting=restarting, batch_progress=SimpleNamespace(current=SimpleNamespace(ready=done))
    )
    trainer = SimpleNamespace(
        max_steps=max_steps,
        global_step=global_step,
        num_training_batches=num_batches,
        accumulate_grad_batches=1,
        fit_loop=SimpleNamespace(epoch_loop=epoch_loop),
    )
    bar = RunProgressBar()
    bar._trainer = trainer
    return bar.total_train_batches


def test_the_bar_total_counts_the_whole_epoch_after_a_mid_epoch_resume():
    # resumed at update 8 of 16 in a 16-batch epoch: 8 seen + 8 to go, not "16/8"
    assert bar_total(max_steps=16, global_step=8, num_batches=16, restarting=True, done=8) == 16
    # a run's last, partial epoch: only the updates it still needs
    assert bar_total(max_steps=44, global_step=40, num_batches=16) == 4
    assert bar_total(max_steps=-1, global_step=40, num_batches=16) == 16  # epoch-bounded runs
