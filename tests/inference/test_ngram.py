"""N-gram LMs of unispeech.inference.ngram (ARPA reading, scoring, estimation, loading) and
scripts/train_ngram.py, which builds them from transcripts."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unispeech.inference.ngram import (
    LN10,
    ArpaModel,
    KenLMModel,
    LanguageModelError,
    UnigramModel,
    estimate_kneser_ney,
    load_language_model,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_ngram.py"
sys.path.insert(0, str(SCRIPT.parent))

import train_ngram  # noqa: E402

SENTENCES = [
    s.split()
    for s in [
        "el gato come pan",
        "el perro come",
        "la casa es grande",
        "el gato es grande",
        "la leche",
        "el gato come leche",
        "san francisco",
        "san francisco es grande",
        "en san francisco",
    ]
]
# hand-made: log10 values chosen to check each rule of backoff scoring
HAND_ARPA = """\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-1.0\t<unk>
-99\t<s>\t-0.3
-0.5\t</s>
-0.6\tgato\t-0.2
-0.7\tcome

\\2-grams:
-0.1\t<s> gato
-0.2\tgato come
-0.05\tcome </s>

\\end\\
"""


def test_backoff_scoring_follows_the_arpa_rules(tmp_path):
    path = tmp_path / "hand.arpa"
    path.write_text(HAND_ARPA)
    lm = ArpaModel.read(path)
    assert lm.order == 2 and sorted(lm.vocabulary) == ["</s>", "<unk>", "come", "gato"]
    assert lm.log10_prob(["<s>"], "gato") == pytest.approx(-0.1)  # listed
    assert lm.log10_prob(["gato"], "</s>") == pytest.approx(-0.2 + -0.5)  # backoff(gato) * p(</s>)
    assert lm.log10_prob(["come"], "gato") == pytest.approx(0.0 + -0.6)  # no backoff weight listed: 1
    assert lm.log10_prob(["<s>"], "perro") == pytest.approx(-0.3 + -1.0)  # unknown: <unk>
    assert lm.log10_prob(["a", "b", "<s>"], "gato") == pytest.approx(-0.1)  # only the last word counts
    # the decoder's interface: natural logs, states that carry the context
    state = lm.start()
    first, state = lm.score(state, "gato")
    second, state = lm.score(state, "come")
    assert (first, second) == (pytest.approx(-0.1 * LN10), pytest.approx(-0.2 * LN10))
    assert lm.finish(state) == pytest.approx(-0.05 * LN10)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_estimated_models_survive_the_arpa_round_trip_and_sum_to_one(tmp_path, order):
    model = estimate_kneser_ney(SENTENCES, order)
    path = model.write(tmp_path / "lm.arpa")
    read = ArpaModel.read(path)
    assert read.order == order and [len(t) for t in read.tables] == [len(t) for t in model.tables]
    vocabulary = read.vocabulary
    assert "<unk>" in vocabulary and "</s>" in vocabulary and "<s>" not in vocabulary
    contexts = [(), ("<s>",), ("el",), ("el", "gato"), ("<s>", "san", "francisco"), ("perro", "zzz"), ("leche",)]
    for context in contexts:
        total = sum(10 ** read.log10_prob(context, word) for word in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-5), context
        for word in ("gato", "grande", "</s>", "nube"):
            assert read.log10_prob(context, word) == pytest.approx(model.log10_prob(context, word), abs=1e-6)
    if order > 1:  # seen continuations beat unseen ones
        assert read.log10_prob(("el",), "gato") > read.log10_prob(("el",), "casa")


def test_kneser_ney_lower_orders_count_contexts_not_occurrences():
    model = estimate_kneser_ney(SENTENCES, order=2)
    # "francisco" occurs 3 times but only ever after "san"; "grande" 3 times after "es" ... and
    # "come" 3 times after 2 different words: as a unigram (a new context) "come" is likelier
    assert model.log10_prob((), "come") > model.log10_prob((), "francisco")
    assert model.log10_prob(("san",), "francisco") > math.log10(0.8)
    assert model.log10_prob(("el",), "francisco") < model.log10_prob(("el",), "come")


def test_malformed_arpa_files_are_named_with_their_line(tmp_path):
    cases = {
        "not_arpa.arpa": ("hello\nworld\n", "not an ARPA file"),
        "bad_number.arpa": (HAND_ARPA.replace("-0.7\tcome", "x\tcome"), "bad_number.arpa:10: 'x' is not a log10"),
        "short.arpa": (HAND_ARPA.replace("-0.2\tgato come", "-0.2\tgato"), "short.arpa:14: a 2-gram line needs"),
        "count.arpa": (HAND_ARPA.replace("ngram 2=3", "ngram 2=4"), "declares 4 2-grams, the file lists 3"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(LanguageModelError, match=message):
            ArpaModel.read(tmp_path / name)


def test_word_lists_are_unigram_models_with_an_oov_penalty(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("gato 3\nperro\n\nleche\t1\n")
    lm = load_language_model(path)
    assert isinstance(lm, UnigramModel)
    assert lm.score(lm.start(), "gato")[0] == pytest.approx(math.log(3 / 5))
    assert lm.score((), "perro")[0] == pytest.approx(math.log(1 / 5))
    assert lm.score((), "nube")[0] == pytest.approx(math.log(1 / 5) - 10.0)
    (tmp_path / "bad.txt").write_text("gato many\n")
    with pytest.raises(LanguageModelError, match="bad.txt:1: 'many' is not a count"):
        load_language_model(tmp_path / "bad.txt")


def test_a_kenlm_binary_without_kenlm_names_the_install_command(tmp_path, monkeypatch):
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\x00\x01\x02")
    monkeypatch.setitem(sys.modules, "kenlm", None)  # what an install without the extra has
    with pytest.raises(LanguageModelError) as raised:
        load_language_model(binary)
    message = str(raised.value)
    assert "\n" not in message and "needs the kenlm module" in message and "pip install 'unispeech[lm]'" in message
    # an ARPA file needs no kenlm: the Python reader reads it
    arpa = estimate_kneser_ney(SENTENCES, 2).write(tmp_path / "lm.arpa")
    assert isinstance(load_language_model(arpa), ArpaModel)
    with pytest.raises(FileNotFoundError, match="gone.arpa does not exist"):
        load_language_model(tmp_path / "gone.arpa")
    (tmp_path / "noise.bin").write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(LanguageModelError, match="neither an ARPA file, a KenLM binary nor a word list"):
        load_language_model(tmp_path / "noise.bin")


def test_kenlm_scores_our_arpa_files_as_we_do(tmp_path):
    pytest.importorskip("kenlm", reason="kenlm is an optional extra (pip install 'unispeech[lm]'), not in dev")
    path = estimate_kneser_ney(SENTENCES, 3).write(tmp_path / "lm.arpa")
    ours, theirs = ArpaModel.read(path), KenLMModel(path)
    assert isinstance(load_language_model(path), KenLMModel)  # auto: kenlm when it is there
    for sentence in ["el gato come leche", "san francisco", "perro nube es grande"]:
        totals = []
        for lm in (ours, theirs):
            state, total = lm.start(), 0.0
            for word in sentence.split():
                log_prob, state = lm.score(state, word)
                total += log_prob
            totals.append(total + lm.finish(state))
        assert totals[0] == pytest.approx(totals[1], abs=1e-4)


def run_script(*args, path_dirs=()):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env["PATH"] = os.pathsep.join([*map(str, path_dirs), env.get("PATH", "")])
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_train_ngram_normalises_sentences_as_the_chars_tokenizer(tmp_path, capsys):
    corpus = tmp_path / "train.tsv"
    corpus.write_text(
        "client_id\tpath\tsentence\na\t1.mp3\t¡Hola, Mundo!\nb\t2.mp3\tEl gato come (pan).\nc\t3.mp3\tHola gato 🙂\n",
        encoding="utf-8",
    )
    output = tmp_path / "lm" / "words.arpa"
    done = run_script(tmp_path, "--output", output, "--order", "2", "--tool", "python")
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "word 2-gram LM of 3 sentences (python; 1-grams" in done.stdout
    lm = ArpaModel.read(output)
    assert sorted(lm.vocabulary) == sorted(["</s>", "<unk>", "hola", "mundo", "el", "gato", "come", "pan"])
    assert lm.log10_prob(["hola"], "mundo") > lm.log10_prob(["hola"], "pan")
    # a character LM: the model's tokens, "|" between words
    assert train_ngram.main([str(corpus), "--unit", "token", "--order", "3", "--output", str(tmp_path / "c.arpa")]) == 0
    assert {"|", "h", "o"} <= set(ArpaModel.read(tmp_path / "c.arpa").vocabulary)
    if shutil.which("lmplz") is None:  # without KenLM's tools it says how to get them
        err = capsys.readouterr().err
        assert "lmplz is not on PATH" in err and "https://github.com/kpu/kenlm" in err


def test_train_ngram_runs_kenlm_lmplz_when_it_is_on_path(tmp_path, monkeypatch, capsys):
    # a stand-in lmplz that records its arguments and input and writes a fixed ARPA file
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "lmplz"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys, pathlib\n"
        "args = sys.argv[1:]\n"
        "pathlib.Path(args[args.index('--arpa') + 1]).write_text(open(sys.argv[0] + '.arpa').read())\n"
        "pathlib.Path(sys.argv[0] + '.log').write_text(' '.join(args) + '\\n' + sys.stdin.read())\n"
    )
    fake.chmod(0o755)
    (tools / "lmplz.arpa").write_text(HAND_ARPA)
    text = tmp_path / "sentences.txt"
    text.write_text("Gato come.\nGato, gato!\n")
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ.get('PATH', '')}")
    assert train_ngram.main([str(text), "--output", str(tmp_path / "lm.arpa"), "--order", "4"]) == 0
    args, *fed = (tools / "lmplz.log").read_text().splitlines()
    assert args.startswith("-o 4 --discount_fallback") and fed == ["gato come", "gato gato"]
    out, err = capsys.readouterr()
    assert "(lmplz; 1-grams 5, 2-grams 3)" in out and "not on PATH" not in err


def test_train_ngram_refuses_what_it_cannot_use(tmp_path, capsys):
    def refused(*args):
        assert train_ngram.main([*map(str, args), "--output", str(tmp_path / "lm.arpa")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("[unispeech] error: ") and err.count("\n") == 1 and "Traceback" not in err
        return err

    assert "gone.txt does not exist" in refused(tmp_path / "gone.txt")
    (tmp_path / "blank.txt").write_text("\n ... \n")
    assert "no usable sentence" in refused(tmp_path / "blank.txt")
    (tmp_path / "train.tsv").write_text("path\ttext\n1.mp3\thola\n")
    assert "train.tsv has no 'sentence' column (columns: path, text)" in refused(tmp_path)
    if shutil.which("lmplz") is None:
        assert "--tool kenlm: lmplz is not on PATH" in refused(tmp_path / "blank.txt", "--tool", "kenlm")


@pytest.mark.slow
def test_train_ngram_phonemizes_for_phone_models(tmp_path):
    text = tmp_path / "sentences.txt"
    text.write_text("El gato come pan.\nLa casa es grande.\n")
    done = run_script(text, "--kind", "phones", "--locale", "es", "--output", tmp_path / "phones.arpa")
    assert done.returncode == 0, done.stderr
    assert "token 6-gram LM of 2 sentences" in done.stdout
    lm = ArpaModel.read(tmp_path / "phones.arpa")
    assert {"|", "a", "t", "o"} <= set(lm.vocabulary)  # espeak's Spanish phones and word boundaries
    done = run_script(text, "--kind", "phones", "--unit", "word", "--locale", "es", "--output", tmp_path / "w.arpa")
    assert done.returncode == 0, done.stderr
    assert {"kasa", "kome"} <= set(ArpaModel.read(tmp_path / "w.arpa").vocabulary)  # phone words: phones joined
