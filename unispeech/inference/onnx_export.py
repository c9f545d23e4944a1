"""ONNX export of a `UniSpeechForCTC`, and `OnnxCTCModel`, which runs the exported graph with onnxruntime.

The graph (``model.onnx``, written beside the Hugging Face files of ``python -m unispeech.export --onnx``):

- inputs ``input_values`` float32 (batch, samples): 16 kHz audio, already normalised as
  ``preprocessor_config.json`` says (``do_normalize``: zero mean, unit variance per utterance over
  its real samples); ``attention_mask`` int64 (batch, samples): 1 on real samples, 0 on padding.
  The mask is not optional: an unpadded batch passes all ones, which gives the same logits as
  no mask in torch, so one graph serves both cases.
- outputs ``logits`` float32 (batch, frames, vocab) and ``output_lengths`` int64 (batch,): the
  real frames of each row (the frames after them are padding, to be ignored when decoding).

Batch and time are dynamic axes. The graph comes from the ``torch.export`` (dynamo) exporter with
``dynamic_shapes``: the model has no data-dependent Python control flow at inference, and
TorchScript tracing, the older path, is deprecated since torch 2.9. The export checks itself:
onnxruntime and torch run a padded probe batch of another size than the traced one, and their
largest logit difference is reported (and must stay within a tolerance).

Needs the ``onnx`` extra (``pip install 'unispeech[onnx]'``): onnx, onnxscript (the exporter's
translator) and onnxruntime. Running a graph needs only onnxruntime.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unispeech.data.audio import SAMPLING_RATE
from unispeech.data.feature_extractor import CONFIG_NAME as PREPROCESSOR_CONFIG, UniSpeechFeatureExtractor
from unispeech.modeling import UniSpeechConfig, UniSpeechForCTC

ONNX_INSTALL_HINT = "pip install 'unispeech[onnx]'"
ONNX_FILE = "model.onnx"
INPUT_NAMES = ("input_values", "attention_mask")
OUTPUT_NAMES = ("logits", "output_lengths")
# the torch.export-based exporter translates to opset 18 and later (20 by default in torch 2.13)
MIN_OPSET = 18
# onnxruntime vs torch, largest absolute logit difference allowed by the check after export,
# per unit of the largest logit (float32 sums in another order: 1e-6 to 2e-5 of it, measured)
VERIFY_TOLERANCE = 1e-4
# graph metadata (onnx metadata_props) that OnnxCTCModel reads back
META_SAMPLING_RATE, META_RECEPTIVE_FIELD, META_FRAME_STRIDE = (
    "unispeech.sampling_rate",
    "unispeech.receptive_field",
    "unispeech.frame_stride",
)


class MissingOnnxExtra(ImportError):
    """A package of the ``onnx`` extra is not installed; the message names the install command."""


class OnnxMismatch(RuntimeError):
    """onnxruntime's outputs on the probe batch are not torch's."""


def require_onnx_extra(purpose: str = "ONNX export") -> None:
    """Fail early, in one line naming the install command, when a package of the extra is missing."""
    packages = ("onnx", "onnxscript", "onnxruntime") if purpose == "ONNX export" else ("onnxruntime",)
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError:
            raise MissingOnnxExtra(f"{purpose} needs the onnx extra: {ONNX_INSTALL_HINT}") from None


# -- frame geometry ----------------------------------------------------------------------------


def receptive_field(config: UniSpeechConfig) -> int:
    """Samples that make the first frame (400 = 25 ms with the default convs)."""
    return samples_for_frames(config, 1)


def frame_stride(config: UniSpeechConfig) -> int:
    """Samples from one frame to the next (320 = 20 ms with the default convs)."""
    return int(np.prod(config.conv_stride))


def samples_for_frames(config: UniSpeechConfig, frames: int) -> int:
    """The fewest samples from which the feature encoder makes `frames` frames."""
    samples = frames
    for kernel, stride in zip(reversed(config.conv_kernel), reversed(config.conv_stride)):
        samples = (samples - 1) * stride + kernel
    return samples


# -- export ------------------------------------------------------------------------------------


class CTCGraph(nn.Module):
    """What the ONNX graph computes: (audio, mask) → (logits, frames per row)."""

    def __init__(self, model: UniSpeechForCTC) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(input_values, attention_mask=attention_mask, return_dict=True).logits  # (B, T, V)
        output_lengths = self.model._frame_lengths(attention_mask, input_values, logits.shape[1])  # (B,)
        return logits, output_lengths


@dataclass(frozen=True)
class OnnxExport:
    """Where the graph went and how close onnxruntime came to torch on the probe batch."""

    path: Path
    max_abs_diff: float
    max_abs_logit: float
    probe_lengths: tuple[int, ...]

    def summary(self) -> str:
        lengths = ", ".join(str(n) for n in self.probe_lengths)
        return (
            f"{self.path}: onnxruntime vs torch, max abs logit difference {self.max_abs_diff:.2e} "
            f"(largest logit {self.max_abs_logit:.1f}) on a padded probe batch of {len(self.probe_lengths)} "
            f"rows ({lengths} samples)"
        )


def export_onnx(
    model: UniSpeechForCTC, path: str | os.PathLike, opset: int | None = None, verify: bool = True
) -> OnnxExport:
    """Write `model` as an ONNX graph at `path` (see the module docstring) and, with `verify`,
    run a probe batch through onnxruntime and torch: OnnxMismatch if they differ by more than
    VERIFY_TOLERANCE x the largest logit."""
    require_onnx_extra()
    if not isinstance(model, UniSpeechForCTC):
        raise ValueError(f"ONNX export takes a UniSpeechForCTC (a fine-tuned CTC model), not {type(model).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    config = model.config
    batch = torch.export.Dim("batch")
    # torch.export proves shape facts for 2+ frames only (one frame makes size-1 broadcasts of
    # its own): the graph is exported for 2+ frames; 1 frame still runs (tested)
    samples = torch.export.Dim("samples", min=samples_for_frames(config, 2))
    example = _probe_batch((SAMPLING_RATE, SAMPLING_RATE * 3 // 4), seed=0)
    with warnings.catch_warnings(), _quiet_loggers("torch.onnx", "onnxscript", "onnx_ir"):
        # the exporter's notes on its own internals (pytree deprecations, merged axis names,
        # torchvision operators it cannot register, each optimizer rewrite): nothing to act on
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            CTCGraph(model).eval(),
            example,
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={name: {0: batch, 1: samples} for name in INPUT_NAMES},
            opset_version=opset,
            verbose=False,
        )
    _name_axes_and_describe(program, config)
    # weights inside model.onnx; past protobuf's 2 GiB cap the exporter moves them to model.onnx.data
    program.save(str(path), external_data=False)
    if not verify:
        return OnnxExport(path, float("nan"), float("nan"), ())
    return verify_onnx(model, path)


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Only errors from these loggers (and their children) while the block runs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _name_axes_and_describe(program, config: UniSpeechConfig) -> None:
    """Readable axis names (the exporter names the frames axis by its formula of `samples`), and
    the frame geometry as metadata of the graph."""
    graph = program.model.graph
    batch, samples = graph.inputs[0].shape
    frames = graph.outputs[0].shape[1]
    for name, axis in (("batch", batch), ("samples", samples), ("frames", frames)):
        if isinstance(axis, int):  # the model's code fixed a size while being traced
            raise RuntimeError(f"the exported graph has a fixed {name} axis ({axis}): not exportable with dynamic axes")
    program.rename_axes({batch: "batch", samples: "samples", frames: "frames"})
    program.model.metadata_props.update(
        {
            META_SAMPLING_RATE: str(SAMPLING_RATE),
            META_RECEPTIVE_FIELD: str(receptive_field(config)),
            META_FRAME_STRIDE: str(frame_stride(config)),
        }
    )


def _probe_batch(lengths: Sequence[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded normalised noise, right-padded to the longest of `lengths`: (B, S) float32, (B, S) int64."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(len(lengths), max(lengths), generator=generator)
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()
    return values * mask, mask


def verify_onnx(model: UniSpeechForCTC, path: str | os.PathLike) -> OnnxExport:
    """Run torch and onnxruntime on a padded probe batch whose size and lengths differ from the
    traced ones (so the dynamic axes are exercised); OnnxMismatch past the tolerance."""
    # 3 rows: 1.3 s, 0.8 s and a 3-frame one, none a multiple of the frame stride
    lengths = (20_800 + 123, 12_800 + 45, samples_for_frames(model.config, 3) + 7)
    values, mask = _probe_batch(lengths, seed=1)
    with torch.no_grad():
        expected, expected_lengths = CTCGraph(model.eval())(values, mask)
    logits, output_lengths = OnnxCTCModel(path).run(values.numpy(), mask.numpy())
    if not np.array_equal(output_lengths, expected_lengths.numpy()):
        raise OnnxMismatch(
            f"{path}: onnxruntime output_lengths {output_lengths} differ from torch's {expected_lengths.numpy()}"
        )
    max_abs_diff = float(np.abs(logits - expected.numpy()).max())
    max_abs_logit = float(expected.abs().max())
    report = OnnxExport(Path(path), max_abs_diff, max_abs_logit, lengths)
    if not max_abs_diff <= VERIFY_TOLERANCE * max(1.0, max_abs_logit):
        raise OnnxMismatch(f"{report.summary()}: more than the tolerance, {VERIFY_TOLERANCE:g} x max(1, largest logit)")
    return report


# -- running the graph ---------------------------------------------------------------------------


class OnnxCTCModel:
    """An exported graph in an onnxruntime CPU session.

        model = OnnxCTCModel("my-export")                       # a directory with model.onnx, or the file
        logits, lengths = model.logits_for([wave_a, wave_b])    # 16 kHz float waveforms: padded, normalised
        logits, lengths = model.run(input_values, attention_mask)  # or inputs prepared already

    `logits_for` prepares the batch as the ``preprocessor_config.json`` beside the graph says
    (as torch inference does); `run` takes (batch, samples) arrays as they are.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None, spin: bool = True) -> None:
        """`num_threads`: onnxruntime's intra-op threads (default: one per physical core). `spin`:
        its threads busy-wait for the next operator (onnxruntime's default, lowest latency); off,
        they sleep and leave the cores to whatever else runs in the process, e.g. torch."""
        require_onnx_extra("running an ONNX model")
        import onnxruntime

        path = Path(path)
        if path.is_dir():
            path = path / ONNX_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: export one with python -m unispeech.export --onnx")
        self.path = path
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = tuple(i.name for i in self.session.get_inputs())
        if names != INPUT_NAMES:
            raise ValueError(f"{path} takes inputs {names}, not {INPUT_NAMES}: not a graph of unispeech.export --onnx")
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.sampling_rate = int(metadata.get(META_SAMPLING_RATE, SAMPLING_RATE))
        self.receptive_field = int(metadata.get(META_RECEPTIVE_FIELD, 400))
        self.frame_stride = int(metadata.get(META_FRAME_STRIDE, 320))
        preprocessor = path.parent / PREPROCESSOR_CONFIG
        self.feature_extractor = (
            UniSpeechFeatureExtractor.from_pretrained(path.parent)
            if preprocessor.is_file()
            else UniSpeechFeatureExtractor(sampling_rate=self.sampling_rate)
        )

    def run(self, input_values: np.ndarray, attention_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, S) or (S,) prepared audio, and its (B, S) mask (all ones when None) →
        logits (B, T, V) float32 and output_lengths (B,) int64."""
        values = np.asarray(input_values, dtype=np.float32)
        if values.ndim == 1:
            values = values[None]
        if values.ndim != 2 or values.shape[0] == 0:
            raise ValueError(f"input_values must be (batch, samples) or (samples,), got shape {values.shape}")
        if attention_mask is None:
            mask = np.ones(values.shape, dtype=np.int64)
        else:
            mask = np.asarray(attention_mask).astype(np.int64)
            mask = mask[None] if mask.ndim == 1 else mask
            if mask.shape != values.shape:
                raise ValueError(f"attention_mask has shape {mask.shape}, input_values {values.shape}: they must match")
        if values.shape[1] < self.receptive_field:
            raise ValueError(
                f"input_values has {values.shape[1]} samples, fewer than one frame needs ({self.receptive_field})"
            )
        logits, output_lengths = self.session.run(list(OUTPUT_NAMES), {"input_values": values, "attention_mask": mask})
        return logits, output_lengths

    def logits_for(self, waveforms: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw 16 kHz waveforms (one, or a list of any lengths) → `run`'s logits and output_lengths."""
        features = self.feature_extractor(waveforms, return_tensors="np")
        return self.run(features["input_values"], features.get("attention_mask"))

    def __repr__(self) -> str:
        return f"OnnxCTCModel({str(self.path)!r})"
