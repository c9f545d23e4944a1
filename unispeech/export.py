"""Export a training checkpoint as a Hugging Face-format directory.

    python -m unispeech.export CHECKPOINT.ckpt OUTPUT_DIR [--language LOCALE] [--onnx [--opset N]]

The directory holds ``config.json`` + ``model.safetensors`` (transformers key names), the
feature extractor's ``preprocessor_config.json`` and, for CTC and pretraining models, the
tokenizer (``vocab.json``, ``tokenizer_config.json``): ``transformers``'
``UniSpeechForCTC.from_pretrained(OUTPUT_DIR)`` and ``AutoProcessor`` load it. A phone
tokenizer's ``phonemizer_lang`` is the espeak voice of the model's language (the one the
checkpoint records, or ``--language``); it is left out, with a warning, when neither says.

``--onnx`` (CTC models; needs ``pip install 'unispeech[onnx]'``) also writes ``model.onnx``, an
onnxruntime graph with dynamic batch and time axes (``unispeech.inference.onnx_export``), checked
against torch on a probe batch right after export. The source may also be an exported directory.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from unispeech.data.feature_extractor import UniSpeechFeatureExtractor
from unispeech.data.phonemes import LOCALE_TO_VOICE
from unispeech.data.tokenizer import CTCTokenizer
from unispeech.inference.onnx_export import (
    MIN_OPSET,
    ONNX_FILE,
    MissingOnnxExtra,
    OnnxMismatch,
    export_onnx,
    require_onnx_extra,
)
from unispeech.modeling import UniSpeechForCTC
from unispeech.tasks.inference import load_trained_model

logger = logging.getLogger("unispeech.export")


def export_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    language: str | None = None,
    onnx: bool = False,
    opset: int | None = None,
) -> Path:
    """Write the HF-format directory. A phone tokenizer records the espeak voice its phones
    came from (``phonemizer_lang``): the checkpoint's ``language`` hyper-parameter, or
    ``language`` (a CommonVoice locale or an espeak voice) where the checkpoint has none or
    a wrong one. ``onnx`` adds ``model.onnx`` (opset ``opset``, or the exporter's default)."""
    model, info = load_trained_model(checkpoint)
    if onnx and not isinstance(model, UniSpeechForCTC):
        raise ValueError(f"--onnx exports CTC models; {checkpoint} holds a {type(model).__name__}")
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    # we always train with an attention mask, so inference should pass one too
    UniSpeechFeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(output_dir)
    if info["vocabulary"]:
        vocab = {token: index for index, token in enumerate(info["vocabulary"])}
        voice = espeak_voice(language) if language else info["language"]
        if info["tokenizer_kind"] == "phones" and not voice:
            logger.warning(
                "%s records no language: the exported tokenizer has no phonemizer_lang (pass --language LOCALE)",
                checkpoint,
            )
        CTCTokenizer(vocab, kind=info["tokenizer_kind"], language=voice).save_pretrained(output_dir)
    if onnx:
        logger.info("writing %s (takes a while: torch.export, then ONNX translation)", output_dir / ONNX_FILE)
        logger.info("%s", export_onnx(model, output_dir / ONNX_FILE, opset=opset).summary())
    return output_dir


def espeak_voice(language: str) -> str:
    """A CommonVoice locale as the espeak voice the data pipeline phonemizes it with (fr →
    fr-fr, sv-SE → sv); an espeak voice is kept as it is."""
    return LOCALE_TO_VOICE.get(language, language)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m unispeech.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt written by unispeech.train (or an exported directory)")
    parser.add_argument("output_dir", help="directory to write (created)")
    parser.add_argument(
        "--language",
        help="CommonVoice locale or espeak voice of a phone model, for its tokenizer's phonemizer_lang "
        "(default: the one the checkpoint records)",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also write model.onnx for onnxruntime (CTC models; needs pip install 'unispeech[onnx]')",
    )
    parser.add_argument("--opset", type=int, help="ONNX opset of --onnx (default: the exporter's, 20 with torch 2.13)")
    args = parser.parse_args(argv)
    if args.opset is not None and not args.onnx:
        parser.error("--opset needs --onnx")
    if args.opset is not None and args.opset < MIN_OPSET:
        parser.error(f"--opset {args.opset}: the torch.export-based ONNX exporter writes opset {MIN_OPSET} or later")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        if args.onnx:  # before the slow part: a missing package is a one-line answer
            require_onnx_extra()
        print(export_checkpoint(args.checkpoint, args.output_dir, args.language, args.onnx, args.opset))
    except (FileNotFoundError, ValueError, MissingOnnxExtra) as error:
        parser.exit(2, f"error: {error}\n")
    except OnnxMismatch as error:  # written, but not to be trusted
        parser.exit(1, f"error: {error}\n")


if __name__ == "__main__":
    main()
