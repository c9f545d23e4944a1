"""The real command line: 2-process DDP on CPU (gloo) and a Hydra multirun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tasks.conftest import FAST

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def train(args: list[str], timeout: int = 400) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-m", "unispeech.train", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_ddp_two_cpu_processes_see_every_utterance_once_per_epoch(tmp_path):
    from hydra.utils import instantiate

    from tests.tasks.conftest import compose_config

    run_dir = tmp_path / "ddp"
    train(
        [
            "logger=csv",
            "callbacks=debug",
            "+trainer.enable_progress_bar=false",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.precision=32-true",
            "model.layerdrop=0.5",
            "trainer.max_epochs=1",
            "trainer.max_steps=-1",
            "trainer.val_check_interval=null",
            "trainer.check_val_every_n_epoch=1",
            "trainer.log_every_n_steps=1",
            "recipe=null",
            "export_after_fit=false",
            f"hydra.run.dir={run_dir}",
        ]
    )
    seen = {rank: (run_dir / "seen_ids" / f"epoch0_rank{rank}.txt").read_text().split() for rank in (0, 1)}
    assert seen[0] and seen[1] and not set(seen[0]) & set(seen[1])
    datamodule = instantiate(compose_config([]).data)
    datamodule.setup("fit")
    every = sorted(datamodule.datasets["train"].ids)
    assert sorted(seen[0] + seen[1]) == every  # each utterance exactly once
    summary = json.loads((run_dir / "summary.json").read_text())
    assert Path(summary["checkpoint"]).is_file()


def test_multirun_runs_two_jobs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    train(
        [
            "-m",
            *FAST,
            "trainer.max_steps=2,3",
            "trainer.val_check_interval=2",
            "recipe=null",
            "export_after_fit=false",
            f"hydra.sweep.dir={sweep_dir}",
        ]
    )
    summaries = [json.loads((sweep_dir / str(job) / "summary.json").read_text()) for job in (0, 1)]
    assert [Path(s["checkpoint"]).is_file() for s in summaries] == [True, True]
    assert [s["output_dir"] for s in summaries] == [str(sweep_dir / "0"), str(sweep_dir / "1")]


def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path):
    """A preempted run (SIGTERM) leaves last.ckpt after the current step; ckpt_path=last resumes it."""
    import signal
    import time

    run_dir = tmp_path / "preempted"
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    args = [
        *FAST,
        "+logger.csv.flush_logs_every_n_steps=1",
        "trainer.max_steps=100000",
        "trainer.val_check_interval=100000",
        "trainer.log_every_n_steps=1",
        "recipe=null",
        f"hydra.run.dir={run_dir}",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "unispeech.train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = run_dir / "csv" / "metrics.csv"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= 3:  # a few steps done (flushed every step)
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file(), output[-3000:]
    import torch

    saved_step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert saved_step >= 1
    train(
        [
            *FAST,
            "trainer.max_steps=" + str(saved_step + 2),
            "trainer.val_check_interval=100000",
            "recipe=null",
            "ckpt_path=last",
            "export_after_fit=false",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == saved_step + 2


def _needs_sweep_extra():
    for module in ("optuna", "submitit", "hydra_plugins.hydra_optuna_sweeper", "hydra_plugins.hydra_submitit_launcher"):
        pytest.importorskip(module, reason='the sweep extra: pip install -e ".[sweep]"')


def test_optuna_sweep_of_pretraining_runs_trials_and_reports_every_job(tmp_path):
    _needs_sweep_extra()
    sweep_dir = tmp_path / "optuna"
    result = train(
        [
            "-m",
            *FAST,
            "+sweep=optuna",
            "hydra.sweeper.n_trials=2",
            "recipe=demo/pretrain",
            "trainer.max_steps=2",
            # longer than the run: validation (and so the objective) moves to its last step
            "trainer.val_check_interval=100",
            "export_after_fit=false",
            f"hydra.sweep.dir={sweep_dir}",
        ]
    )
    assert "Best value" in result.stdout + result.stderr
    assert (sweep_dir / "optimization_results.yaml").is_file()
    # one line per job, with what it changed and its objective (the task's monitor)
    lines = [line for line in result.stdout.splitlines() if "val/loss=" in line]
    assert len(lines) == 2 and all("task.module.optimizer.lr=" in line for line in lines)


def test_submitit_local_launcher_runs_the_jobs(tmp_path):
    _needs_sweep_extra()
    sweep_dir = tmp_path / "submitit"
    train(
        [
            "-m",
            *FAST,
            "+launcher=local",
            "trainer.max_steps=2,3",
            "trainer.val_check_interval=2",
            "recipe=null",
            "export_after_fit=false",
            f"hydra.sweep.dir={sweep_dir}",
        ]
    )
    for job in (0, 1):
        assert Path(json.loads((sweep_dir / str(job) / "summary.json").read_text())["checkpoint"]).is_file()


def test_the_default_command_runs_both_demo_stages_as_processes_and_compares_with_scratch(tmp_path):
    result = train(
        [
            *FAST,
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
            "export_after_fit=false",
            f"paths.root={tmp_path}",
            "run_name=demo",
            "compare_from_scratch=true",
        ]
    )
    # each stage is a plain command, printed, that a user could run by hand
    assert "$ python -m unispeech.train recipe=demo/pretrain run_name=demo" in result.stdout
    assert "$ python -m unispeech.train recipe=demo/finetune run_name=demo" in result.stdout
    runs = tmp_path / "runs" / "demo"
    pretrain, finetune, scratch = (
        json.loads((runs / s / "summary.json").read_text()) for s in ("pretrain", "finetune", "finetune_from_scratch")
    )
    assert pretrain["task"] == "pretrain" and finetune["task"] == "ctc"

    # stage 2 started from stage 1's best checkpoint, the comparison from random weights
    def started_from(summary):
        return torch.load(summary["checkpoint"], map_location="cpu", weights_only=True)["hyper_parameters"][
            "pretrained"
        ]

    assert started_from(finetune) == pretrain["checkpoint"] and started_from(scratch) is None
    ours, base = finetune["metrics"]["test/per"], scratch["metrics"]["test/per"]
    assert f"effect of pretraining on test/per: {ours:.4f} vs {base:.4f} from scratch" in result.stdout
