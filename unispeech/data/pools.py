"""`EpochPool`: which training rows an epoch draws, when it does not simply use each once.

The training dataset holds the labeled rows first, then the unlabeled ones. The pool fixes
how many of each side an epoch takes (`LabeledUnlabeledMixing`) and spreads each side over
its languages with temperature sampling (`TemperatureSampling`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .sampler import LabeledUnlabeledMixing, TemperatureSampling


def language_groups(locales: Sequence[str], offset: int = 0) -> list[np.ndarray]:
    """Dataset indices of each locale (sorted by locale), counted from ``offset``."""
    groups: dict[str, list[int]] = {}
    for i, locale in enumerate(locales):
        groups.setdefault(locale, []).append(offset + i)
    return [np.asarray(v, dtype=np.int64) for _, v in sorted(groups.items())]


class EpochPool:
    """Per-epoch index pool: labeled/unlabeled counts from the mixing ratio, each side
    spread over languages with temperature sampling. Picklable (no closures)."""

    def __init__(
        self,
        labeled_groups: list[np.ndarray],
        unlabeled_groups: list[np.ndarray],
        labeled_fraction: float | None,
        alpha: float,
        seed: int,
    ) -> None:
        lab = np.concatenate(labeled_groups) if labeled_groups else np.empty(0, np.int64)
        unl = np.concatenate(unlabeled_groups) if unlabeled_groups else np.empty(0, np.int64)
        n_lab, n_unl = LabeledUnlabeledMixing(lab, unl, labeled_fraction, seed).counts()
        self.sides = []
        if n_lab:
            self.sides.append(TemperatureSampling(labeled_groups, alpha, seed, epoch_size=n_lab))
        if n_unl:
            self.sides.append(TemperatureSampling(unlabeled_groups, alpha, seed + 1, epoch_size=n_unl))

    @classmethod
    def from_locales(
        cls, labeled: Sequence[str], unlabeled: Sequence[str], labeled_fraction: float | None, alpha: float, seed: int
    ) -> EpochPool:
        """The pool of a dataset whose rows have the locales ``labeled`` then ``unlabeled``."""
        return cls(language_groups(labeled), language_groups(unlabeled, len(labeled)), labeled_fraction, alpha, seed)

    def __call__(self, epoch: int) -> np.ndarray:
        return np.concatenate([side(epoch) for side in self.sides])
