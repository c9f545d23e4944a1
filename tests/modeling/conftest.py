import pytest
import torch


@pytest.fixture
def padded_batch():
    """Three utterances of 1.0, 0.6 and 0.35 s, zero padded, with their attention mask."""
    g = torch.Generator().manual_seed(0)
    lengths = [16000, 9600, 5600]
    x = torch.zeros(3, 16000)
    mask = torch.zeros(3, 16000, dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, generator=g)
        mask[i, :n] = 1
    return x, mask
