"""Span masks and negatives: inside the real frames, reproducible, the right amount."""

import torch

from unispeech.modeling.masking import compute_mask_indices, sample_negative_indices


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_spans_stay_inside_each_utterance_and_cover_about_mask_prob():
    lengths = torch.tensor([400, 250, 60, 12])
    mask = compute_mask_indices((4, 400), 0.65, 10, lengths, min_masks=2, generator=gen(0))
    assert mask.shape == (4, 400) and mask.dtype == torch.bool
    frames = torch.arange(400)[None]
    assert not (mask & (frames >= lengths[:, None])).any()
    # overlapping spans mask a little less than mask_prob; fairseq sees ~0.49 at p=0.65
    fraction = mask[0].float().mean().item()
    assert 0.35 < fraction < 0.65
    # at least min_masks spans of length 10 even in a short row
    assert mask[3].sum() >= 10


def test_masks_are_reproducible_from_a_generator_and_vary_with_its_seed():
    lengths = torch.tensor([300, 200])
    a = compute_mask_indices((2, 300), 0.5, 10, lengths, generator=gen(7))
    b = compute_mask_indices((2, 300), 0.5, 10, lengths, generator=gen(7))
    c = compute_mask_indices((2, 300), 0.5, 10, lengths, generator=gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_masks_come_in_whole_spans():
    mask = compute_mask_indices((1, 1000), 0.05, 10, generator=gen(1))[0].int()
    edges = torch.diff(torch.cat([torch.zeros(1, dtype=torch.int32), mask, torch.zeros(1, dtype=torch.int32)]))
    starts, ends = (edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten()
    assert len(starts) >= 1 and ((ends - starts) % 10 == 0).all()  # runs are unions of 10-frame spans


def test_zero_probability_masks_nothing():
    assert not compute_mask_indices((3, 50), 0.0, 10, generator=gen(0)).any()


def test_negatives_are_real_frames_of_the_same_utterance_never_the_positive():
    lengths = torch.tensor([50, 20, 3])
    t, k = 50, 40
    neg = sample_negative_indices(lengths, t, k, generator=gen(0))
    assert neg.shape == (3, t, k)
    row = neg // t
    local = neg % t
    assert torch.equal(row, torch.arange(3)[:, None, None].expand_as(row))
    assert (local < lengths[:, None, None]).all()  # never a padded frame
    positive = torch.arange(t)[None, :, None]
    real = torch.arange(t)[None, :] < lengths[:, None]
    assert not ((local == positive) & real[..., None]).any()  # never the positive
    # uniform over the row: 2,000 draws reach every one of its 50 frames
    assert set(local[0].flatten().tolist()) == set(range(50))
