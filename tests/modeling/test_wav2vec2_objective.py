"""With α = 0 our pretraining objective is wav2vec 2.0's: contrastive + diversity. Check it,
and its gradients, against transformers' Wav2Vec2ForPreTraining on the same weights, masks
and negatives (transformers has no UniSpeech loss to compare the CTC half with).

The two heads are parameterised differently. UniSpeech compares the context c_t with
project_hid(project_q(q_t)) in the hidden dimension. wav2vec 2.0 compares project_hid(c_t)
with project_q(q_t). The twin therefore gets an identity project_hid and, as its project_q,
the composition of ours. The losses are then the same function, and every other parameter's
gradient must match.
"""

import pytest
import torch

from unispeech import UniSpeechForPreTraining
from unispeech.modeling.checkpoint import to_hf_state_dict
from unispeech.modeling.masking import compute_mask_indices, sample_negative_indices

from modeling_fixtures import tiny_config

transformers = pytest.importorskip("transformers")
HEADS = ("project_q.", "project_hid.", "ctc_proj.")


def wav2vec2_twin(ours: UniSpeechForPreTraining):
    fields = {k: v for k, v in ours.config.to_dict().items() if k in transformers.Wav2Vec2Config().to_dict()}
    fields.pop("id2label", None), fields.pop("label2id", None)
    fields["proj_codevector_dim"] = ours.config.hidden_size
    theirs = transformers.Wav2Vec2ForPreTraining(transformers.Wav2Vec2Config(**fields))
    state = {
        k.replace("unispeech.", "wav2vec2.", 1): v
        for k, v in to_hf_state_dict(ours.state_dict()).items()
        if not k.startswith(HEADS)
    }
    h = ours.config.hidden_size
    w_q, b_q, w_hid, b_hid = (
        t.detach() for t in (ours.project_q.weight, ours.project_q.bias, ours.project_hid.weight, ours.project_hid.bias)
    )
    state.update(
        {
            "project_hid.weight": torch.eye(h),
            "project_hid.bias": torch.zeros(h),
            "project_q.weight": w_hid @ w_q,
            "project_q.bias": w_hid @ b_q + b_hid,
        }
    )
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return theirs


@pytest.mark.parametrize("norm,stable", [("group", False), ("layer", True)])
def test_contrastive_and_diversity_losses_and_gradients_match_wav2vec2(norm, stable, padded_batch):
    x, attention_mask = padded_batch
    torch.manual_seed(0)
    ours = UniSpeechForPreTraining(tiny_config(feat_extract_norm=norm, do_stable_layer_norm=stable, ctc_alpha=0.0))
    theirs = wav2vec2_twin(ours)
    # eval: no dropout, and both quantizers pick codes by plain argmax (no Gumbel noise)
    ours.eval(), theirs.eval()
    g = torch.Generator().manual_seed(0)
    frames = ours.get_feat_extract_output_lengths(attention_mask.sum(-1))
    mask = compute_mask_indices((3, 49), 0.5, 3, frames, 2, x.device, g)
    negatives = sample_negative_indices(frames, 49, ours.config.num_negatives, g)

    a = ours(x, attention_mask=attention_mask, mask_time_indices=mask, sampled_negative_indices=negatives)
    b = theirs(x, attention_mask=attention_mask, mask_time_indices=mask, sampled_negative_indices=negatives)
    n = mask.sum()
    # transformers sums over masked frames; we divide the sum by their number
    torch.testing.assert_close(a.contrastive_loss * n, b.contrastive_loss, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.diversity_loss * n, b.diversity_loss, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.loss * n, b.loss, rtol=1e-4, atol=1e-4)

    (a.loss * n).backward()
    b.loss.backward()
    theirs_params = dict(theirs.named_parameters())
    compared = 0
    for name, p in to_hf_state_dict(dict(ours.named_parameters())).items():
        if name.startswith(HEADS):
            continue
        q = theirs_params[name.replace("unispeech.", "wav2vec2.", 1)]
        if q.grad is None:
            assert p.grad is None or p.grad.abs().max() == 0, name
            continue
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
        compared += 1
    assert compared > 20
