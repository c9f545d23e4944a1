"""Trained models for inference: a run's checkpoint or an exported directory → model + vocabulary.

The task kind recorded in a checkpoint (or the architecture named in ``config.json``) picks
the model class through the task registry.
"""

from __future__ import annotations

import json
import os
from typing import Any

from torch import nn

from unispeech.modeling import UniSpeechConfig, checkpoint as hf_checkpoint
from unispeech.tasks.base import CONFIG_KEY, KIND_KEY
from unispeech.tasks.loading import is_lightning_checkpoint, load_lightning_checkpoint, model_state
from unispeech.tasks.registry import task_for_architecture, task_for_kind


def load_trained_model(source: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, info) from a Lightning checkpoint or a Hugging Face-format directory.

    ``info`` holds ``task`` (the task kind), ``vocabulary`` (id → symbol),
    ``tokenizer_kind``, ``language`` and ``labels`` where they apply.
    """
    if is_lightning_checkpoint(source):
        try:
            checkpoint = load_lightning_checkpoint(source)
        except FileNotFoundError:
            raise
        except Exception as error:  # torch.load of anything else: a truncated file, text, another pickle
            raise ValueError(
                f"{source} is not a checkpoint written by unispeech.train (torch.load failed: {type(error).__name__})"
            ) from None
        if CONFIG_KEY not in checkpoint or KIND_KEY not in checkpoint:
            raise ValueError(f"{source} has no {CONFIG_KEY}/{KIND_KEY}: not a checkpoint written by unispeech.train")
        task = task_for_kind(checkpoint[KIND_KEY])
        model = task.model_class(UniSpeechConfig.from_dict(checkpoint[CONFIG_KEY]))
        model.load_state_dict(model_state(checkpoint), strict=True)
        hparams = dict(checkpoint.get("hyper_parameters", {}))
        info = {
            "task": task.kind,
            "vocabulary": list(hparams.get("vocabulary") or hparams.get("phone_vocabulary") or []),
            "tokenizer_kind": hparams.get("tokenizer_kind", "phones"),
            "language": hparams.get("language", ""),
            "labels": list(hparams.get("labels") or []),
        }
        return model.eval(), info
    directory = hf_checkpoint.resolve_checkpoint_dir(source)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"{directory} has no config.json: pass a .ckpt written by unispeech.train or an exported model "
            "directory (a run's export/)"
        )
    config = json.loads((directory / "config.json").read_text())
    task = task_for_architecture((config.get("architectures") or ["UniSpeechForCTC"])[0])
    model = task.model_class.from_pretrained(directory, strict=True)
    info: dict[str, Any] = {
        "task": task.kind,
        "vocabulary": [],
        "tokenizer_kind": "chars",
        "language": "",
        "labels": [],
    }
    if (directory / "vocab.json").is_file():
        from unispeech.data.tokenizer import CTCTokenizer

        tokenizer = CTCTokenizer.from_pretrained(directory)
        info.update(vocabulary=tokenizer.vocabulary(), tokenizer_kind=tokenizer.kind, language=tokenizer.language)
    if model.config.id2label and task.kind == "classification":
        info["labels"] = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model.eval(), info


def load_ctc_model(source: str | os.PathLike, purpose: str) -> tuple[nn.Module, dict[str, Any]]:
    """`load_trained_model` for a command that needs a CTC fine-tuned model with its vocabulary
    (``purpose``: "transcription", "alignment"); ValueError naming what the model is otherwise."""
    model, info = load_trained_model(source)
    if info["task"] != "ctc":
        raise ValueError(f"{source} is a {info['task']} model; {purpose} needs a CTC fine-tuned one")
    if not info["vocabulary"]:
        raise ValueError(f"{source} has no tokenizer vocabulary (vocab.json)")
    return model, info
