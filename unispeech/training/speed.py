"""The training fast path, each lever behind its own switch (conf/callbacks/default.yaml).

- `compile`: `torch.compile` of the repeated blocks (each Transformer layer, the conv
  feature encoder) rather than of the whole model: one layer graph serves all layers, so
  compilation takes seconds rather than minutes, and the random sampling code (masks,
  negatives, Gumbel noise drawn from a `torch.Generator`) stays eager. Shapes are marked
  dynamic: bucketed batches vary in length. "auto" compiles on CUDA only; on a CPU the
  compile time outweighs what short runs gain.
- `activation_checkpointing`: recompute Transformer activations in backward (bigger batches
  in the same memory).
Fused AdamW on CUDA is chosen by the optimizer builder (`tasks/optim.py`).
"""

from __future__ import annotations

import logging

import lightning as L
from torch import nn

from unispeech.modeling.feature_encoder import FeatureEncoder
from unispeech.modeling.transformer import TransformerLayer

logger = logging.getLogger(__name__)


def compile_regions(model: nn.Module, dynamic: bool = True) -> int:
    """Compile, in place, every Transformer layer and the feature encoder; returns how many
    modules were compiled. Parameter names and state dicts are unchanged."""
    compiled = 0
    for module in model.modules():
        if isinstance(module, (TransformerLayer, FeatureEncoder)):
            module.compile(dynamic=dynamic)
            compiled += 1
    return compiled


class SpeedUps(L.Callback):
    def __init__(self, compile: bool | str = "auto", activation_checkpointing: bool = False) -> None:
        if compile not in (True, False, "auto"):
            raise ValueError(f"callbacks.speed.compile must be true, false or auto, got {compile!r}")
        self.compile = compile
        self.activation_checkpointing = bool(activation_checkpointing)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        model = getattr(pl_module, "model", None)
        if model is None:
            return
        if self.activation_checkpointing:
            model.gradient_checkpointing_enable()
        on_cuda = trainer.strategy.root_device.type == "cuda"
        if self.compile is True or (self.compile == "auto" and on_cuda):
            count = compile_regions(model)
            logger.info("torch.compile: %d regions (Transformer layers, feature encoder)", count)
