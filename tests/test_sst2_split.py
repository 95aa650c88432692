"""No SST-2 evaluation in the course shares a phrase of 4 or more words with its training data.

GLUE's ``train.tsv`` holds the labelled parse-tree phrases of ~6,900 sentences, so a split by
random rows leaks (a held-out phrase sits inside a training row). ``ptlearn.data.sst2`` splits by
source sentence; these tests prove the result with a brute-force search written independently of
the library, show that the search does find the leaks of a random-row split, and check that every
SST-2 evaluation of the course (chapters 08-11, ``ptlearn finetune``) reads the leak-free splits.
"""

import json
import re
from pathlib import Path

import pytest
import torch

from ptlearn.data import load_sst2
from ptlearn.data.sst2 import leak_free_split, shared_phrases, words
from ptlearn.data.text import read_sst2_tsv

ROOT = Path(__file__).resolve().parents[1]
MIN_WORDS = 4


def brute_force_leaks(eval_texts, train_texts, all_phrases):
    """Pairs (evaluation text, training text) that share an SST-2 phrase of >= 4 words: a phrase is
    a row of train.tsv or an evaluation text; enumerate every word n-gram of both sides."""
    phrases = {p for p in map(words, [*all_phrases, *eval_texts]) if len(p) >= MIN_WORDS}
    inside_eval = {}
    for e in eval_texts:
        w = words(e)
        for n in range(MIN_WORDS, len(w) + 1):
            for i in range(len(w) - n + 1):
                if w[i : i + n] in phrases:
                    inside_eval.setdefault(w[i : i + n], set()).add(e)
    longest = max(map(len, inside_eval), default=0)
    leaks = []
    for t in train_texts:
        w = words(t)
        hits = {
            w[i : i + n]
            for n in range(MIN_WORDS, min(len(w), longest) + 1)
            for i in range(len(w) - n + 1)
            if w[i : i + n] in inside_eval
        }
        leaks += [(e, t) for p in hits for e in inside_eval[p]]
    return leaks


@pytest.fixture(scope="module")
def sst2(data_dir):
    rows, _ = read_sst2_tsv(data_dir / "sst2" / "train.tsv")
    splits = {s: load_sst2(s) for s in ("train", "validation", "test")}
    return rows, splits


def test_no_evaluation_sentence_shares_a_phrase_with_training(sst2):
    rows, splits = sst2
    train = splits["train"].texts
    for split in ("validation", "test"):
        leaks = brute_force_leaks(splits[split].texts, train, rows)
        assert not leaks, f"{split}: {len(leaks)} leaks, e.g. {leaks[:3]}"
        assert not shared_phrases(splits[split].texts, train, rows)
    assert len(train) > 60_000  # the cleaning keeps most of the training rows


def test_validation_items_are_whole_sentences(sst2):
    rows, splits = sst2
    val = splits["validation"]
    assert len(val) == 872 and len(set(val.texts)) == 872
    assert 0.45 < sum(val.labels) / len(val) < 0.55
    text = "\n".join(" " + r + " " for r in rows)
    for sentence in val.texts[::4]:  # inside no other row: a parse tree's root, not a fragment
        assert text.count(" " + sentence + " ") == rows.count(sentence), sentence
    # sentence lengths like GLUE's dev sentences (random rows were 28% one to three words long)
    short = sum(len(s.split()) <= 3 for s in val.texts) / len(val)
    dev_short = sum(len(s.split()) <= 3 for s in splits["test"].texts) / 872
    assert short < 0.05 and dev_short < 0.05


def test_a_random_row_split_leaks_and_the_search_finds_it(sst2):
    """The old split (872 random rows held out) fails the same test: the search has power."""
    rows, _ = sst2
    held = set(torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:872].tolist())
    val = [rows[i] for i in sorted(held) if len(rows[i].split()) >= MIN_WORDS]
    train = [rows[i] for i in range(len(rows)) if i not in held][:20_000]
    leaked = {e for e, _ in brute_force_leaks(val, train, rows)}
    assert len(leaked) > 0.3 * len(val)
    assert {e for e, _, _ in shared_phrases(val, train, rows)} == leaked


def test_leak_free_split_on_a_toy_treebank():
    rows = [
        "it is one of the year 's best films .",  # sentence 0
        "one of the year 's best films",  # its phrase, shared with sentence 2
        "it is",
        "a dull , lifeless and boring mess .",  # sentence 3
        "dull , lifeless and boring",
        "surely one of the year 's best films",  # sentence 5
        "lifeless",
    ]
    train, val = leak_free_split(rows, n_validation=1, seed=0)
    assert len(val) == 1 and rows[val[0]] in (rows[0], rows[3], rows[5])
    assert not shared_phrases([rows[i] for i in val], [rows[i] for i in train], rows)
    assert 6 in train or rows[val[0]] != rows[3]  # a 1-word phrase is no leak
    # with sentence 0 held out, the shared phrase and sentence 5 (which contains it) go too
    train, val = leak_free_split(rows, other_eval_texts=[rows[0]], n_validation=0)
    assert set(train) == {2, 3, 4, 6}


def notebook_code(name):
    nb = json.loads((ROOT / "notebooks" / name).read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize(
    "name",
    ["08_objectives.ipynb", "09_finetuning.ipynb", "10_distillation.ipynb", "11_pretrained.ipynb"],
)
def test_course_evaluates_sst2_only_on_held_out_splits(name):
    """Every SST-2 split a chapter loads is one of ptlearn's three; since "train" shares no phrase
    with "validation" or "test" (above), no chapter can train on what it evaluates on."""
    code = notebook_code(name)
    for call in re.findall(r"load_sst2\(([^)]*)\)", code):
        assert call.strip() in ('"train"', '"validation"', '"test"', "split"), (name, call)


def test_cli_and_study_evaluate_on_held_out_splits(data_dir):
    from ptlearn import recipes, study

    try:  # the CLI's fine-tuning data (ptlearn.data.corpora once the recipes are split)
        from ptlearn.data.corpora import labeled_texts
    except ImportError:
        labeled_texts = recipes.labeled_texts
    assert labeled_texts("sst2", "validation").texts == load_sst2("validation").texts
    # chapter 08's study trains and evaluates on the generated negation grammar: no SST-2 at all
    source = (ROOT / "ptlearn" / "study.py").read_text()
    assert "sst2" not in source.lower() and not hasattr(study, "TASKS")
