"""N-gram language models for the CTC beam search: ARPA files, KenLM, word lists; and an estimator.

Every model here answers the same three questions, in natural-log probabilities, about
"units" (words for a character model, phones for a phone model; see ``beam.py``):

- ``start()``: the state before the first unit (the context ``<s>``);
- ``score(state, unit)``: ``(ln p(unit | state), next state)``;
- ``finish(state)``: ``ln p(</s> | state)``, the end of the sentence.

Models:

- ``ArpaModel``: an ARPA file read by the small pure-Python reader below (backoff n-gram
  scoring; ARPA stores log10, scores come out in ln). Enough for the LMs of a few thousand
  sentences that ``estimate_kneser_ney`` (or KenLM's ``lmplz``) builds;
- ``KenLMModel``: a KenLM binary or ARPA through the ``kenlm`` module (``pip install
  'unispeech[lm]'``): C++, for LMs too big for Python dictionaries;
- ``UnigramModel``: a word list, one word (and optionally a count) a line; words not in it
  get ``oov_penalty`` below the rarest listed word.

``load_language_model(path)`` tells them apart by their content. ``estimate_kneser_ney``
counts n-grams in tokenised sentences and returns an ``ArpaModel`` (interpolated
Kneser-Ney with one discount per order, written as a backoff model), and
``ArpaModel.write`` saves it as an ARPA file that KenLM reads too, so that users without
KenLM's ``lmplz`` can still build an LM.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LN10 = math.log(10.0)
# log10 probability of a word the LM has never seen and that has no <unk> entry (KenLM's choice too)
MISSING_UNK_LOG10 = -100.0
# log10 "probability" ARPA files give <s>: it is never predicted, only a context
BOS_LOG10 = -99.0
# a binary KenLM file begins with these bytes
KENLM_MAGIC = b"mmap lm "
INSTALL_KENLM = "pip install 'unispeech[lm]'"


class LanguageModelError(ValueError):
    """A language model file that cannot be used; the message names the file."""


class LanguageModel(Protocol):
    order: int

    def start(self) -> Any: ...

    def score(self, state: Any, unit: str) -> tuple[float, Any]: ...

    def finish(self, state: Any) -> float: ...


# -- ARPA backoff models ------------------------------------------------------------------
class ArpaModel:
    """A backoff n-gram model: ``tables[n - 1]`` maps n-gram tuples to ``(log10 prob, log10 backoff)``.

    ``p(w | h) = p*(w | h)`` when ``h w`` is listed, else ``backoff(h) * p(w | h without its
    first word)``; a word missing from the unigrams is scored as ``<unk>``.
    """

    def __init__(self, tables: Sequence[dict[tuple[str, ...], tuple[float, float]]]) -> None:
        if not tables or not tables[0]:
            raise LanguageModelError("an n-gram model needs at least its unigrams")
        self.tables = list(tables)
        self.order = len(self.tables)
        self._cache: dict[tuple[tuple[str, ...], str], float] = {}

    @property
    def vocabulary(self) -> list[str]:
        """Every unigram the model can predict (``<s>`` is only ever a context)."""
        return [gram[0] for gram in self.tables[0] if gram[0] != BOS]

    def log10_prob(self, context: Sequence[str], word: str) -> float:
        """log10 p(word | context); only the last ``order - 1`` words of ``context`` matter."""
        context = tuple(context)[max(0, len(context) - self.order + 1) :] if self.order > 1 else ()
        if (word,) not in self.tables[0]:
            word = UNK
            if (UNK,) not in self.tables[0]:
                return MISSING_UNK_LOG10
        backoff = 0.0
        for start in range(len(context) + 1):  # the longest listed context first
            history = context[start:]
            entry = self.tables[len(history)].get(history + (word,))
            if entry is not None:
                return backoff + entry[0]
            listed = self.tables[len(history) - 1].get(history)
            backoff += listed[1] if listed is not None else 0.0
        raise AssertionError("unreachable: the word is a unigram")

    # -- the LanguageModel protocol: the state is the tuple of the last order - 1 words --
    def start(self) -> tuple[str, ...]:
        return (BOS,) if self.order > 1 else ()

    def score(self, state: tuple[str, ...], unit: str) -> tuple[float, tuple[str, ...]]:
        key = (state, unit)
        log_prob = self._cache.get(key)
        if log_prob is None:
            if len(self._cache) > 1_000_000:  # a long run of utterances: start over rather than grow
                self._cache.clear()
            log_prob = self._cache[key] = self.log10_prob(state, unit) * LN10
        next_state = (state + (unit,))[max(0, len(state) + 2 - self.order) :] if self.order > 1 else ()
        return log_prob, next_state

    def finish(self, state: tuple[str, ...]) -> float:
        return self.score(state, EOS)[0]

    # -- files ---------------------------------------------------------------------------
    @classmethod
    def read(cls, path: str | Path) -> ArpaModel:
        """Read an ARPA file (plain or ``.gz``); a malformed one is a LanguageModelError naming the line."""
        tables: list[dict[tuple[str, ...], tuple[float, float]]] = []
        declared: dict[int, int] = {}
        section = "preamble"
        with _open_text(path) as handle:
            for number, raw in enumerate(handle, start=1):
                line = raw.strip()
                if not line:
                    continue
                if line == "\\data\\":
                    section = "data"
                elif line == "\\end\\":
                    break
                elif line.startswith("\\") and line.endswith("-grams:"):
                    order = _int_or_none(line[1:-7])
                    if order != len(tables) + 1:
                        raise LanguageModelError(f"{path}:{number}: {line!r} out of order")
                    tables.append({})
                    section = "grams"
                elif section == "data" and line.startswith("ngram "):
                    order_text, _, count_text = line[6:].partition("=")
                    declared[int(order_text)] = int(count_text)
                elif section == "grams":
                    _add_entry(tables[-1], len(tables), line.split(), path, number)
                elif section == "preamble":
                    continue  # text before \data\ (a comment) is allowed
                else:
                    raise LanguageModelError(f"{path}:{number}: unexpected line {line[:60]!r}")
        if section == "preamble":
            raise LanguageModelError(f"{path} is not an ARPA file (no \\data\\ line)")
        for order, count in declared.items():
            found = len(tables[order - 1]) if order <= len(tables) else 0
            if found != count:
                raise LanguageModelError(f"{path}: \\data\\ declares {count} {order}-grams, the file lists {found}")
        return cls(tables)

    def write(self, path: str | Path) -> Path:
        """Save as an ARPA file (log10 values, 7 decimals), readable by KenLM and SRILM too."""
        path = Path(path)
        lines = ["\\data\\"]
        lines += [f"ngram {n}={len(table)}" for n, table in enumerate(self.tables, start=1)]
        for n, table in enumerate(self.tables, start=1):
            lines += ["", f"\\{n}-grams:"]
            for gram, (log_prob, backoff) in sorted(table.items()):
                entry = f"{log_prob:.7f}\t{' '.join(gram)}"
                if n < self.order and backoff != 0.0:
                    entry += f"\t{backoff:.7f}"
                lines.append(entry)
        lines += ["", "\\end\\", ""]
        path.write_text("\n".join(lines), encoding="utf-8")
        return path


def _add_entry(table: dict, order: int, fields: list[str], path: str | Path, number: int) -> None:
    # "log10p w1 .. wn [log10 backoff]"
    if len(fields) not in (order + 1, order + 2):
        raise LanguageModelError(f"{path}:{number}: a {order}-gram line needs {order} words and a probability")
    try:
        log_prob = float(fields[0])
        backoff = float(fields[order + 1]) if len(fields) == order + 2 else 0.0
    except ValueError:
        raise LanguageModelError(f"{path}:{number}: {fields[0]!r} is not a log10 probability") from None
    table[tuple(fields[1 : order + 1])] = (log_prob, backoff)


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _open_text(path: str | Path):
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


# -- estimation ---------------------------------------------------------------------------
def estimate_kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3) -> ArpaModel:
    """Interpolated Kneser-Ney n-gram model of tokenised ``sentences``, as a backoff model.

    Highest order: raw counts; lower orders: continuation counts (how many different words
    precede the n-gram), except n-grams that begin with ``<s>``, which nothing precedes.
    One absolute discount per order, ``D = n1 / (n1 + 2 n2)`` from the counts of counts
    (0.5 where that is undefined, as in a tiny corpus). The unigrams interpolate with the
    uniform distribution over the vocabulary, ``<unk>`` included, so every word has a
    probability and each context's probabilities sum to 1.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    counts: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order)]
    for sentence in sentences:
        tokens = [BOS, *sentence, EOS]
        for n in range(1, order + 1):
            for end in range(max(n, 2), len(tokens) + 1):  # no n-gram predicts <s>
                counts[n - 1][tuple(tokens[end - n : end])] += 1
    if not counts[0]:
        raise ValueError("no sentences to estimate an n-gram model from")
    adjusted = _continuation_counts(counts)
    vocabulary = sorted({gram[0] for gram in counts[0]} | {UNK})
    # interpolated p(w | h) of every listed n-gram, linear; then log10 with the backoff weights
    probabilities: list[dict[tuple[str, ...], float]] = []
    backoffs: dict[tuple[str, ...], float] = {}
    for n in range(1, order + 1):
        discount = _discount(adjusted[n - 1])
        totals: dict[tuple[str, ...], float] = defaultdict(float)
        followers: dict[tuple[str, ...], int] = defaultdict(int)
        for gram, count in adjusted[n - 1].items():
            totals[gram[:-1]] += count
            followers[gram[:-1]] += 1
        # the mass the discount takes from each context goes to the lower order: its backoff weight
        gamma = {history: discount * followers[history] / totals[history] for history in totals}
        if n == 1:
            # the lower order of the unigrams: uniform over the vocabulary, <unk> included
            probs = {
                (word,): max(adjusted[0].get((word,), 0) - discount, 0.0) / totals[()] + gamma[()] / len(vocabulary)
                for word in vocabulary
            }
        else:
            # (h[1:], w) is listed one order down: it ends where (h, w) ends
            lower = probabilities[-1]
            probs = {
                gram: (count - discount) / totals[gram[:-1]] + gamma[gram[:-1]] * lower[gram[1:]]
                for gram, count in adjusted[n - 1].items()
            }
            backoffs.update(gamma)
        probabilities.append(probs)
    tables = [
        {gram: (math.log10(p), _log10_or_zero(backoffs.get(gram))) for gram, p in probs.items()}
        for probs in probabilities
    ]
    tables[0][(BOS,)] = (BOS_LOG10, _log10_or_zero(backoffs.get((BOS,))))
    return ArpaModel(tables)


def _log10_or_zero(weight: float | None) -> float:
    # a context nothing follows keeps the weight 1 (log10 0), as ARPA files leave it out
    return math.log10(weight) if weight else 0.0


def _continuation_counts(counts: list[Counter[tuple[str, ...]]]) -> list[Counter[tuple[str, ...]]]:
    """Kneser-Ney's counts: raw at the highest order and for n-grams starting with <s>, else
    the number of distinct words seen before the n-gram."""
    adjusted = [Counter() for _ in counts]
    adjusted[-1] = Counter(counts[-1])
    for n in range(len(counts) - 1, 0, -1):  # n-grams of order n from those of order n + 1
        preceded: Counter[tuple[str, ...]] = Counter(gram[1:] for gram in counts[n])
        for gram, count in counts[n - 1].items():
            adjusted[n - 1][gram] = count if gram[0] == BOS else preceded.get(gram, count)
    return adjusted


def _discount(counts: Counter[tuple[str, ...]]) -> float:
    once = sum(1 for c in counts.values() if c == 1)
    twice = sum(1 for c in counts.values() if c == 2)
    discount = once / (once + 2 * twice) if once and twice else 0.5
    return min(max(discount, 0.1), 0.9)


# -- KenLM ---------------------------------------------------------------------------------
class KenLMModel:
    """A KenLM binary or ARPA file through the ``kenlm`` module; states are ``kenlm.State``."""

    def __init__(self, path: str | Path) -> None:
        kenlm = import_kenlm(f"reading {path}")
        self._kenlm = kenlm
        self.model = kenlm.Model(str(path))
        self.order = int(self.model.order)

    def start(self) -> Any:
        state = self._kenlm.State()
        self.model.BeginSentenceWrite(state)
        return state

    def score(self, state: Any, unit: str) -> tuple[float, Any]:
        next_state = self._kenlm.State()
        return self.model.BaseScore(state, unit, next_state) * LN10, next_state

    def finish(self, state: Any) -> float:
        return self.score(state, EOS)[0]


def import_kenlm(purpose: str) -> Any:
    try:
        import kenlm
    except ImportError:
        raise LanguageModelError(
            f"{purpose} needs the kenlm module, which is not installed: {INSTALL_KENLM} "
            "(it compiles KenLM from source: a C++ compiler, cmake, boost and zlib headers)"
        ) from None
    return kenlm


def kenlm_available() -> bool:
    try:
        import kenlm  # noqa: F401
    except ImportError:
        return False
    return True


# -- word lists ----------------------------------------------------------------------------
class UnigramModel:
    """Words with counts (1 each when none are given): ``ln(count / total)``, and for a word
    not in the list that of the rarest listed word plus ``oov_penalty`` (ln, negative)."""

    order = 1

    def __init__(self, counts: dict[str, float], oov_penalty: float = -10.0) -> None:
        if not counts:
            raise LanguageModelError("a unigram list needs at least one word")
        total = float(sum(counts.values()))
        self.log_probs = {word: math.log(count / total) for word, count in counts.items()}
        self.unknown = min(self.log_probs.values()) + oov_penalty

    @classmethod
    def from_words(cls, words: Iterable[str], oov_penalty: float = -10.0) -> UnigramModel:
        return cls(dict.fromkeys(words, 1.0), oov_penalty)

    @classmethod
    def read(cls, path: str | Path, oov_penalty: float = -10.0) -> UnigramModel:
        """One word a line, optionally followed by a count (``word<TAB>count`` or ``word count``)."""
        counts: dict[str, float] = {}
        with _open_text(path) as handle:
            for number, raw in enumerate(handle, start=1):
                fields = raw.split()
                if not fields:
                    continue
                if len(fields) > 2:
                    raise LanguageModelError(f"{path}:{number}: a word list line is a word and an optional count")
                try:
                    count = float(fields[1]) if len(fields) == 2 else 1.0
                except ValueError:
                    raise LanguageModelError(f"{path}:{number}: {fields[1]!r} is not a count") from None
                counts[fields[0]] = counts.get(fields[0], 0.0) + count
        if not counts:
            raise LanguageModelError(f"{path} lists no words")
        return cls(counts, oov_penalty)

    def start(self) -> tuple[()]:
        return ()

    def score(self, state: tuple[()], unit: str) -> tuple[float, tuple[()]]:
        return self.log_probs.get(unit, self.unknown), ()

    def finish(self, state: tuple[()]) -> float:
        return 0.0


# -- loading -------------------------------------------------------------------------------
def load_language_model(path: str | Path, backend: str = "auto") -> LanguageModel:
    """The LM in ``path``: a KenLM binary (needs ``kenlm``), an ARPA file (plain or ``.gz``;
    through ``kenlm`` when installed and ``backend`` is auto/kenlm, else the Python reader),
    or a word list. ``backend``: ``auto``, ``kenlm`` or ``python``."""
    if backend not in ("auto", "kenlm", "python"):
        raise LanguageModelError(f"LM backend {backend!r} must be auto, kenlm or python")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"language model {path} does not exist")
    kind = sniff_language_model(path)
    if kind == "kenlm-binary":
        if backend == "python":
            raise LanguageModelError(f"{path} is a KenLM binary: the Python reader reads ARPA files only")
        return KenLMModel(path)
    if kind == "arpa":
        if backend == "kenlm" or (backend == "auto" and kenlm_available()):
            return KenLMModel(path)
        return ArpaModel.read(path)
    if backend == "kenlm":
        raise LanguageModelError(f"{path} is a word list, not a KenLM model")
    return UnigramModel.read(path)


def sniff_language_model(path: str | Path) -> str:
    """``kenlm-binary``, ``arpa`` or ``words`` from the first bytes of ``path``."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith(KENLM_MAGIC):
        return "kenlm-binary"
    if head.startswith(b"\x1f\x8b"):  # gzip: look inside
        with gzip.open(path, "rb") as handle:
            head = handle.read(4096)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not just a character cut at the 4096th byte
            raise LanguageModelError(
                f"{path} is neither an ARPA file, a KenLM binary nor a word list (not UTF-8 text)"
            ) from None
        text = head[: error.start].decode("utf-8")
    return "arpa" if "\\data\\" in text.split("\\1-grams:")[0] else "words"
