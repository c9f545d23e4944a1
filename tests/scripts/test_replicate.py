"""scripts/replicate.py end to end in its smoke size (4 updates per run on the demo corpus):
the four arms run as real train commands, a pretraining arm's checkpoint reaches its
fine-tuning, and the report, JSON and charts are written. The study itself is a benchmark
(docs/replication.md), not a CI test."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import replicate  # noqa: E402


def test_each_arm_finetunes_from_its_own_pretraining(tmp_path):
    chains = replicate.plan(replicate.SIZES["cpu"], tmp_path)
    assert len(chains) == 4 * 3  # arms x seeds
    for pretrain, finetune in chains:
        if finetune.arm == "scratch":
            assert pretrain is None and "task.module.pretrained=null" in finetune.overrides
            continue
        assert f"task.module.pretrained={pretrain.run_dir / 'checkpoints' / 'last.ckpt'}" in finetune.overrides
        assert pretrain.seed == finetune.seed
    alphas = {p.arm: [o for o in p.overrides if o.startswith("model.ctc_alpha=")] for p, _ in chains if p}
    assert alphas == {
        "supervised": ["model.ctc_alpha=1.0"],
        "self-supervised": ["model.ctc_alpha=0.0"],
        "unispeech": ["model.ctc_alpha=0.5"],
    }


@pytest.mark.parametrize("size", sorted(replicate.SIZES))
def test_every_size_composes_into_real_configs(size):
    from tests.tasks.conftest import compose_config

    for pretrain, finetune in replicate.plan(replicate.SIZES[size], Path("/tmp/study"))[:4]:
        for job in (pretrain, finetune):
            if job is None:
                continue
            cfg = compose_config([o for o in job.overrides if not o.startswith("task.module.pretrained=")])
            task = "PretrainingTask" if job.stage == "pretrain" else "CTCFinetuningTask"
            assert cfg.task.module._target_ == f"unispeech.tasks.{task}", job.overrides
            if size == "gpu":
                assert (cfg.model.hidden_size, cfg.trainer.accelerator, cfg.replication_size) == (256, "gpu", "gpu")


def test_a_unispeech_variant_gets_its_own_runs_and_reuses_the_others(tmp_path):
    lever = ["task.module.ctc_alpha_ramp=[0.1,0.2]"]
    base = {(p.arm if p else f.arm, f.seed): (p, f) for p, f in replicate.plan(replicate.SIZES["cpu"], tmp_path)}
    variant = replicate.plan(replicate.SIZES["cpu"], tmp_path, lever)
    for pretrain, finetune in variant:
        same = base[(finetune.arm, finetune.seed)]
        if finetune.arm == "unispeech":
            assert pretrain.overrides[-1] == lever[0] and pretrain.run_dir != same[0].run_dir
            assert pretrain.run_dir.parts[-3] == replicate.variant_folder(lever) != "unispeech"
        else:  # the same folders and commands: a study in the same --out keeps their runs
            assert finetune.run_dir == same[1].run_dir and finetune.overrides == same[1].overrides


def test_the_verdict_needs_the_order_and_a_margin_beyond_the_spread():
    def arms(u, s, t, z, std):
        return {
            name: {"mean": mean, "std": std}
            for name, mean in zip(("unispeech", "supervised", "self-supervised", "scratch"), (u, s, t, z))
        }

    assert replicate.verdict(arms(0.30, 0.40, 0.45, 0.60, 0.02)) == {
        "ordering_holds": True,
        "margin": pytest.approx(0.10),
        "largest_std": 0.02,
        "margin_exceeds_spread": True,
    }
    assert replicate.verdict(arms(0.30, 0.40, 0.45, 0.60, 0.2))["margin_exceeds_spread"] is False
    assert replicate.verdict(arms(0.42, 0.40, 0.45, 0.60, 0.02))["ordering_holds"] is False
    assert replicate.relative_gain(0.3, 0.4) == pytest.approx(25.0)


@pytest.mark.slow
def test_smoke_study_runs_every_arm_and_writes_its_report(tmp_path, capsys):
    assert replicate.main(["--size", "smoke", "--out", str(tmp_path), "--jobs", "2"]) == 0
    record = json.loads((tmp_path / "results.json").read_text())
    assert set(record["arms"]) == set(replicate.ARMS)
    for arm, entry in record["arms"].items():
        (per,) = entry["test_per"].values()  # one seed
        assert 0.0 <= per <= 1.5 and math.isfinite(per), arm
        if arm != "scratch":  # its pretraining ran and was scored
            assert "val/contrastive_accuracy" in entry["pretraining"]["0"], arm
    assert set(record["verdict"]) == {"ordering_holds", "margin", "largest_std", "margin_exceeds_spread"}
    for name in ("results.txt", "results.png", "pretraining_curves.png", "commands.txt"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "unispeech vs scratch" in capsys.readouterr().out
    # rerunning keeps finished runs: nothing is trained twice
    assert replicate.main(["--size", "smoke", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("[replicate] kept") == 7  # 3 pretraining + 4 fine-tuning runs
