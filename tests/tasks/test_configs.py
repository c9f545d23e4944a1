"""Every recipe and config group composes; bad configs fail early with the key named."""

import json
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from tests.tasks.conftest import CONF_DIR, compose_config
from unispeech.train import run
from unispeech.training.config_checks import ConfigError, MissingDataError, check_config, check_required_paths
from unispeech.training.hydra_config import normalise_argv, recipes_dir

FAMILIES = sorted(p.parent.name for p in recipes_dir().glob("*/recipe.yaml"))
STAGES = sorted(f"{p.parent.name}/{p.stem}" for p in recipes_dir().glob("*/*.yaml") if p.name != "recipe.yaml")
LANGUAGES = {
    "es": "es",
    "fr": "fr",
    "it": "it",
    "ky": "ky",
    "nl": "nl",
    "ru": "ru",
    "sv": "sv-SE",
    "tr": "tr",
    "tt": "tt",
    "zh": "zh-CN",
}


def test_every_recipe_family_has_its_configs_and_readme_together():
    assert FAMILIES == [
        "commonvoice",
        "commonvoice_en1350",
        "commonvoice_multilingual",
        "demo",
        "keyword_spotting",
        "speechocean762",
    ]
    for family in FAMILIES:
        readme = recipes_dir() / family / "README.md"
        assert readme.is_file() and "python -m unispeech" in readme.read_text(), family
    table = (recipes_dir() / "commonvoice" / "README.md").read_text()
    for short, locale in LANGUAGES.items():  # one README, a table of languages
        assert f"`{locale}`" in table and f"commonvoice_{short}" in table, short


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_writes_where_its_recipe_looks_for_it(stage):
    # the driver reads stage FAMILY/NAME's summary from outputs/runs/RUN_NAME/NAME
    cfg = compose_config([f"recipe={stage}", *(["language=fr"] if stage.startswith("commonvoice/") else [])])
    assert cfg.stage == stage.split("/")[1] and not cfg.stages


@pytest.mark.parametrize("recipe", FAMILIES + STAGES + [f"commonvoice_{short}" for short in LANGUAGES])
def test_recipe_composes_and_checks_its_data_first(recipe, tmp_path):
    cfg = compose_config(
        [
            f"recipe={recipe}",
            f"paths.data_root={tmp_path}",
            f"paths.root={tmp_path}/out",
            f"paths.output_dir={tmp_path}/run",
            *(["language=fr"] if recipe.split("/")[0] == "commonvoice" else []),
            "trainer=cpu",  # the GPU recipes' trainers are refused on a machine without one
        ]
    )
    if recipe.endswith("finetune"):  # stage 2 without stage 1: refused at once, naming what to run first
        with pytest.raises(ConfigError, match="run the earlier stage first"):
            check_config(cfg)
        finished = Path(tmp_path) / "out" / "runs" / str(cfg.run_name) / "pretrain"
        finished.mkdir(parents=True)
        (finished / "best.ckpt").write_bytes(b"")
        (finished / "summary.json").write_text(json.dumps({"checkpoint": str(finished / "best.ckpt")}))
        assert cfg.task.module.pretrained == str(finished / "best.ckpt")
    if not cfg.stages:
        OmegaConf.to_container(cfg, resolve=not recipe.startswith("demo"))
    if recipe.startswith("demo"):
        check_config(cfg)
    else:
        with pytest.raises(MissingDataError, match="datacollective|save_to_disk|prepare_speechocean762|arabic-speech"):
            check_required_paths(cfg)


@pytest.mark.parametrize("short", ["es", "sv", "zh"])
def test_one_cross_lingual_recipe_serves_every_language(short, tmp_path):
    locale = LANGUAGES[short]
    family = compose_config([f"recipe=commonvoice_{short}", f"paths.data_root={tmp_path}"])
    assert family.language == locale and list(family.stages) == ["commonvoice/pretrain", "commonvoice/finetune"]
    assert list(family.parameters) == ["language"] and family.run_name == f"commonvoice_{locale}"
    pretrain = compose_config(["recipe=commonvoice/pretrain", f"language={locale}", f"paths.data_root={tmp_path}"])
    assert pretrain.data.unlabeled_corpus.endswith(f"/{locale}") and pretrain.data.corpus.endswith("/en")
    assert pretrain.model.hidden_size == 1024 and pretrain.task.module._target_.endswith("PretrainingTask")
    finetune = compose_config(["recipe=commonvoice/finetune", f"language={locale}", f"paths.data_root={tmp_path}"])
    assert finetune.task.module._target_.endswith("CTCFinetuningTask") and finetune.data.corpus.endswith(f"/{locale}")
    assert finetune.task.module.freeze_transformer_steps == 2000 and finetune.model.mask_time_prob == 0.75
    assert finetune.task.module.scheduler._target_ == "unispeech.tasks.schedules.tri_stage"


def test_the_demo_takes_a_second_target_language_and_names_the_ones_it_has(tmp_path):
    from unispeech.training.stages import stage_command

    family = compose_config(["language=fr"])
    assert family.recipe_info.name == "demo" and list(family.parameters) == ["language"]
    commands = [stage_command(stage, family, ["language=fr"]) for stage in family.stages]
    assert all(command.count("language=fr") == 1 for command in commands)  # passed on to each stage once
    pretrain = compose_config(["recipe=demo/pretrain", "language=fr"])
    assert pretrain.data.unlabeled_corpus.endswith("/fr") and pretrain.data.corpus.endswith("/en")
    finetune = compose_config(["recipe=demo/finetune", "language=fr"])
    assert finetune.data.corpus.endswith("/fr")
    assert compose_config([]).data.unlabeled_corpus.endswith("/es")  # the default stays Spanish
    with pytest.raises(MissingDataError, match="locales en, es and fr: language=es .* or language=fr"):
        check_required_paths(compose_config(["language=de"]))


def test_plus_recipe_from_older_docs_still_works():
    assert normalise_argv(["train", "+recipe=commonvoice_fr", "x=1"]) == ["train", "recipe=commonvoice_fr", "x=1"]


def test_a_language_recipe_without_its_language_is_refused_by_name(tmp_path):
    cfg = compose_config(["recipe=commonvoice/pretrain", f"paths.data_root={tmp_path}"])
    with pytest.raises(ConfigError, match="language must be set.*recipes/commonvoice/README.md"):
        check_config(cfg)


@pytest.mark.parametrize(
    "override, key",
    [
        ("+task.module.learning_rate=1", "task.module.learning_rate"),
        ("+data.corpora=x", "data.corpora"),
        ("+trainer.max_step=3", "trainer.max_step"),
        ("task.monitor_mode=best", "task.monitor_mode"),
        ("+task.module.vocabulary=[a]", "task.module.vocabulary"),
        ("data.mode=ctc", "data.mode"),
    ],
)
def test_bad_keys_are_named(override, key):
    cfg = compose_config([override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(cfg)


@pytest.mark.parametrize(
    "override, words", [("model.hiden_size=3", "hiden_size"), ("model.hidden_size=abc", "hidden_size")]
)
def test_the_model_group_is_typed_by_the_config_dataclass(override, words):
    with pytest.raises(ConfigCompositionException, match=words):
        compose_config([override])
    with pytest.raises(ConfigError, match=r"model\.hiden_size is not a UniSpeechConfig field.*hidden_size"):
        check_config(compose_config(["+model.hiden_size=3"]))


def test_missing_recipe_data_fails_before_any_work(tmp_path):
    cfg = compose_config(["recipe=commonvoice/pretrain", "language=es", "trainer=cpu", f"paths.data_root={tmp_path}"])
    with pytest.raises(MissingDataError) as error:
        run(cfg, tmp_path / "run")
    message = str(error.value)
    assert "cv-corpus" in message and "recipes/commonvoice/README.md" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "group",
    [
        "trainer=gpu",
        "trainer=ddp",
        "trainer=multi_node",
        "logger=many",
        "logger=none",
        "callbacks=debug",
        "task=ctc",
        "task=classification",
        "model=base",
        "model=large",
    ],
)
def test_groups_compose(group):
    cfg = compose_config([group])
    OmegaConf.to_container(cfg.trainer, resolve=True)


DATA_GROUPS = sorted(p.stem for p in (Path(CONF_DIR) / "data").glob("*.yaml") if p.stem != "arguments")


@pytest.mark.parametrize("data", DATA_GROUPS)
def test_every_datamodule_argument_is_overridable_without_plus(data):
    """docs/data.md promises `data.NAME=...` for any argument: each data config carries
    them all (data/arguments), with its own values on top."""
    import inspect

    from unispeech.data import UniSpeechDataModule

    names = [n for n in inspect.signature(UniSpeechDataModule.__init__).parameters if n != "self"]
    cfg = compose_config([f"data={data}", "recipe=null", "data.text_column=transcript", "data.speaker_column=spk"])
    assert set(names) <= set(cfg.data), sorted(set(names) - set(cfg.data))
    assert cfg.data.text_column == "transcript" and cfg.data.speaker_column == "spk"
    own = OmegaConf.load(Path(CONF_DIR) / "data" / f"{data}.yaml")
    assert cfg.data.mode == own.get("mode", "ctc")  # the group's values win over the defaults


def test_basic_sweep_config_lists_a_grid():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["+sweep=lr_grid"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params["task.module.optimizer.lr"] == "2e-4,5e-4,1e-3"
    assert cfg.hydra.run.dir.startswith("outputs/runs/")


@pytest.mark.parametrize(
    "overlay, plugin",
    [
        ("+sweep=optuna", "hydra_plugins.hydra_optuna_sweeper"),
        ("+launcher=slurm", "hydra_plugins.hydra_submitit_launcher"),
    ],
)
def test_plugin_overlays_compose_when_the_sweep_extra_is_installed(overlay, plugin):
    pytest.importorskip(plugin, reason='pip install -e ".[sweep]"')
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[overlay], return_hydra_config=True)
    assert cfg.hydra.sweeper or cfg.hydra.launcher
