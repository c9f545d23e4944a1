"""Every recipe and config group composes; bad configs fail early with the key named."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.tasks.conftest import CONF_DIR, compose_config
from unispeech.train import check_config, run
from unispeech.training.validation import ConfigError, MissingDataError, check_required_paths

RECIPES = sorted(p.stem for p in (Path(CONF_DIR) / "recipe").glob("*.yaml") if p.stem != "commonvoice_lang")
LANGUAGES = ["es", "fr", "it", "ky", "nl", "ru", "sv", "tr", "tt", "zh"]


def test_every_language_has_a_recipe_and_readme():
    for name in ["demo", "commonvoice_en1350", "commonvoice_multilingual", "keyword_spotting"] + [
        f"commonvoice_{l}" for l in LANGUAGES
    ]:
        assert name in RECIPES
        readme = Path(CONF_DIR).parent / "recipes" / name / "README.md"
        assert readme.is_file() and "python -m unispeech" in readme.read_text()


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_composes_and_resolves(recipe, tmp_path):
    cfg = compose_config([f"+recipe={recipe}", f"paths.data_root={tmp_path}", f"paths.output_dir={tmp_path}/run"])
    # resolve everything except the demo corpus (synthesised on demand) and hydra-only keys
    container = OmegaConf.to_container(cfg, resolve=recipe not in ("demo",))
    assert container["task"]["name"] in ("pretrain", "ctc", "classification")
    check_config(cfg)
    if recipe != "demo":
        with pytest.raises(MissingDataError, match="datacollective|save_to_disk"):
            check_required_paths(cfg)


@pytest.mark.parametrize("language", ["es", "sv", "zh"])
def test_language_recipes_share_the_base_and_finetune_stage(language, tmp_path):
    cfg = compose_config([f"+recipe=commonvoice_{language}", f"paths.data_root={tmp_path}"])
    locale = {"sv": "sv-SE", "zh": "zh-CN"}.get(language, language)
    assert cfg.language == locale
    assert cfg.data.unlabeled_corpus.endswith(f"/{locale}") and cfg.data.corpus.endswith("/en")
    assert cfg.model.hidden_size == 1024 and cfg.task.name == "pretrain"
    stage = compose_config([f"+recipe=commonvoice_{language}", "+stage=finetune", f"paths.data_root={tmp_path}"])
    assert stage.task.name == "ctc" and stage.data.train_hours == 1.0 and stage.data.corpus.endswith(f"/{locale}")
    assert stage.task.module.freeze_transformer_steps == 2000 and stage.model.mask_time_prob == 0.75
    assert stage.task.module.scheduler.name == "tri_stage"


@pytest.mark.parametrize(
    "override, key",
    [
        ("+model.hiden_size=3", "model.hiden_size"),
        ("+task.module.learning_rate=1", "task.module.learning_rate"),
        ("+data.corpora=x", "data.corpora"),
        ("+trainer.max_step=3", "trainer.max_step"),
        ("task.monitor_mode=best", "task.monitor_mode"),
    ],
)
def test_bad_keys_are_named(override, key):
    cfg = compose_config([override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(cfg)


def test_missing_recipe_data_fails_before_any_work(tmp_path):
    cfg = compose_config(["+recipe=commonvoice_es", f"paths.data_root={tmp_path}"])
    with pytest.raises(MissingDataError) as error:
        run(cfg, tmp_path / "run")
    message = str(error.value)
    assert "cv-corpus" in message and "recipes/commonvoice_es/README.md" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("group", ["trainer=gpu", "trainer=ddp", "trainer=multi_node", "logger=many", "logger=none",
                                   "callbacks=debug", "task=ctc", "task=classification", "model=base", "model=large"])
def test_groups_compose(group):
    cfg = compose_config([group])
    OmegaConf.to_container(cfg.trainer, resolve=True)


def test_basic_sweep_config_lists_a_grid():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["+sweep=lr_grid"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params["task.module.optimizer.lr"] == "2e-4,5e-4,1e-3"
    assert cfg.hydra.run.dir.startswith("outputs/runs/")


@pytest.mark.parametrize("overlay, plugin", [("+sweep=optuna", "hydra_plugins.hydra_optuna_sweeper"),
                                             ("+launcher=slurm", "hydra_plugins.hydra_submitit_launcher")])
def test_plugin_overlays_compose_when_the_sweep_extra_is_installed(overlay, plugin):
    pytest.importorskip(plugin, reason='pip install -e ".[sweep]"')
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[overlay], return_hydra_config=True)
    assert cfg.hydra.sweeper or cfg.hydra.launcher
