"""Training-health bookkeeping: skipped non-finite updates and codebook-collapse episodes.

Plain Python state, no Lightning: the tasks feed these numbers once per update and decide
what to log, warn or raise. Keeping the rules here makes them testable without a Trainer
and keeps the messages (what happened, at which steps, what to try) in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import torch

logger = logging.getLogger("unispeech.diagnostics")


def total_grad_norm(parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """The 2-norm over every gradient that exists (frozen or dropped ones are None).

    Non-finite as soon as one gradient entry is: the one number that decides whether an
    update is safe. Stays on the device (no sync); 0 when there is no gradient at all.
    """
    return torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None], norm_type=2.0)


def check_limit(name: str, value: int | None) -> int | None:
    """``value`` as an int ≥ 1, or None (no limit)."""
    if value is None:
        return None
    if int(value) != value or int(value) < 1:
        raise ValueError(f"{name}={value} must be a whole number >= 1, or null (no limit)")
    return int(value)


def check_fraction(name: str, value: float | None) -> float | None:
    """``value`` as a float in (0, 1], or None (disabled)."""
    if value is None:
        return None
    if not 0.0 < float(value) <= 1.0:
        raise ValueError(f"{name}={value} must be in (0, 1], or null (disabled)")
    return float(value)


@dataclass
class NonFiniteUpdates:
    """Updates skipped because a gradient was NaN/inf: the run's total and the current streak.

    ``limit`` consecutive skipped updates stop the run (None: skip without ever stopping).
    """

    limit: int | None = None
    total: int = 0
    streak_first: int | None = None  # step of the first skipped update of the current streak
    streak_length: int = 0

    def record(self, step: int, finite: bool) -> None:
        if finite:
            self.streak_first, self.streak_length = None, 0
            return
        self.total += 1
        if self.streak_length == 0:
            self.streak_first = step
        self.streak_length += 1

    @property
    def limit_reached(self) -> bool:
        return self.limit is not None and self.streak_length >= self.limit

    def skipped_message(self, step: int, loss_finite: bool) -> str:
        cause = "the loss was NaN/inf" if not loss_finite else "the loss was finite, its gradients were not"
        return (
            f"step {step}: non-finite gradients ({cause}); update skipped "
            f"({self.streak_length} in a row, {self.total} in this run)"
        )

    def stop_message(self, step: int, loss_finite: bool, precision: str) -> str:
        """What happened, at which steps, what the weights are now, and what to try."""
        first = self.streak_first if self.streak_first is not None else step
        cause = (
            "the loss itself was NaN/inf at the last of them"
            if not loss_finite
            else "the loss was finite at the last of them: the gradients overflowed"
        )
        weights = f"those after step {first - 1}" if first > 0 else "the initial ones"
        return (
            f"training stopped at step {step}: {self.streak_length} updates in a row (steps {first} to {step}) "
            f"had non-finite (NaN/inf) gradients; {cause}. None of them changed the weights or the optimizer "
            f"state, so the weights are {weights} ({self.total} updates skipped in this run). "
            "What to try: a lower learning rate or a longer warm-up (task.module.optimizer.lr, "
            f"task.module.scheduler); {precision_hint(precision)}gradient clipping (trainer.gradient_clip_val); "
            "check the data of those steps (empty, silent or clipped audio, labels outside the vocabulary); "
            "task.module.max_consecutive_nonfinite=null keeps skipping such updates without stopping."
        )

    def state_dict(self) -> dict[str, int | None]:
        return {"total": self.total, "streak_first": self.streak_first, "streak_length": self.streak_length}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        self.total = int(state.get("total") or 0)
        self.streak_first = state.get("streak_first")
        self.streak_length = int(state.get("streak_length") or 0)


def precision_hint(precision: str) -> str:
    """What to try about ``trainer.precision`` (nothing at full precision), ending in "; "."""
    if "bf16" in precision:
        return f"trainer.precision={precision}: try 32-true to rule precision out; "
    if "16" in precision:
        return (
            f"trainer.precision={precision} (fp16) overflows easily: use bf16-mixed where the GPU supports it, "
            "or 32-true to rule precision out; "
        )
    return ""


@dataclass
class CodebookCollapseWatch:
    """Codebook collapse episodes: perplexity below ``fraction`` of G·V.

    An episode starts at the first update below the threshold (the one warning) and ends at
    the first one back at or above it; a collapsed codebook does not warn at every step.
    """

    fraction: float | None
    num_codevectors: int  # G·V
    collapsed_since: int | None = None

    def update(self, step: int, perplexity: float, unused: int, temperature: float) -> str | None:
        """The warning when an episode starts at ``step``, else None."""
        if self.fraction is None:
            return None
        usage = perplexity / self.num_codevectors
        if usage >= self.fraction:
            if self.collapsed_since is not None:
                logger.info(
                    "codebook usage recovered at step %d: perplexity %.1f (%.1f%% of G·V = %d)",
                    step,
                    perplexity,
                    100 * usage,
                    self.num_codevectors,
                )
            self.collapsed_since = None
            return None
        if self.collapsed_since is not None:
            return None
        self.collapsed_since = step
        return (
            f"codebook collapse at step {step}: codevector perplexity {perplexity:.1f} of G·V = "
            f"{self.num_codevectors} entries (usage {usage:.1%} < codebook_collapse_fraction {self.fraction:.0%}); "
            f"{unused} entries picked by no frame of this batch; Gumbel temperature {temperature:.3f}. "
            "Try a larger model.diversity_loss_weight, a slower Gumbel anneal (task.module.gumbel) or a lower "
            "learning rate. Not repeated until the usage recovers."
        )
