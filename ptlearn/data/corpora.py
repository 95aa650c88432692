"""The texts the recipes train on, by name (``ptlearn train --data NAME``).

- :func:`char_corpus`: one string for a character-level GPT;
- :func:`sentence_documents`: documents of consecutive sentences for BERT/ALBERT pretraining;
- :func:`labeled_texts`: labelled sentences for fine-tuning.

Real corpora come from :mod:`.text`, generated reviews from :mod:`.grammar`.
"""

from __future__ import annotations

from .grammar import make_grammar_corpus, make_grammar_documents
from .text import LabeledTexts, load_ag_news, load_sst2, load_tinyshakespeare, train_val_split

LINES_PER_DOC = 16


def char_corpus(data: str) -> str:
    """The text a character-level GPT reads: Tiny Shakespeare, or 20,000 generated reviews."""
    if data == "tinyshakespeare":
        return load_tinyshakespeare()
    return "\n".join(make_grammar_corpus(20_000, seed=0)[0]) + "\n"


def sentence_documents(data: str) -> tuple[list[list[str]], list[list[str]]]:
    """(train, validation) documents, each a list of consecutive sentences.

    Tiny Shakespeare: the nanoGPT split of the text (first 90% / last 10%), cut into documents of
    16 consecutive verse lines with the speaker tags ("ROMEO:") dropped; a sentence is a line, as
    in ``benchmarks/pretrain_bert.py``. Grammar: 4,000 and 400 generated reviews.
    """
    if data == "grammar":
        return make_grammar_documents(4_000, seed=0), make_grammar_documents(400, seed=1)

    def documents(text: str) -> list[list[str]]:
        lines = [s for s in text.splitlines() if s.strip() and not s.rstrip().endswith(":")]
        return [lines[i : i + LINES_PER_DOC] for i in range(0, len(lines), LINES_PER_DOC)]

    train_text, val_text = train_val_split(load_tinyshakespeare())
    return documents(train_text), documents(val_text)


def labeled_texts(data: str, split: str) -> LabeledTexts:
    """SST-2, AG News (see :mod:`ptlearn.data.text` for their splits) or generated reviews."""
    if data == "sst2":
        return load_sst2(split)
    if data == "ag_news":
        return load_ag_news(split)
    seed = {"train": 1, "validation": 2, "test": 3}[split]  # disjoint draws of the grammar
    texts, labels = make_grammar_corpus(4_000 if split == "train" else 500, seed=seed)
    return LabeledTexts(texts, labels, ["negative", "positive"])
