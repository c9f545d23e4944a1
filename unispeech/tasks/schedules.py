"""Learning-rate schedules used by the UniSpeech recipes, as LambdaLR multipliers.

Both return a factor of the peak learning rate for an optimizer step, so they compose with
any optimizer and are restored exactly from a checkpoint (LambdaLR only stores the step).
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


def build_scheduler(optimizer: Optimizer, name: str, total_steps: int, **kwargs: float) -> LambdaLR:
    """Build a per-step LambdaLR by name: ``polynomial`` or ``tri_stage`` (``constant`` too).

    ``polynomial`` takes its warm-up in updates (``warmup_steps``) or as a fraction of the
    run (``warmup_fraction``), so one config works for a 500-update demo and a 400k-update run.
    """
    if name == "polynomial":
        warmup = int(kwargs.pop("warmup_steps", 0) or 0)
        fraction = kwargs.pop("warmup_fraction", None)
        if fraction is not None:
            if warmup:
                raise ValueError("scheduler: set warmup_steps or warmup_fraction, not both")
            if not 0.0 <= float(fraction) < 1.0:
                raise ValueError(f"scheduler.warmup_fraction={fraction} must be in [0, 1)")
            warmup = int(round(float(fraction) * total_steps))
        if warmup >= total_steps:
            warnings.warn(
                f"scheduler: the warm-up ({warmup} updates) is as long as the run ({total_steps}): the learning "
                "rate never reaches its peak; shorten warmup_steps or use warmup_fraction",
                stacklevel=2,
            )
        power = float(kwargs.pop("power", 1.0))
        end = float(kwargs.pop("end_factor", 0.0))
        _reject_extra(name, kwargs)
        return LambdaLR(optimizer, lambda s: polynomial_decay_factor(s, warmup, total_steps, power, end))
    if name == "tri_stage":
        ratios = {k: float(kwargs.pop(k)) for k in list(kwargs) if k in _TRI_STAGE_KEYS}
        _reject_extra(name, kwargs)
        tri_stage_factor(0, total_steps, **ratios)  # validate the ratios now, not at step 0 of training
        return LambdaLR(optimizer, lambda s: tri_stage_factor(s, total_steps, **ratios))
    if name == "constant":
        _reject_extra(name, kwargs)
        return LambdaLR(optimizer, lambda s: 1.0)
    raise ValueError(f"scheduler.name={name!r} is not one of: polynomial, tri_stage, constant")


_TRI_STAGE_KEYS = ("warmup_ratio", "hold_ratio", "decay_ratio", "init_factor", "final_factor")


def _reject_extra(name: str, extra: dict) -> None:
    if extra:
        raise ValueError(f"scheduler {name!r} got unknown options: {sorted(extra)}")
