"""Task-level properties that DDP and the recipes rely on, checked on synthetic batches."""

import pytest
import torch

from tests.tasks.conftest import compose_config
from unispeech.tasks import CTCFinetuningTask, PretrainingTask

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b", "c", "d"]


def tiny_model(**changes):
    return dict(compose_config([]).model) | {"layerdrop": 0.0} | changes


def batch(labeled=(True, True, False)):
    torch.manual_seed(0)
    b = len(labeled)
    labels = torch.full((b, 4), -100)
    for row, has in enumerate(labeled):
        if has:
            labels[row, :3] = torch.tensor([5, 6, 7])
    mask = torch.ones(b, 16000, dtype=torch.long)
    mask[-1, 12000:] = 0
    return {
        "input_values": torch.randn(b, 16000),
        "attention_mask": mask,
        "labels": labels,
        "labeled": torch.tensor(labeled),
        "ids": [str(i) for i in range(b)],
    }


def gradients(task, data):
    task.model.zero_grad()
    torch.manual_seed(1)
    generator = torch.Generator().manual_seed(2)
    out = task.model(
        data["input_values"], attention_mask=data["attention_mask"], labels=data["labels"], generator=generator
    )
    out.loss.backward()
    return {n: p.grad for n, p in task.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("labeled", [(True, True, False), (False, False, False)])
def test_pretraining_gives_every_parameter_a_gradient(labeled):
    # what DDP without find_unused_parameters needs, also for a batch without any label
    task = PretrainingTask(tiny_model(layerdrop=0.5), VOCAB)
    missing = [n for n, g in gradients(task, batch(labeled)).items() if g is None]
    assert missing == []


def test_feature_grad_mult_scales_only_the_feature_encoder():
    torch.manual_seed(0)
    full = PretrainingTask(tiny_model(), VOCAB, feature_grad_mult=1.0)
    scaled = PretrainingTask(tiny_model(), VOCAB, feature_grad_mult=0.1)
    scaled.model.load_state_dict(full.model.state_dict())
    data = batch()
    a, b = gradients(full, data), gradients(scaled, data)
    for name in a:
        expected = a[name] * (0.1 if "feature_extractor" in name else 1.0)
        torch.testing.assert_close(b[name], expected, rtol=1e-4, atol=1e-7, msg=name)
    assert any("feature_extractor" in n and a[n].abs().sum() > 0 for n in a)


def test_ctc_freezes_feature_encoder_and_transformer_for_the_first_updates(monkeypatch):
    task = CTCFinetuningTask(tiny_model(), VOCAB, freeze_transformer_steps=5)
    assert not any(p.requires_grad for p in task.model.unispeech.feature_extractor.parameters())
    grads = gradients(task, batch((True, True, True)))
    assert all(g is not None for g in grads.values())  # all reach DDP's all-reduce
    monkeypatch.setattr(CTCFinetuningTask, "global_step", property(lambda self: 4))  # still frozen
    task.on_before_optimizer_step(None)
    kept = [n for n, p in task.model.named_parameters() if p.grad is not None]
    assert kept and all(n.startswith("lm_head.") for n in kept)
    gradients(task, batch((True, True, True)))
    monkeypatch.setattr(CTCFinetuningTask, "global_step", property(lambda self: 5))  # unfrozen
    task.on_before_optimizer_step(None)
    assert all(p.grad is not None for p in task.model.parameters() if p.requires_grad)
