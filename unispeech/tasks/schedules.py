"""Learning-rate schedules used by the UniSpeech recipes, as LambdaLR multipliers.

Each returns a factor of the peak learning rate for an optimizer step, so it composes with
any optimizer and is restored exactly from a checkpoint (LambdaLR only stores the step).
The task configs name them with ``_target_`` (``unispeech.tasks.schedules.polynomial``,
``tri_stage``, ``constant``) and ``_partial_: true``; the task passes the optimizer and the
run's length.
"""

from __future__ import annotations

import math
import warnings

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def polynomial_decay_factor(
    step: int, warmup_steps: int, total_steps: int, power: float = 1.0, end_factor: float = 0.0
) -> float:
    """Linear warm-up to 1, then polynomial decay to ``end_factor`` at ``total_steps``.

    This is fairseq's ``polynomial_decay`` schedule used for UniSpeech/wav2vec2 pretraining.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if step >= total_steps:
        return end_factor
    remaining = 1.0 - (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return end_factor + (1.0 - end_factor) * remaining**power


def tri_stage_factor(
    step: int,
    total_steps: int,
    warmup_ratio: float = 0.1,
    hold_ratio: float = 0.4,
    decay_ratio: float = 0.5,
    init_factor: float = 0.01,
    final_factor: float = 0.05,
) -> float:
    """fairseq's tri-stage schedule: linear warm-up, hold at peak, exponential decay.

    The decay stage goes from 1 to ``final_factor`` (0.05 in the paper) and then stays there.
    """
    if abs(warmup_ratio + hold_ratio + decay_ratio - 1.0) > 1e-6:
        raise ValueError(
            f"scheduler ratios must sum to 1, got warmup={warmup_ratio} hold={hold_ratio} decay={decay_ratio}"
        )
    warmup = int(total_steps * warmup_ratio)
    hold = int(total_steps * hold_ratio)
    decay = max(1, total_steps - warmup - hold)
    if step < warmup:
        return init_factor + (1.0 - init_factor) * step / max(1, warmup)
    step -= warmup
    if step < hold:
        return 1.0
    step -= hold
    if step <= decay:
        # exp(-k * t) with k chosen so that the factor reaches final_factor at the end of decay
        return math.exp(math.log(final_factor) * step / decay)
    return final_factor


def linear_ramp_factor(step: int, total_steps: int, start_fraction: float, end_fraction: float) -> float:
    """0 before ``start_fraction`` of the run, then linearly up to 1 at ``end_fraction``."""
    start, end = start_fraction * total_steps, end_fraction * total_steps
    if step <= start:
        return 0.0
    if step >= end:
        return 1.0
    return (step - start) / (end - start)


def geometric_decay_per_step(start: float, end: float, steps: float) -> float:
    """The per-step factor d with start · d^steps = end (a run-length-relative decay)."""
    return (end / start) ** (1.0 / max(1.0, steps))


# -- schedulers, built by Hydra (`_target_` + `_partial_: true`) and completed by the task with
# the optimizer and the run's length: `scheduler(optimizer, total_steps=N)` ---------------------
def polynomial(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_fraction: float | None = None,
    power: float = 1.0,
    end_factor: float = 0.0,
) -> LambdaLR:
    """fairseq's polynomial decay with a linear warm-up given in updates (``warmup_steps``) or
    as a fraction of the run (``warmup_fraction``): one config fits a 500-update demo and a
    400k-update run."""
    warmup = int(warmup_steps or 0)
    if warmup_fraction is not None:
        if warmup:
            raise ValueError("scheduler: set warmup_steps or warmup_fraction, not both")
        if not 0.0 <= float(warmup_fraction) < 1.0:
            raise ValueError(f"scheduler.warmup_fraction={warmup_fraction} must be in [0, 1)")
        warmup = int(round(float(warmup_fraction) * total_steps))
    if warmup >= total_steps:
        warnings.warn(
            f"scheduler: the warm-up ({warmup} updates) is as long as the run ({total_steps}): the learning "
            "rate never reaches its peak; shorten warmup_steps or use warmup_fraction",
            stacklevel=2,
        )
    power, end_factor = float(power), float(end_factor)
    return LambdaLR(optimizer, lambda s: polynomial_decay_factor(s, warmup, total_steps, power, end_factor))


def tri_stage(optimizer: Optimizer, total_steps: int, **shape: float) -> LambdaLR:
    """fairseq's tri-stage schedule (the paper's fine-tuning). ``shape``: the keyword
    arguments of `tri_stage_factor` (warmup/hold/decay ratios, init and final factors)."""
    shape = {key: float(value) for key, value in shape.items()}
    tri_stage_factor(0, total_steps, **shape)  # unknown keys and bad ratios fail now, not at step 0 of training
    return LambdaLR(optimizer, lambda s: tri_stage_factor(s, total_steps, **shape))


def constant(optimizer: Optimizer, total_steps: int) -> LambdaLR:
    """The peak learning rate throughout."""
    return LambdaLR(optimizer, lambda s: 1.0)
