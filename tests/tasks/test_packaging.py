"""An installed wheel (not only a checkout) carries the Hydra configs and recipes the entry points read."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_every_config(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("unispeech-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for folder, package, patterns in (("conf", "conf", ("*.yaml",)), ("recipes", "recipes", ("*.yaml", "*.md"))):
        shipped = {name for name in names if name.startswith(f"unispeech/{package}/") and not name.endswith(".py")}
        expected = {
            f"unispeech/{package}/{p.relative_to(ROOT / folder).as_posix()}"
            for pattern in patterns
            for p in (ROOT / folder).rglob(pattern)
        }
        assert expected and expected == shipped, folder
    # and the entry point finds them there when no checkout is around
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import unispeech.train; from unispeech.training.hydra_config import config_dir, recipes_dir; "
        "print(config_dir()); print(recipes_dir())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(target / "unispeech" / "conf"), str(target / "unispeech" / "recipes")]
