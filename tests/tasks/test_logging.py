"""wandb mode selection and the always-present CSV logger."""

from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from tests.tasks.conftest import compose_config
from unispeech.training import loggers as logging_setup
from unispeech.training.builders import build_loggers
from unispeech.training.loggers import CSVLogger as ContinuedCSVLogger


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # no login on this machine
    monkeypatch.setattr(logging_setup.netrc, "netrc", lambda *a: (_ for _ in ()).throw(FileNotFoundError()))


def test_wandb_is_offline_without_a_login(no_wandb_env, monkeypatch):
    import os

    assert logging_setup.choose_wandb_mode() == "offline"
    assert os.environ["WANDB_MODE"] == "offline"


def test_wandb_follows_an_explicit_mode_or_a_login(no_wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert logging_setup.choose_wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert logging_setup.choose_wandb_mode() == "disabled"


def test_disabled_wandb_leaves_only_csv(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose_config(["logger=default", f"paths.output_dir={tmp_path}"])
    loggers = build_loggers(cfg, Path(tmp_path))
    assert not any(isinstance(logger, WandbLogger) for logger in loggers)
    assert any(isinstance(logger, CSVLogger) for logger in loggers)


def test_csv_logger_is_added_when_none_is_configured(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config(["logger=wandb", f"paths.output_dir={tmp_path}"])
    loggers = build_loggers(cfg, Path(tmp_path))
    # ours: a subclass that keeps metrics.csv's earlier rows when a run resumes
    assert [type(logger) for logger in loggers] == [WandbLogger, ContinuedCSVLogger]
