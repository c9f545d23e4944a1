"""CTCTokenizer: vocabulary layout, CTC decoding, and agreement with transformers."""

from __future__ import annotations

import json

import pytest

from unispeech.data.tokenizer import CTCTokenizer, normalize_text

CHAR_TEXTS = ["hello world", "the cat sat", "ça va très bien"]
PHONE_TEXTS = ["h ə l oʊ | w ɜː l d", "ð ə | k æ t | s æ t"]


def test_vocab_layout_and_sorted_symbols():
    tok = CTCTokenizer.from_texts(CHAR_TEXTS, "chars")
    ids = sorted(tok.vocab.items(), key=lambda kv: kv[1])
    assert [t for t, _ in ids[:5]] == ["<pad>", "<s>", "</s>", "<unk>", "|"]
    symbols = [t for t, _ in ids[5:]]
    assert symbols == sorted(set("".join(CHAR_TEXTS).replace(" ", "")))
    assert tok.pad_token_id == 0 and tok.word_delimiter_token_id == 4 and tok.vocab_size == len(tok)


def test_encode_decode_round_trip_and_ctc_collapse():
    tok = CTCTokenizer.from_texts(CHAR_TEXTS, "chars")
    for text in CHAR_TEXTS:
        assert tok.decode(tok.encode(text), group_tokens=False) == text
    h, e, l, o = (tok.vocab[c] for c in "helo")  # noqa: E741 (the letters' ids)
    # "hh<blank>e ll <blank> l o" -> "hello": repeats merge, a blank separates the double l
    assert tok.decode([h, h, 0, e, l, l, 0, l, o, o, 0]) == "hello"
    assert tok.encode("hex") == [h, e, tok.unk_token_id]
    assert tok.batch_decode([[h, 0, e], [o]]) == ["he", "o"]
    assert tok.decode([h, e, -100, -100], group_tokens=False) == "he"  # label padding ignored


def test_phone_tokens_are_space_separated():
    tok = CTCTokenizer.from_texts(PHONE_TEXTS, "phones")
    assert "oʊ" in tok.vocab and "ɜː" in tok.vocab and "o" not in tok.vocab
    ids = tok.encode(PHONE_TEXTS[0])
    assert len(ids) == 9
    assert tok.decode(ids) == "h ə l oʊ w ɜː l d"
    assert tok.decode(ids, keep_word_delimiter=True) == PHONE_TEXTS[0]
    assert tok.encode("h x") == [tok.vocab["h"], tok.unk_token_id]
    assert tok.decode(tok.encode("h x"), skip_special_tokens=False) == "h <unk>"


def test_save_load_files(tmp_path):
    tok = CTCTokenizer.from_texts(PHONE_TEXTS, "phones", language="en-us")
    tok.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"vocab.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == tok.vocab
    back = CTCTokenizer.from_pretrained(tmp_path)
    assert back.vocab == tok.vocab and back.kind == "phones" and back.language == "en-us"


def test_transformers_char_tokenizer_agrees(tmp_path):
    from transformers import AutoTokenizer, Wav2Vec2CTCTokenizer

    tok = CTCTokenizer.from_texts(CHAR_TEXTS, "chars")
    tok.save_pretrained(tmp_path)
    hf = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path)
    assert isinstance(AutoTokenizer.from_pretrained(tmp_path), Wav2Vec2CTCTokenizer)
    assert hf.pad_token_id == 0 and hf.unk_token_id == 3 and hf.word_delimiter_token_id == 4
    for text in CHAR_TEXTS + ["hello xyz"]:
        assert hf(text).input_ids == tok.encode(text)
    ctc_output = [0, 8, 8, 0, 7, 4, 4, 0, 11, 11, 12, 0, 2, 3]
    assert tok.decode(ctc_output) == hf.decode(ctc_output, skip_special_tokens=True)
    assert tok.decode(ctc_output, skip_special_tokens=False) == hf.decode(ctc_output)


def test_transformers_phoneme_tokenizer_agrees(tmp_path):
    from transformers import AutoTokenizer, Wav2Vec2CTCTokenizer, Wav2Vec2PhonemeCTCTokenizer

    tok = CTCTokenizer.from_texts(PHONE_TEXTS, "phones")
    tok.save_pretrained(tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(hf, Wav2Vec2PhonemeCTCTokenizer)
    for text in PHONE_TEXTS + ["h ə l x"]:
        assert hf(text).input_ids == tok.encode(text)
    ids = [0, 6, 6, 0, 9] + tok.encode(PHONE_TEXTS[1])
    assert tok.decode(ids) == hf.decode(ids)
    # the plain CTC class also loads it, with the same id <-> token table
    plain = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path)
    assert plain.convert_ids_to_tokens(list(range(len(tok)))) == tok.convert_ids_to_tokens(range(len(tok)))


@pytest.mark.parametrize(
    "raw,clean",
    [
        ('"Quoted" Text!', "quoted text"),
        ("L'école, c'est ça.", "l'école c'est ça"),
        ("  many   spaces ", "many spaces"),
        ("'twas -- odd", "twas odd"),
        ("123 go", "123 go"),
    ],
)
def test_normalize_text(raw, clean):
    assert normalize_text(raw) == clean
