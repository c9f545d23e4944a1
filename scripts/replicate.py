#!/usr/bin/env python
"""The UniSpeech paper's claim in miniature: does multitask pretraining beat its parts?

For each seed, four arms are pretrained (or not) on the same model and the same number of
updates, then fine-tuned with the same budget on a small labeled set of the target
language, and scored by phone error rate (PER) on target-language test speakers unseen in
training:

    scratch          no pretraining: fine-tuning starts from random weights
    supervised       phone CTC on the labeled source language only (α = 1)
    self-supervised  contrastive only, on all the audio (labeled source + unlabeled target, α = 0)
    unispeech        both (α = 0.5): CTC on the labeled rows, contrastive on every row

The paper's result is the ordering unispeech < min(self-supervised, supervised) < scratch.

    python scripts/replicate.py                 # --size cpu: the replication corpus, 2 CPU cores
    python scripts/replicate.py --size demo     # the embedded demo corpus, the default run's stages
    python scripts/replicate.py --size gpu      # a larger corpus and model on one GPU
    python scripts/replicate.py --size smoke    # a few updates per run: checks the plumbing (CI)

Every run is a plain `python -m unispeech.train` command (the exact commands are written to
`commands.txt`), so a run that already finished is kept when the study is run again. Results
go to `outputs/replication/<size>/`: `results.json`, `results.png` (PER per arm) and
`pretraining_curves.png` (validation contrastive accuracy, codebook perplexity and phonetic
CTC PER of each pretraining arm).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARMS = ("scratch", "supervised", "self-supervised", "unispeech")

# Pretraining overrides per arm (scratch has no pretraining). The supervised arm sees only
# the labeled source rows: with unlabeled rows in the batch it would train their contrastive
# term too. It also gets no CTC ramp, which would make its first updates self-supervised.
ARM_PRETRAINING = {
    "supervised": [
        "model.ctc_alpha=1.0",
        "task.module.ctc_alpha_ramp=null",
        "data.unlabeled_corpus=null",
        "data.unlabeled_splits=[]",
    ],
    "self-supervised": ["model.ctc_alpha=0.0"],
    "unispeech": ["model.ctc_alpha=0.5"],
}

COMMON = [
    "logger=csv",
    "callbacks.progress_bar=null",
    "+trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@dataclass(frozen=True)
class Size:
    """One scale of the study: what every pretraining and fine-tuning run gets."""

    pretrain: tuple[str, ...]
    finetune: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    note: str = ""
    corpus: str | None = None  # the replication corpus size to build before the runs start


# The cpu size: the replication corpus (1 h labeled English, 1 h unlabeled Spanish, 10 min
# labeled Spanish), the tiny model, budgets that fit 2 CPU cores in 45 minutes.
CPU_PRETRAIN = (
    "recipe=null",
    "data=replication",
    "task=pretrain",
    "model=tiny",
    "trainer=cpu",
    "trainer.max_steps=1500",
    "trainer.val_check_interval=500",
    "export_after_fit=false",
)
CPU_FINETUNE = (
    "recipe=null",
    "data=replication_ctc",
    "task=ctc_demo",
    "model=tiny",
    "trainer=cpu",
    "model.mask_time_prob=0.1",
    "trainer.max_steps=600",
    "trainer.val_check_interval=200",
)
# The gpu size: the 5 h + 5 h replication corpus and a 4-layer, 256-wide model in bf16 on one
# GPU. Its budgets are estimates for "10 minutes on one GPU", not yet timed on a GPU.
GPU_MODEL = (
    "replication_size=gpu",
    "model=tiny",
    "model.hidden_size=256",
    "model.num_hidden_layers=4",
    "model.num_attention_heads=4",
    "model.intermediate_size=1024",
    "model.conv_dim=[256,256,256,256,256,256,256]",
    "model.num_codevectors_per_group=64",
    "model.codevector_dim=256",
    "model.proj_codevector_dim=256",
    "model.classifier_proj_size=128",
    "trainer=gpu",
    "data.max_batch_seconds=160",
    "data.num_workers=4",
)


def _on_gpu(overrides: tuple[str, ...], steps: int, val_every: int) -> tuple[str, ...]:
    """A cpu-size run's overrides with the gpu size's corpus, model, trainer and budget."""
    kept = [o for o in overrides if not o.startswith(("model=", "trainer=", "trainer.max_steps", "trainer.val_check"))]
    return (*kept, *GPU_MODEL, f"trainer.max_steps={steps}", f"trainer.val_check_interval={val_every}")


# The demo mode runs the default run's two stages (recipes/demo/) as they are.
SIZES = {
    "cpu": Size(
        pretrain=CPU_PRETRAIN,
        finetune=CPU_FINETUNE,
        corpus="cpu",
        note="replication corpus: 1 h labeled English, 1 h unlabeled Spanish, 10 min labeled Spanish; "
        "tiny model, 1,500 pretraining and 600 fine-tuning updates",
    ),
    "gpu": Size(
        pretrain=_on_gpu(CPU_PRETRAIN, 3000, 1000),
        finetune=_on_gpu(CPU_FINETUNE, 1000, 250),
        corpus="gpu",
        note="replication corpus: 5 h labeled English, 5 h unlabeled Spanish, 40 min labeled Spanish; "
        "4 x 256 model in bf16 on one GPU, 3,000 pretraining and 1,000 fine-tuning updates",
    ),
    "demo": Size(
        pretrain=("recipe=demo/pretrain", "export_after_fit=false"),
        finetune=("recipe=demo/finetune",),
        note="embedded demo corpus (76 s of labeled English, 110 s of Spanish audio), tiny model",
    ),
    "smoke": Size(
        pretrain=(
            "recipe=demo/pretrain",
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
            "export_after_fit=false",
        ),
        finetune=(
            "recipe=demo/finetune",
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
            "task.module.freeze_transformer_steps=2",
        ),
        seeds=(0,),
        note="4 updates per run on the demo corpus: checks the plumbing, not the claim",
    ),
}


@dataclass
class Job:
    arm: str
    seed: int
    stage: str  # "pretrain" | "finetune"
    run_dir: Path
    overrides: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "unispeech.train",
            f"hydra.run.dir={self.run_dir}",
            f"seed={self.seed}",
            *COMMON,
            *self.overrides,
        ]

    def summary(self) -> dict | None:
        path = self.run_dir / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None


def variant_folder(overrides: Sequence[str]) -> str:
    """The unispeech arm's folder: `unispeech`, or `unispeech-<hash>` for a variant, so that a
    variant run into the same --out keeps the other arms' finished runs and adds only its own."""
    if not overrides:
        return "unispeech"
    return "unispeech-" + hashlib.sha1("\n".join(overrides).encode()).hexdigest()[:8]


def plan(size: Size, out: Path, unispeech_overrides: Sequence[str] = ()) -> list[tuple[Job | None, Job]]:
    """(pretraining job or None, fine-tuning job) for every arm and seed; `unispeech_overrides`
    are added to the unispeech arm's pretraining (a lever to compare, e.g. its CTC ramp)."""
    chains = []
    for seed in size.seeds:
        for arm in ARMS:
            extra = list(unispeech_overrides) if arm == "unispeech" else []
            base = out / (variant_folder(extra) if arm == "unispeech" else arm) / f"seed{seed}"
            pretrain = None
            finetune = Job(arm, seed, "finetune", base / "finetune", [*size.finetune, "task.module.pretrained=null"])
            if arm in ARM_PRETRAINING:
                pretrain = Job(
                    arm, seed, "pretrain", base / "pretrain", [*size.pretrain, *ARM_PRETRAINING[arm], *extra]
                )
                # every arm is fine-tuned from its last update: the same pretraining budget
                last = pretrain.run_dir / "checkpoints" / "last.ckpt"
                finetune.overrides[-1] = f"task.module.pretrained={last}"
            chains.append((pretrain, finetune))
    return chains


def run_job(job: Job, threads: int, force: bool, log: Path) -> dict:
    if job.summary() is not None and not force:
        print(f"[replicate] kept    {job.arm:<16} seed {job.seed} {job.stage}", flush=True)
        return job.summary()
    job.run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        WANDB_MODE=os.environ.get("WANDB_MODE", "disabled"),
        HYDRA_FULL_ERROR="1",
    )
    started = time.perf_counter()
    with open(job.run_dir / "stdout.log", "w") as stdout:
        result = subprocess.run(job.command(), cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - started
    with open(log, "a") as handle:
        handle.write(f"# {job.arm} seed {job.seed} {job.stage}: exit {result.returncode}, {elapsed:.0f} s\n")
        handle.write(shlex.join(job.command()) + "\n")
    if result.returncode != 0 or job.summary() is None:
        raise RuntimeError(
            f"{job.arm} seed {job.seed} {job.stage} failed (exit {result.returncode}); see {job.run_dir / 'stdout.log'}"
        )
    print(f"[replicate] done    {job.arm:<16} seed {job.seed} {job.stage} in {elapsed:.0f} s", flush=True)
    return job.summary()


def run_study(
    size: Size, out: Path, jobs: int, force: bool, unispeech_overrides: Sequence[str] = ()
) -> list[tuple[Job | None, Job]]:
    if size.corpus:  # once, here, rather than by the first runs in parallel
        from unispeech.data import ensure_replication_corpus

        print(f"[replicate] corpus: {ensure_replication_corpus(size.corpus)}", flush=True)
    chains = plan(size, out, unispeech_overrides)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log = out / "commands.txt"
    out.mkdir(parents=True, exist_ok=True)

    def run_chain(chain: tuple[Job | None, Job]) -> None:
        pretrain, finetune = chain
        if pretrain is not None:
            run_job(pretrain, threads, force, log)
        run_job(finetune, threads, force or (pretrain is not None and force), log)

    # chains with a pretraining stage are the long ones: start them first
    ordered = sorted(chains, key=lambda c: c[0] is None)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(run_chain, chain) for chain in ordered]:
            future.result()
    return chains


# -- the report ---------------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def collect(chains: list[tuple[Job | None, Job]]) -> dict:
    per_arm: dict[str, dict] = {arm: {"test_per": {}, "pretraining": {}} for arm in ARMS}
    for pretrain, finetune in chains:
        summary = finetune.summary() or {}
        per = summary.get("metrics", {}).get("test/per")
        if per is not None:
            per_arm[finetune.arm]["test_per"][finetune.seed] = per
        if pretrain is not None and pretrain.summary():
            metrics = pretrain.summary()["metrics"]
            per_arm[pretrain.arm]["pretraining"][pretrain.seed] = {
                k: metrics[k]
                for k in ("val/contrastive_accuracy", "val/codevector_perplexity", "val/per")
                if k in metrics
            }
    for entry in per_arm.values():
        values = list(entry["test_per"].values())
        entry["mean"], entry["std"] = mean_std(values) if values else (float("nan"), float("nan"))
    return per_arm


def relative_gain(better: float, worse: float) -> float:
    """Relative PER reduction of `better` over `worse`, in percent (the paper's measure)."""
    return 100.0 * (worse - better) / worse


def verdict(results: dict) -> dict:
    """Does unispeech < min(self-supervised, supervised) < scratch hold, by more than the spread?"""
    u, s, t, z = (results[a] for a in ("unispeech", "supervised", "self-supervised", "scratch"))
    best_part = min((s, t), key=lambda r: r["mean"])
    ordering = u["mean"] < best_part["mean"] < z["mean"]
    margin = min(best_part["mean"] - u["mean"], z["mean"] - best_part["mean"])
    spread = max(r["std"] for r in (u, s, t, z))
    return {
        "ordering_holds": bool(ordering),
        "margin": margin,
        "largest_std": spread,
        "margin_exceeds_spread": bool(ordering and margin > spread),
    }


def report(results: dict, size_name: str, size: Size) -> str:
    seeds = len(size.seeds)
    lines = [f"UniSpeech replication, size {size_name} ({size.note}); test PER over {seeds} seed(s)", ""]
    lines.append(f"{'arm':<16} {'test PER':>17}   per seed")
    for arm in ARMS:
        entry = results[arm]
        shown = ", ".join(f"{entry['test_per'][s]:.3f}" for s in sorted(entry["test_per"]))
        lines.append(f"{arm:<16} {entry['mean']:>8.3f} ± {entry['std']:.3f}   {shown}")
    lines.append("")
    u = results["unispeech"]["mean"]
    for other in ("scratch", "supervised", "self-supervised"):
        lines.append(f"unispeech vs {other:<16} {relative_gain(u, results[other]['mean']):+6.1f} % relative PER")
    v = verdict(results)
    lines.append("")
    lines.append(
        "ordering unispeech < min(self-supervised, supervised) < scratch: "
        + ("holds" if v["ordering_holds"] else "does NOT hold")
        + f"; margin {v['margin']:.3f} vs largest seed std {v['largest_std']:.3f}"
    )
    return "\n".join(lines)


# Curves of a term an arm does not train (α = 1: no contrastive term; α = 0: no CTC term).
UNTRAINED_BY = {
    "supervised": ("val/contrastive_accuracy", "val/codevector_perplexity"),
    "self-supervised": ("val/per", "train/per"),
}


def plot(results: dict, chains: list[tuple[Job | None, Job]], out: Path, tag: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    means = [results[a]["mean"] for a in ARMS]
    stds = [results[a]["std"] for a in ARMS]
    ax.bar(ARMS, means, yerr=stds, capsize=6, color=["#999999", "#4c72b0", "#55a868", "#c44e52"])
    for i, arm in enumerate(ARMS):
        ax.scatter([i] * len(results[arm]["test_per"]), list(results[arm]["test_per"].values()), color="black", s=10)
    ax.set_ylabel("test PER (lower is better)")
    ax.set_title("fine-tuning on the target language, by pretraining")
    fig.tight_layout()
    fig.savefig(out / f"results{tag}.png", dpi=120)
    plt.close(fig)

    keys = ("val/contrastive_accuracy", "val/codevector_perplexity", "val/per", "train/per")
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    colors = {"supervised": "#4c72b0", "self-supervised": "#55a868", "unispeech": "#c44e52"}
    for pretrain, _ in chains:
        if pretrain is None or not (pretrain.run_dir / "csv" / "metrics.csv").is_file():
            continue
        with open(pretrain.run_dir / "csv" / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        for ax, key in zip(axes, keys):
            if key in UNTRAINED_BY.get(pretrain.arm, ()):
                continue  # a term with weight 0: its numbers describe a random head
            points = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            if points:
                ax.plot(*zip(*points), color=colors[pretrain.arm], alpha=0.8)
    for ax, key in zip(axes, keys):
        ax.set_title(key)
        ax.set_xlabel("update")
    axes[0].legend(handles=[plt.Line2D([], [], color=c, label=arm) for arm, c in colors.items()], fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"pretraining_curves{tag}.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each gets cores/jobs threads)")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the size's seeds")
    parser.add_argument("--out", type=Path, help="default: outputs/replication/<size>")
    parser.add_argument("--force", action="store_true", help="rerun runs that already finished")
    parser.add_argument(
        "--unispeech-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add to the unispeech arm's pretraining (repeatable); with the same --out, the other arms' "
        "finished runs are reused, e.g. 'task.module.ctc_alpha_ramp=[0.1,0.2]'",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    size = SIZES[args.size]
    if args.seeds:
        size = Size(size.pretrain, size.finetune, tuple(args.seeds), size.note, size.corpus)
    out = (args.out or REPO / "outputs" / "replication" / args.size).resolve()
    started = time.perf_counter()
    chains = run_study(size, out, args.jobs, args.force, args.unispeech_override)
    results = collect(chains)
    text = report(results, args.size, size)
    # a variant's report sits beside the study's: results-unispeech-<hash>.json, ...
    tag = "" if not args.unispeech_override else "-" + variant_folder(args.unispeech_override)
    if tag:
        text += "\nunispeech arm pretrained with: " + " ".join(args.unispeech_override)
    print("\n" + text)
    record = {
        "size": args.size,
        "note": size.note,
        "seeds": list(size.seeds),
        "arms": results,
        "verdict": verdict(results),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "pretrain_overrides": {
            a: list(size.pretrain) + o + (args.unispeech_override if a == "unispeech" else [])
            for a, o in ARM_PRETRAINING.items()
        },
        "finetune_overrides": list(size.finetune),
    }
    (out / f"results{tag}.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / f"results{tag}.txt").write_text(text + "\n")
    plot(results, chains, out, tag)
    print(
        f"\n[replicate] {out / f'results{tag}.json'}, results{tag}.png, pretraining_curves{tag}.png "
        f"({record['wall_seconds']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
