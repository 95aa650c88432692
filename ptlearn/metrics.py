"""Evaluation metrics: accuracy, the majority-class baseline, perplexity and corpus BLEU, written out.

BLEU (Papineni et al. 2002, https://aclweb.org/anthology/P02-1040) scores a corpus of
hypotheses against references. With ``count_h(g)`` and ``count_r(g)`` the number of times n-gram
``g`` occurs in a hypothesis and in its reference, the modified n-gram precision clips each
hypothesis n-gram at its reference count and sums over the corpus::

    p_n = sum_sentences sum_g min(count_h(g), count_r(g)) / sum_sentences sum_g count_h(g)

The brevity penalty punishes a corpus of hypotheses (total length c) shorter than the references
(total length r), since precision alone would reward saying little::

    BP = 1 if c >= r else exp(1 - r / c)

    BLEU = 100 * BP * exp( (1/N) * sum_{n=1..N} log p_n )        (N = max_n = 4)

so BLEU is the brevity-penalised geometric mean of the 1- to 4-gram precisions, in points (0-100).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

__all__ = ["accuracy", "bleu", "majority_baseline", "perplexity"]


def accuracy(
    logits_or_preds: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> float:
    """Fraction of positions where the prediction equals the label, skipping ``ignore_index``.

    ``logits_or_preds`` is either logits ``[..., n_classes]`` (one more dimension than
    ``labels``; the prediction is the argmax) or predicted ids with ``labels``' shape.
    """
    preds = logits_or_preds
    if preds.dim() == labels.dim() + 1:
        preds = preds.argmax(dim=-1)  # [...]
    if preds.shape != labels.shape:
        raise ValueError(
            f"predictions {tuple(preds.shape)} and labels {tuple(labels.shape)} do not match: pass "
            "logits [..., n_classes] or predicted ids shaped like labels."
        )
    keep = labels != ignore_index
    if not keep.any():
        raise ValueError(f"every label is ignore_index={ignore_index}: nothing to score.")
    return (preds[keep] == labels[keep]).float().mean().item()


def majority_baseline(train, test) -> float:
    """Accuracy on ``test`` of always answering the most frequent label of ``train`` (both
    :class:`~ptlearn.data.LabeledTexts` or anything with ``.labels``): the floor any classifier
    must beat."""
    majority = max(set(train.labels), key=train.labels.count)
    return sum(y == majority for y in test.labels) / len(test.labels)


def perplexity(loss) -> float:
    """``exp(loss)`` for a mean cross-entropy loss in nats: the effective number of equally
    likely next tokens the model hesitates between (uniform over V tokens gives V)."""
    loss = float(loss)
    return math.exp(loss) if loss < 700 else math.inf  # exp overflows a float past ~709


def _ngrams(tokens: Sequence, n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _tokens(x) -> list:
    return x.split() if isinstance(x, str) else list(x)


def bleu(hypotheses: Sequence, references: Sequence, max_n: int = 4, smooth: str = "exp") -> float:
    """Corpus BLEU in points (0-100) of ``hypotheses`` against one reference each.

    Each hypothesis / reference is a string (split on whitespace) or a list of tokens (strings or
    ids). See the module docstring for the formula. ``smooth`` handles an n-gram order with no
    match, which would make BLEU 0: ``"none"`` keeps that 0 (the paper); ``"exp"`` (the
    default, mteval-v13a's smoothing) uses 1 / (2^k * total_n) for the k-th such order instead.
    The results equal ``sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none",
    smooth_method=smooth)``.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references.")
    if smooth not in ("exp", "none"):
        raise ValueError(f"smooth must be 'exp' or 'none', got {smooth!r}.")
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references):
        hyp, ref = _tokens(hyp), _tokens(ref)
        hyp_len, ref_len = hyp_len + len(hyp), ref_len + len(ref)
        for n in range(1, max_n + 1):
            h, r = _ngrams(hyp, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(count, r[g]) for g, count in h.items())  # clipped counts
            totals[n - 1] += sum(h.values())
    if not any(matches) or min(totals) == 0:
        return 0.0  # no overlap at all, or hypotheses too short to have an n-gram of each order
    log_p, halvings = 0.0, 0
    for m, t in zip(matches, totals):
        if m == 0:
            if smooth == "none":
                return 0.0
            halvings += 1
            m = 1 / 2**halvings
        log_p += math.log(m / t) / max_n
    brevity_penalty = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    return 100.0 * brevity_penalty * math.exp(log_p)
