"""SST-2 splits that do not leak: evaluation on held-out *sentences*, none of whose phrases is trained on.

GLUE's SST-2 ``train.tsv`` is not a list of sentences. It holds the labelled parse-tree *phrases*
of about 6,900 movie-review sentences: every sentence comes with many of its own sub-phrases
("a gripping thriller" inside "... is a gripping thriller ."), and popular phrases ("one of the
year 's best films") occur inside several sentences. Holding out random *rows* of that file, as
ptlearn once did, leaks: most held-out phrases of four or more words also occur verbatim inside a
training row, and a third of the held-out rows are one to three words long.

:func:`leak_free_split` builds the splits by source sentence instead:

- a **sentence** is a row that occurs inside no other row (the root of a parse tree);
- ``n_validation`` sentences, drawn by a fixed seed, are the validation split;
- every training row that shares a **phrase** of ``min_words`` or more words with an evaluation
  sentence (the held-out ones and GLUE's dev sentences) is dropped from training. A phrase is an
  SST-2 item, i.e. a labelled parse-tree node: a row of ``train.tsv`` or an evaluation sentence.
  "Shares" means the phrase occurs (as whole words) inside the evaluation sentence and inside the
  training row: this covers a held-out sentence's own sub-phrases, a training row that contains
  the sentence, and a phrase that two sentences have in common.

:func:`shared_phrases` finds such pairs; the tests use it (and an independent brute-force search)
to prove that no SST-2 evaluation in the course shares a phrase with its training data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import torch

__all__ = ["MIN_PHRASE_WORDS", "leak_free_split", "phrases_inside", "shared_phrases", "words"]

MIN_PHRASE_WORDS = 4  # shorter phrases ("a bit", "not funny") are common words, not leaks


def words(text: str) -> tuple[str, ...]:
    """SST-2 text is already tokenized and lower-cased: its words are the space-separated tokens."""
    return tuple(text.split())


def phrases_inside(
    sentence: Sequence[str], phrases: set[tuple[str, ...]], min_words: int = MIN_PHRASE_WORDS
) -> set[tuple[str, ...]]:
    """Every phrase of ``phrases`` (word tuples) with at least ``min_words`` words that occurs
    inside ``sentence`` (a word tuple), the sentence itself included."""
    n_words = len(sentence)
    return {
        sentence[i : i + n]
        for n in range(min_words, n_words + 1)
        for i in range(n_words - n + 1)
        if sentence[i : i + n] in phrases
    }


class _WordIndex:
    """Which rows contain a given word sequence: candidates from the rarest word's posting list,
    confirmed by a whole-word substring test."""

    def __init__(self, rows: Sequence[tuple[str, ...]]):
        self.padded = [" " + " ".join(r) + " " for r in rows]
        self.postings: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            for w in set(row):
                self.postings[w].append(i)

    def rows_containing(self, phrase: tuple[str, ...]) -> list[int]:
        rarest = min(phrase, key=lambda w: len(self.postings.get(w, ())))
        needle = " " + " ".join(phrase) + " "
        return [i for i in self.postings.get(rarest, ()) if needle in self.padded[i]]


def shared_phrases(
    eval_texts: Iterable[str],
    train_texts: Sequence[str],
    phrases: Iterable[str] = (),
    min_words: int = MIN_PHRASE_WORDS,
) -> list[tuple[str, str, str]]:
    """``(evaluation text, training text, shared phrase)`` for every training text that contains a
    phrase of ``min_words`` or more words occurring inside an evaluation text. The phrases are the
    training texts, the evaluation texts and ``phrases`` (e.g. every row of ``train.tsv``).
    Empty: no leak."""
    eval_rows = [words(t) for t in eval_texts]
    train_rows = [words(t) for t in train_texts]
    known = {p for p in (*train_rows, *eval_rows, *map(words, phrases)) if len(p) >= min_words}
    index = _WordIndex(train_rows)
    found, seen = [], set()
    for e in eval_rows:
        for p in phrases_inside(e, known, min_words):
            for i in index.rows_containing(p):
                if (e, i) not in seen:
                    seen.add((e, i))
                    found.append((" ".join(e), train_texts[i], " ".join(p)))
    return found


def _sentences(rows: Sequence[tuple[str, ...]], order: Sequence[int], n: int, index) -> list[int]:
    """The first ``n`` rows in ``order`` that occur inside no other (different) row."""
    chosen, seen = [], set()
    for i in order if n > 0 else ():
        row = rows[i]
        if row in seen or not row:
            continue
        seen.add(row)
        if all(rows[j] == row for j in index.rows_containing(row)):
            chosen.append(i)
            if len(chosen) == n:
                break
    return chosen


def leak_free_split(
    train_texts: Sequence[str],
    other_eval_texts: Sequence[str] = (),
    n_validation: int = 872,
    seed: int = 0,
    min_words: int = MIN_PHRASE_WORDS,
) -> tuple[list[int], list[int]]:
    """``(train rows, validation rows)``: indices into ``train_texts`` (GLUE's ``train.tsv``).

    The validation rows are ``n_validation`` whole sentences drawn by ``seed`` (one row per
    distinct sentence, in file order). The training rows are every row, in file order, that
    shares no phrase of ``min_words`` or more words with a validation sentence or with any of
    ``other_eval_texts`` (GLUE's dev sentences, ptlearn's ``"test"`` split).
    """
    rows = [words(t) for t in train_texts]
    index = _WordIndex(rows)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    validation = sorted(_sentences(rows, order, n_validation, index))
    eval_rows = [rows[i] for i in validation] + [words(t) for t in other_eval_texts]
    known = {r for r in (*rows, *eval_rows) if len(r) >= min_words}
    dropped: set[int] = set()
    for p in set().union(*(phrases_inside(e, known, min_words) for e in eval_rows)):
        dropped.update(index.rows_containing(p))
    eval_set = set(eval_rows)
    dropped.update(i for i, r in enumerate(rows) if r in eval_set)  # short sentences too
    train = [i for i in range(len(rows)) if i not in dropped]
    return train, validation


_CACHE: dict = {}  # (file stamps) -> (texts, labels, train rows, validation rows)


def read_split(folder, read_tsv) -> tuple[list[str], list[int], list[int], list[int]]:
    """``(texts, labels, train rows, validation rows)`` of ``folder/train.tsv`` (with
    ``folder/dev.tsv`` as the other evaluation set), computed once per process and file version.
    ``read_tsv(path) -> (texts, labels)`` reads a file (``ptlearn.data.text.read_sst2_tsv``)."""
    from pathlib import Path

    train_path, dev_path = Path(folder) / "train.tsv", Path(folder) / "dev.tsv"
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in (train_path, dev_path))
    if key not in _CACHE:
        texts, labels = read_tsv(train_path)
        dev_texts, _ = read_tsv(dev_path)
        _CACHE.clear()
        _CACHE[key] = (texts, labels, *leak_free_split(texts, dev_texts))
    return _CACHE[key]
