"""Token and word timestamps from CTC frames, and the srt / vtt / ctm outputs of unispeech.transcribe."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.tasks.random_models import save_random_model
from unispeech import transcribe
from unispeech.inference import writers
from unispeech.inference.chunking import FrameGrid
from unispeech.inference.timestamps import (
    Segment,
    TokenSpan,
    greedy_token_spans,
    timestamp_fields,
    token_segments,
    word_segments,
)
from unispeech.modeling import UniSpeechConfig
from unispeech.tasks.metrics import greedy_decode

PHONES = ["<pad>", "<s>", "</s>", "<unk>", "|", "h", "ə", "w", "ɜː"]
CHARS = ["<pad>", "<s>", "</s>", "<unk>", "|", "h", "i", "y", "o"]
FRAME = 0.02  # seconds, at the default conv strides


def test_the_default_frame_is_20_ms_from_the_conv_strides():
    grid = FrameGrid.of(UniSpeechConfig())
    assert (grid.hop, grid.field, grid.frame_seconds) == (320, 400, 0.02)


def test_tokens_are_runs_of_non_blank_frames_from_first_to_last_frame():
    #        0  1  2  3  4  5  6  7  8  9 10 11 12 13
    frames = [0, 5, 5, 0, 6, 6, 6, 4, 4, 0, 7, 0, 7, 8]
    assert greedy_token_spans(frames, PHONES) == [
        TokenSpan("h", 1, 2),
        TokenSpan("ə", 4, 6),
        TokenSpan("|", 7, 8),
        TokenSpan("w", 10, 10),
        TokenSpan("w", 12, 12),  # a repeat parted by a blank is a new token
        TokenSpan("ɜː", 13, 13),
    ]
    assert greedy_token_spans([0, 0, 0], PHONES) == []
    assert greedy_token_spans([], PHONES) == []
    assert greedy_token_spans([42], PHONES) == [TokenSpan("<unk>", 0, 0)]  # an id out of the vocabulary


def test_the_tokens_of_the_spans_are_those_of_greedy_decoding():
    logits = torch.randn(3, 200, len(PHONES), generator=torch.Generator().manual_seed(0))
    logits[:, :, 0] += 1.0  # blanks as in a CTC model's output, so that runs of several frames occur
    lengths = torch.tensor([200, 150, 7])
    expected = greedy_decode(logits, lengths, PHONES)
    for row, length, tokens in zip(logits.argmax(-1), lengths, expected):
        spans = greedy_token_spans(row[:length].tolist(), PHONES)
        assert [span.token for span in spans] == tokens
        assert all(row[s.first_frame : s.last_frame + 1].unique().tolist() == [PHONES.index(s.token)] for s in spans)


def test_token_times_run_from_the_start_of_the_first_frame_to_the_end_of_the_last():
    spans = [TokenSpan("h", 1, 2), TokenSpan("|", 7, 8), TokenSpan("w", 150, 150)]
    assert token_segments(spans, FRAME) == [Segment("h", 0.02, 0.06), Segment("|", 0.14, 0.18), Segment("w", 3.0, 3.02)]


def test_phone_words_split_at_the_delimiter_and_join_their_phones_with_spaces():
    frames = [0, 5, 5, 0, 6, 6, 6, 4, 4, 0, 7, 0, 3, 8, 8, 0, 4]
    words = word_segments(greedy_token_spans(frames, PHONES), FRAME, "phones")
    # <unk> (frame 12) is in no word and does not split one, as in metrics.words
    assert words == [Segment("h ə", 0.02, 0.14), Segment("w ɜː", 0.2, 0.3)]


def test_character_words_join_their_characters_and_leading_or_doubled_delimiters_make_no_empty_word():
    frames = [4, 0, 5, 6, 4, 4, 0, 4, 7, 0, 8, 8, 8, 4]
    words = word_segments(greedy_token_spans(frames, CHARS), FRAME, "chars")
    assert words == [Segment("hi", 0.04, 0.08), Segment("yo", 0.16, 0.26)]


def test_silence_moves_the_edges_of_words_next_to_it_and_leaves_tokens_alone():
    # h ə | w ɜː, the last phone firing at frame 13; speech in frames 1..6 and 9..19, a 2-frame
    # gap (a stop's closure, no pause) between the words
    spans = greedy_token_spans([0, 5, 5, 0, 6, 6, 6, 4, 4, 0, 7, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0], PHONES)
    silent = np.ones(22, dtype=bool)
    silent[1:7] = silent[9:20] = False
    timed = timestamp_fields(spans, FRAME, "phones", silent)
    assert timed["words"] == [
        {"word": "h ə", "start": 0.02, "end": 0.14},
        {"word": "w ɜː", "start": 0.2, "end": 0.4},  # on to frame 20, the first silent one after it
    ]
    assert timed["token_timestamps"] == timestamp_fields(spans, FRAME, "phones")["token_timestamps"]
    assert timestamp_fields(spans, FRAME, "phones")["words"][-1]["end"] == 0.28  # the path alone


def test_a_decoded_word_across_a_pause_is_two_words_and_a_closure_splits_nothing():
    # "h ə" then 'w ɜː' with no delimiter between them (a model that emits none at a sentence's
    # end), the two halves 15 frames (0.3 s) of silence apart; a stop closure of 3 frames
    # (60 ms) inside the second half
    frames = [0, 5, 0, 6] + [0] * 15 + [7, 0, 0, 0, 0, 8, 0]
    spans = greedy_token_spans(frames, PHONES)
    silent = np.zeros(len(frames), dtype=bool)
    silent[0] = silent[4:19] = silent[21:24] = silent[-1] = True
    words = word_segments(spans, FRAME, "phones", silent)
    assert [(w.text, w.start, w.end) for w in words] == [("h ə", 0.02, 0.08), ("w ɜː", 0.38, 0.5)]
    assert [w.text for w in word_segments(spans, FRAME, "phones")] == ["h ə w ɜː"]  # the path alone


def test_json_fields_keep_every_token_and_round_to_the_millisecond():
    spans = greedy_token_spans([0, 5, 0, 4, 7, 7, 7], PHONES)
    fields = timestamp_fields(spans, 1 / 3, "phones")  # a frame duration with no exact decimal
    assert fields == {
        "token_timestamps": [
            {"token": "h", "start": 0.333, "end": 0.667},
            {"token": "|", "start": 1.0, "end": 1.333},
            {"token": "w", "start": 1.333, "end": 2.333},
        ],
        "words": [{"word": "h", "start": 0.333, "end": 0.667}, {"word": "w", "start": 1.333, "end": 2.333}],
    }


def word(text, start, end):
    return {"word": text, "start": start, "end": end}


def test_cues_break_at_42_characters_7_seconds_and_pauses_of_a_second():
    words = [
        word("the", 0.0, 0.2),
        word("cat", 0.3, 0.5),
        word("sat", 1.49, 1.7),  # after a pause of 0.99 s: the same cue
        word("down", 2.9, 3.0),  # after a pause of 1.2 s: a new cue
        *[word(f"w{i:02d}", 3.0 + 0.9 * i, 3.8 + 0.9 * i) for i in range(8)],  # w07 ends at 10.1 s
        word("x" * 50, 10.2, 11.0),  # longer than a line: a cue of its own
        word("end", 11.1, 11.3),
    ]
    cues = writers.subtitle_cues(words)
    assert [c["text"] for c in cues] == [
        "the cat sat",
        "down w00 w01 w02 w03 w04 w05 w06",  # 2.9 .. 9.2 s; with w07 it would last 7.2 s
        "w07",
        "x" * 50,
        "end",
    ]
    assert [(c["start"], c["end"]) for c in cues[:3]] == [(0.0, 1.7), (2.9, 9.2), (9.3, 10.1)]
    one_line = writers.subtitle_cues([word(f"word{i}", i * 0.3, i * 0.3 + 0.2) for i in range(12)])
    assert [len(c["text"]) for c in one_line] == [41, 31]  # 7 words of 5 + 6 spaces; one more would make 47


def test_a_phone_word_shows_in_a_cue_as_its_phones_run_together():
    cues = writers.subtitle_cues([word("p a n", 0.0, 0.2), word("l e tʃ e", 0.3, 0.6)])
    assert cues == [{"text": "pan letʃe", "start": 0.0, "end": 0.6}]


def test_srt_and_vtt_text_and_time_formats():
    record = {"path": "talk.wav", "words": [word("hello", 0.12, 0.5), word("there", 3723.4, 3724.4567)]}
    srt, vtt = io.StringIO(), io.StringIO()
    writers.write_srt(record, srt)
    writers.write_vtt(record, vtt)
    assert srt.getvalue() == ("1\n00:00:00,120 --> 00:00:00,500\nhello\n\n2\n01:02:03,400 --> 01:02:04,457\nthere\n\n")
    assert vtt.getvalue() == (
        "WEBVTT\n\n00:00:00.120 --> 00:00:00.500\nhello\n\n01:02:03.400 --> 01:02:04.457\nthere\n\n"
    )


def test_ctm_has_one_line_per_word_with_the_file_stem_channel_start_and_duration():
    records = [
        {"path": "clips/my talk.flac", "words": [word("p a n", 0.12, 0.5), word("e", 0.62, 0.7)]},
        {"path": "bad.mp3", "text": "", "tokens": [], "error": "not a readable audio file"},
        {"path": "x/b.wav", "words": [word("hi", 61.0, 61.02)]},
    ]
    out = io.StringIO()
    writers.write_ctm(records, out)
    assert out.getvalue().splitlines() == [
        "my_talk 1 0.120 0.380 p_a_n",
        "my_talk 1 0.620 0.080 e",
        "b 1 61.000 0.020 hi",
    ]


# --- the command line, end to end ---------------------------------------------------------


@pytest.fixture(scope="module")
def phone_model(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("model") / "phones", ["h ə l oʊ | w ɜː l d"], "phones")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(1)
    paths = []
    for name, seconds in [("one", 3.0), ("two", 1.5)]:
        paths.append(folder / f"{name}.flac")
        sf.write(paths[-1], (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    return paths


def run_cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "unispeech.transcribe", "--no-progress", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def timed_records(model, clips, tmp_path):
    output = tmp_path / "timed.json"
    transcribe.main(["--model", str(model), "--timestamps", "--no-progress", "--output", str(output), *map(str, clips)])
    return json.loads(output.read_text())


def test_json_records_with_timestamps_cover_every_token_in_order(phone_model, clips, tmp_path):
    records = timed_records(phone_model, clips, tmp_path)
    for record in records:
        times = record["token_timestamps"]
        assert [t["token"] for t in times] == record["tokens"] and times, "precondition: the model outputs tokens"
        starts = [t["start"] for t in times]
        assert starts == sorted(starts) and all(t["end"] > t["start"] for t in times)
        assert times[-1]["end"] <= record["seconds"]
        assert " ".join(w["word"] for w in record["words"]) == record["text"]
    plain = tmp_path / "plain.json"
    transcribe.main(["--model", str(phone_model), "--no-progress", "--output", str(plain), *map(str, clips)])
    assert "words" not in json.loads(plain.read_text())[0]  # off unless asked for


@pytest.mark.slow  # a new process imports torch and lightning: 7 s of CPU
def test_cli_writes_one_srt_per_file_into_the_output_directory(phone_model, clips, tmp_path):
    records = timed_records(phone_model, clips, tmp_path)
    out_dir = tmp_path / "subtitles"
    done = run_cli("--model", phone_model, "--format", "srt", "--output", out_dir, *clips)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["one.srt", "two.srt"]
    for path, record in zip(clips, records):
        blocks = (out_dir / f"{path.stem}.srt").read_text().strip().split("\n\n")
        cues = writers.subtitle_cues(record["words"])
        assert len(blocks) == len(cues) > 0
        for number, (block, cue) in enumerate(zip(blocks, cues), start=1):
            index, times, text = block.split("\n")
            assert index == str(number) and text == cue["text"]
            assert re.fullmatch(r"00:00:0\d,\d{3} --> 00:00:0\d,\d{3}", times)
            assert times == f"{writers._clock(cue['start'], ',')} --> {writers._clock(cue['end'], ',')}"


@pytest.mark.slow
def test_cli_writes_ctm_lines_matching_the_word_timestamps(phone_model, clips, tmp_path):
    records = timed_records(phone_model, clips, tmp_path)
    done = run_cli("--model", phone_model, "--format", "ctm", *clips)
    assert done.returncode == 0, done.stderr
    lines = [line.split(" ") for line in done.stdout.splitlines()]
    expected = [(p.stem, w) for p, r in zip(clips, records) for w in r["words"]]
    assert len(lines) == len(expected) > 0
    for fields, (stem, w) in zip(lines, expected):
        assert fields[:2] == [stem, "1"] and len(fields) == 5
        assert float(fields[2]) == pytest.approx(w["start"]) and float(fields[3]) == pytest.approx(
            w["end"] - w["start"]
        )
        assert fields[4] == w["word"].replace(" ", "_")


def test_one_input_writes_subtitles_to_stdout(phone_model, clips, capsys):
    transcribe.main(["--model", str(phone_model), "--format", "vtt", "--no-progress", str(clips[1])])
    out = capsys.readouterr().out
    assert out.startswith("WEBVTT\n\n") and re.search(r"\n00:00:0\d\.\d{3} --> 00:00:0\d\.\d{3}\n", out)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--format", "srt"], "--format srt of 2 files writes one file each: pass --output DIRECTORY"),
        (["--format", "tsv", "--timestamps"], "--timestamps adds to JSON records"),
        (["--chunk-length-s", "-1"], "--chunk-length-s: must be at least 0, got -1"),
        (["--chunk-length-s", "10", "--stride-length-s", "5"], "keeps nothing"),
        (["--stride-length-s", "1,2,3"], "--stride-length-s: one number of seconds or two (LEFT,RIGHT)"),
        (["--stride-length-s", "1,x"], "--stride-length-s: not a number of seconds: 'x'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(phone_model, clips, capsys, options, message):
    with pytest.raises(SystemExit) as exit_info:
        transcribe.main(["--model", str(phone_model), "--no-progress", *options, *map(str, clips)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_several_inputs_whose_names_clash_are_refused(phone_model, clips, tmp_path, capsys):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "one.flac").write_bytes(clips[0].read_bytes())
    with pytest.raises(SystemExit) as exit_info:
        options = ["--format", "srt", "--output", str(tmp_path / "subs")]
        transcribe.main(["--model", str(phone_model), *options, str(clips[0]), str(other / "one.flac")])
    assert exit_info.value.code == 2
    assert "would both write" in capsys.readouterr().err
