"""Chapter 11's checkers (moved from the notebook's ad-hoc function): mask-aware mean pooling and
finding the previous-token head. Independent solutions pass; each typical mistake is named."""

import pytest
import torch

from ptlearn.exercises.ch11 import (
    MEAN_POOL_MISTAKES,
    PREVIOUS_HEAD_MISTAKES,
    check_mean_pool,
    check_previous_token_head,
)
from ptlearn.exercises.framework import CheckResult


def fails_with(result: CheckResult, message: str) -> bool:
    return isinstance(result, CheckResult) and not result.passed and result.message == message


def mean_pool(hidden, attention_mask):
    out = []
    for h, m in zip(hidden, attention_mask):
        out.append(h[m.bool()].mean(0))  # the real tokens' rows only
    return torch.stack(out)


def test_mean_pool_checker_passes_an_independent_pooling():
    assert check_mean_pool(mean_pool).passed


@pytest.mark.parametrize(
    "fn, key",
    [
        (lambda h, am: h.mean(1), "plain_mean"),
        (lambda h, am: (h * am[..., None]).sum(1) / h.shape[1], "divided_by_T"),
        (lambda h, am: (h * am[..., None]).sum(1), "sum"),
    ],
)
def test_mean_pool_checker_names_the_mistake(fn, key):
    assert fails_with(check_mean_pool(fn), MEAN_POOL_MISTAKES[key])


def previous_head(attentions, lengths, offset=-1, real_only=True, swap=False):
    best, best_score = None, -1.0
    for layer, att in enumerate(attentions):  # [B, H, T, T]
        for head in range(att.shape[1]):
            values = []
            for b, n in enumerate(lengths.tolist()):
                n = n if real_only else att.shape[-1]
                for t in range(max(0, -offset), n - max(0, offset)):
                    values.append(att[b, head, t, t + offset].item())
            score = sum(values) / len(values)
            if score > best_score:
                best, best_score = (layer, head), score
    return best[::-1] if swap else best


def test_previous_head_checker_passes_an_independent_search():
    assert check_previous_token_head(previous_head).passed


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(real_only=False), "padding"),
        (dict(offset=1), "next_token"),
        (dict(swap=True), "flat_index"),
    ],
)
def test_previous_head_checker_names_the_mistake(kwargs, key):
    def fn(attentions, lengths):
        return previous_head(attentions, lengths, **kwargs)

    assert fails_with(check_previous_token_head(fn), PREVIOUS_HEAD_MISTAKES[key])
