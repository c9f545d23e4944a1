"""Error rates of a CTC checkpoint on a corpus split (greedy decoding, or greedy and beam search).

    python -m unispeech.evaluate checkpoint=RUN/checkpoints/best.ckpt data=demo_ctc split=test
    python -m unispeech.evaluate recipe=commonvoice/finetune language=es checkpoint=... split=test
    python -m unispeech.evaluate checkpoint=... decoder=beam beam_width=16 lm_path=lm.arpa lm_alpha=0.5

The corpus comes from the same Hydra data configs as training (``conf/evaluate.yaml``
includes ``conf/train.yaml``; without ``data=`` or ``recipe=`` it is the demo's Spanish
fine-tuning data); the model and its vocabulary from the checkpoint or exported directory.
References are decoded with the data's tokenizer, hypotheses with the model's, so a model is
scored on the symbols it was trained on. Prints PER, CER, WER as JSON.

``decoder=beam`` decodes the same logits twice, greedily and with the CTC prefix beam search
of ``unispeech.inference.beam`` (optionally with the n-gram LM ``lm_path`` and ``hotwords``),
and reports both: ``{"greedy": {...}, "beam": {...}}`` with the rates and the decoding time
of each. ``decoder=greedy`` (the default) prints the rates at the top level, as before.

Refused, with one line on stderr and exit status 2: no ``checkpoint=``, a checkpoint that
does not exist or is not a CTC model, a split other than train/val/test (``dev``, the
CommonVoice name, is taken as ``val``), and data whose references the model cannot spell:
another tokenizer kind (phones/characters), another language, or many reference symbols the
model's vocabulary lacks (``allow_vocabulary_mismatch=true`` scores it anyway); a decoder
other than greedy/beam, beam options without ``decoder=beam``, an LM file that does not exist
or cannot be read (a KenLM binary without the ``kenlm`` module: ``pip install 'unispeech[lm]'``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
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
from unispeech.inference.beam import BeamSearchDecoder
from unispeech.inference.ngram import LanguageModelError, load_language_model
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
DECODERS = ("greedy", "beam")
# the beam search options of conf/evaluate.yaml and their defaults there (a test keeps the two in step)
BEAM_OPTIONS = {
    "beam_width": 16,
    "lm_path": None,
    "lm_alpha": 0.5,
    "lm_beta": 1.0,
    "lm_unit": "auto",
    "hotwords": [],
    "hotword_weight": 3.0,
}
NUMBER_OPTIONS = {"beam_width": int, "lm_alpha": float, "lm_beta": float, "hotword_weight": float}


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
    decoder: str = "greedy",
    beam_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """PER/CER/WER of ``checkpoint`` on ``split`` of ``datamodule``; ``data_name`` (e.g.
    ``data=demo_ctc``) names the data in the refusal when the vocabularies do not match.

    ``decoder="beam"``: greedy and beam search rates of the same logits (``beam_options``:
    the keys of BEAM_OPTIONS), each with its decoding time per utterance."""
    split = split_name(split)
    model, info = load_model(checkpoint)
    beam = make_beam_decoder(info, decoder, beam_options or {})
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
    beam_scores = ErrorRates(examples=examples)
    seconds = {"greedy": 0.0, "beam": 0.0}  # decoding only, not the model
    for index, batch in enumerate(getattr(datamodule, SPLITS[split])()):
        if batch_limit is not None and index >= batch_limit:
            break
        mask = batch["attention_mask"].to(device)
        logits = model(batch["input_values"].to(device), attention_mask=mask).logits
        lengths = model.get_feat_extract_output_lengths(mask.sum(-1))
        references = reference_tokens(batch["labels"], reference_vocabulary)
        start = time.perf_counter()
        hyps = greedy_decode(logits, lengths, info["vocabulary"])
        seconds["greedy"] += time.perf_counter() - start
        scores.update(hyps, references)
        if beam is not None:
            start = time.perf_counter()
            beam_hyps = beam.decode_batch(logits, lengths)
            seconds["beam"] += time.perf_counter() - start
            beam_scores.update(beam_hyps, references)
    return report(str(checkpoint), split, scores, beam_scores if beam is not None else None, seconds, beam_options)


def report(
    checkpoint: str,
    split: str,
    scores: ErrorRates,
    beam_scores: ErrorRates | None,
    seconds: dict[str, float],
    beam_options: dict[str, Any] | None,
) -> dict[str, Any]:
    """The JSON result: greedy rates at the top level, or with a beam search both decoders'
    rates side by side, each with its decoding time per utterance."""
    result: dict[str, Any] = {"checkpoint": checkpoint, "split": split}
    if beam_scores is None:  # the greedy layout, unchanged
        return {
            **result,
            **scores.compute(),
            "examples": [{"hypothesis": h, "reference": r} for h, r in scores.examples],
        }
    greedy_rates, beam_rates = scores.compute(), beam_scores.compute()
    per_utterance = 1000.0 / max(greedy_rates["utterances"], 1)
    return {
        **result,
        "decoder": "beam",
        "beam_options": {key: _plain(value) for key, value in (beam_options or {}).items()},
        "utterances": greedy_rates["utterances"],
        "greedy": {**_rates(greedy_rates), "decode_ms_per_utterance": round(seconds["greedy"] * per_utterance, 3)},
        "beam": {**_rates(beam_rates), "decode_ms_per_utterance": round(seconds["beam"] * per_utterance, 3)},
        "examples": [
            {"reference": r, "greedy": g, "beam": b} for (g, r), (b, _) in zip(scores.examples, beam_scores.examples)
        ],
    }


def _rates(computed: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in computed.items() if key != "utterances"}


def _plain(value: Any) -> Any:
    """An option as JSON writes it (Hydra hands lists over as ListConfig)."""
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def make_beam_decoder(info: dict[str, Any], decoder: str, options: dict[str, Any]) -> BeamSearchDecoder | None:
    """The beam search decoder of ``decoder="beam"`` for the model's vocabulary (None for
    greedy); options it cannot use are ConfigErrors naming their key."""
    if decoder not in DECODERS:
        raise ConfigError(f"decoder={decoder!r} must be one of {', '.join(DECODERS)}")
    if decoder == "greedy":
        return None
    unknown = sorted(set(options) - set(BEAM_OPTIONS))
    if unknown:
        raise ConfigError(f"{unknown[0]} is not a beam search option ({', '.join(BEAM_OPTIONS)})")
    options = {**BEAM_OPTIONS, **options}
    numbers = {key: _number(key, options[key], kind) for key, kind in NUMBER_OPTIONS.items()}
    hotwords = options["hotwords"] or []
    if isinstance(hotwords, str):  # hotwords=hola,mundo reaches here as one string
        hotwords = hotwords.split(",")
    lm = None
    if options["lm_path"]:
        try:
            lm = load_language_model(str(options["lm_path"]))
        except FileNotFoundError:
            raise ConfigError(f"lm_path={options['lm_path']} does not exist") from None
        except LanguageModelError as error:
            raise ConfigError(f"lm_path={options['lm_path']}: {error}") from None
    try:
        return BeamSearchDecoder(
            info["vocabulary"],
            info["tokenizer_kind"],
            beam_width=numbers["beam_width"],
            lm=lm,
            alpha=numbers["lm_alpha"],
            beta=numbers["lm_beta"],
            lm_unit=str(options["lm_unit"]),
            hotwords=[str(word) for word in hotwords],
            hotword_weight=numbers["hotword_weight"],
        )
    except ValueError as error:  # its messages name the option: beam_width, lm_unit, hotword
        raise ConfigError(str(error)) from None


def _number(key: str, value: Any, kind: type) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} must be {'an integer' if kind is int else 'a number'}") from None


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


# the demo recipes' target languages (recipes/demo, `language=`)
DEMO_TARGETS = ("es", "fr")


def _data_hint(voice: str, data_name: str) -> str:
    locale = next((loc for loc, v in LOCALE_TO_VOICE.items() if v == voice), voice) if voice else "LOCALE"
    hints = [
        f"recipe=commonvoice/finetune language={locale} for a CommonVoice model",
        f"data=demo_ctc language={locale if locale in DEMO_TARGETS else 'es'} for a demo model",
        "data=NAME data.corpus=PATH for another corpus",
    ]
    return ", ".join(hint for hint in hints if hint.split(" for ")[0] not in data_name)


def data_name(cfg: DictConfig) -> str:
    """How the command line picked the data, for messages: ``data=demo_ctc (corpus ...)``."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    picked = [f"{group}={choices[group]}" for group in ("recipe", "data") if choices.get(group)]
    corpus = OmegaConf.select(cfg, "data.corpus", default=None)
    return " ".join(picked or ["the configured data"]) + (f" (corpus {corpus})" if corpus else "")


def beam_options(cfg: DictConfig) -> dict[str, Any]:
    """The beam search options set in ``cfg``; refused without ``decoder=beam``, where they
    would be silently ignored."""
    options = {key: cfg.get(key) for key in BEAM_OPTIONS if key in cfg}
    decoder = str(cfg.get("decoder", "greedy"))
    if decoder not in DECODERS:
        raise ConfigError(f"decoder={decoder!r} must be one of {', '.join(DECODERS)}")
    changed = [key for key, value in options.items() if _plain(value) != BEAM_OPTIONS[key]]
    if decoder == "greedy" and changed:
        raise ConfigError(f"{changed[0]}= is a beam search option: add decoder=beam (greedy decoding has no options)")
    return options


hydra_config.register()


@hydra.main(version_base="1.3", config_path=hydra_config.config_dir(), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        if OmegaConf.is_missing(cfg, "checkpoint") or cfg.checkpoint in (None, ""):
            raise ConfigError(HOW_TO_PASS_CHECKPOINT)
        split_name(str(cfg.split))  # before any data or model work
        options = beam_options(cfg)
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
            decoder=str(cfg.get("decoder", "greedy")),
            beam_options=options,
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
