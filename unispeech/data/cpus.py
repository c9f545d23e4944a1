"""How many CPUs this process may use (its affinity mask, which SLURM and taskset narrow;
``os.cpu_count`` counts the whole machine)."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity mask
        return os.cpu_count() or 1
