"""The feature encoder gives the same frames however a batch is evaluated."""

import pytest
import torch

from unispeech.modeling.feature_encoder import FeatureEncoder

from modeling_fixtures import tiny_config


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_cpu_inference_row_by_row_equals_the_batched_pass(norm, padded_batch):
    x, _ = padded_batch
    encoder = FeatureEncoder(tiny_config(feat_extract_norm=norm)).eval()
    batched = encoder.encode(x)  # (B, C, T), one pass over the batch, with a graph
    with torch.no_grad():
        rows = encoder(x)  # the CPU inference path: one row at a time
    assert rows.shape == batched.shape
    torch.testing.assert_close(rows, batched.detach(), rtol=1e-5, atol=1e-6)


def test_a_frozen_encoder_takes_the_row_path_and_a_trainable_one_keeps_its_graph(padded_batch):
    x, _ = padded_batch
    encoder = FeatureEncoder(tiny_config())
    assert encoder.builds_graph(x)
    assert encoder(x).requires_grad
    encoder.freeze()
    assert not encoder.builds_graph(x)
    torch.testing.assert_close(encoder(x), encoder.encode(x), rtol=1e-5, atol=1e-6)
