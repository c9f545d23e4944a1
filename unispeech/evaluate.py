"""Error rates of a CTC checkpoint on a corpus split (greedy decoding).

    python -m unispeech.evaluate checkpoint=RUN/checkpoints/best.ckpt data=demo_ctc split=test
    python -m unispeech.evaluate recipe=commonvoice/finetune language=es checkpoint=... split=test

The corpus comes from the same Hydra data configs as training (``conf/evaluate.yaml``
includes ``conf/train.yaml``); the model and its vocabulary from the checkpoint or exported
directory. References are decoded with the data's tokenizer, hypotheses with the model's,
so a model is scored on the symbols it was trained on. Prints PER, CER, WER as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from unispeech.tasks.inference import load_trained_model
from unispeech.tasks.metrics import ErrorRates, greedy_decode, reference_tokens
from unispeech.training import hydra_config
from unispeech.training.config_checks import ConfigError, check_required_paths

SPLITS = {"train": "train_dataloader", "val": "val_dataloader", "test": "test_dataloader"}


@torch.inference_mode()
def evaluate(
    checkpoint: str,
    datamodule: Any,
    split: str = "test",
    batch_limit: int | None = None,
    device: str = "cpu",
    examples: int = 5,
) -> dict[str, Any]:
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} must be one of {sorted(SPLITS)}")
    model, info = load_trained_model(checkpoint)
    if info["task"] != "ctc":
        raise ConfigError(f"checkpoint={checkpoint} is a {info['task']} model; evaluate scores CTC models")
    model.to(device)
    datamodule.prepare_data()
    datamodule.setup("test" if split == "test" else "fit")
    if not datamodule.has_split(split):
        raise ConfigError(f"split={split!r}: the data config has no {split} splits")
    reference_vocabulary = [datamodule.tokenizer.id_to_token[i] for i in range(len(datamodule.tokenizer))]
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


hydra_config.register()


@hydra.main(version_base="1.3", config_path=hydra_config.config_dir(), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    check_required_paths(cfg)
    datamodule = instantiate(cfg.data)
    result = evaluate(str(cfg.checkpoint), datamodule, str(cfg.split), cfg.batch_limit, str(cfg.device))
    text = json.dumps(result, ensure_ascii=False, indent=1)
    if cfg.output:
        Path(str(cfg.output)).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    sys.argv = hydra_config.normalise_argv(sys.argv)
    main()
