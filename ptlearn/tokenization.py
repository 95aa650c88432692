"""Tokenizers: text -> integer ids -> text.

A model only sees integers. A tokenizer fixes a vocabulary of pieces and maps text onto it:

- :class:`CharTokenizer`: one id per character (nanoGPT's Shakespeare). Tiny vocabulary, long
  sequences, never an unknown character within its training text.
- :meth:`HFTokenizer.train_bpe`: byte-level BPE (GPT-2; Sennrich et al. 2016,
  https://arxiv.org/abs/1508.07909). Start from the 256 bytes and repeatedly merge the most
  frequent adjacent pair into a new token until ``vocab_size`` is reached. Every string is
  encodable (worst case: one token per byte) and decodes back exactly.
- :meth:`HFTokenizer.train_wordpiece`: WordPiece (BERT; Wu et al. 2016,
  https://arxiv.org/abs/1609.08144). Lowercase, split on whitespace and punctuation, then cut
  each word greedily into the longest known pieces; a piece inside a word is written ``##ing``.
  Adds ``[CLS] A [SEP] B [SEP]`` around sentence pairs, with token-type ids 0 for A and 1 for B.

Every tokenizer offers the same protocol: ``encode``, ``decode``, ``convert_ids_to_tokens``,
``token_to_id``, ``vocab_size``, the special ids ``pad_id, unk_id, cls_id, sep_id, mask_id,
bos_id, eos_id`` (``None`` when absent), ``special_ids``, and ``save(path)`` / ``load(path)``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from .checkpoint import atomic_write_bytes

__all__ = ["CharTokenizer", "HFTokenizer", "load_tokenizer", "merge_pair", "pair_counts"]

# special-token role -> the names different conventions use for it
_SPECIAL_NAMES = {
    "pad_id": ["[PAD]", "<pad>", "<|pad|>"],
    "unk_id": ["[UNK]", "<unk>", "<|unk|>"],
    "cls_id": ["[CLS]", "<cls>"],
    "sep_id": ["[SEP]", "<sep>"],
    "mask_id": ["[MASK]", "<mask>"],
    "bos_id": ["<bos>", "<s>", "[BOS]", "<|endoftext|>"],
    "eos_id": ["<eos>", "</s>", "[EOS]", "<|endoftext|>"],
}
BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GPT_SPECIAL_TOKENS = ["<|endoftext|>"]  # GPT-2's one special token: both BOS and EOS


def _ids_list(ids, vocab_size: int | None = None) -> list[int]:
    """Accept a list, a 1-D tensor or a numpy array of ids; with ``vocab_size``, every id must be
    in ``[0, vocab_size)`` (a negative id would otherwise index from the end of the vocabulary,
    and HF tokenizers silently drop unknown ids)."""
    if isinstance(ids, int) or getattr(ids, "ndim", 1) == 0:
        ids = [ids]  # one id
    elif getattr(ids, "ndim", 1) != 1:
        raise ValueError(
            f"Expected one sequence of ids, got an array of shape {tuple(ids.shape)}: decode "
            f"each row of a batch separately (e.g. [tok.decode(row) for row in ids])."
        )
    ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    if vocab_size is not None:
        bad = [i for i in ids if not 0 <= i < vocab_size]
        if bad:
            raise ValueError(
                f"Token id {bad[0]} is outside this tokenizer's vocabulary [0, {vocab_size})"
                f"{f' ({len(bad)} such ids)' if len(bad) > 1 else ''}: the ids come from another "
                f"tokenizer or a model with a larger vocab_size."
            )
    return ids


def _read_json(path, what: str):
    """The JSON object in ``path``; a ValueError naming the file for anything else."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path} is not a {what} (not UTF-8 JSON: {err}); save it again or use the "
            f"tokenizer.json written with the model."
        ) from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, not a {what}.")
    return data


class _SpecialIds:
    """Fills the protocol's special-id attributes from the vocabulary's token names."""

    def _set_special_ids(self) -> None:
        for role, names in _SPECIAL_NAMES.items():
            found = [self.token_to_id(n) for n in names if self.token_to_id(n) is not None]
            setattr(self, role, found[0] if found else None)

    def __len__(self) -> int:
        return self.vocab_size


class CharTokenizer(_SpecialIds):
    """One token per character; ``special_tokens`` (e.g. ``["<pad>", "<bos>"]``) come first.

    >>> tok = CharTokenizer("hello world")
    >>> tok.decode(tok.encode("hello")) == "hello"
    True

    A special token written in the text (``"[MASK]"``) encodes to its one id. A character not
    seen when the tokenizer was built maps to ``unk_id``, or raises ValueError when there is none.
    """

    def __init__(self, text: str = "", special_tokens: Iterable[str] = ()):
        specials = list(dict.fromkeys(special_tokens))
        chars = sorted(set(text) - set(specials))
        self._init_vocab(specials + chars, specials)

    def _init_vocab(self, tokens: list[str], special_tokens: list[str]) -> None:
        self.tokens = tokens  # id -> token
        self.special_tokens = special_tokens
        self.stoi = {t: i for i, t in enumerate(tokens)}
        longest_first = sorted(special_tokens, key=len, reverse=True)
        self._special_re = (
            re.compile("(" + "|".join(map(re.escape, longest_first)) + ")")
            if longest_first
            else None
        )
        self._set_special_ids()
        self.special_ids = {self.stoi[t] for t in special_tokens}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.stoi.get(token)

    def _char_id(self, ch: str) -> int:
        if ch in self.stoi:
            return self.stoi[ch]
        if self.unk_id is None:
            raise ValueError(
                f"Character {ch!r} is not in this CharTokenizer's vocabulary (built from other "
                "text). Build it from text containing it, or add an '<unk>' special token."
            )
        return self.unk_id

    def encode(self, text: str) -> list[int]:
        """Text -> ids, one per character (a special token in the text is one id)."""
        pieces = self._special_re.split(text) if self._special_re else [text]
        ids = []
        for piece in pieces:
            if piece in self.special_tokens:
                ids.append(self.stoi[piece])
            else:
                ids.extend(self._char_id(ch) for ch in piece)
        return ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids -> text: the characters joined (special tokens kept unless skipped)."""
        ids = _ids_list(ids, self.vocab_size)
        return "".join(
            self.tokens[i] for i in ids if not (skip_special_tokens and i in self.special_ids)
        )

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self.tokens[i] for i in _ids_list(ids, self.vocab_size)]

    def save(self, path) -> None:
        """Write the vocabulary as JSON."""
        data = {
            "type": "CharTokenizer",
            "tokens": self.tokens,
            "special_tokens": self.special_tokens,
        }
        atomic_write_bytes(path, json.dumps(data, ensure_ascii=False).encode("utf-8"))

    @classmethod
    def load(cls, path) -> CharTokenizer:
        data = _read_json(path, "saved CharTokenizer")
        if data.get("type") != "CharTokenizer":
            raise ValueError(f"{path} is not a saved CharTokenizer (use HFTokenizer.load).")
        tokens, specials = data.get("tokens"), data.get("special_tokens", [])
        if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)) or not (
            isinstance(specials, list) and set(specials) <= set(tokens)
        ):
            raise ValueError(
                f"{path} is damaged: 'tokens' must be a list of strings that includes every "
                f"entry of 'special_tokens'."
            )
        tok = cls.__new__(cls)
        tok._init_vocab(tokens, specials)
        return tok


class HFTokenizer(_SpecialIds):
    """The ptlearn protocol around a HF ``tokenizers.Tokenizer`` (BPE, WordPiece, or any
    ``tokenizer.json``). The wrapped object is ``.tokenizer``; padding is left to
    :func:`ptlearn.data.collate`, so the wrapper switches the tokenizer's own padding off."""

    def __init__(self, tokenizer: Tokenizer):
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self._set_special_ids()
        added = tokenizer.get_added_tokens_decoder()  # id -> AddedToken
        self.special_ids = {i for i, t in added.items() if t.special}

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Text -> ids (WordPiece tokenizers add ``[CLS] ... [SEP]``)."""
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_pair(self, a: str, b: str) -> tuple[list[int], list[int]]:
        """A sentence pair -> ``(ids, token_type_ids)``: ``[CLS] a [SEP] b [SEP]`` with types
        0 for the first segment (and its [CLS]/[SEP]) and 1 for the second."""
        enc = self.tokenizer.encode(a, b)
        return enc.ids, enc.type_ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids -> text; ``skip_special_tokens=True`` drops ``[CLS]``, ``[SEP]``, ``[PAD]`` ...
        (the default keeps them, as in HF ``transformers``)."""
        ids = _ids_list(ids, self.vocab_size)
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self.tokenizer.id_to_token(i) for i in _ids_list(ids, self.vocab_size)]

    def save(self, path) -> None:
        """Write the HF ``tokenizer.json`` (loadable by HF ``tokenizers`` and ``transformers``)."""
        atomic_write_bytes(path, self.tokenizer.to_str(pretty=True).encode("utf-8"))

    @classmethod
    def load(cls, path) -> HFTokenizer:
        data = _read_json(path, "tokenizer.json")  # names the file for a non-JSON file
        try:
            tokenizer = Tokenizer.from_str(json.dumps(data))  # a BOM (Windows editors) is fine
        except Exception as err:  # tokenizers raises a bare Exception for every kind of damage
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(
                f"{path} is not a valid tokenizer.json ({detail}); use the tokenizer.json saved "
                f"with the model (HF tokenizers format)."
            ) from err
        return cls(tokenizer)

    from_file = load  # the HF name: HFTokenizer.from_file("model/tokenizer.json")

    @classmethod
    def train_bpe(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        min_frequency: int = 2,
        special_tokens: Iterable[str] = GPT_SPECIAL_TOKENS,
    ) -> HFTokenizer:
        """Train a GPT-2-style byte-level BPE tokenizer on ``texts``.

        Text is first mapped to bytes (each shown as a printable character, e.g. a space is
        ``Ġ``), split into word-like chunks, and the most frequent adjacent pairs are merged.
        """
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(special_tokens),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: no unknowns
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def train_wordpiece(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        min_frequency: int = 2,
        special_tokens: Iterable[str] = BERT_SPECIAL_TOKENS,
    ) -> HFTokenizer:
        """Train a BERT-style WordPiece tokenizer: lowercasing, whitespace-and-punctuation
        splitting, ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0-4), and the ``[CLS] A [SEP] B
        [SEP]`` template for single sentences and pairs."""
        special_tokens = list(special_tokens)
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=special_tokens,
            continuing_subword_prefix="##",
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        return cls(tok)


def load_tokenizer(path) -> CharTokenizer | HFTokenizer:
    """Load a tokenizer saved by either class (the JSON says which)."""
    data = _read_json(path, "saved tokenizer")
    return (
        CharTokenizer.load(path) if data.get("type") == "CharTokenizer" else HFTokenizer.load(path)
    )


# --- byte-pair encoding written out: the two steps of its training loop (chapter 03) ----------


def pair_counts(ids: list[int]) -> Counter:
    """How often each adjacent pair occurs: [1, 2, 1, 2] -> {(1, 2): 2, (2, 1): 1}. BPE training
    (Sennrich et al. 2016) merges the most frequent pair into a new symbol, again and again."""
    return Counter(zip(ids, ids[1:]))


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair``, scanning left to right without overlaps, by ``new_id``
    (a new list): merging (5, 5) in [5, 5, 5] gives [new_id, 5]."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2  # both tokens of the pair are consumed
        else:
            out.append(ids[i])
            i += 1
    return out
