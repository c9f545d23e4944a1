"""What the training-curves PNG plots: the series picked from a run's CSV log (not pixels)."""

from __future__ import annotations

import csv

from unispeech.training.callbacks import plot_curves, plotted_series, read_curves


def write_log(path, rows):
    columns = sorted({key for row in rows for key in row})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def series_of(panels):
    return {key for _, series in panels for key in series}


def test_a_ctc_run_plots_its_validation_error_rates(tmp_path):
    # the columns a CTC fine-tuning run logs (test/ ones once, at the end)
    rows = [{"epoch": 0, "step": s, "train/loss": 3.0 - 0.1 * s, "train/lr": 1e-4} for s in range(6)]
    rows += [{"epoch": 0, "step": s, "val/loss": 2.5, "val/per": 0.9, "val/cer": 0.8, "val/wer": 1.0} for s in (2, 5)]
    rows += [{"epoch": 0, "step": 5, "test/per": 0.9, "test/cer": 0.8, "test/wer": 1.0}]
    curves = read_curves(write_log(tmp_path / "metrics.csv", rows))
    panels = plotted_series(curves)
    assert dict(panels)["error rate"] == ["val/per", "val/cer", "val/wer"]
    assert series_of(panels) == {"train/loss", "val/loss", "val/per", "val/cer", "val/wer"}
    assert curves["val/per"] == [(2, 0.9), (5, 0.9)]
    plot_curves(curves, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_a_pretraining_run_plots_per_contrastive_accuracy_and_codebook_use(tmp_path):
    train = {
        "train/loss": 3.1,
        "train/contrastive_loss": 3.0,
        "train/diversity_loss": 0.3,
        "train/ctc_loss": 4.0,
        "train/codevector_perplexity": 40.0,
        "train/contrastive_accuracy": 0.05,
        "train/unused_codevectors": 3,
        "train/gumbel_temperature": 1.9,
    }
    rows = [{"step": s, **train} for s in range(4)]
    rows += [
        {"step": 3, "val/loss": 3.0, "val/per": 1.0, "val/contrastive_accuracy": 0.06, "val/unused_codevectors": 5}
    ]
    panels = plotted_series(read_curves(write_log(tmp_path / "metrics.csv", rows)))
    assert {"val/per", "val/contrastive_accuracy", "train/codevector_perplexity", "val/unused_codevectors"} <= (
        series_of(panels)
    )
    assert "train/gumbel_temperature" not in series_of(panels)
    assert [title for title, _ in panels][:4] == ["loss", "contrastive_loss", "diversity_loss", "ctc_loss"]
