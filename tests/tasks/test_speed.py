"""The training fast path: compiled regions compute what the eager model computes."""

from types import SimpleNamespace

import pytest
import torch

from tests.modeling.modeling_fixtures import tiny_config
from unispeech import UniSpeechForPreTraining
from unispeech.training.speed import SpeedUps, compile_regions


def tiny_model() -> UniSpeechForPreTraining:
    torch.manual_seed(0)
    return UniSpeechForPreTraining(tiny_config()).train()


@pytest.mark.slow
def test_compiled_regions_match_eager_in_loss_and_gradients():
    x = torch.randn(2, 12000, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 12000, dtype=torch.long)
    mask[1, 9000:] = 0
    labels = torch.tensor([[1, 2, 3], [4, -100, -100]])
    eager, compiled = tiny_model(), tiny_model()
    assert compile_regions(compiled) == 3  # two Transformer layers + the feature encoder
    results = []
    for model in (eager, compiled):
        out = model(x, mask, labels=labels, generator=torch.Generator().manual_seed(1))
        out.loss.backward()
        results.append((out.loss.detach(), model.unispeech.encoder.layers[1].feed_forward.output_dense.weight.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-3, atol=1e-5)
    # state dict names are untouched: checkpoints of a compiled run load anywhere
    assert compiled.state_dict().keys() == eager.state_dict().keys()


def test_speedups_callback_switches():
    model = tiny_model()
    cpu_trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    SpeedUps(compile="auto", activation_checkpointing=True).setup(cpu_trainer, SimpleNamespace(model=model), "fit")
    assert model.unispeech.encoder.gradient_checkpointing is True
    assert model.unispeech.encoder.layers[0]._compiled_call_impl is None  # "auto" does not compile on CPU
    with pytest.raises(ValueError, match="compile"):
        SpeedUps(compile="yes")
