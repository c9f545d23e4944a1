"""Train an n-gram language model on training transcripts, for ``decoder=beam`` (ARPA output).

    python scripts/train_ngram.py CORPUS_DIR --output lm.arpa                      # chars, word 3-gram
    python scripts/train_ngram.py train.tsv --kind phones --locale es --output phones.arpa
    python scripts/train_ngram.py sentences.txt --order 4 --output lm.arpa --binary

Input: a CommonVoice TSV (its ``sentence`` column), a CommonVoice locale directory (its
``train.tsv``), or a text file with one sentence per line. Sentences are normalised as the
model's tokenizer normalises its training targets, so that the LM spells words as the model
does: characters with ``normalize_text`` (lower case, no punctuation); phones by espeak
through ``unispeech.data.phonemes`` (the ``phonemes`` extra), in the voice of ``--locale``.

What the LM counts (``--unit``): words for characters (the decoder scores a word when it is
complete), phones and word boundaries ``|`` for phones (scored as each is emitted; a
lexicon-free phone model's LM), or ``--unit word`` for phone words (a word's phones joined
without spaces, as the decoder spells them).

The estimator is KenLM's ``lmplz`` (modified Kneser-Ney) when it is on PATH, else the
pure-Python one of ``unispeech.inference.ngram`` (interpolated Kneser-Ney; fine for a few
thousand sentences). ``--binary`` also runs KenLM's ``build_binary``. Without KenLM's tools
the script says how to build them; the ARPA file works without them.

Exit status: 0, or 2 with one line on stderr for a usage error (a missing input, an empty
corpus, ``--tool kenlm`` without ``lmplz``, phones without the ``phonemes`` extra).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from unispeech.data.commonvoice import read_tsv
from unispeech.data.tokenizer import WORD_DELIMITER, normalize_text
from unispeech.inference.ngram import estimate_kneser_ney

HOW_TO_BUILD_KENLM = (
    "build them from https://github.com/kpu/kenlm: git clone https://github.com/kpu/kenlm && cd kenlm && "
    "mkdir build && cd build && cmake .. && make -j 4 lmplz build_binary (needs cmake, boost and zlib), "
    "then add kenlm/build/bin to PATH"
)
NO_LMPLZ = f"KenLM's lmplz is not on PATH, so the pure-Python estimator is used; for big corpora {HOW_TO_BUILD_KENLM}"
NO_BUILD_BINARY = f"KenLM's build_binary is not on PATH: no binary written (the ARPA file works); {HOW_TO_BUILD_KENLM}"


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def read_sentences(path: Path, column: str = "sentence") -> list[str]:
    """The raw sentences of a TSV's ``column``, a locale directory's train.tsv, or a text file."""
    if path.is_dir():
        path = path / "train.tsv"
    if not path.is_file():
        raise UsageError(f"{path} does not exist (pass a .tsv, a text file or a CommonVoice locale directory)")
    if path.suffix == ".tsv":
        table = read_tsv(path)
        if column not in table:
            raise UsageError(f"{path} has no {column!r} column (columns: {', '.join(table) or 'none'})")
        return table[column]
    return path.read_text(encoding="utf-8").splitlines()


def lm_sentences(sentences: Sequence[str], kind: str, unit: str, locale: str) -> list[list[str]]:
    """Each sentence as the units the LM counts (empty ones left out)."""
    if kind == "chars":
        units = [normalize_text(s).split() if unit == "word" else _char_tokens(normalize_text(s)) for s in sentences]
    else:
        try:
            from unispeech.data.phonemes import phonemize

            phones = phonemize([s for s in sentences if s.strip()], locale, word_boundary=True)
        except ImportError as error:
            raise UsageError(str(error)) from None
        units = [p.split() if unit == "token" else _phone_words(p) for p in phones]
    return [u for u in units if u]


def _char_tokens(text: str) -> list[str]:
    # a character LM's units are the model's tokens: characters, | between words
    return list(text.replace(" ", WORD_DELIMITER))


def _phone_words(phones: str) -> list[str]:
    # "o l a | m u n d o" -> ["ola", "mundo"]: the decoder joins a word's phones the same way
    return ["".join(word.split()) for word in phones.split(WORD_DELIMITER) if word.strip()]


def train(units: list[list[str]], order: int, output: Path, tool: str) -> str:
    """Write the ARPA file; returns the estimator used ("lmplz" or "python")."""
    lmplz = shutil.which("lmplz")
    if lmplz is not None and tool != "python":
        text = "".join(" ".join(sentence) + "\n" for sentence in units)
        with tempfile.TemporaryDirectory() as scratch:
            # --discount_fallback: small corpora lack the counts of counts modified Kneser-Ney needs
            command = [lmplz, "-o", str(order), "--discount_fallback", "-S", "20%", "-T", scratch]
            command += ["--arpa", str(output)]
            done = subprocess.run(command, input=text, text=True, capture_output=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise UsageError(f"lmplz failed (exit status {done.returncode}): {last}")
        return "lmplz"
    estimate_kneser_ney(units, order).write(output)
    return "python"


def build_binary(arpa: Path) -> Path | None:
    """KenLM's binary of ``arpa`` next to it (faster to load), None without build_binary."""
    tool = shutil.which("build_binary")
    if tool is None:
        return None
    binary = arpa.with_suffix(".bin")
    done = subprocess.run([tool, str(arpa), str(binary)], text=True, capture_output=True)
    if done.returncode != 0:
        raise UsageError(f"build_binary failed (exit status {done.returncode}): {done.stderr.strip()[-200:]}")
    return binary


def arpa_counts(path: Path) -> dict[int, int]:
    """The n-gram counts an ARPA file's header declares (without reading the n-grams)."""
    counts = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("ngram "):
                order, _, count = line[6:].partition("=")
                counts[int(order)] = int(count)
            elif line.startswith("\\1-grams:"):
                break
    return counts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", type=Path, help="TSV files, CommonVoice locale directories, text files")
    parser.add_argument("--output", "-o", type=Path, required=True, help="the ARPA file to write")
    parser.add_argument("--kind", choices=("chars", "phones"), default="chars", help="the model's tokenizer kind")
    parser.add_argument(
        "--unit", choices=("auto", "word", "token"), default="auto", help="auto: words for chars, tokens for phones"
    )
    parser.add_argument("--order", type=int, default=None, help="n-gram order (default: 3 for words, 6 for tokens)")
    parser.add_argument("--locale", default="en", help="phones: the CommonVoice locale / espeak voice (default: en)")
    parser.add_argument("--column", default="sentence", help="the TSV column of the transcripts (default: sentence)")
    parser.add_argument("--tool", choices=("auto", "kenlm", "python"), default="auto", help="the estimator")
    parser.add_argument("--binary", action="store_true", help="also write KenLM's binary (OUTPUT with .bin)")
    args = parser.parse_args(argv)
    args.unit = ("word" if args.kind == "chars" else "token") if args.unit == "auto" else args.unit
    args.order = args.order or (3 if args.unit == "word" else 6)
    if args.order < 1:
        parser.error(f"--order must be at least 1, got {args.order}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.tool == "kenlm" and shutil.which("lmplz") is None:
            raise UsageError(f"--tool kenlm: lmplz is not on PATH; {HOW_TO_BUILD_KENLM}")
        sentences = [s for path in args.inputs for s in read_sentences(path, args.column)]
        units = lm_sentences(sentences, args.kind, args.unit, args.locale)
        if not units:
            raise UsageError(f"no usable sentence in {', '.join(map(str, args.inputs))}")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        estimator = train(units, args.order, args.output, args.tool)
        if estimator == "python":
            print(NO_LMPLZ, file=sys.stderr)
        if args.binary and shutil.which("build_binary") is None:
            print(NO_BUILD_BINARY, file=sys.stderr)
        binary = build_binary(args.output) if args.binary else None
    except UsageError as error:
        print(f"[unispeech] error: {error}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{n}-grams {count}" for n, count in arpa_counts(args.output).items())
    print(f"wrote {args.output}: {args.unit} {args.order}-gram LM of {len(units)} sentences ({estimator}; {counts})")
    if binary is not None:
        print(f"wrote {binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
