#!/usr/bin/env python
"""Time our training and inference steps against `transformers` in the same process.

    python scripts/benchmark.py                       # CPU: small shape, < 2 minutes
    python scripts/benchmark.py --shape base large    # GPU: 8 x 15 s, bf16 autocast
    python scripts/benchmark.py --compile             # add rows with our layers torch.compile'd
    python scripts/benchmark.py --transcribe          # add `transcribe` on files (benchmark_transcribe.py)
    python scripts/benchmark.py --onnx                # add onnxruntime vs torch CPU inference (needs the onnx extra)
    python scripts/benchmark.py --onnx-model DIR      # the same for an exported model (e.g. the demo's export/)

Rows (same batch, same precision, same optimizer for both sides):
- ctc:       UniSpeechForCTC forward + backward + AdamW step, vs transformers' UniSpeechForCTC;
             again with the feature encoder frozen on both sides (both tools' fine-tuning default)
- pretrain:  UniSpeechForPreTraining with the full UniSpeech objective (contrastive +
             diversity + phonetic CTC), vs transformers' Wav2Vec2ForPreTraining (contrastive +
             diversity only: transformers has no UniSpeech loss) with its own numpy mask and
             negative helpers, timed as part of its step as a user would run it
- infer:     eval forward + greedy CTC decoding
- transcribe (--transcribe): files on disk → text, fp32 and bf16, vs a transformers loop
- onnxruntime (--onnx, --onnx-model): the infer step of our model exported with
             `unispeech.export --onnx`, in an onnxruntime CPU session, vs the same model in torch
             on the CPU (float32, the same threads), at the shape's batch and at one utterance
Speed is audio seconds per second; the ratio is ours / transformers. On CUDA it also prints
MFU = analytic model FLOPs per second / peak bf16 FLOP/s (training = 3 x forward) and the
step's peak memory above the resident models and optimizer states, per audio second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import torch

import unispeech
from unispeech import UniSpeechConfig
from unispeech.data.audio import SAMPLING_RATE
from unispeech.training.speed import compile_regions

from benchmark_shapes import SHAPES, model_config

# bf16 dense FLOP/s used as the MFU denominator. H100/H200: 790 TFLOP/s, the scale of the
# transformers reference MFUs in docs/benchmarks.md (the SXM datasheet says 989), so our MFU
# and theirs are on one scale. Override with --peak-tflops.
PEAK_BF16_FLOPS = {"H100": 790e12, "H200": 790e12, "A100": 312e12}


def conv_flops(config: UniSpeechConfig, batch: int, samples: int) -> tuple[float, int]:
    """Multiply-adds × 2 of the 7-conv feature encoder, and the number of frames it makes."""
    flops, length, in_dim = 0.0, samples, 1
    for dim, kernel, stride in zip(config.conv_dim, config.conv_kernel, config.conv_stride):
        length = (length - kernel) // stride + 1
        flops += 2 * in_dim * dim * kernel * length
        in_dim = dim
    return batch * flops, length


def forward_flops(config: UniSpeechConfig, batch: int, samples: int) -> float:
    """Multiply-adds × 2 of one forward pass (convs, projections, attention, FFN, quantizer)."""
    flops, length = conv_flops(config, 1, samples)
    in_dim = config.conv_dim[-1]
    t, h, i = length, config.hidden_size, config.intermediate_size
    flops += 2 * in_dim * h * t  # feature projection
    flops += 2 * h * (h // config.num_conv_pos_embedding_groups) * config.num_conv_pos_embeddings * t
    per_layer = 8 * h * h * t + 4 * t * t * h + 4 * h * i * t  # QKVO + scores/values + FFN
    flops += config.num_hidden_layers * per_layer
    flops += 2 * in_dim * config.num_codevector_groups * config.num_codevectors_per_group * t  # quantizer logits
    return batch * flops


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_one(step, device: torch.device) -> tuple[float, float]:
    """Seconds of one step, and its peak GiB above what was allocated before it. Every
    model of the run stays resident; counting only the step's own activations and
    temporaries keeps them out of the comparison."""
    resident = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        resident = torch.cuda.memory_allocated()
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    peak = (torch.cuda.max_memory_allocated() - resident) / 2**30 if device.type == "cuda" else float("nan")
    return time.perf_counter() - start, peak


def time_steps(*steps, device: torch.device, warmup: int, repeats: int) -> list[tuple[float, float]]:
    """Median seconds and max peak memory of each step function. The steps alternate
    (ours, theirs, ours, ...) so that load from other processes hits both sides alike."""
    for step in steps:
        for _ in range(warmup):
            step()
    samples: list[list[tuple[float, float]]] = [[] for _ in steps]
    for _ in range(repeats):
        for i, step in enumerate(steps):
            samples[i].append(time_one(step, device))
    return [(statistics.median(t for t, _ in s), max(m for _, m in s)) for s in samples]


def make_batch(batch: int, seconds: float, device: torch.device):
    g = torch.Generator().manual_seed(0)
    samples = int(seconds * SAMPLING_RATE)
    x = torch.randn(batch, samples, generator=g)
    mask = torch.ones(batch, samples, dtype=torch.long)
    # a realistic batch is not all full length: last row 80 % long
    mask[-1, int(0.8 * samples) :] = 0
    x = x * mask
    labels = torch.randint(5, 60, (batch, int(seconds * 12)), generator=g)  # ~12 phones / s
    return x.to(device), mask.to(device), labels.to(device)


def hf_models(config: UniSpeechConfig, device: torch.device, attn: str):
    import transformers

    fields = {k: v for k, v in config.to_dict().items() if k in transformers.UniSpeechConfig().to_dict()}
    fields.pop("id2label", None), fields.pop("label2id", None)
    ctc = transformers.UniSpeechForCTC(transformers.UniSpeechConfig(**fields, attn_implementation=attn))
    pre = transformers.Wav2Vec2ForPreTraining(transformers.Wav2Vec2Config(**fields, attn_implementation=attn))
    return ctc.to(device), pre.to(device)


def optimizer_for(model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")


def run_shape(shape: str, args, device: torch.device) -> Iterator[str]:
    """Table rows for one shape, each yielded as soon as it is measured."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    config = model_config(shape)
    _, batch, seconds = SHAPES[shape]
    x, mask, labels = make_batch(batch, seconds, device)
    audio_seconds = batch * seconds
    dtype = torch.bfloat16 if device.type == "cuda" else None

    def amp():
        return torch.autocast(device.type, dtype=dtype) if dtype else torch.autocast(device.type, enabled=False)

    ours_ctc = unispeech.UniSpeechForCTC(config).to(device).train()
    # the fine-tuning step as both tools run it by default: feature encoder frozen
    ours_ctc_frozen = unispeech.UniSpeechForCTC(config).to(device).train()
    ours_ctc_frozen.freeze_feature_encoder()
    ours_pre = unispeech.UniSpeechForPreTraining(config).to(device).train()
    hf_ctc, hf_pre = hf_models(config, device, "sdpa")
    hf_ctc.train(), hf_pre.train()
    hf_ctc_frozen, _ = hf_models(config, device, "sdpa")
    hf_ctc_frozen.train().freeze_feature_encoder()

    def ctc_step(model, opt):
        def step():
            with amp():
                loss = model(x, attention_mask=mask, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    generator = torch.Generator(device=device).manual_seed(0)

    def ours_pre_step(model, opt):
        def step():
            with amp():
                loss = model(x, attention_mask=mask, labels=labels, generator=generator).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    frames = int(ours_pre.get_feat_extract_output_lengths(x.shape[1]))
    frame_mask = hf_pre._get_feature_vector_attention_mask(frames, mask)

    def hf_pre_step():
        time_mask = _compute_mask_indices((batch, frames), 0.5, 10, attention_mask=frame_mask.cpu(), min_masks=2)
        negatives = _sample_negative_indices((batch, frames), config.num_negatives, mask_time_indices=time_mask)
        with amp():
            loss = hf_pre(
                x,
                attention_mask=mask,
                mask_time_indices=torch.tensor(time_mask, device=device, dtype=torch.bool),
                sampled_negative_indices=torch.tensor(negatives, device=device, dtype=torch.long),
            ).loss
        loss.backward()
        hf_pre_opt.step()
        hf_pre_opt.zero_grad(set_to_none=True)

    def infer_step(model):
        def step():
            with torch.inference_mode(), amp():
                logits = model(x, attention_mask=mask).logits
                logits.argmax(dim=-1).cpu()  # greedy decoding ends on the host

        return step

    hf_pre_opt = optimizer_for(hf_pre, device)
    specs = [
        (
            "ctc",
            ctc_step(ours_ctc, optimizer_for(ours_ctc, device)),
            ctc_step(hf_ctc, optimizer_for(hf_ctc, device)),
            3,
        ),
        (
            "ctc, frozen feature encoder",
            ctc_step(ours_ctc_frozen, optimizer_for(ours_ctc_frozen, device)),
            ctc_step(hf_ctc_frozen, optimizer_for(hf_ctc_frozen, device)),
            "frozen",
        ),
        ("pretrain", ours_pre_step(ours_pre, optimizer_for(ours_pre, device)), hf_pre_step, 3),
    ]
    if args.compile:
        specs += [
            ("compile", None, None, 0),
            (
                "ctc compiled",
                ctc_step(ours_ctc, optimizer_for(ours_ctc, device)),
                ctc_step(hf_ctc, optimizer_for(hf_ctc, device)),
                3,
            ),
            ("pretrain compiled", ours_pre_step(ours_pre, optimizer_for(ours_pre, device)), hf_pre_step, 3),
        ]
    fwd_flops = forward_flops(config, batch, x.shape[1])
    encoder_flops, _ = conv_flops(config, batch, x.shape[1])
    timing = dict(device=device, warmup=args.warmup, repeats=args.steps)

    def timed_row(name: str, ours_step, hf_step, flops: float) -> str:
        timings = interleave(time_steps(ours_step, hf_step, **timing))
        return format_row(shape, name, audio_seconds, *timings, flops, device)

    for name, ours_step, hf_step, factor in specs:
        if name == "compile":
            # the training fast path: Transformer layers + feature encoder compiled in place
            compile_regions(ours_ctc), compile_regions(ours_pre)
            continue
        # a frozen encoder runs forward only: training FLOPs = its forward + 3 x the rest
        flops = encoder_flops + 3 * (fwd_flops - encoder_flops) if factor == "frozen" else factor * fwd_flops
        yield guarded(shape, name, device, partial(timed_row, name, ours_step, hf_step, flops))
    ours_ctc.eval(), hf_ctc.eval()
    yield guarded(
        shape, "infer", device, partial(timed_row, "infer", infer_step(ours_ctc), infer_step(hf_ctc), fwd_flops)
    )
    if args.breakdown:
        yield from guarded(
            shape,
            "breakdown",
            device,
            lambda: breakdown(ours_pre.train(), x, mask, labels, amp, device, args),
            many=True,
        )


def interleave(timings: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """[(ours s, ours GiB), (theirs s, theirs GiB)] → ours s, theirs s, ours GiB, theirs GiB."""
    (ours_s, ours_mem), (hf_s, hf_mem) = timings
    return ours_s, hf_s, ours_mem, hf_mem


def guarded(shape: str, name: str, device: torch.device, make, many: bool = False):
    """The row(s) `make` returns or, if it fails (out of memory, a compiler error), one row
    saying so: a GPU session is short, and one failure should not cost the other rows."""
    try:
        return make()
    except Exception as error:  # noqa: BLE001 - reported in the table, then go on
        row = failure_row(shape, name, device, error)
        return [row] if many else row


def rows_or_failure(shape: str, device: torch.device, rows: Iterator[str]) -> Iterator[str]:
    """`rows` as they come; if producing them fails outside a row (building a model too big
    for the card), one row saying so in place of the rest."""
    try:
        yield from rows
    except Exception as error:  # noqa: BLE001 - reported in the table, then go on
        yield failure_row(shape, "remaining steps", device, error)


def failure_row(shape: str, name: str, device: torch.device, error: Exception) -> str:
    # the whole traceback on stderr (the row keeps one line): a compiler error's first line can be empty
    traceback.print_exception(error, file=sys.stderr)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    first_line = (str(error).strip().splitlines() or [""])[0][:160]
    return f"| {shape} | {name} | failed: {type(error).__name__}: {first_line} | | |"


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    if PEAK_OVERRIDE:
        return PEAK_OVERRIDE
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


PEAK_OVERRIDE: float | None = None


def audio_rate(speed: float) -> str:
    """Audio-s/s with at least three significant digits: on a busy CPU a step runs at ~1
    audio-s/s, where one decimal would hide the ratio the row prints beside it."""
    return f"{speed:,.1f}" if speed >= 10 else f"{speed:.3g}"


def format_row(shape, name, audio_seconds, ours_s, hf_s, ours_mem, hf_mem, flops, device) -> str:
    ours_speed, hf_speed = audio_seconds / ours_s, audio_seconds / hf_s
    row = f"| {shape} | {name} | {audio_rate(ours_speed)} | {audio_rate(hf_speed)} | {ours_speed / hf_speed:.2f}x |"
    peak = peak_flops(device)
    if peak:
        row += f" {100 * flops / ours_s / peak:.1f}% | {100 * flops / hf_s / peak:.1f}% |"
        row += f" {ours_mem / audio_seconds * 1024:.0f} | {hf_mem / audio_seconds * 1024:.0f} |"
    return row


def breakdown(model, x, mask, labels, amp, device, args) -> list[str]:
    """Where our pretraining step spends its time. Each part runs forward + backward on its
    own, from the (detached) output of the part before it, so no number is a difference of
    two noisy timings."""
    from unispeech.modeling.losses import contrastive_loss_per_row, ctc_loss_per_row
    from unispeech.modeling.masking import sample_negative_indices

    opt = optimizer_for(model, device)
    encoder = model.unispeech
    with torch.no_grad(), amp():
        conv_out = encoder.feature_extractor(x)  # (B, C, T)
        projected, normed = encoder.feature_projection(conv_out.transpose(1, 2))
    b, t, _ = projected.shape
    frames = model.get_feat_extract_output_lengths(mask.sum(-1))
    frame_mask = torch.arange(t, device=device)[None] < frames[:, None]
    masked = frame_mask & (torch.rand(b, t, device=device) < 0.5)

    def conv_part():
        with amp():
            out = encoder.feature_extractor(x)
        out.float().mean().backward()

    def transformer_part():
        hidden = projected.detach().requires_grad_()
        with amp():
            out, _, _ = encoder.encoder(hidden, frame_mask)
        out.float().mean().backward()

    def quantizer_and_losses_part():
        context = torch.randn(b, t, projected.shape[-1], device=device, requires_grad=True)
        with amp():
            quantized = model.quantizer(normed.detach(), masked)
            targets = model.project_hid(model.project_q(quantized.codevectors))
            negatives = sample_negative_indices(frames, t, model.config.num_negatives)
            rows, _ = contrastive_loss_per_row(context, targets, quantized.indices, masked, negatives, 0.1)
            ctc = ctc_loss_per_row(model.ctc_proj(context), frames, labels, blank=0)
        (rows.sum() + ctc.sum()).backward()

    def optimizer_part():
        opt.step()

    parts = {
        "feature encoder": conv_part,
        "transformer": transformer_part,
        "quantizer + losses": quantizer_and_losses_part,
        "optimizer": optimizer_part,
    }
    timings = time_steps(*parts.values(), device=device, warmup=args.warmup, repeats=args.steps)
    total = sum(seconds for seconds, _ in timings)
    return [
        f"|   breakdown | {name} | {seconds * 1000:.1f} ms | {100 * seconds / total:.0f}% |"
        for name, (seconds, _) in zip(parts, timings)
    ]


def onnx_rows(name: str, model: torch.nn.Module, onnx_path: Path | None, batch: int, seconds: float, args) -> list[str]:
    """onnxruntime vs torch on the CPU, float32, same threads: the infer step (forward + greedy
    argmax) at `batch` x `seconds` (last row 80 % long) and at one utterance. `model` is exported
    to a temporary graph unless `onnx_path` holds its export already."""
    from unispeech.inference.onnx_export import ONNX_FILE, OnnxCTCModel, export_onnx

    cpu = torch.device("cpu")
    model = model.to(cpu).eval()
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_path is None:
            onnx_path = export_onnx(model, Path(tmp) / ONNX_FILE).path
        # no busy-waiting: onnxruntime's idle threads would spin on the cores torch's step needs
        session = OnnxCTCModel(onnx_path, num_threads=torch.get_num_threads(), spin=False)
        rows = []
        for rows_in_batch in dict.fromkeys((batch, 1)):  # the shape's batch, then one utterance
            x, mask, _ = make_batch(rows_in_batch, seconds, cpu)
            if rows_in_batch == 1:
                mask.fill_(1)  # one utterance has no padding
            x_np, mask_np = x.numpy(), mask.numpy()

            def ort_step(x_np=x_np, mask_np=mask_np):
                logits, _ = session.run(x_np, mask_np)
                logits.argmax(axis=-1)

            def torch_step(x=x, mask=mask):
                with torch.inference_mode():
                    model(x, attention_mask=mask).logits.argmax(dim=-1)

            timings = interleave(time_steps(ort_step, torch_step, device=cpu, warmup=args.warmup, repeats=args.steps))
            step = f"infer {rows_in_batch} x {seconds:g} s"
            rows.append(format_row(name, step, rows_in_batch * seconds, *timings, 0.0, cpu))
        return rows


def onnx_shape_rows(shape: str, args) -> list[str]:
    """`onnx_rows` for a random CTC model of `shape`, at the shape's batch."""
    _, batch, seconds = SHAPES[shape]
    return onnx_rows(shape, unispeech.UniSpeechForCTC(model_config(shape)), None, batch, seconds, args)


def onnx_model_rows(directory: str, args) -> list[str]:
    """`onnx_rows` for an exported model directory (its model.onnx when it has one), at 2 x 4 s."""
    from unispeech.inference.onnx_export import ONNX_FILE
    from unispeech.tasks.inference import load_trained_model

    model, _ = load_trained_model(directory)
    onnx_path = Path(directory) / ONNX_FILE
    return onnx_rows(Path(directory).name, model, onnx_path if onnx_path.is_file() else None, 2, 4.0, args)


def onnx_section(shapes: list[str], directory: str | None, args) -> Iterator[str]:
    """The onnxruntime rows of each shape, then of the exported model `directory`; a failure is one row."""
    cpu = torch.device("cpu")
    for shape in shapes:
        yield from guarded(shape, "onnxruntime", cpu, partial(onnx_shape_rows, shape, args), many=True)
    if directory:
        name = Path(directory).name
        yield from guarded(name, "onnxruntime", cpu, partial(onnx_model_rows, directory, args), many=True)


def data_throughput(max_batch_seconds: float, num_workers: int, epochs: int = 3) -> tuple[float, int]:
    """Audio seconds per second that the DataModule delivers (decode, resample, collate) on
    the demo corpus, batched like the model rows; the first epoch (worker start-up) is not
    counted."""
    from unispeech.data import UniSpeechDataModule, ensure_demo_corpus

    root = ensure_demo_corpus()
    data = UniSpeechDataModule(
        corpus=str(root / "en"),
        unlabeled_corpus=str(root / "es"),
        unlabeled_splits=["train", "other"],
        mode="pretraining",
        max_batch_seconds=max_batch_seconds,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=False,
    )
    data.prepare_data()
    data.setup("fit")
    loader = data.train_dataloader()
    audio, start = 0.0, 0.0
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch)
        if epoch == 1:
            audio, start = 0.0, time.perf_counter()
        for batch in loader:
            audio += batch["attention_mask"].sum().item() / SAMPLING_RATE
    return audio / (time.perf_counter() - start), num_workers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", nargs="+", choices=list(SHAPES), default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--breakdown", action="store_true", help="time each part of our pretraining step")
    parser.add_argument("--data", action="store_true", help="also time the input pipeline (demo corpus)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for --data")
    parser.add_argument("--peak-tflops", type=float, help="MFU denominator (default: by GPU name)")
    parser.add_argument(
        "--transcribe", action="store_true", help="also time transcription of files, ours vs transformers"
    )
    parser.add_argument("--onnx", action="store_true", help="also time onnxruntime vs torch CPU inference")
    parser.add_argument("--onnx-model", metavar="DIR", help="time onnxruntime vs torch for this exported model")
    args = parser.parse_args(argv)
    global PEAK_OVERRIDE
    PEAK_OVERRIDE = args.peak_tflops * 1e12 if args.peak_tflops else None
    device = torch.device(args.device)
    shapes = args.shape or (["base", "large"] if device.type == "cuda" else ["small"])
    torch.manual_seed(0)
    import transformers

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, device "
        f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'} "
        f"({torch.get_num_threads()} threads), precision {'bf16 autocast' if device.type == 'cuda' else 'float32'}"
    )
    print("MFU = analytic forward FLOPs x (3 for training, 1 for inference) / step time / peak bf16 FLOP/s")
    print(
        "forward FLOPs = 2 x multiply-adds of the 7 convs, feature projection, positional conv, "
        "L x (8 H^2 T + 4 T^2 H + 4 H I T), quantizer logits"
    )
    header = "| shape | step | ours audio-s/s | transformers audio-s/s | ratio |"
    if device.type == "cuda":
        header += " ours MFU | transformers MFU | ours step MiB/audio-s | transformers step MiB/audio-s |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for shape in shapes:
        for row in rows_or_failure(shape, device, run_shape(shape, args, device)):
            print(row, flush=True)
    if args.transcribe:
        from benchmark_transcribe import transcribe_rows

        print("\ntranscribe: audio-s/s (real-time factor) from MP3 files to text, decoding included")
        for row in rows_or_failure(shapes[0], device, transcribe_rows(shapes[0], device)):
            print(row, flush=True)
    if args.onnx or args.onnx_model:
        print("\nonnxruntime vs torch, CPU inference (forward + greedy argmax, float32, same threads): audio-s/s")
        print("| model | step | onnxruntime audio-s/s | torch audio-s/s | ratio |")
        print("|---|---|---|---|---|")
        for row in onnx_section(shapes if args.onnx else [], args.onnx_model, args):
            print(row, flush=True)
    if args.data:
        _, batch, seconds = SHAPES[shapes[0]]
        speed, workers = data_throughput(batch * seconds, args.workers)
        print(
            f"\ninput pipeline: {speed:,.0f} audio-s/s delivered with {workers} workers "
            f"(batches of <= {batch * seconds:.0f} s); compare with the step rows above"
        )


if __name__ == "__main__":
    main()
