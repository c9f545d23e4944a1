"""Word edges at pauses: frame levels, which frames are silent, how words snap to them, and
the aligner using it on a constructed posteriorgram over audio with known pauses."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.tasks.random_models import save_random_model
from unispeech.align import Aligner
from unispeech.inference.alignment import TokenSpan, WordSpan
from unispeech.inference.pauses import MAX_REACH_S, frame_levels_db, silent_frames, snap_to_pauses
from unispeech.inference.timestamps import TokenSpan as DecodedToken
from unispeech.transcribe import Transcriber

HOP, FRAME_S = 320, 0.02


def _word(label: str, frames: list[int], start: float | None = None, end: float | None = None) -> WordSpan:
    """A word whose tokens fire one frame each at ``frames``."""
    tokens = tuple(TokenSpan(label[k % len(label)], f, f + 1, -0.1) for k, f in enumerate(frames))
    return WordSpan(
        label, tokens, float(frames[0] if start is None else start), float(frames[-1] + 1 if end is None else end)
    )


def _silent(length: int, speech: list[tuple[int, int]]) -> np.ndarray:
    silent = np.ones(length, dtype=bool)
    for first, stop in speech:
        silent[first:stop] = False
    return silent


def test_frame_levels_are_the_power_of_each_frame_in_db():
    wave = np.concatenate([np.full(HOP, 0.1), np.full(HOP, 0.01), np.zeros(HOP), np.full(HOP // 2, 1.0)])
    levels = frame_levels_db(wave, HOP)
    assert levels.shape == (3,)  # the half frame at the end is no model frame
    np.testing.assert_allclose(levels[:2], [-20.0, -40.0], atol=1e-9)
    assert levels[2] < -100


def test_silent_frames_split_the_files_range_and_need_a_contrast():
    rng = np.random.default_rng(0)
    quiet, loud = 1e-3 * rng.standard_normal(8000), 0.1 * rng.standard_normal(16000)
    silent = silent_frames(frame_levels_db(np.concatenate([quiet, loud, quiet]), HOP))
    assert silent.tolist() == [True] * 25 + [False] * 50 + [True] * 25
    # one level throughout (all noise, or all speech): nothing can be called silence
    assert silent_frames(frame_levels_db(loud, HOP)) is None
    assert silent_frames(np.zeros(0)) is None


def test_the_last_word_ends_where_speech_does_and_the_first_starts_where_it_does():
    silent = _silent(100, [(20, 60)])  # speech in frames 20..59
    words = snap_to_pauses([_word("ab", [23, 30], end=38.5), _word("cd", [40, 47], start=38.5)], silent, FRAME_S)
    assert (words[0].start, words[0].end) == (20.0, 38.5)  # back to the onset; inner boundary kept
    assert (words[1].start, words[1].end) == (38.5, 60.0)  # on to the first silent frame
    # the path's own times without a silence to read
    assert snap_to_pauses(words, None, FRAME_S) == words


def test_edges_reach_no_further_than_max_reach_but_a_file_edge_counts():
    reach = round(MAX_REACH_S / FRAME_S)
    # speech from frame 5 to 150, tokens at 35 and 40: the silence on either side is out of reach
    (word,) = snap_to_pauses([_word("ab", [35, 40])], _silent(200, [(5, 150)]), FRAME_S)
    assert (word.start, word.end) == (35.0, 41.0) and 150 - 41 > reach and 35 - 5 > reach
    # speech from the file's start to its end, both within reach: the word spans the file
    (word,) = snap_to_pauses([_word("ab", [5, 40])], _silent(50, [(0, 50)]), FRAME_S)
    assert (word.start, word.end) == (0.0, 50.0)


def test_words_either_side_of_a_pause_meet_its_edges_and_a_stop_closure_is_no_pause():
    # speech 10..40, pause 40..60 (0.4 s), speech 60..90, then a 4-frame closure 70..74 inside
    silent = _silent(100, [(10, 40), (60, 70), (74, 90)])
    words = [_word("ab", [12, 30], end=50.5), _word("cd", [62, 66], end=72.0), _word("ef", [76, 80], start=72.0)]
    snapped = snap_to_pauses(words, silent, FRAME_S)
    assert [(w.start, w.end) for w in snapped] == [(10.0, 40.0), (60.0, 72.0), (72.0, 90.0)]
    assert [w.tokens for w in snapped] == [w.tokens for w in words]  # token times are the path's
    # a 2-frame closure right after the first word's last token, then speech, then the pause:
    # the word goes on to the pause (the longest silent run), not to the closure
    silent = _silent(100, [(10, 32), (34, 40), (60, 90)])
    snapped = snap_to_pauses([_word("ab", [12, 30], end=50.5), _word("cd", [62, 66])], silent, FRAME_S)
    assert [(w.start, w.end) for w in snapped] == [(10.0, 40.0), (60.0, 90.0)]


def test_a_pause_the_path_put_inside_a_word_goes_to_the_side_with_fewer_of_its_tokens():
    # speech 10..40, a pause 40..65 (0.5 s), speech 65..100; "ab" ends at 38; "cde" has its
    # first token at 39, before the pause, and the rest after it (as the path put 've' once)
    silent = _silent(110, [(10, 40), (65, 100)])
    words = [_word("ab", [12, 30], end=38.5), _word("cde", [39, 70, 80], start=38.5)]
    snapped = snap_to_pauses(words, silent, FRAME_S)
    assert [(w.start, w.end) for w in snapped] == [(10.0, 40.0), (65.0, 100.0)]
    # the mirror case: the last token of "ab" after the pause, "cde" all after it
    words = [_word("ab", [12, 30, 66], end=70.5), _word("cde", [72, 80, 90], start=70.5)]
    snapped = snap_to_pauses(words, silent, FRAME_S)
    assert [(w.start, w.end) for w in snapped] == [(10.0, 40.0), (65.0, 100.0)]


@pytest.fixture(scope="module")
def char_model(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("model"), ["hoy bebo leche"], "chars")


# where the tokens of "hoy bebo" fire in `two_words`, as a CTC model does: a frame each, a
# little after its sound begins; the delimiter in the pause
FIRING = list(zip([17, 20, 24, 60, 72, 78, 84, 90], "hoy|bebo"))


def two_words() -> np.ndarray:
    """Quiet 0-0.3 s, 'hoy' 0.3-1.0 s, a pause to 1.4 s, 'bebo' 1.4-2.1 s, quiet to 2.5 s."""
    rng = np.random.default_rng(1)
    wave = 1e-4 * rng.standard_normal(40000)
    for start, stop in ((0.3, 1.0), (1.4, 2.1)):
        wave[int(start * 16000) : int(stop * 16000)] += 0.1 * rng.standard_normal(int((stop - start) * 16000))
    return wave.astype(np.float32)


def test_aligner_puts_word_edges_at_the_pauses_of_the_audio(char_model, tmp_path):
    wave = two_words()
    path = tmp_path / "hoy_bebo.wav"
    sf.write(path, wave, 16000)

    def aligned(word_edges: str) -> list[tuple[float, float]]:
        aligner = Aligner(str(char_model), word_edges=word_edges)
        vocabulary = aligner.vocabulary
        frames = int(aligner.model.get_feat_extract_output_lengths(torch.tensor(len(wave))))
        log_probs = torch.full((1, frames, len(vocabulary)), -8.0)
        log_probs[..., 0] = -0.01  # blank
        for frame, token in FIRING:
            log_probs[0, frame, 0], log_probs[0, frame, vocabulary.index(token)] = -8.0, -0.01
        aligner.log_probs = lambda waves: (log_probs, torch.tensor([frames]))
        (record,) = aligner.align([(path, "Hoy bebo.")])
        assert [w["word"] for w in record["words"]] == ["hoy", "bebo"]
        return [(w["start"], w["end"]) for w in record["words"]]

    assert aligned("pauses") == [(0.3, 1.0), (1.4, 2.1)]
    # the path alone: tokens' own frames, the boundary in the middle of the delimiter's frame
    assert aligned("ctc") == [(0.34, 1.21), (1.21, 1.82)]
    with pytest.raises(ValueError, match="word_edges must be one of pauses, ctc"):
        Aligner(str(char_model), word_edges="energy")


def test_transcriber_times_words_at_the_pauses_of_the_audio(char_model):
    wave = two_words()
    spans = [DecodedToken(token, frame, frame) for frame, token in FIRING]

    def words(word_edges: str) -> list[tuple[str, float, float]]:
        transcriber = Transcriber(str(char_model), word_edges=word_edges)
        transcriber.token_spans = lambda waves, batch_size=None: [spans]  # the decoder's output, fixed
        record = transcriber.transcribe_waveform(wave)
        return [(w["word"], w["start"], w["end"]) for w in record["words"]]

    assert words("pauses") == [("hoy", 0.3, 1.0), ("bebo", 1.4, 2.1)]
    assert words("ctc") == [("hoy", 0.34, 0.5), ("bebo", 1.44, 1.82)]  # first token's start to last's end
    with pytest.raises(ValueError, match="word_edges must be one of pauses, ctc"):
        Transcriber(str(char_model), word_edges="energy")


@pytest.mark.parametrize("command", ["transcribe", "align"])
def test_a_bad_word_edges_option_is_a_usage_error_naming_the_command(command, char_model, capsys):
    from unispeech import align, transcribe

    main = transcribe.main if command == "transcribe" else align.main
    with pytest.raises(SystemExit) as exited:
        main(["--model", str(char_model), "--word-edges", "energy", "clip.wav", "hoy"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.startswith(f"usage: python -m unispeech.{command}")
    assert "--word-edges: invalid choice: 'energy'" in err and "pauses" in err


def test_both_commands_refuse_a_model_that_is_not_a_ctc_one_or_has_no_vocabulary(tmp_path):
    import unispeech
    from tests.tasks.random_models import tiny_config

    pretrained = tmp_path / "pretrained"
    unispeech.UniSpeechForPreTraining(tiny_config(10)).save_pretrained(pretrained)
    bare = tmp_path / "bare"
    unispeech.UniSpeechForCTC(tiny_config(10)).save_pretrained(bare)  # no vocab.json beside it
    for command, purpose in ((Transcriber, "transcription"), (Aligner, "alignment")):
        with pytest.raises(ValueError, match=f"is a pretrain model; {purpose} needs a CTC fine-tuned one"):
            command(str(pretrained))
        with pytest.raises(ValueError, match="has no tokenizer vocabulary"):
            command(str(bare))
