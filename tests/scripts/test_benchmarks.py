"""The benchmark scripts: their FLOP count against the transformers reference of
docs/benchmarks.md, and one real (tiny) transcription comparison end to end, so that the
scripts a GPU session runs unchanged are known to run."""

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from tests.tasks.random_models import save_random_model  # noqa: E402

import benchmark  # noqa: E402
import benchmark_transcribe  # noqa: E402
from benchmark_shapes import model_config  # noqa: E402

H100_PEAK = 790e12


@pytest.mark.parametrize(
    "shape,audio_s_per_s,reference_mfu",
    [("base", 1583, 0.092), ("large", 864, 0.130), ("base", 920, 0.053), ("large", 612, 0.092)],
)
def test_flop_count_reproduces_the_transformers_reference_mfu(shape, audio_s_per_s, reference_mfu):
    # docs/benchmarks.md: transformers' UniSpeechForCTC (first two) and Wav2Vec2ForPreTraining
    # steps on an H100, 8 x 15 s, training = 3 x forward
    flops = 3 * benchmark.forward_flops(model_config(shape), 8, 15 * 16000)
    mfu = flops * audio_s_per_s / 120 / H100_PEAK
    assert mfu == pytest.approx(reference_mfu, abs=0.0005)


def test_a_frozen_encoder_step_counts_its_forward_once():
    config = model_config("small")
    encoder, frames = benchmark.conv_flops(config, 2, 64000)
    assert frames == 199  # 4 s at 16 kHz: (64000 - 400) / 320 + 1
    # the first conv alone: 2 x 1 x 256 x 10 multiply-adds per output, 12,799 outputs, 2 rows
    assert encoder > 2 * (2 * 256 * 10 * 12799)
    assert encoder < benchmark.forward_flops(config, 2, 64000)


@pytest.mark.slow
def test_transcription_benchmark_runs_both_sides_on_real_files():
    rows = list(
        benchmark_transcribe.transcribe_rows(
            "small", torch.device("cpu"), clips=2, repeats=1, batch_sizes=(2,), precisions=("fp32",)
        )
    )
    assert len(rows) == 1
    numbers = re.findall(r"\| ([\d,.]+) \(RTF ([\d.e-]+)\)", rows[0])
    assert len(numbers) == 2
    for speed, rtf in numbers:  # audio-s/s and real-time factor describe the same timing
        assert float(speed.replace(",", "")) * float(rtf) == pytest.approx(1.0, rel=0.02)


@pytest.mark.slow
def test_model_benchmark_prints_a_row_per_step_and_survives_a_failing_one(capsys, monkeypatch):
    real_time_steps, calls = benchmark.time_steps, []

    def second_step_runs_out_of_memory(*steps, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_time_steps(*steps, **kwargs)

    monkeypatch.setattr(benchmark, "time_steps", second_step_runs_out_of_memory)
    benchmark.main(["--steps", "1", "--warmup", "0"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| small |")]
    assert [row.split("|")[2].strip() for row in rows] == ["ctc", "ctc, frozen feature encoder", "pretrain", "infer"]
    failed = rows.pop(1)
    assert "failed: RuntimeError: CUDA out of memory" in failed
    for row in rows:
        ours, theirs, ratio = (cell.strip() for cell in row.split("|")[3:6])
        assert float(ours) > 0 and float(theirs) > 0
        assert float(ratio.rstrip("x")) == pytest.approx(float(ours) / float(theirs), rel=0.05)


def test_a_shape_that_cannot_be_built_gets_one_failure_row():
    def rows():
        yield "| base | ctc | 1.0 | 1.0 | 1.00x |"
        raise MemoryError("cannot allocate the large model")

    out = list(benchmark.rows_or_failure("base", torch.device("cpu"), rows()))
    assert out == [
        "| base | ctc | 1.0 | 1.0 | 1.00x |",
        "| base | remaining steps | failed: MemoryError: cannot allocate the large model | | |",
    ]


@pytest.mark.slow
def test_onnx_rows_time_onnxruntime_against_torch_on_an_exported_model(tmp_path):
    directory = save_random_model(tmp_path / "tiny", ["abc"], "chars")
    rows = list(benchmark.onnx_section([], str(directory), SimpleNamespace(steps=1, warmup=0)))
    # the shape's batch (2 x 4 s, last row padded), then one utterance
    assert [row.split("|")[1:3] for row in rows] == [[" tiny ", " infer 2 x 4 s "], [" tiny ", " infer 1 x 4 s "]]
    for row in rows:
        onnxruntime, torch_speed, ratio = (float(cell.strip(" x").replace(",", "")) for cell in row.split("|")[3:6])
        assert onnxruntime > 0 and torch_speed > 0
        assert ratio == pytest.approx(onnxruntime / torch_speed, rel=0.05)


def test_an_onnx_model_that_cannot_be_loaded_gets_one_failure_row(tmp_path):
    rows = list(benchmark.onnx_section([], str(tmp_path / "nowhere"), SimpleNamespace(steps=1, warmup=0)))
    assert len(rows) == 1
    assert rows[0].startswith("| nowhere | onnxruntime | failed: FileNotFoundError:")


def test_a_slow_row_prints_enough_digits_for_its_ratio():
    # ~1 audio-s/s, as on a busy CPU: one decimal ("1.0 | 0.9 | 1.04x") would contradict the ratio
    row = benchmark.format_row("small", "ctc", 1.0, 1 / 0.96, 1 / 0.923, 0, 0, 0, torch.device("cpu"))
    ours, theirs, ratio = (cell.strip() for cell in row.split("|")[3:6])
    assert (ours, theirs, ratio) == ("0.96", "0.923", "1.04x")
    assert float(ours) / float(theirs) == pytest.approx(float(ratio.rstrip("x")), rel=0.005)
