"""Multi-stage recipes: every stage is its own `python -m unispeech.train recipe=STAGE` process.

A recipe with `stages: [family/pretrain, family/finetune]` is run by launching those
commands one after the other with the same `run_name` (so stage 2 finds stage 1's best
checkpoint in `outputs/runs/RUN_NAME/pretrain`), the recipe's `parameters` (e.g.
`language=fr`) and every override of the command line. Separate processes give every stage
its own Trainer, so DDP works for each. The commands are printed: running them by hand (on
a cluster, one `srun` each) does the same thing.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from unispeech.training.config_checks import check_missing, check_required_paths
from unispeech.training.hydra_config import run_dir
from unispeech.training.summary import is_global_zero, pretraining_effect


class StageFailed(RuntimeError):
    """A stage's process exited with an error (its own output says why)."""


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def stage_command(stage: str, cfg: DictConfig, overrides: list[str], *extra: str) -> list[str]:
    """The command of one stage: its recipe, the shared run name and parameters, the user's overrides."""
    shared = {"recipe": f"recipe={stage}", "run_name": f"run_name={cfg.run_name}"}
    shared.update({str(key): f"{key}={cfg[key]}" for key in cfg.get("parameters") or []})
    passed = [o for o in overrides if _key(o) not in shared]
    return [sys.executable, "-m", "unispeech.train", *shared.values(), *passed, *extra]


def run_stage(command: list[str], summary_dir: str) -> dict[str, Any]:
    if is_global_zero():
        print(f"[unispeech] $ python {shlex.join(command[1:])}", flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        raise StageFailed(
            f"stage {command[3]} failed (exit {result.returncode}); its command: python {shlex.join(command[1:])}"
        )
    return json.loads((Path(summary_dir) / "summary.json").read_text())


def run_stages(cfg: DictConfig, overrides: list[str]) -> list[dict[str, Any]]:
    """Run the recipe's stages in order; with `compare_from_scratch`, the last one once more
    from random weights, and say what pretraining changed."""
    check_missing(cfg)
    check_required_paths(cfg)  # what every stage reads, before stage 1's hours of work
    root, name = str(cfg.paths.root), str(cfg.run_name)
    summaries = []
    for stage in cfg.stages:
        stage_name = str(stage).split("/")[-1]
        command = stage_command(stage, cfg, overrides)
        summaries.append(run_stage(command, run_dir(root, name, stage_name)))
    scratch = None
    if cfg.get("compare_from_scratch"):
        last = str(cfg.stages[-1])
        stage_name = last.split("/")[-1] + "_from_scratch"
        command = stage_command(last, cfg, overrides, "task.module.pretrained=null", f"stage={stage_name}")
        scratch = run_stage(command, run_dir(root, name, stage_name))
    summaries[-1]["pretraining_effect"] = pretraining_effect(summaries[-1], scratch)
    return summaries
