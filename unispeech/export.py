"""Export a training checkpoint as a Hugging Face-format directory.

    python -m unispeech.export CHECKPOINT.ckpt OUTPUT_DIR

The directory holds ``config.json`` + ``model.safetensors`` (transformers key names), the
feature extractor's ``preprocessor_config.json`` and, for CTC and pretraining models, the
tokenizer (``vocab.json``, ``tokenizer_config.json``): ``transformers``'
``UniSpeechForCTC.from_pretrained(OUTPUT_DIR)`` and ``AutoProcessor`` load it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from unispeech.data.feature_extractor import UniSpeechFeatureExtractor
from unispeech.data.tokenizer import CTCTokenizer
from unispeech.tasks.inference import load_trained_model


def export_checkpoint(checkpoint: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    model, info = load_trained_model(checkpoint)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    # we always train with an attention mask, so inference should pass one too
    UniSpeechFeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(output_dir)
    if info["vocabulary"]:
        vocab = {token: index for index, token in enumerate(info["vocabulary"])}
        CTCTokenizer(vocab, kind=info["tokenizer_kind"], language=info["language"]).save_pretrained(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt written by unispeech.train")
    parser.add_argument("output_dir", help="directory to write (created)")
    args = parser.parse_args(argv)
    try:
        print(export_checkpoint(args.checkpoint, args.output_dir))
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")


if __name__ == "__main__":
    main()
