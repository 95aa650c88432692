"""Metrics: accuracy with ignored positions, perplexity, and corpus BLEU against sacrebleu."""

import math
import random

import pytest
import torch

from ptlearn.metrics import accuracy, bleu, perplexity


def test_accuracy_from_logits_and_predictions():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [5.0, 0.0]]])  # [B=1, T=3, n_classes=2]
    labels = torch.tensor([[0, 0, -100]])
    assert accuracy(logits, labels) == 0.5  # position 3 is ignored
    assert accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75
    assert accuracy(torch.tensor([1, 2]), torch.tensor([1, 7]), ignore_index=7) == 1.0
    with pytest.raises(ValueError, match="do not match"):
        accuracy(torch.zeros(3, 4, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="nothing to score"):
        accuracy(torch.tensor([1]), torch.tensor([-100]))


def test_perplexity():
    assert perplexity(math.log(65)) == pytest.approx(65.0)  # uniform over 65 characters
    assert perplexity(torch.tensor(0.0)) == 1.0
    assert perplexity(1e4) == math.inf


def test_bleu_by_hand():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    # "the cat the cat" vs "the cat sat on the mat": p1 = (2 "the" + 1 clipped "cat") / 4,
    # p2 = 1 clipped "the cat" / 3 bigrams; brevity penalty exp(1 - 6/4)
    score = bleu(["the cat the cat"], ["the cat sat on the mat"], max_n=2, smooth="none")
    expected = 100 * math.exp(1 - 6 / 4) * math.sqrt(3 / 4 * 1 / 3)
    assert score == pytest.approx(expected, rel=1e-12)
    assert bleu([["a", "b"]], ["x y"]) == 0.0
    assert bleu([[1, 2, 3, 4]], [[1, 2, 3, 4]]) == pytest.approx(100.0)  # token ids work too
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        bleu(["a", "b"], ["a"])


def random_corpus(rng, n, vocab, noise):
    words = [f"w{i}" for i in range(vocab)]
    refs, hyps = [], []
    for _ in range(n):
        ref = [rng.choice(words) for _ in range(rng.randint(1, 15))]
        hyp = [w if rng.random() > noise else rng.choice(words) for w in ref]
        hyp = hyp[: rng.randint(max(1, len(hyp) - 3), len(hyp) + 1)] + ["w0"] * rng.randint(0, 2)
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return hyps, refs


@pytest.mark.parametrize("smooth", ["exp", "none"])
@pytest.mark.parametrize("seed", range(8))
def test_bleu_equals_sacrebleu(seed, smooth):
    """Random corpora from near-copies (all precisions > 0) to noise (some n-gram orders with no
    match, where the smoothing decides)."""
    sacrebleu = pytest.importorskip(
        "sacrebleu", reason="sacrebleu (a [dev] extra) is not installed"
    )
    rng = random.Random(seed)
    noise = [0.1, 0.4, 0.8, 0.95][seed % 4]
    hyps, refs = random_corpus(
        rng, n=rng.randint(1, 40), vocab=rng.choice([5, 20, 200]), noise=noise
    )
    ours = bleu(hyps, refs, smooth=smooth)
    theirs = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", smooth_method=smooth).score
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-9)
    assert bleu([h.split() for h in hyps], [r.split() for r in refs], smooth=smooth) == ours


def test_bleu_smoothing_when_no_four_gram_matches():
    sacrebleu = pytest.importorskip(
        "sacrebleu", reason="sacrebleu (a [dev] extra) is not installed"
    )
    hyps, refs = ["a b c x d e"], ["a b c d e f"]  # 3-gram "a b c" matches, no 4-gram does
    assert bleu(hyps, refs, smooth="none") == 0.0
    smoothed = bleu(hyps, refs, smooth="exp")
    # p = 5/6, 3/5, 1/4, and 1 / (2 * 3) for the 4-grams
    assert smoothed == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25, rel=1e-12)
    theirs = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none").score  # default: exp
    assert smoothed == pytest.approx(theirs, rel=1e-6)
