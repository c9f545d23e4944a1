"""After `fit`: test the best checkpoint, export it, and write and print what went where."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from unispeech.training.loggers import csv_metrics_file


def finish_run(
    cfg: DictConfig, trainer: L.Trainer, task: L.LightningModule, datamodule: Any, loggers: list, output_dir: Path
) -> dict[str, Any]:
    """Test the best checkpoint (tasks with a test step), export it, write summary.json."""
    checkpoint_dir = Path(cfg.paths.checkpoint_dir)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    best = best or str(checkpoint_dir / "last.ckpt")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.get("test_after_fit") and is_overridden(task, "test_step") and datamodule.has_split("test"):
        results = trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
    summary: dict[str, Any] = {
        "stage": cfg.get("stage"),
        "task": task.kind,
        "monitor": str(cfg.task.monitor),
        "monitor_mode": str(cfg.task.monitor_mode),
        "output_dir": str(output_dir),
        "checkpoint": best,
        "last_checkpoint": str(checkpoint_dir / "last.ckpt"),
        "metrics_csv": str(csv_metrics_file(loggers) or ""),
        "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)},
        "world_size": int(trainer.world_size),
    }
    if trainer.is_global_zero:
        if cfg.get("export_after_fit") and Path(best).is_file():
            from unispeech.export import export_checkpoint

            summary["export"] = str(export_checkpoint(best, output_dir / "export"))
        curves = checkpoint_dir / "training_curves.png"
        if curves.is_file():
            summary["curves"] = str(curves)
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def is_overridden(task: L.LightningModule, hook: str) -> bool:
    return getattr(type(task), hook, None) is not getattr(L.LightningModule, hook, None)


def is_global_zero() -> bool:
    """Rank 0 of a launch (or no launch at all): the process that prints."""
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return rank == 0 and not (distributed and torch.distributed.get_rank() != 0)


def print_summary(summaries: list[dict[str, Any]]) -> None:
    if not is_global_zero():
        return
    for index, summary in enumerate(summaries, start=1):
        name = summary.get("stage") or ("run" if len(summaries) == 1 else f"stage {index}")
        print(f"[unispeech] {name} ({summary.get('task', '?')}): {summary['output_dir']}")
        for key in ("checkpoint", "export", "metrics_csv", "curves"):
            if summary.get(key):
                print(f"  {key:<12} {summary[key]}")
        shown = {k: round(v, 4) for k, v in summary["metrics"].items() if k.startswith(("val/", "test/"))}
        if shown:
            print(f"  {'metrics':<12} {shown}")
    if summaries and summaries[-1].get("pretraining_effect"):
        print(summaries[-1]["pretraining_effect"])


def pretraining_effect(pretrained: dict[str, Any], scratch: dict[str, Any] | None) -> str:
    """One line: how much the earlier stages changed the last stage's test metric."""
    metric = pretrained["monitor"].replace("val/", "test/", 1)
    if scratch is None:
        return (
            f"[unispeech] effect of pretraining on {metric}: not measured in this run "
            "(compare_from_scratch=true fine-tunes once more from random weights)"
        )
    ours, base = pretrained["metrics"].get(metric), scratch["metrics"].get(metric)
    if ours is None or base is None:
        return f"[unispeech] effect of pretraining on {metric}: not measured ({metric} missing from a summary)"
    better = ours < base if pretrained["monitor_mode"] == "min" else ours > base
    change = 100.0 * (ours - base) / base if base else float("nan")
    return (
        f"[unispeech] effect of pretraining on {metric}: {ours:.4f} vs {base:.4f} from scratch "
        f"({change:+.1f} %, {'better' if better else 'not better'})"
    )
