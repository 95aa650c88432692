"""Exercise checkers: each passes a correct solution written independently here (not ptlearn's
reference compared with itself) and names each typical mistake correctly.

The buggy functions below are the mistakes learners make; every test asserts the exact verdict the
checker gives for one of them.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from ptlearn.attention import scaled_dot_product_attention
from ptlearn.exercises import ch03
from ptlearn.exercises.ch01 import (
    ATTENTION_MISTAKES,
    CAUSAL_MISTAKES,
    SPLIT_MISTAKES,
    check_attention,
    check_causal_mask,
    check_split_heads,
)
from ptlearn.exercises.ch02 import (
    LAYER_NORM_MISTAKES,
    SINUSOIDAL_MISTAKES,
    check_layer_norm,
    check_sinusoidal,
)
from ptlearn.exercises.ch03 import BPE_MISTAKES, check_bpe_merge, check_pair_counts
from ptlearn.exercises.framework import CheckResult
from ptlearn.layers import sinusoidal_encoding


def fails_with(result: CheckResult, message: str) -> bool:
    return isinstance(result, CheckResult) and not result.passed and result.message == message


# --- the framework --------------------------------------------------------------------------


def test_not_implemented_is_a_verdict_not_an_exception(capsys):
    def my_attention(q, k, v, mask=None):
        raise NotImplementedError

    result = check_attention(my_attention)
    assert not result and "my_attention is not implemented yet" in result.message
    assert "NOT YET" in capsys.readouterr().out


def test_a_crash_is_reported_with_the_inputs():
    def crashes(q, k, v, mask=None):
        return q @ k  # forgot the transpose: a matmul shape error

    result = check_attention(crashes)
    assert not result.passed
    assert result.message.startswith("your function raised RuntimeError")
    assert "q [2, 3, 5, 16], k [2, 3, 5, 16]" in result.message


def test_passing_prints_a_passed_verdict(capsys):
    assert check_causal_mask(lambda T: torch.arange(T)[:, None] >= torch.arange(T)[None, :])
    assert "✅ PASSED [causal mask]" in capsys.readouterr().out


def test_in_place_edits_by_the_learner_do_not_corrupt_the_reference():
    def scales_in_place(q, k, v, mask=None):
        q.div_(math.sqrt(q.size(-1)))  # legal: the learner owns its copy of q
        return scaled_dot_product_attention(q * math.sqrt(q.size(-1)), k, v, mask)

    assert check_attention(scales_in_place)


# --- chapter 01: attention ------------------------------------------------------------------


def attention_with(scale=None, dim=-1, fill=float("-inf"), softmax=True, invert=False, after=False):
    """A learner's attention with one knob turned the wrong way."""

    def my_attention(q, k, v, mask=None):
        scores = q @ k.transpose(-2, -1) / (math.sqrt(q.size(-1)) if scale is None else scale(q, v))
        if mask is not None and not after:
            scores = scores.masked_fill(mask if invert else ~mask, fill)
        weights = torch.softmax(scores, dim=dim) if softmax else scores
        if mask is not None and after:
            weights = weights * mask
        return weights @ v, weights

    return my_attention


def einsum_attention(q, k, v, mask=None):
    """Attention written independently of ptlearn: einsum and torch.where."""
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * q.size(-1) ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf")))
    weights = scores.softmax(dim=-1)
    return torch.einsum("bhqk,bhkd->bhqd", weights, v), weights


def test_independent_attention_passes_with_and_without_weights():
    assert check_attention(einsum_attention).passed
    assert check_attention(lambda q, k, v, mask=None: einsum_attention(q, k, v, mask)[0])
    assert check_attention(attention_with(fill=-1e9))  # a large negative fill is fine too


@pytest.mark.parametrize(
    "buggy, mistake",
    [
        (attention_with(scale=lambda q, v: 1.0), "unscaled"),
        (attention_with(scale=lambda q, v: q.size(-1)), "scaled_by_d_k"),
        (attention_with(scale=lambda q, v: math.sqrt(v.size(-1))), "scaled_by_d_v"),
        (attention_with(dim=-2), "softmax_axis"),
        (attention_with(softmax=False), "no_softmax"),
        (attention_with(fill=0.0), "mask_fill_zero"),
        (attention_with(invert=True), "mask_inverted"),
        (attention_with(after=True), "mask_after_softmax"),
    ],
)
def test_attention_mistakes_are_named(buggy, mistake):
    assert fails_with(check_attention(buggy), ATTENTION_MISTAKES[mistake])


def test_ignored_mask_returned_weights_and_wrong_weights_are_named():
    def ignores_mask(q, k, v, mask=None):
        return scaled_dot_product_attention(q, k, v)

    def returns_weights(q, k, v, mask=None):
        return scaled_dot_product_attention(q, k, v, mask)[1]

    def returns_scores(q, k, v, mask=None):
        out, _ = scaled_dot_product_attention(q, k, v, mask)
        return out, q @ k.transpose(-2, -1)

    assert fails_with(check_attention(ignores_mask), ATTENTION_MISTAKES["mask_ignored"])
    assert fails_with(check_attention(returns_weights), ATTENTION_MISTAKES["weights_as_output"])
    assert fails_with(check_attention(returns_scores), ATTENTION_MISTAKES["wrong_weights"])


def test_causal_mask_accepts_bool_and_additive_forms():
    assert check_causal_mask(lambda T: torch.ones(T, T, dtype=torch.bool).tril())
    additive = lambda T: torch.full((T, T), float("-inf")).triu(1)  # noqa: E731
    assert check_causal_mask(additive)
    assert check_causal_mask(lambda T: torch.full((T, T), -1e9).triu(1))


@pytest.mark.parametrize(
    "buggy, message",
    [
        (lambda T: torch.ones(T, T).triu(1).bool(), CAUSAL_MISTAKES["inverted"]),
        (lambda T: torch.ones(T, T).triu().bool(), CAUSAL_MISTAKES["transposed"]),
        (lambda T: torch.ones(T, T).tril(1).bool(), CAUSAL_MISTAKES["future_leak"].format(i=0, j=1)),
        (lambda T: torch.ones(T, T).bool(), CAUSAL_MISTAKES["future_leak"].format(i=0, j=1)),
        (lambda T: torch.ones(T, T).tril(-1).bool(), CAUSAL_MISTAKES["diagonal"]),
        (lambda T: torch.eye(T).bool(), CAUSAL_MISTAKES["past_hidden"].format(i=1, j=0)),
        (lambda T: torch.ones(T, T).tril(), CAUSAL_MISTAKES["float_ones"]),
        (lambda T: torch.ones(T, T, dtype=torch.long).tril(), CAUSAL_MISTAKES["int_dtype"].format(dtype=torch.int64)),
        (lambda T: -torch.ones(T, T).triu(1), CAUSAL_MISTAKES["float_values"].format(value=-1.0)),
        (lambda T: torch.ones(1, 1, T, T).tril().bool(), "the mask for T=5 has shape [1, 1, 5, 5], expected [5, 5]."),
        (lambda T: [[True] * T] * T, "the mask should be a torch.Tensor, but it is a list."),
    ],
)  # fmt: skip
def test_causal_mask_mistakes_are_named(buggy, message):
    assert fails_with(check_causal_mask(buggy), message)


def test_split_heads_reference_and_mistakes():
    def reference(x, n_heads):
        B, T, C = x.shape
        return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)

    def no_transpose(x, n_heads):
        B, T, C = x.shape
        return x.view(B, T, n_heads, C // n_heads)

    def direct_reshape(x, n_heads):
        B, T, C = x.shape
        return x.reshape(B, n_heads, T, C // n_heads)

    def strided(x, n_heads):
        B, T, C = x.shape
        return x.view(B, T, C // n_heads, n_heads).permute(0, 3, 1, 2)

    assert check_split_heads(reference)
    assert fails_with(check_split_heads(no_transpose), SPLIT_MISTAKES["no_transpose"])
    assert fails_with(check_split_heads(direct_reshape), SPLIT_MISTAKES["direct_reshape"])
    assert fails_with(check_split_heads(strided), SPLIT_MISTAKES["strided_heads"])


# --- chapter 02: the Transformer ------------------------------------------------------------


def sinusoidal_with(swap=False, concat=False, exponent=None, start=0):
    """A learner's sinusoidal table, written the way a learner would, with one mistake."""

    def my_sinusoidal(max_len, d_model):
        pos = torch.arange(start, start + max_len).float()[:, None]  # [T, 1]
        two_i = torch.arange(0, d_model, 2).float()  # [d/2]
        freq = 1.0 / 10000 ** ((exponent or (lambda t, d: t / d))(two_i, d_model))
        first, second = torch.sin(pos * freq), torch.cos(pos * freq)  # [T, d/2] each
        if swap:
            first, second = second, first
        if concat:
            return torch.cat([first, second], dim=1)
        return torch.stack([first, second], dim=2).flatten(1)  # interleave: sin, cos, sin, ...

    return my_sinusoidal


def test_sinusoidal_reference_and_mistakes():
    def loops(max_len, d_model):  # the paper's formula, one entry at a time
        pe = torch.zeros(max_len, d_model)
        for pos in range(max_len):
            for i in range(0, d_model, 2):
                pe[pos, i] = math.sin(pos / 10000 ** (i / d_model))
                pe[pos, i + 1] = math.cos(pos / 10000 ** (i / d_model))
        return pe

    assert check_sinusoidal(loops)
    assert check_sinusoidal(sinusoidal_with())
    m = SINUSOIDAL_MISTAKES
    assert fails_with(check_sinusoidal(sinusoidal_with(swap=True)), m["swapped"])
    assert fails_with(check_sinusoidal(sinusoidal_with(concat=True)), m["concatenated"])
    assert fails_with(
        check_sinusoidal(sinusoidal_with(exponent=lambda t, d: t / 2 / d)), m["missing_2"]
    )
    assert fails_with(
        check_sinusoidal(sinusoidal_with(exponent=lambda t, d: -t / d)), m["inverted_frequency"]
    )
    assert fails_with(check_sinusoidal(sinusoidal_with(start=1)), m["from_one"])

    def per_dimension(max_len, d_model):  # every column its own frequency 1 / 10000^(j/d)
        angle = torch.arange(max_len).float()[:, None] / 10000 ** (torch.arange(d_model) / d_model)
        return torch.where(torch.arange(d_model) % 2 == 0, angle.sin(), angle.cos())

    assert fails_with(check_sinusoidal(per_dimension), m["per_dimension"])
    wrong_shape = check_sinusoidal(lambda T, d: sinusoidal_encoding(T, d).T)
    assert not wrong_shape and wrong_shape.message.startswith("the table has shape [16, 50]")


def layer_norm_with(dim=-1, unbiased=False, eps_inside=True, affine=True):
    def my_layer_norm(x, weight, bias, eps):
        mean = x.mean(dim, keepdim=True)
        var = x.var(dim, keepdim=True, unbiased=unbiased)
        y = (x - mean) / ((var + eps).sqrt() if eps_inside else var.sqrt() + eps)
        return y * weight + bias if affine else y

    return my_layer_norm


def test_layer_norm_reference_and_mistakes():
    assert check_layer_norm(lambda x, w, b, eps: F.layer_norm(x, x.shape[-1:], w, b, eps))
    assert check_layer_norm(layer_norm_with())
    m = LAYER_NORM_MISTAKES
    assert fails_with(check_layer_norm(layer_norm_with(dim=0)), m["batch_norm"])
    assert fails_with(check_layer_norm(layer_norm_with(unbiased=True)), m["unbiased"])
    assert fails_with(check_layer_norm(layer_norm_with(eps_inside=False)), m["eps_outside"])
    assert fails_with(check_layer_norm(layer_norm_with(affine=False)), m["no_affine"])


# --- chapter 03: tokenizers -----------------------------------------------------------------


def test_pair_counts_reference_and_mistakes():
    from collections import Counter

    def loop_counts(ids):
        counts = {}
        for i in range(len(ids) - 1):
            counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
        return counts

    assert check_pair_counts(loop_counts)
    assert check_pair_counts(lambda ids: Counter(zip(ids, ids[1:])))

    def drops_last(ids):
        return Counter((ids[i], ids[i + 1]) for i in range(len(ids) - 2))

    result = check_pair_counts(drops_last)
    assert fails_with(result, BPE_MISTAKES["last_pair"].format(pair=(1, 2)))
    listed = check_pair_counts(lambda ids: list(zip(ids, ids[1:])))
    assert not listed and "not a list" in listed.message


def test_bpe_merge_reference_and_mistakes():
    def merge_by_string(ids, pair, new_id):  # recursion instead of an index loop
        if len(ids) < 2:
            return list(ids)
        if (ids[0], ids[1]) == pair:
            return [new_id] + merge_by_string(ids[2:], pair, new_id)
        return [ids[0]] + merge_by_string(ids[1:], pair, new_id)

    assert check_bpe_merge(merge_by_string)

    def no_skip(ids, pair, new_id):  # replaces a match but then visits its second token again
        return [new_id if (a, b) == pair else a for a, b in zip(ids, ids[1:] + [None])]

    def drops_last(ids, pair, new_id):
        out, i = [], 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    def in_place(ids, pair, new_id):
        ids[:] = ch03.merge_pair(ids, pair, new_id)
        return ids

    m = BPE_MISTAKES
    no_skip_msg = m["no_skip"].format(
        ids=[1, 2, 3, 1, 2, 1, 2], pair=(1, 2), ref=[99, 3, 99, 99], got=[99, 2, 3, 99, 2, 99, 2]
    )
    assert fails_with(check_bpe_merge(no_skip), no_skip_msg)
    dropped = m["last_token"].format(ids=[5, 5, 5, 5, 5], got=[99, 99], ref=[99, 99, 5])
    assert fails_with(check_bpe_merge(drops_last), dropped)
    assert fails_with(check_bpe_merge(in_place), m["changed_input"])
