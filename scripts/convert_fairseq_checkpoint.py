#!/usr/bin/env python
"""Convert an original (fairseq) UniSpeech checkpoint into a Hugging Face-format folder.

    python scripts/convert_fairseq_checkpoint.py unispeech_large.pt out/unispeech-large \
        [--task pretraining|ctc] [--config-json overrides.json] [--trust-pickle]

The folder then loads with `UniSpeechForPreTraining.from_pretrained(out)` here and in
`transformers`.
"""

from __future__ import annotations

import argparse
import json
import sys

from unispeech import UniSpeechForCTC, UniSpeechForPreTraining
from unispeech.modeling.checkpoint import load_into
from unispeech.modeling.fairseq import config_from_fairseq_args, convert_state_dict, load_fairseq_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="fairseq .pt file")
    parser.add_argument("output_dir")
    parser.add_argument("--task", choices=["pretraining", "ctc"], default="pretraining")
    parser.add_argument("--config-json", help="JSON file of UniSpeechConfig fields that override the derived ones")
    parser.add_argument(
        "--trust-pickle", action="store_true", help="allow arbitrary pickled objects (trusted files only)"
    )
    args = parser.parse_args(argv)

    state, train_args = load_fairseq_checkpoint(args.checkpoint, trust_pickle=args.trust_pickle)
    overrides = json.load(open(args.config_json)) if args.config_json else {}
    converted, unconverted = convert_state_dict(state)
    if args.task == "ctc" and "lm_head.weight" in converted:
        overrides.setdefault("vocab_size", converted["lm_head.weight"].shape[0])
    if "ctc_proj.weight" in converted:
        overrides.setdefault("num_ctc_classes", converted["ctc_proj.weight"].shape[0])
    config = config_from_fairseq_args(train_args, **overrides)
    model = (UniSpeechForCTC if args.task == "ctc" else UniSpeechForPreTraining)(config)
    info = load_into(model, converted)
    for kind, keys in info.items():
        if keys:
            print(f"{kind}: {keys}", file=sys.stderr)
    if unconverted:
        print(f"fairseq keys with no counterpart (dropped): {unconverted}", file=sys.stderr)
    if info["mismatched_keys"] or (info["missing_keys"] and args.task == "pretraining"):
        print("conversion incomplete: fix the config (see --config-json) and retry", file=sys.stderr)
        return 1
    model.save_pretrained(args.output_dir)
    print(f"wrote {args.output_dir} ({model.num_parameters():,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
