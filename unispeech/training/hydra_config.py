"""What Hydra needs before it composes a config: where the configs and recipes are, the model
schema, and the resolvers. Every entry point (train, evaluate, the tests) calls `register()`.

- Config groups live in `conf/`; recipes live in `recipes/<family>/` next to their README
  and are registered as the `recipe` group: `recipes/<family>/recipe.yaml` is
  `recipe=<family>` (one run, or the family's stages run one after the other) and
  `recipes/<family>/<stage>.yaml` is `recipe=<family>/<stage>` (one run). A family's
  `aliases` add short names: `recipe=commonvoice_fr` is `recipe=commonvoice language=fr`. In an installed
  wheel both folders ship inside the package (`unispeech/conf`, `unispeech/recipes`).
- The `model` group is typed by `UniSpeechConfig`'s fields (`model/schema`), so a mistyped
  key or a value of the wrong type fails with Hydra's own message before any work.
- The `data` group starts from every `UniSpeechDataModule` argument and its default
  (`data/arguments`), so `data.NAME=value` overrides any of them without a `+`.
- Resolvers: `${demo_corpus:}` (the embedded demo corpus, synthesised on first use),
  `${replication_corpus:SIZE}` (the replication corpus of scripts/replicate.py, likewise),
  `${stage_checkpoint:DIR}` (the best checkpoint of the finished stage in DIR) and
  `${run_dir:ROOT,NAME,STAGE}` (where a run, or a stage of a recipe, writes).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any, List, Optional, Union  # noqa: UP035 (OmegaConf needs typing's generics)

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from unispeech.modeling import UniSpeechConfig
from unispeech.training.config_checks import ConfigError

PACKAGE = Path(__file__).resolve().parents[1]
RECIPE_FILE = "recipe.yaml"  # a family's stage list: selected as recipe=<family>


def _find(checkout_name: str, package_name: str, marker: str) -> Path:
    """A folder of the checkout (or editable install), else the copy inside the wheel."""
    for candidate in (PACKAGE.parent / checkout_name, PACKAGE / package_name):
        if (candidate / marker).exists():
            return candidate
    raise FileNotFoundError(f"no {checkout_name}/ next to {PACKAGE} (expected {checkout_name}/{marker})")


def config_dir() -> str:
    return str(_find("conf", "conf", "train.yaml"))


def recipes_dir() -> Path:
    return _find("recipes", "recipes", "README.md")


def run_dir(root: str, name: str, stage: str | None = None) -> str:
    """`ROOT/runs/NAME`, or `ROOT/runs/NAME/STAGE` for a stage of a multi-stage recipe."""
    path = Path(str(root)) / "runs" / str(name)
    return str(path / str(stage) if stage else path)


def stage_checkpoint(stage_dir: str) -> str:
    """The best checkpoint of the finished stage written to `stage_dir` (its summary.json)."""
    summary = Path(str(stage_dir)) / "summary.json"
    if not summary.is_file():
        raise ConfigError(
            f"no finished stage at {stage_dir} (no summary.json): run the earlier stage first with the same "
            "run_name (e.g. recipe=demo/pretrain run_name=NAME, then recipe=demo/finetune run_name=NAME), "
            "or set task.module.pretrained=PATH"
        )
    checkpoint = json.loads(summary.read_text()).get("checkpoint", "")
    if not Path(checkpoint).is_file():
        raise ConfigError(f"{summary} names the checkpoint {checkpoint!r}, which does not exist")
    return checkpoint


def _demo_corpus() -> str:
    from unispeech.data import ensure_demo_corpus

    return str(ensure_demo_corpus())


def _replication_corpus(size: str = "cpu") -> str:
    from unispeech.data import ensure_replication_corpus

    return str(ensure_replication_corpus(str(size)))


RESOLVERS = {
    "demo_corpus": (_demo_corpus, True),
    "replication_corpus": (_replication_corpus, True),
    "stage_checkpoint": (stage_checkpoint, False),
    "run_dir": (run_dir, False),
}


def _schema_type(annotation: Any) -> Any:
    """`UniSpeechConfig`'s annotations in the subset OmegaConf types: tuples become lists,
    `X | None` becomes Optional[X]."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        return List[args[0]]  # noqa: UP006 (OmegaConf needs typing's generics)
    if origin in (Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return Optional[_schema_type(inner[0])] if len(inner) == 1 else Any  # noqa: UP045
    if origin is dict:
        return Any
    return annotation


def model_schema() -> type:
    """A dataclass with `UniSpeechConfig`'s fields and defaults, for the `model` group."""
    hints = typing.get_type_hints(UniSpeechConfig)
    fields = []
    for f in dataclasses.fields(UniSpeechConfig):
        if f.name in ("extra", "id2label"):
            continue
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        spec = (
            dataclasses.field(default_factory=lambda d=default: list(d))
            if isinstance(default, list)
            else dataclasses.field(default=default)
        )
        fields.append((f.name, _schema_type(hints[f.name]), spec))
    return dataclasses.make_dataclass("UniSpeechModelConfig", fields)


def data_defaults() -> dict[str, Any]:
    """Every `UniSpeechDataModule` argument with its default, for the `data` group
    (`data/arguments`): each data config starts from it, so any argument is overridable as
    `data.NAME=...` without a `+`, and `--cfg job` shows them all."""
    from unispeech.data import UniSpeechDataModule

    node: dict[str, Any] = {"_target_": "unispeech.data.UniSpeechDataModule"}
    for name, parameter in inspect.signature(UniSpeechDataModule.__init__).parameters.items():
        if name == "self":
            continue
        default = parameter.default
        node[name] = list(default) if isinstance(default, tuple) else default
    return node


def register() -> None:
    """Resolvers, the model schema and the recipes (idempotent)."""
    for name, (function, cache) in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function, use_cache=cache)
    store = ConfigStore.instance()
    store.store(group="model", name="schema", node=model_schema())
    store.store(group="data", name="arguments", node=data_defaults())
    for path in sorted(recipes_dir().glob("*/*.yaml")):
        family, node = path.parent.name, OmegaConf.load(path)
        if path.name != RECIPE_FILE:
            store.store(group=f"recipe/{family}", name=path.stem, node=node, package="_global_")
            continue
        store.store(group="recipe", name=family, node=node, package="_global_")
        for short, language in (node.get("aliases") or {}).items():
            # recipe=commonvoice_fr: the family with its language set
            alias = {"defaults": [family, "_self_"], "language": language}
            store.store(group="recipe", name=f"{family}_{short}", node=alias, package="_global_")


def normalise_argv(argv: list[str]) -> list[str]:
    """`+recipe=NAME` (older docs) means `recipe=NAME` now that `recipe` has a default, and
    `recipe=null` (no recipe: just the config groups) is Hydra's `~recipe`."""
    out = []
    for arg in argv:
        if arg.startswith("+recipe="):
            arg = arg[1:]
        out.append("~recipe" if arg in ("recipe=null", "recipe=none") else arg)
    return out
