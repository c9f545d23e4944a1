"""Error rates of a CTC checkpoint on a corpus split (greedy decoding).

    python -m unispeech.evaluate checkpoint=RUN/checkpoints/best.ckpt data=demo_ctc split=test
    python -m unispeech.evaluate recipe=commonvoice/finetune language=es checkpoint=... split=test

The corpus comes from the same Hydra data configs as training (``conf/evaluate.yaml``
includes ``conf/train.yaml``; without ``data=`` or ``recipe=`` it is the demo's Spanish
fine-tuning data); the model and its vocabulary from the checkpoint or exported directory.
References are decoded with the data's tokenizer, hypotheses with the model's, so a model is
scored on the symbols it was trained on. Prints PER, CER, WER as JSON.

Refused, with one line on stderr and exit status 2: no ``checkpoint=``, a checkpoint that
does not exist or is not a CTC model, a split other than train/val/test (``dev``, the
CommonVoice name, is taken as ``val``), and data whose references the model cannot spell:
another tokenizer kind (phones/characters), another language, or many reference symbols the
model's vocabulary lacks (``allow_vocabulary_mismatch=true`` scores it anyway).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from unispeech.data.phonemes import LOCALE_TO_VOICE
from unispeech.data.tokenizer import SPECIALS
from unispeech.tasks.inference import load_trained_model
from unispeech.tasks.metrics import ErrorRates, greedy_decode, reference_tokens
from unispeech.training import hydra_config
from unispeech.training.config_checks import ConfigError, check_required_paths

logger = logging.getLogger("unispeech.evaluate")

SPLITS = {"train": "train_dataloader", "val": "val_dataloader", "test": "test_dataloader"}
SPLIT_ALIASES = {"dev": "val", "validation": "val"}  # CommonVoice's and datasets' names for val
# more than this fraction of the data's symbols missing from the model's vocabulary: refused
MAX_MISSING_SYMBOLS = 0.2
# what the user can fix: one line on stderr and exit status 2, no traceback
USER_ERRORS = (ConfigError, FileNotFoundError)
HOW_TO_PASS_CHECKPOINT = (
    "checkpoint= is required: the .ckpt of a fine-tuning run or its exported directory, e.g. "
    "python -m unispeech.evaluate checkpoint=outputs/runs/<run>/finetune/checkpoints/last.ckpt "
    "(or checkpoint=outputs/runs/<run>/finetune/export)"
)


def split_name(split: str) -> str:
    """``split`` as the data module names it: ``dev`` (CommonVoice) is ``val``."""
    name = SPLIT_ALIASES.get(split, split)
    if name not in SPLITS:
        raise ConfigError(f"split={split!r} must be one of train, val, test (CommonVoice's dev split is val)")
    return name


@torch.inference_mode()
def evaluate(
    checkpoint: str,
    datamodule: Any,
    split: str = "test",
    batch_limit: int | None = None,
    device: str = "cpu",
    examples: int = 5,
    data_name: str = "",
    allow_vocabulary_mismatch: bool = False,
) -> dict[str, Any]:
    """PER/CER/WER of ``checkpoint`` on ``split`` of ``datamodule``; ``data_name`` (e.g.
    ``data=demo_ctc``) names the data in the refusal when the vocabularies do not match."""
    split = split_name(split)
    model, info = load_model(checkpoint)
    model.to(device)
    datamodule.prepare_data()
    datamodule.setup("test" if split == "test" else "fit")
    if not datamodule.has_split(split):
        raise ConfigError(f"split={split!r}: the data config has no {split} splits")
    reference_vocabulary = [datamodule.tokenizer.id_to_token[i] for i in range(len(datamodule.tokenizer))]
    check_vocabularies(
        checkpoint,
        info,
        datamodule.tokenizer,
        data_name or f"the data at {getattr(datamodule, 'corpus', '?')}",
        allow_vocabulary_mismatch,
    )
    scores = ErrorRates(examples=examples)
    for index, batch in enumerate(getattr(datamodule, SPLITS[split])()):
        if batch_limit is not None and index >= batch_limit:
            break
        mask = batch["attention_mask"].to(device)
        logits = model(batch["input_values"].to(device), attention_mask=mask).logits
        lengths = model.get_feat_extract_output_lengths(mask.sum(-1))
        hyps = greedy_decode(logits, lengths, info["vocabulary"])
        scores.update(hyps, reference_tokens(batch["labels"], reference_vocabulary))
    return {
        "checkpoint": str(checkpoint),
        "split": split,
        **scores.compute(),
        "examples": [{"hypothesis": h, "reference": r} for h, r in scores.examples],
    }


def load_model(checkpoint: str) -> tuple[Any, dict[str, Any]]:
    """The CTC model of ``checkpoint``; a missing or unusable one is a ConfigError naming it."""
    try:
        model, info = load_trained_model(checkpoint)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"checkpoint={checkpoint}: {error}") from None
    if info["task"] != "ctc":
        raise ConfigError(f"checkpoint={checkpoint} is a {info['task']} model; evaluate scores CTC models")
    if not info["vocabulary"]:
        raise ConfigError(f"checkpoint={checkpoint} has no tokenizer vocabulary (vocab.json) to decode with")
    return model, info


def check_vocabularies(
    checkpoint: str, info: dict[str, Any], tokenizer: Any, data_name: str, allow_mismatch: bool = False
) -> None:
    """Refuse data whose references the model cannot spell: another tokenizer kind, another
    language, or more than MAX_MISSING_SYMBOLS of the data's symbols absent from the model's
    vocabulary. Symbols are compared, not ids (the same phones in another order are fine)."""
    model_symbols = set(info["vocabulary"]) - set(SPECIALS)
    data_symbols = set(tokenizer.vocabulary()) - set(SPECIALS)
    missing = sorted(data_symbols - model_symbols)
    model_language, data_language = info.get("language") or "", tokenizer.language or ""
    if info["tokenizer_kind"] != tokenizer.kind:
        problem = f"the model outputs {info['tokenizer_kind']} but the references are {tokenizer.kind}"
    elif model_language and data_language and _language(model_language) != _language(data_language):
        problem = f"the model's language is {model_language!r} but the references' is {data_language!r}"
    elif len(missing) > MAX_MISSING_SYMBOLS * len(data_symbols):
        problem = (
            f"{len(missing)} of the {len(data_symbols)} reference symbols are not in the model's vocabulary "
            f"({_sample(missing)})"
        )
    else:
        if missing:
            logger.warning(
                "%d reference symbols are not in the model's vocabulary and always count as errors: %s",
                len(missing),
                _sample(missing),
            )
        return
    if allow_mismatch:
        logger.warning("scoring anyway (allow_vocabulary_mismatch=true): %s", problem)
        return
    model_side = _describe(info["tokenizer_kind"], model_language, len(model_symbols))
    data_side = _describe(tokenizer.kind, data_language, len(data_symbols))
    raise ConfigError(
        f"checkpoint={checkpoint} ({model_side}) cannot be scored on {data_name} ({data_side}): {problem}, so "
        f"the error rates would mean nothing. Pass the data the model was fine-tuned on: "
        f"{_data_hint(model_language, data_name)} (or allow_vocabulary_mismatch=true to score it anyway)"
    )


def _language(voice: str) -> str:
    return voice.split("-")[0].lower()


def _describe(kind: str, language: str, symbols: int) -> str:
    return f"{kind}" + (f", language {language}" if language else "") + f", {symbols} symbols"


def _sample(symbols: Sequence[str], limit: int = 8) -> str:
    shown = " ".join(symbols[:limit])
    return shown + (f" and {len(symbols) - limit} more" if len(symbols) > limit else "")


def _data_hint(voice: str, data_name: str) -> str:
    locale = next((loc for loc, v in LOCALE_TO_VOICE.items() if v == voice), voice) if voice else "LOCALE"
    hints = [
        f"recipe=commonvoice/finetune language={locale} for a CommonVoice model",
        "data=demo_ctc for the demo's Spanish one",
        "data=NAME data.corpus=PATH for another corpus",
    ]
    return ", ".join(hint for hint in hints if hint.split(" for ")[0] not in data_name)


def data_name(cfg: DictConfig) -> str:
    """How the command line picked the data, for messages: ``data=demo_ctc (corpus ...)``."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    picked = [f"{group}={choices[group]}" for group in ("recipe", "data") if choices.get(group)]
    corpus = OmegaConf.select(cfg, "data.corpus", default=None)
    return " ".join(picked or ["the configured data"]) + (f" (corpus {corpus})" if corpus else "")


hydra_config.register()


@hydra.main(version_base="1.3", config_path=hydra_config.config_dir(), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        if OmegaConf.is_missing(cfg, "checkpoint") or cfg.checkpoint in (None, ""):
            raise ConfigError(HOW_TO_PASS_CHECKPOINT)
        split_name(str(cfg.split))  # before any data or model work
        check_required_paths(cfg)
        datamodule = instantiate(cfg.data)
        result = evaluate(
            str(cfg.checkpoint),
            datamodule,
            str(cfg.split),
            cfg.batch_limit,
            str(cfg.device),
            data_name=data_name(cfg),
            allow_vocabulary_mismatch=bool(cfg.get("allow_vocabulary_mismatch", False)),
        )
    except USER_ERRORS as error:
        print(f"[unispeech] error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    text = json.dumps(result, ensure_ascii=False, indent=1)
    if cfg.output:
        Path(str(cfg.output)).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    sys.argv = hydra_config.normalise_argv(sys.argv)
    main()
