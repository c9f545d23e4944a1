"""After a multirun (`python -m unispeech.train -m ...`), one line per job: what it changed
and how it scored, read from each job's summary.json, so the best setting is found without
opening the job folders (and failed jobs are named)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def sweep_rows(sweep_dir: Path, objective: str | None) -> list[tuple[str, str, str]]:
    """(job folder, its overrides, its objective or what became of it) for every job."""
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: p.name):
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = " ".join(OmegaConf.load(overrides_file)) if overrides_file.is_file() else "?"
        summary = job / "summary.json"
        if not summary.is_file():
            rows.append((job.name, overrides, "failed (no summary.json)"))
            continue
        metrics = json.loads(summary.read_text()).get("metrics", {})
        value = metrics.get(objective) if objective else None
        shown = f"{objective}={value:.4f}" if value is not None else f"{objective or 'objective'} not logged"
        rows.append((job.name, overrides, shown))
    return rows


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        objective = config.get("objective")
        rows = sweep_rows(sweep_dir, str(objective) if objective else None)
        print(f"[unispeech] multirun summary ({sweep_dir}):")
        for name, overrides, shown in rows:
            print(f"  {name:>4}  {shown:<28} {overrides}")
