"""Generate (once) the embedded espeak-ng demo corpus and print where it is.

Usage:

    python scripts/make_demo_corpus.py [--cache-dir DIR]
"""

from __future__ import annotations

import argparse

from unispeech.data.demo_corpus import ensure_demo_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", default=None, help="default: $UNISPEECH_CACHE/demo (~/.cache/unispeech/demo)")
    args = parser.parse_args()
    print(ensure_demo_corpus(args.cache_dir))


if __name__ == "__main__":
    main()
