"""CTC forced alignment: Viterbi against exhaustive search, batching, exact segments of a
constructed posteriorgram, impossible and wrong transcripts, word labels of espeak phones,
espeak-ng's word events, and `python -m unispeech.align` end to end with an untrained model."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.tasks.random_models import save_random_model
from unispeech import align as align_cli
from unispeech.inference.align_text import TranscriptEncoder, word_groups
from unispeech.inference.alignment import (
    AlignmentError,
    align,
    check_alignable,
    frames_needed,
    viterbi,
)

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b", "c", "d"]
BLANK, DELIM, A, B, C, D = 0, 4, 5, 6, 7, 8


# -- the algorithm ----------------------------------------------------------------------
def _collapse(labels: tuple[int, ...]) -> list[int]:
    """CTC's many-to-one map: merge repeats, then drop blanks."""
    return [k for k, _ in itertools.groupby(labels) if k != BLANK]


def _best_by_enumeration(log_probs: torch.Tensor, target: list[int], symbols: list[int]) -> tuple[float, list[int]]:
    """The best frame labelling that collapses to ``target``, trying every labelling over ``symbols``."""
    best = (-math.inf, [])
    for labels in itertools.product(symbols, repeat=log_probs.shape[0]):
        if _collapse(labels) == target:
            score = sum(float(log_probs[t, k]) for t, k in enumerate(labels))
            best = max(best, (score, list(labels)))
    return best


def test_viterbi_equals_exhaustive_search_over_all_ctc_paths():
    torch.manual_seed(1)
    symbols = [BLANK, A, B, C]
    # rows of different lengths; repeated symbols that need a blank between them
    frame_lengths = [7, 4, 6, 5]
    targets = [[A, A, B], [C], [B, C, C], [A, B, A, B]]
    log_probs = torch.randn(4, 7, len(VOCAB), dtype=torch.float64)
    log_probs[..., [1, 2, 3, DELIM, D]] = -1e9  # the enumeration only tries `symbols`
    log_probs = log_probs.log_softmax(-1)
    alignments = align(log_probs, torch.tensor(frame_lengths), targets, VOCAB)
    padded = torch.tensor([t + [0] * (4 - len(t)) for t in targets])
    _, frame_log_probs, path_log_probs = viterbi(
        log_probs, torch.tensor(frame_lengths), padded, torch.tensor([len(t) for t in targets])
    )
    for row, (n, target) in enumerate(zip(frame_lengths, targets)):
        expected_score, expected_path = _best_by_enumeration(log_probs[row, :n], target, symbols)
        assert expected_path, "the test's rows must be alignable"
        assert alignments[row].frame_tokens == expected_path
        assert float(path_log_probs[row]) == pytest.approx(expected_score, abs=1e-5)
        assert float(frame_log_probs[row].sum()) == pytest.approx(expected_score, abs=1e-5)


def test_batched_alignment_equals_one_utterance_at_a_time():
    generator = torch.Generator().manual_seed(3)
    frame_lengths = [40, 23, 31, 12, 40]
    targets = [
        [A, B, DELIM, C, C, D],
        [D, D, D, DELIM, A],
        [A, DELIM, B, DELIM, C, DELIM, D, A, B, C],
        [C, A],
        [B] * 8,
    ]
    log_probs = torch.randn(5, 40, len(VOCAB), generator=generator).mul(3).log_softmax(-1)
    together = align(log_probs, torch.tensor(frame_lengths), targets, VOCAB)
    for row, (n, target) in enumerate(zip(frame_lengths, targets)):
        alone = align(log_probs[row : row + 1, :n], torch.tensor([n]), [target], VOCAB)[0]
        assert together[row].frame_tokens == alone.frame_tokens
        assert len(together[row].frame_tokens) == n
        assert together[row].tokens == alone.tokens
        assert [(w.word, w.start, w.end) for w in together[row].words] == [
            (w.word, w.start, w.end) for w in alone.words
        ]


def _peaky(num_frames: int, peaks: dict[int, int], peak: float = 0.9) -> torch.Tensor:
    """Log-posteriors (1, T, V): blank at ``peak`` everywhere but at ``peaks`` (frame -> token);
    the rest of each frame's mass is spread evenly."""
    probs = torch.full((num_frames, len(VOCAB)), (1 - peak) / (len(VOCAB) - 1))
    probs[:, BLANK] = peak
    for frame, token in peaks.items():
        probs[frame] = (1 - peak) / (len(VOCAB) - 1)
        probs[frame, token] = peak
    return probs.log()[None]


def test_peaky_posteriors_give_the_exact_segments_and_word_times():
    # "ab c": a at frames 3-4, b at 7, the delimiter at 10, c at 14-16, blanks elsewhere
    peaks = {3: A, 4: A, 7: B, 10: DELIM, 14: C, 15: C, 16: C}
    log_probs = _peaky(20, peaks)
    result = align(log_probs, torch.tensor([20]), [[A, B, DELIM, C]], VOCAB, word_labels=[["ab", "c"]])[0]
    assert [(t.token, t.start, t.end) for t in result.tokens] == [
        ("a", 3, 5),
        ("b", 7, 8),
        ("|", 10, 11),
        ("c", 14, 17),
    ]
    assert [t.score for t in result.tokens] == pytest.approx([0.9] * 4)
    # neighbouring words meet in the middle of the delimiter's frame; the edges are the tokens'
    assert [(w.word, w.start, w.end) for w in result.words] == [("ab", 3, 10.5), ("c", 10.5, 17)]
    expected = [BLANK] * 20
    for frame, token in peaks.items():
        expected[frame] = token
    assert result.frame_tokens == expected
    record = align_cli.alignment_record("x.wav", "ab c", result, 20 * 320 + 80, 0.02, min_word_score=0.5)
    assert [(w["word"], w["start"], w["end"], w["low_score"]) for w in record["words"]] == [
        ("ab", 0.06, 0.21, False),
        ("c", 0.21, 0.34, False),
    ]
    assert [t["token"] for t in record["tokens"]] == ["a", "b", "c"]  # no word delimiter
    assert record["duration"] == 0.405 and record["score"] == pytest.approx(0.9)


def test_long_paths_across_several_packed_pointer_blocks_are_exact():
    # 700 and 530 frames (pointers are packed PACK_FRAMES = 256 frames at a time), 63 and 40
    # tokens (2 L + 1 states, not a multiple of the 4 packed to a byte), one peak every 11 or 13
    # frames, repeats among them (each needs its blank), in one batch
    rows = [(700, [A, B, C, D, C, C, B] * 9, 11), (530, [D, D, A, B] * 10, 13)]
    log_probs = torch.full((2, 700, len(VOCAB)), math.log(0.01))
    log_probs[..., BLANK] = math.log(0.9)
    expected = []
    for row, (frames, target, every) in enumerate(rows):
        peaks = [(5 + every * k, token) for k, token in enumerate(target)]
        assert peaks[-1][0] < frames
        for frame, token in peaks:
            log_probs[row, frame, BLANK], log_probs[row, frame, token] = math.log(0.01), math.log(0.9)
        expected.append([(VOCAB[token], frame, frame + 1) for frame, token in peaks])
    alignments = align(log_probs, torch.tensor([700, 530]), [t for _, t, _ in rows], VOCAB)
    assert [[(t.token, t.start, t.end) for t in a.tokens] for a in alignments] == expected
    assert len(alignments[1].frame_tokens) == 530


def test_a_word_the_audio_does_not_contain_is_flagged_low_score():
    # the audio says "ab c"; the transcript says "ab d c": d gets frames where the model hears blank
    log_probs = _peaky(20, {3: A, 4: A, 7: B, 10: DELIM, 14: C, 15: C, 16: C}, peak=0.99)
    result = align(log_probs, torch.tensor([20]), [[A, B, DELIM, D, DELIM, C]], VOCAB, word_labels=[["ab", "d", "c"]])[
        0
    ]
    record = align_cli.alignment_record("x.wav", "ab d c", result, 6480, 0.02, align_cli.DEFAULT_MIN_WORD_SCORE)
    flags = {w["word"]: (w["low_score"], w["score"]) for w in record["words"]}
    assert flags["ab"][0] is False and flags["c"][0] is False
    assert flags["d"][0] is True and flags["d"][1] < 0.01 < 0.9 < flags["ab"][1]


def test_a_transcript_longer_than_the_audio_is_an_error_with_the_numbers():
    assert frames_needed([A, A, A, B]) == 6  # two blanks keep the three a's apart
    with pytest.raises(AlignmentError) as caught:
        check_alignable([A, A, A, B], 5, "clip.wav", seconds_per_frame=0.02)
    message = str(caught.value)
    assert message.startswith("clip.wav: transcript too long for the audio")
    assert "4 tokens and 2 blanks between repeated tokens" in message and "at least 6 frames (0.12 s)" in message
    assert "gives 5 frames (0.10 s of audio)" in message and "\n" not in message
    check_alignable([A, A, A, B], 6)  # exactly enough
    log_probs = torch.zeros(2, 6, len(VOCAB)).log_softmax(-1)
    with pytest.raises(
        AlignmentError,
        match="batch row 1: .*: 3 tokens and 1 blank between repeated tokens need at least 4 frames, "
        "the audio gives 3 frames$",
    ):
        align(log_probs, torch.tensor([6, 3]), [[A], [B, B, C]], VOCAB)


# -- transcripts -> targets ----------------------------------------------------------------
def test_word_groups_follow_espeak_merges_and_splits():
    # one phone word per written word
    assert word_groups(["el", "gato"], [["e", "l"], ["g", "a", "t", "o"]], [["e", "l"], ["g", "a", "t", "o"]]) == (
        ["el", "gato"],
        [1, 1],
    )
    # espeak joins a clitic to the next word: "of the" is one phone word
    merged = word_groups(
        ["of", "the", "people"], [["ʌ", "v"], ["ð", "ə"], ["p", "iː", "p"]], [["ʌ", "v", "ð", "ə"], ["p", "iː", "p"]]
    )
    assert merged == (["of the", "people"], [1, 1])
    # a numeral becomes several phone words, and a context change (a linking phone) is absorbed
    split = word_groups(
        ["en", "1995"],
        [["e", "n"], ["m", "i", "l", "n", "o", "β", "e"]],
        [["e", "n", "z"], ["m", "i", "l"], ["n", "o"], ["β", "e"]],
    )
    assert split == (["en", "1995"], [1, 3])


def test_phone_transcripts_are_phonemized_in_the_models_language_and_unknown_phones_named():
    from unispeech.data.phonemes import phonemize

    phones = phonemize(["el gato ve una casa"], "es")[0]
    vocab = ["<pad>", "<s>", "</s>", "<unk>", "|"] + sorted(set(phones.split()) - {"|"})
    encoder = TranscriptEncoder(vocab, "phones", "es")
    target, unknown = encoder.encode(["El gato, ve una casa.", "Hoy bebo leche."])
    assert [vocab[i] for i in target.token_ids] == phones.split()
    assert target.labels == ["el", "gato", "ve", "una", "casa"] and target.group_sizes == [1] * 5
    assert isinstance(unknown, AlignmentError)
    assert str(unknown).startswith("phones not in the model's vocabulary: ") and "tʃ" in str(unknown)
    with pytest.raises(ValueError, match="--language"):
        TranscriptEncoder(vocab, "phones", "")


def test_character_transcripts_are_normalised_like_the_training_targets():
    encoder = TranscriptEncoder(VOCAB, "chars")
    target, bad, empty = encoder.encode(["Ab, C!", "ab x", "¡¿...?!"])
    assert [VOCAB[i] for i in target.token_ids] == ["a", "b", "|", "c"] and target.labels == ["ab", "c"]
    assert str(bad) == (
        "characters not in the model's vocabulary: x (a transcript in another language or script than the model's?)"
    )
    assert "empty transcript" in str(empty)


# -- espeak-ng word events (the reference of scripts/alignment_error.py) -------------------
def test_espeak_word_events_name_the_words_and_leave_the_audio_unchanged():
    from unispeech.data.espeak_synth import EspeakSynth

    text = "El gato ve una casa pequeña."
    # fresh instances (espeak-ng carries state between utterances); the plain voice has no
    # breath noise, so its first utterance repeats exactly
    plain = EspeakSynth.private().synthesize(text, "es", rate=170)
    synth = EspeakSynth.private()
    audio, events = synth.synthesize_with_words(text, "es", rate=170)
    np.testing.assert_array_equal(audio, plain)
    assert [text[e.start : e.start + e.length] for e in events] == ["El", "gato", "ve", "una", "casa", "pequeña"]
    samples = [e.sample for e in events]
    assert samples[0] == 0 and samples == sorted(samples) and samples[-1] < len(audio)
    # 'una' starts with a vowel: the signal is loud right after its event, and the event is past 'ev' of 've'
    assert np.abs(audio[samples[3] : samples[3] + 441]).max() > 0.05
    assert synth._word_events is None  # recording is off again: plain synthesis is as before


# -- the command line ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def char_model(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("model"), ["el gato ve una casa", "hoy bebo leche"], "chars")


@pytest.fixture()
def clips(tmp_path):
    rng = np.random.default_rng(0)
    for name, seconds in (("one.wav", 1.0), ("two.flac", 0.6), ("short.wav", 0.2)):
        sf.write(tmp_path / name, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    manifest = tmp_path / "clips.tsv"
    manifest.write_text(
        "path\tsentence\tclient_id\n"
        "one.wav\tEl gato ve una casa.\tx\n"
        "two.flac\tHoy bebo leche.\ty\n"
        "short.wav\tEl gato ve una casa y hoy bebo leche.\tz\n",
        encoding="utf-8",
    )
    return manifest


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        align_cli.main(argv)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exited.value.code or 0, out, err


@pytest.mark.slow
def test_cli_aligns_a_manifest_to_json_and_ctm_and_names_the_file_it_cannot_align(char_model, clips, capsys, caplog):
    code, out, err = _run(["--model", str(char_model), "--manifest", str(clips), "--no-progress"], capsys)
    assert code == 1
    assert "error: 1 of 3 files could not be aligned" in err
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # one, naming the file
    assert warning.startswith(f"cannot align {clips.parent / 'short.wav'}: transcript too long for the audio")
    records = json.loads(out)
    assert [r["path"] for r in records] == [str(clips.parent / n) for n in ("one.wav", "two.flac", "short.wav")]
    one, two, short = records
    assert "36 tokens need at least 36 frames" in short["error"] and "gives 9 frames" in short["error"]
    assert [w["word"] for w in one["words"]] == ["el", "gato", "ve", "una", "casa"]
    assert "".join(t["token"] for t in two["tokens"]) == "hoybeboleche"
    for record in (one, two):
        bounds = [x for w in record["words"] for x in (w["start"], w["end"])]
        assert bounds == sorted(bounds) and 0 <= bounds[0] and bounds[-1] <= record["duration"]
        assert all(0 < w["score"] <= 1 and isinstance(w["low_score"], bool) for w in record["words"])
        assert all(round(t["start"] / 0.02, 6).is_integer() for t in record["tokens"])  # 20 ms frames

    ctm = clips.parent / "out.ctm"
    code, _, _ = _run(
        ["--model", str(char_model), "--manifest", str(clips), "--format", "ctm", "--output", str(ctm)], capsys
    )
    assert code == 1
    lines = [line.split() for line in ctm.read_text().splitlines()]
    assert [line[0] for line in lines] == ["one"] * 5 + ["two"] * 3
    assert [line[4] for line in lines[:5]] == ["el", "gato", "ve", "una", "casa"]
    first = one["words"][0]
    assert lines[0][1:4] == ["1", f"{first['start']:.3f}", f"{first['end'] - first['start']:.3f}"]


@pytest.mark.slow
def test_cli_writes_textgrids_that_praatio_reads_back(char_model, clips, tmp_path, capsys):
    from praatio import textgrid

    grids = tmp_path / "grids"
    argv = ["--model", str(char_model), "--manifest", str(clips), "--format", "textgrid", "--output", str(grids)]
    code, _, _ = _run(argv, capsys)
    assert code == 1
    assert sorted(p.name for p in grids.iterdir()) == ["one.TextGrid", "two.TextGrid"]
    code, out, _ = _run(["--model", str(char_model), str(tmp_path / "one.wav"), "El gato ve una casa."], capsys)
    assert code == 0
    record = json.loads(out)[0]
    grid = textgrid.openTextgrid(str(grids / "one.TextGrid"), includeEmptyIntervals=False)
    assert grid.tierNames == ("words", "chars")
    assert grid.maxTimestamp == pytest.approx(1.0)
    words = [(e.start, e.end, e.label) for e in grid.getTier("words").entries]
    assert words == [pytest.approx((w["start"], w["end"], w["word"])) for w in record["words"]]
    assert [e.label for e in grid.getTier("chars").entries] == list("elgatoveunacasa")


def test_cli_reads_a_transcript_file_and_a_commonvoice_split(char_model, clips, tmp_path, capsys):
    (tmp_path / "one.txt").write_text("el gato\n", encoding="utf-8")
    code, out, _ = _run(["--model", str(char_model), str(tmp_path / "one.wav"), f"@{tmp_path / 'one.txt'}"], capsys)
    assert code == 0 and [w["word"] for w in json.loads(out)[0]["words"]] == ["el", "gato"]

    locale = tmp_path / "cv" / "es"
    (locale / "clips").mkdir(parents=True)
    (tmp_path / "two.flac").rename(locale / "clips" / "two.flac")
    (locale / "test.tsv").write_text("client_id\tpath\tsentence\nabc\ttwo.flac\tHoy bebo leche.\n", encoding="utf-8")
    code, out, _ = _run(["--model", str(char_model), "--commonvoice", str(locale), "--no-progress"], capsys)
    assert code == 0 and [w["word"] for w in json.loads(out)[0]["words"]] == ["hoy", "bebo", "leche"]
    code, _, err = _run(["--model", str(char_model), "--commonvoice", str(locale), "--split", "dev"], capsys)
    assert code == 2 and err.strip().endswith("(splits there: test)")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{clip}"], "AUDIO needs a TRANSCRIPT"),
        (["{clip}", "@{dir}/missing.txt"], "no such transcript file"),
        (["--manifest", "{dir}/none.tsv"], "no such manifest"),
        (["{clip}", "el gato", "--manifest", "{dir}/clips.tsv"], "one of them"),
        (["{dir}/nowhere.wav", "el gato"], "1 of 1 files could not be aligned"),
    ],
)
def test_cli_usage_errors_are_one_line_with_status_2(char_model, clips, argv, message, capsys):
    argv = [a.format(clip=clips.parent / "one.wav", dir=clips.parent) for a in argv]
    code, _, err = _run(["--model", str(char_model), *argv], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_textgrids_without_praatio_stop_with_the_install_command(char_model, clips, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "praatio", None)  # `import praatio` now raises ImportError
    monkeypatch.setitem(sys.modules, "praatio.textgrid", None)
    code, out, err = _run(
        ["--model", str(char_model), str(clips.parent / "one.wav"), "el gato", "--format", "textgrid"], capsys
    )
    assert code == 2 and out == ""
    assert err == "error: TextGrid output needs praatio: pip install 'unispeech[align]'\n"


@pytest.mark.slow
def test_python_m_unispeech_align_runs(char_model, clips):
    done = subprocess.run(
        [sys.executable, "-m", "unispeech.align", "--model", str(char_model), str(clips.parent / "two.flac"), "hoy"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert [w["word"] for w in json.loads(done.stdout)[0]["words"]] == ["hoy"]


def test_cli_phone_model_labels_words_with_the_transcript_and_tiers_phones(tmp_path, clips, capsys):
    from praatio import textgrid

    from unispeech.data.phonemes import phonemize

    texts = ["el gato ve una casa", "hoy bebo leche"]
    model = save_random_model(tmp_path / "phones", phonemize(texts, "es"), "phones", language="es")
    code, out, _ = _run(["--model", str(model), str(clips.parent / "one.wav"), "El gato ve una casa."], capsys)
    assert code == 0
    record = json.loads(out)[0]
    assert [w["word"] for w in record["words"]] == ["el", "gato", "ve", "una", "casa"]
    assert " ".join(t["token"] for t in record["tokens"]) == phonemize(texts[:1], "es")[0].replace(" |", "")
    grid_file = tmp_path / "one.TextGrid"
    argv = ["--model", str(model), str(clips.parent / "one.wav"), "El gato ve una casa."]
    code, _, _ = _run([*argv, "--format", "textgrid", "--output", str(grid_file)], capsys)
    assert code == 0
    grid = textgrid.openTextgrid(str(grid_file), includeEmptyIntervals=False)
    assert grid.tierNames == ("words", "phones")
    assert [e.label for e in grid.getTier("phones").entries] == [t["token"] for t in record["tokens"]]
    code, _, err = _run([*argv, "--language", "xx"], capsys)
    assert code == 2 and err == 'error: language "xx" is not supported by the espeak backend\n'


def test_a_recording_longer_than_a_window_is_aligned_alone_from_windowed_posteriors(
    char_model, clips, monkeypatch, capsys
):
    """--chunk-length-s 0.5: one.wav (1 s) goes through the model in windows, by itself; two.flac
    (0.6 s) too; the short.wav error is unchanged. The path is found over the whole recording."""
    from unispeech.inference import logits as ctc_logits

    calls = []
    windowed = ctc_logits.windowed_logits

    def counting(model, wave, *args, **kwargs):
        calls.append(len(wave))
        return windowed(model, wave, *args, **kwargs)

    monkeypatch.setattr(ctc_logits, "windowed_logits", counting)
    code, out, _ = _run(
        ["--model", str(char_model), "--manifest", str(clips), "--no-progress", "--chunk-length-s", "0.5"], capsys
    )
    records = json.loads(out)
    assert code == 1 and sorted(calls) == [9600, 16000]  # the two long files, each alone
    assert [bool(r.get("error")) for r in records] == [False, False, True]
    for record in records[:2]:
        assert record["words"][0]["start"] >= 0 and record["words"][-1]["end"] <= record["duration"]
        assert [w["word"] for w in record["words"]] == record["transcript"].lower().rstrip(".").split()
    # windowed and whole: the same number of frames, so the same tokens can be placed
    aligner = align_cli.Aligner(str(char_model), chunk_length_s=0.5)
    wave = np.asarray(sf.read(clips.parent / "one.wav", dtype="float32")[0])
    (windowed_lp, lengths), whole_lp = (
        aligner.log_probs([wave]),
        align_cli.Aligner(str(char_model), chunk_length_s=0).log_probs([wave])[0],
    )
    assert windowed_lp.shape == whole_lp.shape and lengths.tolist() == [whole_lp.shape[1]]


def test_a_recording_whose_alignment_would_not_fit_in_memory_is_refused_and_the_others_aligned(
    char_model, clips, monkeypatch, capsys
):
    # one.wav: 49 frames x 39 states (19 tokens) -> 490 bytes of pointers; two.flac: 29 x 29 -> 232
    assert align_cli.pass_memory_bytes(49, 19) == 490 and align_cli.pass_memory_bytes(29, 14) == 232
    monkeypatch.setattr(align_cli, "available_memory_bytes", lambda device: 400)  # 80 %: 320 bytes
    code, out, _ = _run(["--model", str(char_model), "--manifest", str(clips), "--no-progress"], capsys)
    one, two, short = json.loads(out)
    assert code == 1 and "words" in two and "transcript too long" in short["error"]
    assert one["error"].startswith(
        "aligning 0.0 min of audio to 19 tokens needs about 0 MiB, more than 80% of the 0 MiB free"
    )
    assert "cut the audio and its transcript into parts" in one["error"]


def test_free_memory_counts_a_cgroup_limit_and_ignores_an_unlimited_one(tmp_path, monkeypatch):
    limit, usage = tmp_path / "memory.max", tmp_path / "memory.current"
    usage.write_text("400\n")
    monkeypatch.setattr(align_cli, "CGROUP_MEMORY", [(str(limit), str(usage))])
    limit.write_text("1000\n")  # a job limited to 1000 bytes, 400 used: at most 600 free
    assert align_cli.available_memory_bytes(torch.device("cpu")) == 600
    limit.write_text("max\n")  # no limit: the host's MemAvailable alone (when the host has one)
    free = align_cli.available_memory_bytes(torch.device("cpu"))
    assert free is None or free > 600
