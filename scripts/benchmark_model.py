#!/usr/bin/env python
"""The model benchmark of issue #2 lives in `benchmark.py`; this name is kept for it."""

from benchmark import main

if __name__ == "__main__":
    main()
