"""Split speechocean762 into the data directories its recipe reads (recipes/speechocean762/).

The corpus ships two Kaldi data directories with disjoint speakers, `train/` and `test/`
(125 speakers each, half of them 12 or younger). This writes, under ``--out``:

    train/           the whole training half (125 speakers)
    dev/             25 speakers of the test half, 10 of them children (seeded choice)
    test/            the other 100 speakers of the test half
    test_children/   test/ restricted to speakers aged 12 or younger
    test_adults/     test/ restricted to speakers aged 13 or older

Each is a Kaldi data directory (wav.scp with absolute paths, text, utt2spk, spk2gender,
spk2age), read by `data.source=kaldi` (detected by itself from the `wav.scp` files).

Usage:

    python scripts/prepare_speechocean762.py --data-root DIR [--out data/speechocean762] [--seed 0]

DIR is the corpus folder (the one holding train/, test/ and WAVE/).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from unispeech.data.kaldi import is_kaldi_dir, read_table, write_subset

CHILD_MAX_AGE = 12  # the corpus's own line: 52 speakers of each half are 12 or younger
DEV_SPEAKERS, DEV_CHILDREN = 25, 10


def ages(data_dir: Path) -> dict[str, int]:
    return {spk: int(value[0]) for spk, value in read_table(data_dir / "spk2age").items()}


def split_speakers(test_ages: dict[str, int], seed: int) -> tuple[set[str], set[str]]:
    """(dev, test) speakers of the test half: dev has `DEV_CHILDREN` children among its
    `DEV_SPEAKERS`, drawn in a seeded order; test keeps the rest."""
    rng = random.Random(seed)
    children = sorted(s for s, age in test_ages.items() if age <= CHILD_MAX_AGE)
    older = sorted(s for s, age in test_ages.items() if age > CHILD_MAX_AGE)
    rng.shuffle(children)
    rng.shuffle(older)
    dev = set(children[:DEV_CHILDREN]) | set(older[: DEV_SPEAKERS - DEV_CHILDREN])
    return dev, set(test_ages) - dev


def prepare(data_root: Path, out: Path, seed: int = 0) -> dict[str, int]:
    for half in ("train", "test"):
        if not is_kaldi_dir(data_root / half):
            raise FileNotFoundError(
                f"{data_root / half}: not a Kaldi data directory (no wav.scp): is {data_root} "
                "the speechocean762 folder (train/, test/, WAVE/)?"
            )
    train_ages, test_ages = ages(data_root / "train"), ages(data_root / "test")
    dev, test = split_speakers(test_ages, seed)
    plan = {
        "train": (data_root / "train", set(train_ages)),
        "dev": (data_root / "test", dev),
        "test": (data_root / "test", test),
        "test_children": (data_root / "test", {s for s in test if test_ages[s] <= CHILD_MAX_AGE}),
        "test_adults": (data_root / "test", {s for s in test if test_ages[s] > CHILD_MAX_AGE}),
    }
    return {name: write_subset(source, out / name, speakers) for name, (source, speakers) in plan.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="the speechocean762 folder")
    parser.add_argument("--out", type=Path, default=Path("data/speechocean762"), help="where the splits go")
    parser.add_argument("--seed", type=int, default=0, help="which 25 test-half speakers form dev")
    args = parser.parse_args()
    counts = prepare(args.data_root.expanduser().resolve(), args.out, args.seed)
    for name, count in counts.items():
        print(f"{args.out / name}: {count} utterances")


if __name__ == "__main__":
    main()
