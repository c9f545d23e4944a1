"""The UniSpeech objective: what it sums, what it ignores, where its gradients go."""

import pytest
import torch

from unispeech import UniSpeechForCTC, UniSpeechForPreTraining
from unispeech.modeling.losses import ctc_loss_per_row

from modeling_fixtures import tiny_config

LABELS = torch.tensor([[1, 2, 3, 4], [5, 6, 7, -100], [-100, -100, -100, -100]])


def run(model, batch, seed=0, **kwargs):
    x, mask = batch
    return model(x, attention_mask=mask, generator=torch.Generator().manual_seed(seed), **kwargs)


def test_overfits_one_batch(padded_batch):
    torch.manual_seed(0)
    model = UniSpeechForPreTraining(tiny_config()).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for step in range(40):
        out = run(model, padded_batch, seed=step % 4, labels=LABELS)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_loss_is_the_weighted_sum_of_its_parts(padded_batch):
    torch.manual_seed(0)
    model = UniSpeechForPreTraining(tiny_config()).train()
    outs = {a: run(model, padded_batch, labels=LABELS, alpha=a) for a in (0.0, 0.5, 1.0)}
    # same generator seed → same masks, negatives, replacements and Gumbel noise
    assert torch.equal(outs[0.0].mask_time_indices, outs[1.0].mask_time_indices)
    # linear in α
    torch.testing.assert_close(outs[0.5].loss, (outs[0.0].loss + outs[1.0].loss) / 2)
    out = outs[0.5]
    n = out.num_masked_frames
    assert n == out.mask_time_indices.sum() and n > 0

    # the CTC part is the CTC of the labeled rows only, recomputed from the returned logits
    x, mask = padded_batch
    frames = model.get_feat_extract_output_lengths(mask.sum(-1))
    rows = ctc_loss_per_row(out.ctc_logits, frames, LABELS, blank=0)
    torch.testing.assert_close(out.ctc_loss * n, rows[:2].sum())

    # at α=1 the labeled rows contribute CTC only, the unlabeled row its self-supervised loss
    unlabeled = out.mask_time_indices[2].sum()
    assert unlabeled > 0
    assert outs[1.0].loss * n > rows[:2].sum()  # + the unlabeled row's contrastive term


def test_unlabeled_rows_get_no_ctc_but_the_head_still_gets_a_gradient(padded_batch):
    model = UniSpeechForPreTraining(tiny_config()).train()
    a = run(model, padded_batch, labels=torch.full((3, 4), -100))
    b = run(model, padded_batch, labels=None)
    assert a.ctc_loss.item() == 0.0 and b.ctc_loss.item() == 0.0
    torch.testing.assert_close(a.loss, b.loss)
    b.loss.backward()
    # DDP without find_unused_parameters: every parameter has a gradient, zero here
    assert model.ctc_proj.weight.grad is not None
    assert model.ctc_proj.weight.grad.abs().max().item() == 0.0
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_gradients_reach_the_quantizer_through_the_ctc_branch(padded_batch):
    labels = torch.tensor([[1, 2, 3, 4], [5, 6, 7, -100], [8, 9, -100, -100]])  # all rows labeled
    for replace_prob, expect_gradient in ((0.5, True), (0.0, False)):
        torch.manual_seed(0)
        model = UniSpeechForPreTraining(tiny_config(replace_prob=replace_prob)).train()
        out = run(model, padded_batch, labels=labels, alpha=1.0)  # α=1: labeled rows → CTC only
        out.loss.backward()
        grad = model.quantizer.weight_proj.weight.grad.abs().sum().item()
        assert (grad > 0) == expect_gradient, (replace_prob, grad)
        assert (model.quantizer.codevectors.grad.abs().sum().item() > 0) == expect_gradient


def test_perplexity_ignores_padding():
    model = UniSpeechForPreTraining(tiny_config()).eval()
    quantizer = model.quantizer
    features = torch.randn(2, 10, 16)
    frame_mask = torch.zeros(2, 10, dtype=torch.bool)
    frame_mask[0, :10] = True
    frame_mask[1, :4] = True
    changed = features.clone()
    changed[1, 4:] = torch.randn(6, 16) * 10  # only padded frames differ
    a = quantizer(features, frame_mask).perplexity
    b = quantizer(changed, frame_mask).perplexity
    assert a.item() == pytest.approx(b.item())
    unmasked = quantizer(changed).perplexity
    assert unmasked.item() != pytest.approx(a.item())


def test_codevector_perplexity_counts_masked_real_frames_only(padded_batch):
    model = UniSpeechForPreTraining(tiny_config()).eval()
    x, mask = padded_batch
    with torch.no_grad():
        out = model(x, mask, generator=torch.Generator().manual_seed(1))
        features = model.unispeech(x, mask).extract_features
        frames = model.get_feat_extract_output_lengths(mask.sum(-1))
        real = torch.arange(49)[None] < frames[:, None]
        masked = out.mask_time_indices
        assert masked.any() and not (masked & ~real).any()  # spans never reach into padding
        over_masked = model.quantizer(features, masked).perplexity
        over_all = model.quantizer(features, None).perplexity
    assert out.codevector_perplexity.item() == pytest.approx(over_masked.item())
    assert out.codevector_perplexity.item() != pytest.approx(over_all.item())


@pytest.mark.parametrize("cls", [UniSpeechForPreTraining, UniSpeechForCTC])
def test_bf16_autocast_on_cpu(cls, padded_batch):
    torch.manual_seed(0)
    model = cls(tiny_config()).train()
    labels = LABELS if cls is UniSpeechForPreTraining else LABELS.clamp(max=9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = (
            run(model, padded_batch, labels=labels)
            if cls is UniSpeechForPreTraining
            else model(padded_batch[0], padded_batch[1], labels=labels)
        )
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name


def test_labels_out_of_range_are_rejected(padded_batch):
    x, mask = padded_batch
    with pytest.raises(ValueError, match="vocab_size"):
        UniSpeechForCTC(tiny_config())(x, mask, labels=torch.tensor([[10, 1], [1, 1], [1, 1]]))
    with pytest.raises(ValueError, match="num_ctc_classes"):
        UniSpeechForPreTraining(tiny_config())(x, mask, labels=torch.tensor([[12, 1], [1, 1], [1, 1]]))


def test_ctc_ignores_minus_100_and_reduction_options(padded_batch):
    x, mask = padded_batch
    torch.manual_seed(0)
    model = UniSpeechForCTC(tiny_config()).eval()
    full = torch.tensor([[1, 2, -100], [3, -100, -100], [4, 5, 6]])
    mean = model(x, mask, labels=full).loss
    model.config.ctc_loss_reduction = "sum"
    total = model(x, mask, labels=full).loss
    logits = model(x, mask).logits
    rows = ctc_loss_per_row(logits, model.get_feat_extract_output_lengths(mask.sum(-1)), full, blank=0)
    torch.testing.assert_close(total, rows.sum())
    torch.testing.assert_close(mean, (rows / torch.tensor([2.0, 1.0, 3.0])).mean())


def test_return_dict_false_gives_tuples(padded_batch):
    x, mask = padded_batch
    model = UniSpeechForCTC(tiny_config()).eval()
    loss, logits = model(x, mask, labels=torch.tensor([[1], [2], [3]]), return_dict=False)
    assert logits.shape == (3, 49, 10) and loss.ndim == 0


def test_layerdrop_is_identical_across_replicas_and_keeps_every_parameter_in_the_graph(padded_batch):
    config = tiny_config(layerdrop=0.5, num_hidden_layers=6)
    a, b = UniSpeechForPreTraining(config).train(), UniSpeechForPreTraining(config).train()
    draws_a = [a.unispeech.encoder.layers_to_skip() for _ in range(5)]
    draws_b = [b.unispeech.encoder.layers_to_skip() for _ in range(5)]
    assert draws_a == draws_b
    assert any(any(d) for d in draws_a) and not all(all(d) for d in draws_a)
    out = run(a, padded_batch, labels=LABELS)
    out.loss.backward()
    assert [n for n, p in a.named_parameters() if p.grad is None] == []


def test_gradient_checkpointing_gives_the_same_gradients(padded_batch):
    torch.manual_seed(0)
    model = UniSpeechForPreTraining(tiny_config(hidden_dropout=0.1, attention_dropout=0.1)).train()
    grads = []
    for enabled in (False, True):
        model.zero_grad()
        model.gradient_checkpointing_enable(enabled)
        torch.manual_seed(1)  # same dropout draws (checkpoint replays the RNG state)
        run(model, padded_batch, labels=LABELS).loss.backward()
        grads.append(model.unispeech.encoder.layers[0].attention.q_proj.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize(
    "cls", ["UniSpeechModel", "UniSpeechForCTC", "UniSpeechForPreTraining", "UniSpeechForSequenceClassification"]
)
def test_freeze_feature_encoder_stops_only_its_gradients(cls, padded_batch):
    import unispeech

    model = getattr(unispeech, cls)(tiny_config())
    model.freeze_feature_encoder()
    encoder = model if cls == "UniSpeechModel" else model.unispeech
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if "feature_extractor." in n}
    assert encoder.encoder.layers[0].attention.q_proj.weight.requires_grad
