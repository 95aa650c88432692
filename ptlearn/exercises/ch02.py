"""Exercise checkers for chapter 02: the Transformer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..layers import sinusoidal_encoding
from .framework import (
    Mistake,
    Tensor,
    call,
    close,
    describe,
    diagnose,
    exercise,
    expect_shape,
    expect_tensor,
)

SINUSOIDAL_MISTAKES = {
    "swapped": "sin and cos are swapped: even dimensions 2i get sin, odd dimensions 2i+1 get cos.",
    "concatenated": "you put all the sines first and then all the cosines. That carries the same "
    "information (some libraries do it), but the paper and ptlearn interleave them: sin at 2i, "
    "cos at 2i+1.",
    "per_dimension": "each dimension got its own frequency 1 / 10000^(j/d); the pair 2i, 2i+1 "
    "shares one frequency, 1 / 10000^(2i/d).",
    "missing_2": "the exponent is missing its factor 2: the frequency of pair i is "
    "1 / 10000^(2i/d), not 1 / 10000^(i/d).",
    "inverted_frequency": "the frequency is inverted: divide the position by 10000^(2i/d) "
    "(slower and slower clocks), do not multiply.",
    "from_one": "positions start at 1; the first position is 0 (so PE[0] is 0, 1, 0, 1, ...).",
}


def sinusoid(max_len: int, exponent: Tensor, swap=False, start=0, concat=False) -> Tensor:
    """A sinusoidal table with knobs for the usual mistakes: column j's angle is
    ``pos / 10000^exponent[j]`` (the paper: ``exponent[j] = 2 * (j // 2) / d``)."""
    pos = torch.arange(start, start + max_len, dtype=torch.float64)[:, None]  # [T, 1]
    angle = pos / 10000.0 ** exponent.double()  # [T, d]
    use_sin = (torch.arange(len(exponent)) % 2 == 0) != swap
    pe = torch.where(use_sin, torch.sin(angle), torch.cos(angle))
    if concat:
        pe = torch.cat([pe[:, 0::2], pe[:, 1::2]], dim=1)  # all sines, then all cosines
    return pe.float()


@exercise("sinusoidal positional encoding")
def check_sinusoidal(fn) -> str:
    """Check ``fn(max_len, d_model) -> [max_len, d_model]`` against
    :func:`ptlearn.layers.sinusoidal_encoding` (even ``d_model``):
    ``PE[pos, 2i] = sin(pos / 10000^(2i/d))``, ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d))``.
    Recognises the mistakes in ``SINUSOIDAL_MISTAKES``.
    """
    m = SINUSOIDAL_MISTAKES
    for T, d in [(50, 16), (12, 64), (7, 6)]:
        got = expect_tensor(call(fn, T, d, inputs=f"max_len={T}, d_model={d}"), "the table")
        expect_shape(
            got, (T, d), "the table", "It should be [max_len, d_model]: one row per position."
        )
        if close(got, sinusoidal_encoding(T, d)):
            continue
        j = torch.arange(d)  # column index
        paper = 2 * (j // 2) / d  # columns 2i and 2i+1 share the exponent 2i/d
        fast = torch.arange(T)[:, None] * 10000.0**paper  # [T, d] angles if inverted
        variants = {
            m["swapped"]: sinusoid(T, paper, swap=True),
            m["concatenated"]: sinusoid(T, paper, concat=True),
            m["per_dimension"]: sinusoid(T, j / d),
            m["missing_2"]: sinusoid(T, (j // 2) / d),
            # float32 cannot agree on sin of angles in the thousands: compare the small ones only
            m["inverted_frequency"]: torch.where(fast > 100, got, sinusoid(T, -paper)),
            m["from_one"]: sinusoid(T, paper, start=1),
        }
        raise Mistake(diagnose(got, variants) or "the values differ from the paper's formula.")
    return "your table matches sin/cos(pos / 10000^(2i/d)) for three table sizes."


LAYER_NORM_MISTAKES = {
    "batch_norm": "you normalised over the batch (that is batch norm). Layer norm normalises each "
    "token's own vector: mean and variance over the last dimension, dim=-1.",
    "unbiased": "the variance is the unbiased one (divides by C - 1); layer norm divides by C: "
    "x.var(-1, unbiased=False) or ((x - mean) ** 2).mean(-1).",
    "eps_outside": "eps belongs inside the square root: (x - mean) / sqrt(var + eps), not "
    "/ (std + eps). The difference shows on inputs with a small spread.",
    "no_affine": "the normalisation is right but weight (gamma) and bias (beta) are not applied: "
    "multiply by weight, then add bias.",
}


@exercise("layer norm")
def check_layer_norm(fn) -> str:
    """Check ``fn(x, weight, bias, eps) -> y`` against ``torch.nn.functional.layer_norm`` over the
    last dimension: ``y = (x - mean) / sqrt(var + eps) * weight + bias`` for each ``[C]`` vector.
    Recognises the mistakes in ``LAYER_NORM_MISTAKES``.
    """
    m, g, eps = LAYER_NORM_MISTAKES, torch.Generator().manual_seed(2), 1e-5
    for B, T, C, spread in [(4, 6, 16, 1.0), (2, 3, 8, 0.01), (5, 1, 32, 3.0)]:
        x = torch.randn(B, T, C, generator=g) * spread + torch.randn(B, T, 1, generator=g)
        weight, bias = torch.randn(C, generator=g), torch.randn(C, generator=g)
        inputs = describe(x=x, weight=weight, bias=bias) + f", eps={eps}"
        got = expect_tensor(call(fn, x, weight, bias, eps, inputs=inputs), "the result")
        expect_shape(got, x.shape, "the result", "Layer norm keeps the shape of x.")
        if close(got, F.layer_norm(x, (C,), weight, bias, eps)):
            continue
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        batch_mean, batch_var = x.mean(0, keepdim=True), x.var(0, keepdim=True, unbiased=False)
        variants = {
            m["batch_norm"]: (x - batch_mean) / (batch_var + eps).sqrt() * weight + bias,
            m["unbiased"]: (x - mean) / (x.var(-1, keepdim=True) + eps).sqrt() * weight + bias,
            m["eps_outside"]: (x - mean) / (var.sqrt() + eps) * weight + bias,
            m["no_affine"]: (x - mean) / (var + eps).sqrt(),
        }
        raise Mistake(
            diagnose(got, variants)
            or "the values differ from F.layer_norm(x, (C,), weight, bias, eps)."
        )
    return "your layer norm matches F.layer_norm, also on inputs with a small spread."
