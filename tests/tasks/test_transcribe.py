"""Transcription with untrained models: decoding ahead, precision, the text of a record, and
what the command line does with files it cannot transcribe."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.tasks.random_models import save_random_model
from unispeech import transcribe
from unispeech.data.audio import load_audio
from unispeech.inference import audio_files


@pytest.fixture()
def clips(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate([0.5, 1.0, 0.25, 0.75]):
        path = tmp_path / f"clip{i}.flac"
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        paths.append(path)
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"not audio")
    return paths, broken


def test_decode_ahead_keeps_order_and_hands_back_errors(clips):
    paths, broken = clips
    batches = [[paths[0], paths[1]], [broken, paths[2]], [paths[3]]]
    out = list(audio_files.decode_ahead(batches, workers=3))
    assert [batch for batch, _ in out] == batches
    loaded = [wave for _, waves in out for wave in waves]
    assert isinstance(loaded[2], RuntimeError) and "broken.mp3" in str(loaded[2])
    for path, wave in zip([paths[0], paths[1], paths[2], paths[3]], loaded[:2] + loaded[3:]):
        np.testing.assert_array_equal(wave, load_audio(path))


def test_decode_ahead_holds_a_bounded_number_of_batches(clips, monkeypatch):
    paths, _ = clips
    started = []
    monkeypatch.setattr(audio_files, "load_or_error", lambda path: started.append(path) or path)
    batches = [[p] for p in paths * 3]  # 12 one-file batches
    stream = audio_files.decode_ahead(batches, workers=2)
    next(stream)
    # the batch handed out, plus LOOKAHEAD_BATCHES queued behind it (+1 submitted on hand-out)
    assert len(started) <= 2 + audio_files.LOOKAHEAD_BATCHES
    assert sum(1 for _ in stream) == len(batches) - 1


def test_precision_auto_is_float32_on_cpu_and_bf16_is_opt_in():
    cpu = torch.device("cpu")
    assert transcribe.autocast_dtype("auto", cpu) is None
    assert transcribe.autocast_dtype("fp32", cpu) is None
    assert transcribe.autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        transcribe.autocast_dtype("fp16", cpu)


@pytest.fixture()
def random_model_dir(tmp_path):
    return save_random_model(tmp_path / "model", ["abcdefghij"], "chars")


@pytest.fixture()
def random_phone_model_dir(tmp_path):
    return save_random_model(tmp_path / "phone_model", ["h ə l oʊ | w ɜː l d"], "phones")


def test_unpadded_batches_go_without_a_mask_and_give_the_same_logits(random_model_dir, clips, monkeypatch):
    paths, _ = clips
    transcriber = transcribe.Transcriber(str(random_model_dir), workers=1)
    waves = [load_audio(p) for p in paths]
    calls = []
    forward = transcriber.model.forward

    def recording_forward(x, attention_mask=None):
        out = forward(x, attention_mask=attention_mask)
        calls.append((attention_mask, out.logits))
        return out

    monkeypatch.setattr(transcriber.model, "forward", recording_forward)
    transcriber.transcribe_waveforms(waves[:1])
    transcriber.transcribe_waveforms(waves[:2])  # padded: the mask is needed
    (mask_alone, logits_alone), (mask_padded, _) = calls
    assert mask_alone is None and mask_padded is not None and not mask_padded.all()
    batch = transcriber.features(waves[:1], return_tensors="pt")
    with torch.no_grad():
        with_mask = forward(batch["input_values"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(logits_alone, with_mask, rtol=1e-5, atol=1e-5)


def bad_files(folder):
    """Files a user may hand over by mistake, each with (part of) the reason it must get."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = {
        "corrupt.mp3": (b"not audio at all", "not a readable audio file"),
        "notes.wav": (b"a text file renamed .wav\n", "not a readable audio file"),
        "empty.wav": (b"", "empty file"),
    }
    for name, (content, _) in cases.items():
        (folder / name).write_bytes(content)
    sf.write(folder / "silent.wav", np.zeros(0, dtype=np.float32), 16000)  # a valid header, no samples
    sf.write(folder / "click.wav", np.zeros(100, dtype=np.float32), 16000)  # less than one frame
    reasons = {name: reason for name, (_, reason) in cases.items()}
    reasons.update({"silent.wav": "empty audio", "click.wav": "too short"})
    return {folder / name: reason for name, reason in reasons.items()}


def run_cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "unispeech.transcribe", "--no-progress", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_cli_transcribes_the_good_files_names_each_bad_one_and_exits_1(random_model_dir, clips, tmp_path):
    paths, _ = clips
    bad = bad_files(tmp_path / "bad")
    output = tmp_path / "out.json"
    inputs = [paths[0], *bad, paths[1]]
    done = run_cli("--model", random_model_dir, "--output", output, *inputs)
    assert done.returncode == 1, done.stderr
    records = json.loads(output.read_text())
    assert [r["path"] for r in records] == [str(p) for p in inputs]
    good = [records[0], records[-1]]
    assert all(r["tokens"] and "error" not in r for r in good)  # the bad files did not stop them
    for record, (path, reason) in zip(records[1:-1], bad.items()):
        assert record["text"] == "" and record["tokens"] == [], path
        assert reason in record["error"], (path, record["error"])
        assert "possibly a pipe" not in record["error"]
    lines = done.stderr.strip().splitlines()
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == len(bad)
    for path in bad:
        assert sum(str(path) in line for line in warnings) == 1, path
    # libmpg123's resync notes stay out of the terminal; the last line counts the failures
    assert not any(line.startswith(("Note:", "Warning:", "[src/")) for line in lines), done.stderr
    assert lines[-1] == f"error: {len(bad)} of {len(inputs)} files could not be transcribed"


def test_cli_exits_2_when_no_file_could_be_transcribed(random_model_dir, tmp_path, capsys):
    bad = bad_files(tmp_path / "bad")
    output = tmp_path / "out.tsv"
    with pytest.raises(SystemExit) as exit_info:
        transcribe.main(["--model", str(random_model_dir), "--format", "tsv", "--output", str(output), *map(str, bad)])
    assert exit_info.value.code == 2
    assert f"error: {len(bad)} of {len(bad)} files could not be transcribed" in capsys.readouterr().err
    lines = output.read_text().splitlines()
    assert lines[0] == "path\ttext\terror"  # the error column, since files failed
    assert [line.split("\t")[0] for line in lines[1:]] == [str(p) for p in bad]
    assert all(reason in line.split("\t")[2] for line, reason in zip(lines[1:], bad.values()))


def test_cli_exits_0_and_writes_two_tsv_columns_when_every_file_is_transcribed(random_model_dir, clips, tmp_path):
    paths, _ = clips
    output = tmp_path / "out.tsv"
    transcribe.main(["--model", str(random_model_dir), "--format", "tsv", "--output", str(output), *map(str, paths)])
    lines = output.read_text().splitlines()
    assert lines[0] == "path\ttext" and len(lines) == 1 + len(paths)


def test_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        transcribe.main(["--help"])
    assert "1 some failed, 2 all failed or a usage error" in " ".join(capsys.readouterr().out.split())


def test_the_text_reads_as_the_tokenizer_decodes_and_tokens_keep_the_word_delimiter(
    random_phone_model_dir, clips, tmp_path
):
    from unispeech.data.tokenizer import CTCTokenizer

    paths, _ = clips
    output = tmp_path / "out.json"
    transcribe.main(["--model", str(random_phone_model_dir), "--output", str(output), *map(str, paths)])
    records = json.loads(output.read_text())
    assert any("|" in r["tokens"] for r in records), "precondition: this seeded model outputs word delimiters"
    tokenizer = CTCTokenizer.from_pretrained(random_phone_model_dir)
    for record in records:
        ids = [tokenizer.vocab[t] for t in record["tokens"]]
        assert record["text"] == tokenizer.decode(ids, group_tokens=False)
        assert "|" not in record["text"].split() and "<s>" not in record["text"]


def test_transcript_text_of_phones_and_characters():
    assert transcribe.transcript_text(["h", "ə", "|", "w", "ɜː", "<unk>", "|"], "phones") == "h ə w ɜː"
    assert transcribe.transcript_text(["h", "i", "|", "y", "o", "</s>"], "chars") == "hi yo"


def test_check_audio_reasons(tmp_path):
    for path, reason in bad_files(tmp_path).items():
        with pytest.raises(audio_files.UnreadableAudio, match=reason):
            audio_files.check_audio(path, min_samples=400)
    with pytest.raises(audio_files.UnreadableAudio, match="no such file"):
        audio_files.check_audio(tmp_path / "gone.wav")


def test_min_input_samples_is_the_first_length_with_one_frame(random_model_dir):
    from unispeech.tasks.inference import load_trained_model

    model, _ = load_trained_model(random_model_dir)
    samples = audio_files.min_input_samples(model.config)
    assert model.get_feat_extract_output_lengths(torch.tensor([samples - 1, samples])).tolist() == [0, 1]
