"""The loss terms of UniSpeech, each per utterance so the caller can weight rows.

All math runs in float32, whatever the autocast dtype: log-softmax, CTC, cosine
similarities and the contrastive cross-entropy lose too much in bf16/fp16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Label padding, and the label of unlabeled rows: the losses skip it (any negative label is
# skipped; -100 is the value `torch` and `transformers` use). Collation and decoding use it too.
IGNORE_INDEX = -100


def contrastive_loss_per_row(
    context: torch.Tensor,
    targets: torch.Tensor,
    target_codes: torch.Tensor,
    mask_time_indices: torch.Tensor,
    negative_indices: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE over masked frames: each context vector c_t must pick its own target q_t
    among q_t and K distractors q_n, with logits cos(c_t, ·)/κ.

    context, targets: (B, T, H); target_codes: (B, T, G) codebook indices of the targets;
    mask_time_indices: (B, T) bool; negative_indices: (B, T, K) indices into the flat B·T axis.
    Returns the summed cross-entropy per row (B,) and the number of masked frames per row
    where the positive scored highest (B,).

    Instead of gathering K copies of H-dim targets per frame, all cosine similarities of a
    row are one batched product (B, T, H) × (B, H, T); the K distractors are then picked
    from that (B, T, T) table.
    """
    b, t, _ = context.shape
    c = F.normalize(context.float(), dim=-1, eps=1e-8)
    q = F.normalize(targets.float(), dim=-1, eps=1e-8)
    similarity = torch.bmm(c, q.transpose(1, 2))  # (B, T, T): cos(c_i, q_j)

    local = negative_indices - (torch.arange(b, device=context.device) * t)[:, None, None]  # (B, T, K)
    positive = similarity.diagonal(dim1=1, dim2=2)[..., None]  # (B, T, 1)
    negative = similarity.gather(2, local)  # (B, T, K)

    # a distractor with the same codes as the positive is the same vector: not a negative
    flat_codes = target_codes.reshape(b * t, -1)
    same = (flat_codes[negative_indices] == target_codes[:, :, None, :]).all(-1)  # (B, T, K)
    negative = negative.masked_fill(same, float("-inf"))

    logits = torch.cat([positive, negative], dim=-1) / temperature  # (B, T, 1+K)
    frame_loss = torch.logsumexp(logits, dim=-1) - logits[..., 0]  # (B, T)
    frame_loss = frame_loss.masked_fill(~mask_time_indices, 0.0)
    correct = (logits.argmax(dim=-1) == 0) & mask_time_indices
    return frame_loss.sum(dim=1), correct.sum(dim=1)


def diversity_loss(perplexity: torch.Tensor, num_codevectors: int) -> torch.Tensor:
    """(G·V − perplexity) / (G·V): 0 when every codebook entry is used equally."""
    return (num_codevectors - perplexity) / num_codevectors


def ctc_loss_per_row(
    logits: torch.Tensor,
    frame_lengths: torch.Tensor,
    labels: torch.Tensor,
    blank: int,
    zero_infinity: bool = False,
) -> torch.Tensor:
    """CTC negative log-likelihood of each row (B,). `labels` is (B, L), padded with IGNORE_INDEX;
    a row with no label gets the (finite) likelihood of the all-blank path, which callers
    weight by zero."""
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, C)
    valid = labels >= 0
    target_lengths = valid.sum(-1)
    targets = labels.masked_select(valid)
    return F.ctc_loss(
        log_probs,
        targets,
        frame_lengths,
        target_lengths,
        blank=blank,
        reduction="none",
        zero_infinity=zero_infinity,
    )
