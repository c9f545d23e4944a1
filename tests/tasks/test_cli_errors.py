"""The CLIs answer a bad path with one line naming it and exit status 2, not a traceback."""

import numpy as np
import pytest
import soundfile as sf

from unispeech import export, transcribe


def test_transcribe_names_a_missing_model(tmp_path, capsys):
    sf.write(tmp_path / "clip.wav", np.zeros(1600, dtype=np.float32), 16000)
    with pytest.raises(SystemExit) as exit_info:
        transcribe.main(["--model", str(tmp_path / "no-such-model"), str(tmp_path / "clip.wav")])
    assert exit_info.value.code == 2
    assert "no checkpoint directory at" in capsys.readouterr().err


def test_transcribe_names_a_missing_audio_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        transcribe.main(["--model", str(tmp_path), str(tmp_path / "missing.wav")])
    assert exit_info.value.code == 2
    assert "missing.wav" in capsys.readouterr().err


def test_export_names_a_missing_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(tmp_path / "gone.ckpt"), str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "gone.ckpt" in capsys.readouterr().err


def test_transcribe_refuses_a_batch_size_of_zero(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        transcribe.main(["--model", str(tmp_path), "--batch-size", "0", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--batch-size: must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", bytes(range(256)) * 8])
def test_export_names_an_unreadable_checkpoint(tmp_path, capsys, content):
    (tmp_path / "bad.ckpt").write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(tmp_path / "bad.ckpt"), str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "bad.ckpt is not a checkpoint written by unispeech.train" in capsys.readouterr().err


def test_transcribe_names_a_directory_that_is_not_a_model(tmp_path, capsys):
    sf.write(tmp_path / "clip.wav", np.zeros(1600, dtype=np.float32), 16000)
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        transcribe.main(["--model", str(tmp_path / "not_a_model"), str(tmp_path / "clip.wav")])
    assert exit_info.value.code == 2
    assert "not_a_model has no config.json" in capsys.readouterr().err
