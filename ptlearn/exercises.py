"""Checkers for the course's coding exercises: your function against ptlearn's reference.

Each ``check_*`` function calls the function you wrote on random inputs of several shapes, compares
the result with ptlearn's own implementation, and prints a verdict: that it passed, or what is wrong
in plain words ("the scores are not divided by sqrt(d_k)", "future leak: position 2 may attend to
position 3"). It returns a :class:`CheckResult` (``result.passed``, ``result.message``) and never
raises, so a notebook runs top to bottom while an exercise is still ``raise NotImplementedError``.

Adding a checker for a chapter: put the messages for the mistakes it recognises in a dict, write a
function that raises :class:`Mistake` with one of them (or a specific message) and returns a
success message, and decorate it with ``@exercise(name)``. Call the learner's code through
:func:`call`; compare tensors with :func:`close`; :func:`diagnose` finds which known mistake
reproduces the learner's result. One section per chapter below.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .attention import causal_mask, scaled_dot_product_attention
from .layers import sinusoidal_encoding

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------------------
# The shared framework
# ---------------------------------------------------------------------------------------------


class Mistake(Exception):
    """Raised inside a checker; its message tells the learner what is wrong and how to fix it."""


@dataclass
class CheckResult:
    """The verdict of a checker. ``bool(result)`` is ``result.passed``."""

    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'✅ PASSED' if self.passed else '❌ NOT YET'} [{self.name}] {self.message}"


def exercise(name: str):
    """Turn ``check(*learner_fns) -> success message`` (raising :class:`Mistake` for a mistake)
    into a checker that prints its verdict and returns a :class:`CheckResult`."""

    def decorate(check):
        @functools.wraps(check)
        def run(*args, **kwargs) -> CheckResult:
            try:
                result = CheckResult(name, True, check(*args, **kwargs))
            except Mistake as mistake:
                result = CheckResult(name, False, str(mistake))
            print(result)
            return result

        return run

    return decorate


def call(fn, *args, inputs: str, **kwargs):
    """Call the learner's ``fn`` on copies of the tensor arguments (an in-place edit must not change
    the reference's inputs); turn "not implemented yet" and crashes into a :class:`Mistake` that
    says what the function was called with (``inputs`` describes it)."""
    args = [a.clone() if isinstance(a, Tensor) else a for a in args]
    kwargs = {k: v.clone() if isinstance(v, Tensor) else v for k, v in kwargs.items()}
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise Mistake(
            f"{getattr(fn, '__name__', 'your function')} is not implemented yet: replace "
            "`raise NotImplementedError` with your code and run this cell again."
        ) from None
    except Exception as error:  # any crash in learner code becomes a readable verdict
        raise Mistake(
            f"your function raised {type(error).__name__}: {error} (called with {inputs})."
        ) from None


def expect_tensor(x, what: str, finite: bool = True) -> Tensor:
    """``x`` must be a tensor (with finite values: NaN usually comes from a fully masked row)."""
    if not isinstance(x, Tensor):
        raise Mistake(f"{what} should be a torch.Tensor, but it is a {type(x).__name__}.")
    if finite and x.is_floating_point() and not torch.isfinite(x).all():
        raise Mistake(f"{what} contains NaN or inf values.")
    return x


def expect_shape(x: Tensor, shape, what: str, hint: str = "") -> None:
    """``x.shape`` must be ``shape``; the message names both."""
    if tuple(x.shape) != tuple(shape):
        expected = f"{what} has shape {list(x.shape)}, expected {list(shape)}."
        raise Mistake(f"{expected} {hint}".strip())


def close(a: Tensor, b: Tensor, atol: float = 1e-4, rtol: float = 1e-4) -> bool:
    """Same shape and equal up to float rounding."""
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol, rtol=rtol)


def diagnose(got: Tensor, variants: dict[str, Tensor]) -> str | None:
    """The message of the first known mistake whose result equals ``got`` (None if none does).
    ``variants`` maps a message to what a function making that mistake returns."""
    return next((message for message, wrong in variants.items() if close(got, wrong)), None)


def describe(**tensors: Tensor) -> str:
    """``"q [2, 3, 5, 16], k [2, 3, 5, 16]"``: what the learner's function was called with."""
    return ", ".join(f"{name} {list(t.shape)}" for name, t in tensors.items())


# ---------------------------------------------------------------------------------------------
# Chapter 01: attention
# ---------------------------------------------------------------------------------------------

ATTENTION_MISTAKES = {
    "unscaled": "the scores are not divided by sqrt(d_k). Without the scaling, dot products grow "
    "with the head size and the softmax saturates into a near one-hot (see the temperature demo).",
    "scaled_by_d_k": "you divided the scores by d_k; divide by sqrt(d_k) = math.sqrt(q.size(-1)).",
    "scaled_by_d_v": "you divided by the square root of v's size; the scale comes from the "
    "query/key size d_k = q.size(-1).",
    "softmax_axis": "the softmax runs over the wrong axis: each column of the weights sums to 1 "
    "instead of each row. Each query's weights over the keys must sum to 1: softmax(scores, dim=-1).",
    "no_softmax": "there is no softmax: the weights must be positive and sum to 1 over the keys.",
    "weights_as_output": "the output has the shape of the attention weights [B, H, Tq, Tk]: "
    "remember the last step, multiplying the weights by v.",
    "wrong_weights": "the output is right but the weights you return are not: return the softmax "
    "probabilities (each row sums to 1), not the raw scores.",
    "mask_ignored": "the mask is ignored: masked keys still get attention. Set their scores to "
    "-inf before the softmax: scores.masked_fill(~mask, float('-inf')).",
    "mask_inverted": "the mask is inverted: in ptlearn True means 'may attend', so hide the keys "
    "where the mask is False (masked_fill(~mask, ...)).",
    "mask_fill_zero": "masked scores were set to 0, not -inf, so masked keys still get weight "
    "after the softmax (exp(0) = 1). Fill them with float('-inf').",
    "mask_after_softmax": "you zeroed the masked weights after the softmax, so rows no longer sum "
    "to 1. Mask the scores (-inf) before the softmax instead.",
}

# (B, H, Tq, Tk, d_k, d_v): self-attention, cross-attention (Tq != Tk, d_v != d_k), one head
ATTENTION_CASES = [(2, 3, 5, 5, 16, 16), (1, 2, 4, 6, 16, 8), (3, 1, 7, 3, 32, 32)]


def attend(q, k, v, mask=None, scale=None, dim=-1, fill=float("-inf"), zero_after=False):
    """Attention with knobs that reproduce the usual mistakes (scale, softmax axis, mask fill)."""
    scale = math.sqrt(q.size(-1)) if scale is None else scale
    scores = q @ k.transpose(-2, -1) / scale  # [B, H, Tq, Tk]
    if mask is not None and not zero_after:
        scores = scores.masked_fill(~mask, fill)
    weights = torch.softmax(scores, dim=dim)
    if mask is not None and zero_after:
        weights = weights * mask
    return weights @ v  # [B, H, Tq, d_v]


def attention_result(result) -> tuple[Tensor, Tensor | None]:
    """The learner may return ``out`` or ``(out, weights)``."""
    if isinstance(result, (tuple, list)):
        if len(result) != 2:
            raise Mistake(
                f"your function returned {len(result)} values; return out or (out, weights)."
            )
        return expect_tensor(result[0], "the output"), expect_tensor(result[1], "the weights")
    return expect_tensor(result, "the output"), None


def compare_attention(result, q, k, v, mask, variants: dict[str, Tensor]) -> None:
    """Compare the learner's result with ptlearn's; name the mistake that reproduces it."""
    out, weights = attention_result(result)
    ref_out, ref_weights = scaled_dot_product_attention(q, k, v, mask)
    if out.shape == ref_weights.shape and out.shape != ref_out.shape:
        raise Mistake(ATTENTION_MISTAKES["weights_as_output"])
    expect_shape(
        out, ref_out.shape, "the output", "It should be [B, H, Tq, d_v]: one vector per query."
    )
    if not close(out, ref_out):
        raise Mistake(
            diagnose(out, variants) or "the output differs from softmax(q k^T / sqrt(d_k)) v."
        )
    if weights is not None:
        expect_shape(weights, ref_weights.shape, "the weights", "They should be [B, H, Tq, Tk].")
        if not close(weights, ref_weights):
            raise Mistake(ATTENTION_MISTAKES["wrong_weights"])


@exercise("scaled dot-product attention")
def check_attention(fn) -> str:
    """Check ``fn(q, k, v, mask=None) -> out`` or ``(out, weights)`` against
    :func:`ptlearn.attention.scaled_dot_product_attention`.

    q ``[B, H, Tq, d_k]``, k ``[B, H, Tk, d_k]``, v ``[B, H, Tk, d_v]``; ``mask`` is bool and
    broadcastable to ``[B, H, Tq, Tk]``, True = "this query may attend to this key". Recognises the
    mistakes in ``ATTENTION_MISTAKES``: wrong output shape, missing or wrong 1/sqrt(d_k) scaling,
    softmax over the wrong axis, no softmax, mask ignored, inverted, filled with 0 or applied after
    the softmax.
    """
    m, g = ATTENTION_MISTAKES, torch.Generator().manual_seed(0)
    for B, H, Tq, Tk, d_k, d_v in ATTENTION_CASES:
        q, k = torch.randn(B, H, Tq, d_k, generator=g), torch.randn(B, H, Tk, d_k, generator=g)
        v = torch.randn(B, H, Tk, d_v, generator=g)
        result = call(fn, q, k, v, inputs=describe(q=q, k=k, v=v))
        variants = {
            m["unscaled"]: attend(q, k, v, scale=1.0),
            m["scaled_by_d_k"]: attend(q, k, v, scale=d_k),
            m["scaled_by_d_v"]: attend(q, k, v, scale=math.sqrt(d_v)),
            m["softmax_axis"]: attend(q, k, v, dim=-2),
            m["no_softmax"]: q @ k.transpose(-2, -1) / math.sqrt(d_k) @ v,
        }
        compare_attention(result, q, k, v, None, variants)

        mask = torch.rand(B, 1, Tq, Tk, generator=g) < 0.5  # [B, 1, Tq, Tk], same for every head
        mask[..., 0], mask[..., -1] = True, False  # every query keeps one key and loses one
        result = call(fn, q, k, v, mask=mask, inputs=describe(q=q, k=k, v=v, mask=mask))
        variants = {
            m["mask_ignored"]: attend(q, k, v),
            m["mask_inverted"]: attend(q, k, v, ~mask),
            m["mask_fill_zero"]: attend(q, k, v, mask, fill=0.0),
            m["mask_after_softmax"]: attend(q, k, v, mask, zero_after=True),
        }
        compare_attention(result, q, k, v, mask, variants)
    return (
        f"your attention matches ptlearn's on {len(ATTENTION_CASES)} shapes (self- and "
        "cross-attention), with and without a mask."
    )


CAUSAL_MISTAKES = {
    "inverted": "the mask is inverted: it marks the blocked (future) keys. In ptlearn True means "
    "'may attend' (PyTorch's nn.MultiheadAttention uses the opposite convention, a common source "
    "of this mix-up): use torch.ones(T, T, dtype=torch.bool).tril().",
    "transposed": "the mask is transposed (triu instead of tril): each position sees its future "
    "and not its past.",
    "future_leak": "future leak: position {i} may attend to position {j}, which comes after it. "
    "Everything above the diagonal must be blocked.",
    "diagonal": "the diagonal is masked: each position must attend to itself (tril with "
    "diagonal=0), or the first position has nothing to look at.",
    "past_hidden": "position {i} cannot see the earlier position {j}: a causal mask hides only "
    "the future.",
    "int_dtype": "the mask has dtype {dtype}; use bool (True = may attend), e.g. "
    "torch.ones(T, T, dtype=torch.bool).tril(), or convert with .bool().",
    "float_ones": "the mask is a float tensor of 1s and 0s. Attention masks are bool (True = may "
    "attend: add .bool()) or additive floats (0 = attend, -inf = blocked).",
    "float_values": "a float mask is added to the scores, so it must hold 0 where attention is "
    "allowed and -inf where it is blocked; yours also holds {value}.",
}


def allowed_positions(mask, T: int) -> Tensor:
    """The learner's causal mask as bool ``[T, T]`` (True = may attend), from the bool form or
    the additive float form (0 = attend, -inf or a large negative number = blocked)."""
    m = CAUSAL_MISTAKES
    expect_shape(expect_tensor(mask, "the mask", finite=False), (T, T), f"the mask for T={T}")
    if mask.dtype == torch.bool:
        return mask
    if not mask.is_floating_point():
        raise Mistake(m["int_dtype"].format(dtype=mask.dtype))
    if ((mask == 0) | (mask == 1)).all() and (mask == 1).any():
        raise Mistake(m["float_ones"])
    blocked = mask <= -1e4  # -inf, or a large negative number such as -1e9
    odd = mask[(mask != 0) & ~blocked]
    if len(odd):
        raise Mistake(m["float_values"].format(value=odd[0].item()))
    return mask == 0


@exercise("causal mask")
def check_causal_mask(fn) -> str:
    """Check ``fn(T) -> mask [T, T]`` against :func:`ptlearn.attention.causal_mask`.

    Two forms pass: bool with True = "query i may attend to key j" (ptlearn's form), or an additive
    float mask with 0 where attention is allowed and -inf (or a large negative number such as -1e9)
    where it is blocked. Recognises the mistakes in ``CAUSAL_MISTAKES``: future leak, inverted or
    transposed mask, masked diagonal, hidden past, wrong shape or dtype.
    """
    m = CAUSAL_MISTAKES
    for T in (5, 8, 2, 1):  # informative sizes first, so the verdict names the real mistake
        allowed = allowed_positions(call(fn, T, inputs=f"T={T}"), T)
        ref = causal_mask(T)  # [T, T], True on and below the diagonal
        if torch.equal(allowed, ref):
            continue
        if T > 1 and torch.equal(allowed, ~ref):
            raise Mistake(m["inverted"])
        if T > 1 and torch.equal(allowed, ref.T):
            raise Mistake(m["transposed"])
        if (allowed & ~ref).any():
            i, j = (allowed & ~ref).nonzero()[0].tolist()
            raise Mistake(m["future_leak"].format(i=i, j=j))
        if not allowed.diagonal().all():
            raise Mistake(m["diagonal"])
        i, j = (ref & ~allowed).nonzero()[0].tolist()
        raise Mistake(m["past_hidden"].format(i=i, j=j))
    return "no future leak; every position sees itself and its past (T = 1, 2, 5 and 8)."


SPLIT_MISTAKES = {
    "no_transpose": "the result is [B, T, H, d_head]: you split C into heads but did not move the "
    "head axis forward. Add .transpose(1, 2) to get [B, H, T, d_head].",
    "direct_reshape": "the shape is right but the values are scrambled: reshaping straight to "
    "[B, H, T, d_head] cuts the memory in the wrong place, so a head gets a mix of positions. "
    "View as [B, T, H, d_head] first, then transpose(1, 2).",
    "strided_heads": "each head takes every H-th channel; head h should own the contiguous slice "
    "h * d_head : (h + 1) * d_head. View as [B, T, H, d_head], not [B, T, d_head, H].",
}


@exercise("split heads")
def check_split_heads(fn) -> str:
    """Check ``fn(x, n_heads) -> [B, H, T, d_head]`` for ``x [B, T, C]``: the reshape inside
    :meth:`ptlearn.MultiHeadAttention.split_heads`, where head h gets channels
    ``h * d_head : (h + 1) * d_head`` of every position. Recognises the mistakes in
    ``SPLIT_MISTAKES``: no transpose, a direct reshape that scrambles positions, strided heads.
    """
    m, g = SPLIT_MISTAKES, torch.Generator().manual_seed(1)
    for B, T, C, H in [(2, 5, 12, 3), (1, 7, 16, 4), (3, 4, 8, 1)]:
        x = torch.randn(B, T, C, generator=g)
        got = expect_tensor(call(fn, x, H, inputs=f"x {[B, T, C]}, n_heads={H}"), "the result")
        ref = x.view(B, T, H, C // H).transpose(1, 2)  # [B, H, T, d_head]
        if tuple(got.shape) == (B, T, H, C // H) and H != T:
            raise Mistake(m["no_transpose"])
        expect_shape(
            got, ref.shape, "the result", "It should be [B, H, T, d_head], d_head = C // H."
        )
        variants = {
            m["direct_reshape"]: x.reshape(B, H, T, C // H),
            m["strided_heads"]: x.view(B, T, C // H, H).permute(0, 3, 1, 2),
        }
        if not close(got, ref):
            raise Mistake(
                diagnose(got, variants)
                or "the values differ from x.view(B, T, H, C // H).transpose(1, 2)."
            )
    return "every head gets its own contiguous slice of channels at every position."


# ---------------------------------------------------------------------------------------------
# Chapter 02: the Transformer
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Chapter 03: tokenizers (the two steps of byte-pair encoding, Sennrich et al. 2016)
# ---------------------------------------------------------------------------------------------


def pair_counts(ids: list[int]) -> Counter:
    """How often each adjacent pair occurs: [1, 2, 1, 2] -> {(1, 2): 2, (2, 1): 1}."""
    return Counter(zip(ids, ids[1:]))


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair``, scanning left to right without overlaps, by ``new_id``."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2  # both tokens of the pair are consumed
        else:
            out.append(ids[i])
            i += 1
    return out


BPE_MISTAKES = {
    "last_pair": "the last pair {pair} is missing: zip(ids, ids[1:]) visits every adjacent pair.",
    "changed_input": "your function changed the input list; build and return a new list.",
    "last_token": "the last token was dropped: ids={ids} gave {got}, expected {ref}.",
    "no_skip": "after a match you still look at the second token of the pair, so it appears "
    "again in the output: {ids} with pair {pair} should become {ref}, you returned {got}. Skip both "
    "tokens of a matched pair (i += 2).",
    "overlap": "overlapping matches: {ids} with pair {pair} should become {ref}. After a match, "
    "skip both tokens of the pair (i += 2).",
}
# (ids, pair to merge): repeats at both ends, overlapping pairs, a single token, an empty list
BPE_CASES = [
    ([1, 2, 3, 1, 2, 1, 2], (1, 2)),
    ([5, 5, 5, 5, 5], (5, 5)),
    ([7, 1, 2], (1, 2)),
    ([4], (4, 4)),
    ([], (1, 2)),
]


@exercise("BPE pair counts")
def check_pair_counts(fn) -> str:
    """Check ``fn(ids: list[int]) -> dict[(a, b), count]``, the counting step of BPE training.
    Recognises a dropped last pair and crashes on short lists."""
    for ids in [ids for ids, _ in BPE_CASES] + [[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]]:
        got = call(fn, list(ids), inputs=f"ids={ids}")
        if not isinstance(got, dict):
            raise Mistake(
                f"return a dict (or Counter) from pairs to counts, not a {type(got).__name__}."
            )
        got, ref = {pair: n for pair, n in got.items() if n}, dict(pair_counts(ids))
        if got == ref:
            continue
        if len(ids) > 1 and got == dict(pair_counts(ids[:-1])):
            raise Mistake(BPE_MISTAKES["last_pair"].format(pair=tuple(ids[-2:])))
        raise Mistake(f"for ids={ids} you counted {got}, expected {ref}.")
    return "adjacent pairs are counted correctly, including repeats and the last pair."


@exercise("BPE merge")
def check_bpe_merge(fn) -> str:
    """Check ``fn(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]``, one BPE
    merge: every occurrence of ``pair``, scanned left to right without overlaps, becomes ``new_id``.
    Recognises overlapping matches, a dropped last token and an input list changed in place."""
    m, new = BPE_MISTAKES, 99
    for ids, pair in BPE_CASES:
        given = list(ids)
        got = call(fn, given, pair, new, inputs=f"ids={ids}, pair={pair}, new_id={new}")
        if given != ids:
            raise Mistake(m["changed_input"])
        if not isinstance(got, list):
            raise Mistake(f"return a list of ids, not a {type(got).__name__}.")
        ref = merge_pair(ids, pair, new)
        if got == ref:
            continue
        if ids and got in (ref[:-1], merge_pair(ids[:-1], pair, new)):
            raise Mistake(m["last_token"].format(ids=ids, got=got, ref=ref))
        if got == [new if (a, b) == pair else a for a, b in zip(ids, ids[1:] + [None])]:
            raise Mistake(m["no_skip"].format(ids=ids, pair=pair, ref=ref, got=got))
        if pair == (5, 5):
            raise Mistake(m["overlap"].format(ids=ids, pair=pair, ref=ref))
        raise Mistake(f"merging {pair} in {ids} gave {got}, expected {ref}.")
    return "every pair is merged left to right without overlaps, and the last token is kept."


# ---------------------------------------------------------------------------------------------
# Chapter 04: GPT (the next-token loss, top-k filtering, greedy decoding)
# ---------------------------------------------------------------------------------------------

CAUSAL_LM_MISTAKES = {
    "not_scalar": "the loss has shape {shape}; it should be one number (a 0-d tensor): the mean "
    "over every predicted position of every sequence.",
    "no_shift": "there is no shift: the logits at position t are scored against token t itself, "
    "which the model already sees, so the task becomes copying. Score logits[:, :-1] against "
    "labels[:, 1:]: position t predicts token t + 1.",
    "wrong_direction": "the shift goes the wrong way: logits[:, 1:] are scored against "
    "labels[:, :-1], so each position predicts the token before it. Use logits[:, :-1] with "
    "labels[:, 1:].",
    "sum": "the loss is a sum over positions; take the mean (reduction='mean'), so it does not "
    "grow with the batch size or the sequence length.",
    "probs": "cross-entropy was applied to probabilities: F.cross_entropy takes raw logits and "
    "applies log_softmax itself, so do not softmax first.",
    "ignored_in_mean": "positions labelled -100 are left out of the sum but still counted in "
    "the mean: divide by the number of real labels (F.cross_entropy(..., ignore_index=-100) "
    "does this).",
    "ignored_counted": "positions labelled -100 (padding) count in your loss: skip them with "
    "F.cross_entropy(..., ignore_index=-100).",
}


def lm_loss_variant(logits, labels, shift=(-1, 1), reduction="mean", ignore=True, probs=False):
    """The next-token loss with knobs that reproduce the usual mistakes."""
    end, start = shift
    scores = logits[:, :end] if end else logits
    targets = labels[:, start:]
    if probs:
        scores = scores.softmax(-1)
    flat_scores, flat_targets = scores.flatten(0, 1), targets.flatten()
    if not ignore:  # a -100 label is scored as if it were token 0
        return F.cross_entropy(flat_scores, flat_targets.clamp(min=0), reduction=reduction)
    return F.cross_entropy(flat_scores, flat_targets, ignore_index=-100, reduction=reduction)


@exercise("causal LM loss")
def check_causal_lm_loss(fn) -> str:
    """Check ``fn(logits [B, T, V], labels [B, T]) -> loss`` (a scalar) against
    :func:`ptlearn.objectives.causal_lm_shift`: the logits at position t are scored against
    ``labels[:, t + 1]``, positions labelled -100 are ignored, and the loss is the mean over the
    counted positions. Recognises the mistakes in ``CAUSAL_LM_MISTAKES``.
    """
    from .objectives import causal_lm_shift

    m, g = CAUSAL_LM_MISTAKES, torch.Generator().manual_seed(4)
    for B, T, V, padded in [(2, 6, 11, False), (3, 9, 7, False), (4, 8, 13, True)]:
        logits = torch.randn(B, T, V, generator=g) * 2
        labels = torch.randint(V, (B, T), generator=g)
        if padded:  # right padding, labelled -100 as the data collator does
            labels[:, T - 3 :] = -100
        inputs = describe(logits=logits, labels=labels) + (" (-100 = padding)" if padded else "")
        got = call(fn, logits.clone(), labels.clone(), inputs=inputs)
        got = expect_tensor(torch.as_tensor(got, dtype=torch.float32), "the loss")
        if got.numel() != 1:
            raise Mistake(m["not_scalar"].format(shape=list(got.shape)))
        got = got.reshape(())
        ref = causal_lm_shift(logits, labels)
        if close(got, ref):
            continue
        counted = labels[:, 1:] != -100
        variants = {
            m["no_shift"]: lm_loss_variant(logits, labels, shift=(None, 0)),
            m["wrong_direction"]: lm_loss_variant(logits[:, 1:], labels[:, :-1], shift=(None, 0)),
            m["sum"]: lm_loss_variant(logits, labels, reduction="sum"),
            m["probs"]: lm_loss_variant(logits, labels, probs=True),
            m["ignored_in_mean"]: ref * counted.sum() / counted.numel(),
            m["ignored_counted"]: lm_loss_variant(logits, labels, ignore=False),
        }
        raise Mistake(
            diagnose(got, variants)
            or f"your loss is {got.item():.4f}, expected {ref.item():.4f} (the mean cross-entropy "
            "of logits[:, :-1] against labels[:, 1:])."
        )
    return "position t is scored against token t + 1, padding is ignored, and the loss is a mean."


TOP_K_MISTAKES = {
    "probs": "you returned probabilities; return logits, with -inf for the dropped tokens (the "
    "softmax comes after the filter).",
    "zero_fill": "the dropped tokens got the logit 0, not -inf. After the softmax exp(0) > 0, so "
    "they can still be sampled; fill them with float('-inf').",
    "smallest": "you kept the k lowest logits; keep the k highest (torch.topk returns the largest "
    "values by default).",
    "count": "row {row} keeps {n} tokens, expected k={k} (kept = logits that are not -inf). The "
    "k-th largest value is torch.topk(logits, k).values[:, -1:], a threshold per row.",
    "whole_batch": "the k highest logits were taken over the whole batch, not per row: each row is "
    "its own next-token distribution; use torch.topk(logits, k, dim=-1).",
    "changed_kept": "the kept logits changed value; leave them as they are and only set the "
    "others to -inf.",
}


@exercise("top-k filtering")
def check_top_k(fn) -> str:
    """Check ``fn(logits [B, V], k) -> [B, V]`` against :func:`ptlearn.models.gpt.filter_logits`
    with ``top_k=k``: the k highest logits of each row keep their values, the others become
    -inf (a large negative number such as -1e9 is accepted). Recognises the mistakes in
    ``TOP_K_MISTAKES``.
    """
    from .models.gpt import filter_logits

    m, g = TOP_K_MISTAKES, torch.Generator().manual_seed(5)
    for B, V, k in [(2, 10, 3), (4, 50, 1), (3, 7, 7), (1, 20, 5)]:
        logits = torch.randn(B, V, generator=g) + torch.randn(B, 1, generator=g) * 3
        got = call(fn, logits, k, inputs=f"logits {[B, V]}, k={k}")
        got = expect_tensor(got, "the filtered logits", finite=False)
        expect_shape(got, (B, V), "the filtered logits", "Keep the shape [B, vocab].")
        ref = filter_logits(logits, top_k=k)  # [B, V]
        kept, ref_kept = got > -1e4, torch.isfinite(ref)
        if torch.equal(kept, ref_kept) and close(got[kept], logits[kept]):
            continue
        if kept.all() and close(got.sum(-1), torch.ones(B)) and (got >= 0).all():
            raise Mistake(m["probs"])
        if kept.all() and (got[~ref_kept] == 0).all() and close(got[ref_kept], logits[ref_kept]):
            raise Mistake(m["zero_fill"])
        if torch.equal(kept, torch.isfinite(filter_logits(-logits, top_k=k))):
            raise Mistake(m["smallest"])
        whole = torch.zeros(B * V, dtype=torch.bool)
        whole[logits.flatten().topk(min(k, B * V)).indices] = True
        if B > 1 and torch.equal(kept, whole.view(B, V)):
            raise Mistake(m["whole_batch"])
        counts = kept.sum(-1)  # [B]
        if (counts != k).any():
            row = int((counts != k).nonzero()[0])
            raise Mistake(m["count"].format(row=row, n=int(counts[row]), k=k))
        if not torch.equal(kept, ref_kept):
            raise Mistake("the kept tokens are not the k highest logits of each row.")
        raise Mistake(m["changed_kept"])
    return "each row keeps exactly its k highest logits and the rest are -inf (k = 1 to V)."


GREEDY_MISTAKES = {
    "only_new": "you returned only the new tokens {shape}; return the prompt followed by them, "
    "[B, T0 + max_new_tokens], as GPT.generate does.",
    "random": "two calls with the same prompt gave different tokens: greedy decoding is "
    "deterministic, take the argmax of the logits instead of sampling.",
    "first_position": "you took the logits of the first position, logits[:, 0]: the prediction "
    "for the next token sits at the last position, logits[:, -1].",
    "no_feedback": "every new token is the same one: the chosen token must be appended to the "
    "input before the next step, so the model sees what it has written so far.",
}


def greedy_variant(model, ids: Tensor, n: int, position: int = -1, feedback: bool = True):
    """Greedy decoding written out (no cache), with knobs for the usual mistakes."""
    out = ids
    for _ in range(n):
        logits = model(out if feedback else ids).logits[:, position]  # [B, V]
        out = torch.cat([out, logits.argmax(-1, keepdim=True)], dim=1)
    return out


@exercise("greedy decoding")
def check_greedy_decode(fn) -> str:
    """Check ``fn(model, input_ids [B, T0], max_new_tokens) -> [B, T0 + max_new_tokens]``
    against ``model.generate(input_ids, max_new_tokens, temperature=0)`` on a small random GPT:
    at each step take the argmax of the last position's logits and append it. Recognises the
    mistakes in ``GREEDY_MISTAKES``.
    """
    from .models.gpt import GPT, GPTConfig

    m = GREEDY_MISTAKES
    with torch.random.fork_rng():
        torch.manual_seed(6)
        model = GPT(GPTConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=2, d_ff=64))
        model.eval()
        g = torch.Generator().manual_seed(7)
        for B, T0, n in [(2, 3, 8), (1, 1, 6), (3, 5, 4)]:
            ids = torch.randint(40, (B, T0), generator=g)
            inputs = f"a GPT with vocab 40, input_ids {[B, T0]}, max_new_tokens={n}"
            with torch.no_grad():
                ref = model.generate(ids, n, temperature=0)
                got = call(fn, model, ids.clone(), n, inputs=inputs)
                again = call(fn, model, ids.clone(), n, inputs=inputs)
                got = expect_tensor(torch.as_tensor(got), "the result")
                if tuple(got.shape) == (B, n) and not torch.equal(got, ref):
                    raise Mistake(m["only_new"].format(shape=list(got.shape)))
                expect_shape(got, ref.shape, "the result", "It should be [B, T0 + max_new_tokens].")
                if not torch.equal(got, torch.as_tensor(again)):
                    raise Mistake(m["random"])
                if torch.equal(got, ref):
                    continue
                if not torch.equal(got[:, :T0], ids):
                    raise Mistake("the result must start with the prompt, unchanged.")
                variants = {
                    m["first_position"]: greedy_variant(model, ids, n, position=0),
                    m["no_feedback"]: greedy_variant(model, ids, n, feedback=False),
                }
                message = next((k for k, v in variants.items() if torch.equal(got, v)), None)
                step = int((got != ref).any(0).nonzero()[0]) - T0
                raise Mistake(
                    message
                    or f"new token {step} differs from the argmax of the last position's logits."
                )
    return "your decoder appends the argmax of the last position, step by step, like generate()."


# ---------------------------------------------------------------------------------------------
# Chapter 05: BERT (masked language modelling, sentence pairs)
# ---------------------------------------------------------------------------------------------

MLM_MISTAKES = {
    "not_pair": "return two tensors, (masked_input_ids, labels), each shaped like input_ids.",
    "labels_everywhere": "labels are not -100 at the unmasked positions: set labels to -100 "
    "wherever the token was not chosen, so the loss only counts the chosen ~15%.",
    "labels_masked": "the labels hold the masked input (e.g. the [MASK] id); they must hold the "
    "original token at each chosen position: that is what the model has to predict.",
    "labels_wrong": "at {n} chosen positions the label is not the original token; labels = the "
    "original id where chosen, -100 elsewhere.",
    "unlabelled_change": "{n} tokens were changed at positions whose label is -100: every "
    "position you change must be a chosen one (with its original token as the label).",
    "specials": "masked special tokens: {n} special tokens ({names}) were chosen. [CLS], [SEP] "
    "and [PAD] carry no word to predict; choose only among the other tokens.",
    "fraction": "wrong mask fraction: with mask_prob={p} you chose {got:.1%} of the ordinary "
    "tokens, expected about {p:.0%} (each ordinary token independently with probability "
    "mask_prob).",
    "only_masks": "only the [MASK]ed tokens got a label: the tokens replaced by a random token "
    "and those left unchanged are chosen too, and the model must predict them as well. Give every "
    "chosen position its original token as the label.",
    "split": "80/10/10 split off: of the chosen tokens {mask:.1%} became [MASK], {rand:.1%} a "
    "random token and {same:.1%} stayed unchanged; expected about 80% / 10% / 10%.",
    "special_replacement": "a random replacement was a special token (id {tok}). Draw replacements "
    "from the ordinary vocabulary (ptlearn's choice; HF's DataCollatorForLanguageModeling draws "
    "from the whole vocabulary): a [PAD] or [CLS] inside a sentence is not a plausible word.",
    "same_every_call": "two calls chose exactly the same positions: the masks must be random "
    "(did you seed a generator inside the function?). A fresh mask per batch is what makes "
    "MLM see every token masked eventually.",
}

MLM_SPECIALS = {0: "[PAD]", 1: "[UNK]", 2: "[CLS]", 3: "[SEP]", 4: "[MASK]"}


def mlm_check_batch(g: torch.Generator, B: int = 128, T: int = 128, vocab: int = 30) -> Tensor:
    """``[CLS] A [SEP] B [SEP] [PAD] ...`` rows of random ordinary ids (5 .. vocab - 1)."""
    ids = torch.randint(5, vocab, (B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    for row, n in enumerate(lengths.tolist()):
        ids[row, 0], ids[row, n // 2], ids[row, n - 1] = 2, 3, 3  # [CLS], the two [SEP]s
        ids[row, n:] = 0  # [PAD]
    return ids


def mlm_outputs(result, input_ids: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Mistake(MLM_MISTAKES["not_pair"])
    masked = expect_tensor(torch.as_tensor(result[0]), "masked_input_ids")
    labels = expect_tensor(torch.as_tensor(result[1]), "labels")
    for t, what in ((masked, "masked_input_ids"), (labels, "labels")):
        expect_shape(t, input_ids.shape, what, "It should have the shape of input_ids.")
    return masked.long(), labels.long()


def check_masking_once(ids, masked, labels, mask_id, vocab, special, p) -> tuple[int, float]:
    """Raise a Mistake if one call's result breaks a rule; return (chosen, mask share)."""
    m = MLM_MISTAKES
    is_special = torch.isin(ids, special)
    chosen = labels != -100
    if chosen.all() and torch.equal(labels, ids):
        raise Mistake(m["labels_everywhere"])
    if torch.equal(labels[chosen], masked[chosen]) and (masked[chosen] == mask_id).any():
        raise Mistake(m["labels_masked"])
    if (labels[chosen] != ids[chosen]).any():
        raise Mistake(m["labels_wrong"].format(n=int((labels[chosen] != ids[chosen]).sum())))
    only_masks = chosen.any() and (masked[chosen] == mask_id).all()
    if (masked[~chosen] != ids[~chosen]).any():
        n = int((masked[~chosen] != ids[~chosen]).sum())
        raise Mistake(m["only_masks"] if only_masks else m["unlabelled_change"].format(n=n))
    if (chosen & is_special).any():
        hit = sorted(set(ids[chosen & is_special].tolist()))
        names = ", ".join(MLM_SPECIALS.get(i, str(i)) for i in hit)
        raise Mistake(m["specials"].format(n=int((chosen & is_special).sum()), names=names))
    fraction = chosen.sum().item() / (~is_special).sum().item()
    to_mask = masked[chosen] == mask_id
    to_same = masked[chosen] == ids[chosen]
    to_random = ~to_mask & ~to_same
    if abs(fraction - p) > 0.02:
        raise Mistake(m["only_masks"] if only_masks else m["fraction"].format(p=p, got=fraction))
    replaced = masked[chosen][to_random]
    if ((replaced < 0) | (replaced >= vocab)).any():
        raise Mistake(f"a random replacement is outside the vocabulary [0, {vocab}).")
    if torch.isin(replaced, special).any():
        raise Mistake(
            m["special_replacement"].format(tok=int(replaced[torch.isin(replaced, special)][0]))
        )
    n = to_mask.numel()
    shares = to_mask.sum().item() / n, to_random.sum().item() / n, to_same.sum().item() / n
    # a random token equals the original 1 time in (vocab - 5): that moves ~0.4% from "random"
    # to "unchanged"; the tolerance covers it and the sampling noise (~1% here)
    if abs(shares[0] - 0.8) > 0.05 or abs(shares[1] - 0.1) > 0.04 or abs(shares[2] - 0.1) > 0.04:
        raise Mistake(m["split"].format(mask=shares[0], rand=shares[1], same=shares[2]))
    return int(chosen.sum()), shares[0]


@exercise("MLM masking")
def check_mlm_masking(fn) -> str:
    """Check ``fn(input_ids, mask_id, vocab_size, special_ids, mask_prob=0.15) -> (masked,
    labels)`` against the rules of :func:`ptlearn.objectives.mask_tokens` (BERT, section 3.1):
    each ordinary token is chosen with probability ``mask_prob``, special tokens never; a chosen
    token becomes ``[MASK]`` (80%), a random ordinary token (10%) or stays (10%); ``labels`` hold
    the original id at chosen positions and -100 elsewhere. The masking is random, so the checker
    measures the fractions on a 128 x 128 batch and allows for sampling noise. Recognises the
    mistakes in ``MLM_MISTAKES``.
    """
    m, mask_id, vocab = MLM_MISTAKES, 4, 30
    special_ids = set(MLM_SPECIALS)  # [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4
    special = torch.tensor(sorted(special_ids))
    ids = mlm_check_batch(torch.Generator().manual_seed(8))
    inputs = f"input_ids {list(ids.shape)}, mask_id={mask_id}, vocab_size={vocab}, specials 0-4"
    with torch.random.fork_rng():
        torch.manual_seed(9)
        picks = []
        for p in (0.15, 0.15, 0.3):
            result = call(fn, ids, mask_id, vocab, set(special_ids), mask_prob=p, inputs=inputs)
            masked, labels = mlm_outputs(result, ids)
            check_masking_once(ids, masked, labels, mask_id, vocab, special, p)
            picks.append(labels != -100)
    if torch.equal(picks[0], picks[1]):
        raise Mistake(m["same_every_call"])
    return (
        "about 15% of the ordinary tokens are chosen (30% with mask_prob=0.3), never a special "
        "one; they become [MASK] / random / unchanged about 80/10/10, and only they have labels."
    )


PAIR_MISTAKES = {
    "length": "the pair has {got} tokens, expected {ref}: [CLS] A [SEP] B [SEP] adds three "
    "special tokens to the two sentences.",
    "types_length": "input_ids has {n_ids} tokens but token_type_ids has {n_types}: one segment "
    "id per token.",
    "no_cls": "the pair must start with [CLS]: its final vector is the one NSP and classifiers "
    "read.",
    "order": "the tokens should read [CLS] A [SEP] B [SEP]; yours read {got}.",
    "segment_values": "segment ids are 0 for sentence A and 1 for sentence B (BERT's embedding "
    "table has two rows); you used {values}.",
    "first_sep": "the [SEP] after sentence A belongs to segment 0, with [CLS] and A.",
    "last_sep": "the final [SEP] belongs to sentence B: segment 1.",
    "cls_segment": "[CLS] belongs to segment 0.",
}


@exercise("sentence pair")
def check_sentence_pair(fn) -> str:
    """Check ``fn(a, b, cls_id, sep_id) -> (input_ids, token_type_ids)`` (lists or 1-D tensors)
    against :func:`ptlearn.objectives.pair_example`: ``[CLS] A [SEP] B [SEP]`` with segment 0 for
    ``[CLS] A [SEP]`` and 1 for ``B [SEP]`` (BERT, Fig. 2). Recognises the mistakes in
    ``PAIR_MISTAKES``.
    """
    from .objectives import pair_example

    m, cls_id, sep_id = PAIR_MISTAKES, 2, 3
    for a, b in [([10, 11, 12], [20, 21]), ([7], [8, 9, 9, 9]), ([15, 16], [15, 16])]:
        result = call(
            fn, list(a), list(b), cls_id, sep_id, inputs=f"a={a}, b={b}, cls_id=2, sep_id=3"
        )
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Mistake("return two sequences: (input_ids, token_type_ids).")
        ids, types = (torch.as_tensor(x).flatten().tolist() for x in result)
        ref_ids, ref_types = pair_example(a, b, cls_id, sep_id, max_len=len(a) + len(b) + 3)
        if len(ids) != len(ref_ids):
            raise Mistake(m["length"].format(got=len(ids), ref=len(ref_ids)))
        if len(types) != len(ids):
            raise Mistake(m["types_length"].format(n_ids=len(ids), n_types=len(types)))
        if ids[0] != cls_id:
            raise Mistake(m["no_cls"])
        if ids != ref_ids:
            raise Mistake(m["order"].format(got=ids))
        if set(types) - {0, 1}:
            raise Mistake(m["segment_values"].format(values=sorted(set(types))))
        first_sep = len(a) + 1
        for position, key in [(0, "cls_segment"), (first_sep, "first_sep"), (-1, "last_sep")]:
            if types[position] != ref_types[position]:
                raise Mistake(m[key])
        if types != ref_types:
            raise Mistake(f"the segment ids should be {ref_types}; yours are {types}.")
    return "[CLS] A [SEP] B [SEP], with segment 0 for [CLS] A [SEP] and 1 for B [SEP]."


# ---------------------------------------------------------------------------------------------
# Chapter 08: pretraining objectives (ELECTRA's replaced-token labels, T5's span corruption)
# ---------------------------------------------------------------------------------------------

RTD_MISTAKES = {
    "labels_from_chosen": "every chosen position is labelled 1, but where the generator sampled "
    "the original token nothing was replaced: ELECTRA labels such a token 0, 'original' (Clark et "
    "al. 2020, section 2). Compare the corrupted ids with the original ids instead of using chosen.",
    "labels_from_samples": "the labels compare sampled_ids with the original everywhere, but the "
    "samples are only used at the chosen positions: compare the corrupted ids (what the "
    "discriminator reads) with the original ids.",
    "inverted": "the labels are inverted: 1 must mean 'replaced' and 0 'original'.",
    "padding": "padding positions (attention_mask 0) must get the label -100, which the loss "
    "ignores; yours get {value}.",
    "replaced_everywhere": "tokens outside the chosen positions changed: only the chosen positions "
    "take the generator's sample. Use torch.where(chosen, sampled_ids, original_ids).",
    "not_replaced": "the corrupted ids equal the original ids: put the generator's samples at the "
    "chosen positions.",
}


def rtd_case(seed: int, B: int = 3, T: int = 10, V: int = 50):
    """Original ids with right padding (id 0), ~40% chosen positions (never padding), and samples
    that equal the original at every other chosen position (the generator guessed right)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([T, T - 3, T - 5])[:B]
    attention_mask = (torch.arange(T) < lengths[:, None]).long()  # [B, T]
    original = torch.randint(5, V, (B, T), generator=g) * attention_mask
    chosen = (torch.rand(B, T, generator=g) < 0.4) & attention_mask.bool()
    sampled = (original + torch.randint(1, V - 5, (B, T), generator=g) - 5) % (V - 5) + 5
    lucky = chosen & (torch.arange(T) % 2 == 0)  # some chosen samples equal the original
    sampled = torch.where(lucky, original, sampled)
    return original, chosen, sampled, attention_mask


def as_pair(result, what: str) -> tuple[Tensor, Tensor]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Mistake(f"return a pair {what}, got {type(result).__name__}.")
    return result


@exercise("replaced-token detection labels")
def check_rtd_labels(fn) -> str:
    """Check ``fn(original_ids, chosen, sampled_ids, attention_mask) -> (corrupted_ids, labels)``,
    ELECTRA's discriminator input and targets, against :func:`ptlearn.pretraining.replace_and_label`.
    Recognises labels taken from ``chosen``, inverted labels, unmasked padding and a wrong corruption."""
    from .pretraining import replace_and_label

    m = RTD_MISTAKES
    for seed in range(3):
        original, chosen, sampled, mask = rtd_case(seed)
        args = [t.clone() for t in (original, chosen, sampled, mask)]
        inputs = describe(original_ids=original, chosen=chosen, sampled_ids=sampled)
        corrupted, labels = as_pair(call(fn, *args, inputs=inputs), "(corrupted_ids, labels)")
        ref_corrupted, ref_labels = replace_and_label(original, chosen, sampled, mask)
        expect_shape(expect_tensor(corrupted, "corrupted_ids"), original.shape, "corrupted_ids")
        expect_shape(expect_tensor(labels, "labels"), original.shape, "labels")
        if not torch.equal(corrupted.long(), ref_corrupted):
            if torch.equal(corrupted.long(), original):
                raise Mistake(m["not_replaced"])
            if torch.equal(corrupted.long(), sampled):
                raise Mistake(m["replaced_everywhere"])
            raise Mistake(
                "corrupted_ids differ from torch.where(chosen, sampled_ids, original_ids)."
            )
        got, pad = labels.long(), mask == 0
        if torch.equal(got, ref_labels):
            continue
        if torch.equal(got[~pad], ref_labels[~pad]):
            raise Mistake(m["padding"].format(value=sorted(set(got[pad].tolist()))))
        if torch.equal(got[~pad], chosen.long()[~pad]):
            raise Mistake(m["labels_from_chosen"])
        if torch.equal(got[~pad], (sampled != original).long()[~pad]):
            raise Mistake(m["labels_from_samples"])
        if torch.equal(got[~pad], 1 - ref_labels[~pad]):
            raise Mistake(m["inverted"])
        raise Mistake("the labels differ from (corrupted_ids != original_ids), -100 at padding.")
    return "the discriminator sees the samples only where chosen, and a lucky guess counts as original."


SPAN_MISTAKES = {
    "per_token": "each dropped token got its own sentinel: a whole span of consecutive dropped "
    "tokens is replaced by ONE sentinel (Raffel et al. 2019, Fig. 2).",
    "same_sentinel": "every span uses the same sentinel: use the next one for each span "
    "(sentinel_ids[0], sentinel_ids[1], ...), so the target says which span goes where.",
    "no_final": "the target lacks the final sentinel: after the last span, append the next "
    "unused sentinel (T5's Fig. 2 ends its target with <Z>).",
    "no_target_sentinels": "the target holds the dropped tokens but not the sentinels: write each "
    "span's sentinel before the span.",
    "kept_in_input": "the dropped tokens are still in the input: the input keeps only the tokens "
    "that are not dropped, plus one sentinel per span.",
}
# (ids, noise mask as a string of 0/1): T5's Fig. 2, spans at both ends, one-token spans,
# neighbouring spans one token apart, no noise at all
SPAN_CASES = [
    (list(range(10, 21)), "00110000100"),
    (list(range(30, 38)), "11000111"),
    (list(range(40, 47)), "0101010"),
    (list(range(50, 54)), "0000"),
]


def sentinel_spans(ids, mask, sentinels, per_token=False, same=False, final=True, tagged=True):
    """:func:`ptlearn.pretraining.spans_to_sentinels` and the mistakes a learner makes in it."""
    inputs, targets, k = [], [], 0
    for i, (token, noisy) in enumerate(zip(ids, mask)):
        if noisy and (per_token or i == 0 or not mask[i - 1]):
            sentinel = sentinels[0 if same else k]
            inputs.append(sentinel)
            targets += [sentinel] if tagged else []
            k += 1
        (targets if noisy else inputs).append(token)
    if final and tagged:
        targets.append(sentinels[0 if same else k])
    return inputs, targets


@exercise("T5 span corruption")
def check_span_corruption(fn) -> str:
    """Check ``fn(ids, noise_mask, sentinel_ids) -> (input_ids, target_ids)`` (lists of ints)
    against :func:`ptlearn.pretraining.spans_to_sentinels`. Recognises one sentinel per token,
    a reused sentinel, a missing final sentinel, untagged targets and dropped tokens left in."""
    from .pretraining import spans_to_sentinels

    sentinels = [100, 101, 102, 103, 104, 105]
    for ids, code in SPAN_CASES:
        mask = [c == "1" for c in code]
        inputs = f"ids={ids}, noise_mask={[int(x) for x in mask]}, sentinel_ids={sentinels}"
        got = as_pair(
            call(fn, list(ids), list(mask), list(sentinels), inputs=inputs), "(inputs, targets)"
        )
        got = tuple([int(t) for t in part] for part in got)
        ref = spans_to_sentinels(ids, mask, sentinels)
        if got == ref:
            continue
        variants = {
            "per_token": sentinel_spans(ids, mask, sentinels, per_token=True),
            "same_sentinel": sentinel_spans(ids, mask, sentinels, same=True),
            "no_final": sentinel_spans(ids, mask, sentinels, final=False),
            "no_target_sentinels": sentinel_spans(ids, mask, sentinels, tagged=False),
        }
        found = next((k for k, v in variants.items() if v == got), None)
        if found is None and [t for t in got[0] if t not in sentinels] == list(ids):
            found = "kept_in_input"
        if found:
            raise Mistake(SPAN_MISTAKES[found])
        raise Mistake(
            f"for {inputs} you returned {got[0]} and {got[1]}, expected {ref[0]} and {ref[1]}."
        )
    return (
        "spans become one sentinel each, and the target lists them in order with a final sentinel."
    )


# ---------------------------------------------------------------------------------------------
# Chapter 09: fine-tuning and parameter-efficient fine-tuning (LoRA, BitFit)
# ---------------------------------------------------------------------------------------------

LORA_MISTAKES = {
    "not_module": "your class should build an nn.Module (subclass torch.nn.Module and call "
    "super().__init__() first).",
    "missing_params": "the layer needs two parameters named lora_A ([r, in_features]) and lora_B "
    "([out_features, r]), as in ptlearn.finetune.LoRALinear.",
    "shapes": "lora_A should be [r, in_features] = {a} and lora_B [out_features, r] = {b}; yours "
    "are {got_a} and {got_b}.",
    "base_trainable": "more than lora_A and lora_B would train ({names}): LoRA freezes the "
    "pretrained W and b, so call base.requires_grad_(False).",
    "not_trainable": "lora_A and lora_B must be trainable: wrap them in nn.Parameter.",
    "both_zero": "A and B both start at zero. The output is right, but training can never start: "
    "the gradient of B is proportional to A x and the gradient of A to B, so both stay zero "
    "forever. Start A random (ptlearn: Kaiming-uniform) and only B at zero.",
    "not_identity": "at initialisation your layer's output differs from the base layer's: start B "
    "at zero (A stays random), so that B A = 0 and the model starts as the pretrained one.",
    "no_scaling": "the update is not scaled: multiply B A x by alpha / r.",
    "inverted_scaling": "the update is scaled by r / alpha; LoRA scales it by alpha / r.",
    "alpha_only": "the update is scaled by alpha; divide by r too: alpha / r.",
    "over_r": "the update is scaled by 1 / r; multiply by alpha too: alpha / r.",
    "no_base": "the output is only the low-rank update: add the frozen layer's own output "
    "base(x) = W x + b.",
    "base_changed": "your forward pass changed the base layer's weight; leave W alone and add the "
    "update on the side (merging is a separate step, after training).",
    "no_grad": "no gradient reaches {name}: compute the update from lora_A and lora_B themselves "
    "(no .detach(), no torch.no_grad()).",
}

# (in_features, out_features, r, alpha): alpha != r, so a missing or inverted scale shows
LORA_CASES = [(12, 10, 4, 8.0), (16, 6, 2, 3.0)]


def lora_parts(layer, r: int, d_in: int, d_out: int):
    """The learner's ``lora_A``/``lora_B``, checked for presence, shape and trainability."""
    m = LORA_MISTAKES
    A, B = getattr(layer, "lora_A", None), getattr(layer, "lora_B", None)
    if not (isinstance(A, Tensor) and isinstance(B, Tensor)):
        raise Mistake(m["missing_params"])
    if tuple(A.shape) != (r, d_in) or tuple(B.shape) != (d_out, r):
        shapes = dict(a=[r, d_in], b=[d_out, r], got_a=list(A.shape), got_b=list(B.shape))
        raise Mistake(m["shapes"].format(**shapes))
    if not (A.requires_grad and B.requires_grad):
        raise Mistake(m["not_trainable"])
    others = [
        n for n, p in layer.named_parameters() if p.requires_grad and p is not A and p is not B
    ]
    if others:
        raise Mistake(m["base_trainable"].format(names=", ".join(others)))
    return A, B


@exercise("LoRA linear layer")
def check_lora_linear(cls) -> str:
    """Check ``cls(base: nn.Linear, r, alpha)``, a module computing
    ``base(x) + (alpha / r) * x A^T B^T`` with trainable ``lora_A [r, in]`` and ``lora_B [out, r]``
    and a frozen ``base``, against :class:`ptlearn.finetune.LoRALinear`.

    Recognises the mistakes in ``LORA_MISTAKES``: a trainable base, missing or misshapen A/B, an
    initial output that differs from the base, A and B both zero, a missing, inverted or partial
    alpha / r scale, a forgotten base output, and a forward pass that edits W.
    """
    from torch import nn

    m, g = LORA_MISTAKES, torch.Generator().manual_seed(9)
    for d_in, d_out, r, alpha in LORA_CASES:
        torch.manual_seed(0)  # the learner's initialisation is reproducible
        base = nn.Linear(d_in, d_out)
        w0 = base.weight.detach().clone()
        inputs = f"base=nn.Linear({d_in}, {d_out}), r={r}, alpha={alpha}"
        layer = call(cls, base, r=r, alpha=alpha, inputs=inputs)
        if not isinstance(layer, nn.Module):
            raise Mistake(m["not_module"])
        A, B = lora_parts(layer.eval(), r, d_in, d_out)
        x = torch.randn(3, 5, d_in, generator=g)  # [B, T, in]
        y = base(x).detach()  # [B, T, out]  the frozen layer's own output
        out = expect_tensor(call(layer, x, inputs=describe(x=x)), "the output")
        expect_shape(out, y.shape, "the output", "A linear layer maps [B, T, in] to [B, T, out].")
        if not close(out, y):
            raise Mistake(m["no_base"] if close(out, torch.zeros_like(y)) else m["not_identity"])
        if not A.detach().any() and not B.detach().any():
            raise Mistake(m["both_zero"])
        with torch.no_grad():
            B.copy_(torch.randn(d_out, r, generator=g))  # as if trained: a non-zero update
        out = call(layer, x, inputs=describe(x=x))
        if not torch.equal(base.weight.detach(), w0):
            raise Mistake(m["base_changed"])
        delta = x @ A.detach().T @ B.detach().T  # [B, T, out]  B A x
        if not close(out, y + alpha / r * delta):
            variants = {
                m["no_scaling"]: y + delta,
                m["inverted_scaling"]: y + r / alpha * delta,
                m["alpha_only"]: y + alpha * delta,
                m["over_r"]: y + delta / r,
                m["no_base"]: alpha / r * delta,
            }
            raise Mistake(
                diagnose(out, variants) or "the output differs from W x + b + (alpha / r) B A x."
            )
        out.sum().backward()
        for name, p in (("lora_A", A), ("lora_B", B)):
            if p.grad is None or not p.grad.any():
                raise Mistake(m["no_grad"].format(name=name))
    return (
        "your layer starts equal to the frozen base, trains only r (in + out) parameters and "
        "adds (alpha / r) B A x."
    )


BITFIT_MISTAKES = {
    "nothing": "no parameter is trainable: BitFit trains every bias and the classifier head.",
    "everything": "every parameter is trainable: that is full fine-tuning. Freeze everything "
    "first (model.requires_grad_(False)), then switch on the biases and the head.",
    "head_frozen": "the classifier head is frozen ({names}): a new task's head starts random, so "
    "it must train.",
    "norm_weights": "you also train LayerNorm gains ({names}); they are weights, not biases. "
    "BitFit trains only the parameters named ...bias (and the head).",
    "norm_biases": "the LayerNorm biases are frozen ({names}): they are bias terms too, and "
    "BitFit trains every bias.",
    "weights": "some weight matrices train ({names}): only the bias vectors (and the head) should.",
    "missing": "these biases are frozen but should train: {names}.",
    "values_changed": "your function changed parameter values; it should only switch "
    "requires_grad on and off.",
}


def tiny_classifier():
    """A two-layer BERT classifier with the course's tiny test sizes (vocab 100, d_model 32)."""
    from .models import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=32)
    return BertForSequenceClassification(config, n_classes=3)


def shown(names) -> str:
    """At most three parameter names, for a message."""
    names = sorted(names)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


@exercise("BitFit")
def check_bitfit(fn) -> str:
    """Check ``fn(model)``, which should leave trainable exactly the bias vectors and the
    ``classifier`` head of a :class:`ptlearn.BertForSequenceClassification` (returning the model
    or None), against :func:`ptlearn.finetune.apply_bitfit`.

    Recognises the mistakes in ``BITFIT_MISTAKES``: nothing or everything trainable, a frozen head,
    LayerNorm gains trained or LayerNorm biases forgotten, weight matrices trained, values changed.
    """
    import copy

    from torch import nn

    from .finetune import apply_bitfit

    m, model = BITFIT_MISTAKES, tiny_classifier()
    reference = copy.deepcopy(model)
    expected = {n for n, p in apply_bitfit(reference).named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = call(fn, model, inputs="a 2-layer BertForSequenceClassification")
    model = result if isinstance(result, nn.Module) else model
    params = dict(model.named_parameters())
    if any(not torch.equal(params[n].detach(), before[n]) for n in before if n in params):
        raise Mistake(m["values_changed"])
    got = {n for n, p in params.items() if p.requires_grad}
    missing, extra = expected - got, got - expected
    if not got:
        raise Mistake(m["nothing"])
    if got == set(params):
        raise Mistake(m["everything"])
    checks = [
        (m["head_frozen"], {n for n in missing if n.startswith("classifier.")}),
        (m["norm_weights"], {n for n in extra if "norm" in n}),
        (m["norm_biases"], {n for n in missing if "norm" in n}),
        (m["weights"], extra),
        (m["missing"], missing),
    ]
    for message, names in checks:
        if names:
            raise Mistake(message.format(names=shown(names)))
    n_trainable = sum(params[n].numel() for n in got)
    n_bias = sum(n.endswith(".bias") for n in got)
    return (
        f"exactly the {n_bias} bias vectors and the head's weight train: {n_trainable:,} of "
        f"{sum(p.numel() for p in params.values()):,} parameters."
    )


# ---------------------------------------------------------------------------------------------
# Chapter 10: distillation and int8 quantization
# ---------------------------------------------------------------------------------------------

DISTILLATION_MISTAKES = {
    "not_scalar": "return one number (a 0-d tensor): the loss averaged over the batch.",
    "no_t2": "the soft-target term is not multiplied by T^2. Without it, raising T shrinks the soft "
    "term's gradients like 1/T^2 and silently hands the weight to the hard-label term (Hinton et "
    "al. 2015, section 2).",
    "t_once": "the soft-target term is multiplied by T; the factor is T^2 (its gradients shrink "
    "like 1/T^2).",
    "reverse_kl": "the KL divergence runs the wrong way, KL(student || teacher). Distillation uses "
    "KL(p_teacher || q_student) = sum p (log p - log q): F.kl_div(log_q, log_p, log_target=True), "
    "student first (as log-probabilities), teacher second.",
    "probs_input": "F.kl_div got the student's probabilities; its first argument must be "
    "log-probabilities (F.log_softmax), otherwise the result is not a KL divergence.",
    "student_not_softened": "only the teacher is softened: divide the student's logits by T too.",
    "teacher_not_softened": "only the student is softened: divide the teacher's logits by T too.",
    "no_temperature": "neither set of logits is divided by T: soften both, softmax(z / T).",
    "mean_reduction": "the KL is averaged over the classes as well as the examples "
    "(reduction='mean'): sum over classes and average over examples, reduction='batchmean'.",
    "alpha_swapped": "alpha weights the wrong term: alpha * soft + (1 - alpha) * hard.",
    "hard_softened": "the hard-label cross-entropy uses softened logits (z / T); it takes the raw "
    "logits.",
    "t2_everywhere": "T^2 multiplies the whole loss; it belongs to the soft-target term only.",
    "teacher_grad": "gradient flows into the teacher's logits: the teacher is fixed, so detach "
    "them (teacher_logits.detach()) or compute them under torch.no_grad().",
    "student_grad": "no gradient reaches the student's logits: do not .detach() them or call "
    ".item() inside the loss.",
}

# (B, K, T, alpha): T > 1 so that a missing T^2 shows; alpha != 0.5 so that swapping shows
DISTILLATION_CASES = [(4, 3, 2.0, 0.5), (6, 5, 3.0, 0.7), (5, 2, 4.0, 0.2)]


def kd_loss(s, t, y, T, alpha, s_T=None, t_T=None, power=2, reverse=False, probs=False,
            per_class=False, swap=False, hard_T=1.0, outer=1.0) -> Tensor:  # fmt: skip
    """The distillation loss with knobs that reproduce the usual mistakes."""
    log_q = F.log_softmax(s / (T if s_T is None else s_T), dim=-1)  # [B, K]  student
    log_p = F.log_softmax(t / (T if t_T is None else t_T), dim=-1)  # [B, K]  teacher
    if reverse:
        kl = (log_q.exp() * (log_q - log_p)).sum(-1)  # KL(q || p)
    elif probs:
        kl = (log_p.exp() * (log_p - log_q.exp())).sum(-1)  # F.kl_div(q, p): q not logged
    else:
        kl = (log_p.exp() * (log_p - log_q)).sum(-1)  # KL(p || q)  [B]
    soft = T**power * kl.mean() / (s.size(-1) if per_class else 1)
    hard = F.cross_entropy(s / hard_T, y)
    a = 1 - alpha if swap else alpha
    return outer * (a * soft + (1 - a) * hard)


@exercise("distillation loss")
def check_distillation_loss(fn) -> str:
    """Check ``fn(student_logits, teacher_logits, labels, temperature, alpha) -> loss`` against
    :func:`ptlearn.distill.distillation_loss`:
    ``alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, labels)``.

    Recognises the mistakes in ``DISTILLATION_MISTAKES``: T^2 missing (or T), KL reversed, F.kl_div
    fed probabilities, one side or neither softened, KL averaged over classes, alpha swapped, a
    softened hard term, T^2 on everything, gradients into the teacher or none into the student.
    """
    from .distill import distillation_loss

    m, g = DISTILLATION_MISTAKES, torch.Generator().manual_seed(10)
    for B, K, T, alpha in DISTILLATION_CASES:
        s = (2 * torch.randn(B, K, generator=g)).requires_grad_()  # [B, K]  student logits
        t = (3 * torch.randn(B, K, generator=g)).requires_grad_()  # [B, K]  teacher logits
        y = torch.randint(K, (B,), generator=g)  # [B]
        inputs = describe(student_logits=s, teacher_logits=t, labels=y) + f", T={T}, alpha={alpha}"
        got = expect_tensor(call(fn, s, t, y, T, alpha, inputs=inputs), "the loss")
        if got.numel() != 1:
            raise Mistake(m["not_scalar"])
        ref = distillation_loss(s, t, y, T, alpha)
        if not close(got.reshape(()), ref):
            a = (s.detach(), t.detach(), y, T, alpha)
            variants = {
                m["no_t2"]: kd_loss(*a, power=0),
                m["t_once"]: kd_loss(*a, power=1),
                m["reverse_kl"]: kd_loss(*a, reverse=True),
                m["probs_input"]: kd_loss(*a, probs=True),
                m["student_not_softened"]: kd_loss(*a, s_T=1.0),
                m["teacher_not_softened"]: kd_loss(*a, t_T=1.0),
                m["no_temperature"]: kd_loss(*a, s_T=1.0, t_T=1.0),
                m["mean_reduction"]: kd_loss(*a, per_class=True),
                m["alpha_swapped"]: kd_loss(*a, swap=True),
                m["hard_softened"]: kd_loss(*a, hard_T=T),
                m["t2_everywhere"]: kd_loss(*a, power=0, outer=T**2),
            }
            raise Mistake(
                diagnose(got.reshape(()).detach(), variants)
                or f"the loss is {got.item():.4f}, expected {ref.item():.4f} = alpha T^2 "
                "KL(p_T || q_T) + (1 - alpha) CE."
            )
        if not got.requires_grad:
            raise Mistake(m["student_grad"])
        got.sum().backward()
        if t.grad is not None and t.grad.any():
            raise Mistake(m["teacher_grad"])
        if s.grad is None or not s.grad.any():
            raise Mistake(m["student_grad"])
    return (
        "alpha T^2 KL(teacher || student) + (1 - alpha) CE, right for three temperatures, and "
        "the teacher receives no gradient."
    )


QUANTIZE_MISTAKES = {
    "not_pair": "return two things: the int8 matrix q and the per-row scales s, with "
    "w ≈ s[:, None] * q.",
    "dtype": "q has dtype {dtype}; store it as torch.int8 (1 byte a weight, 4x smaller than "
    "float32): .to(torch.int8) after rounding.",
    "range": "q holds values outside [-127, 127] (from {lo} to {hi}): the scale must be "
    "max|w| / 127, so that the largest weight of a row maps to ±127.",
    "per_tensor": "one scale for the whole matrix: a row of small weights then uses only a few of "
    "the 255 levels. Give every output row its own scale, w.abs().amax(dim=1) / 127.",
    "per_column": "the scales run along the columns (one per input feature); ptlearn's Int8Linear "
    "uses one per output row: w.abs().amax(dim=1) / 127.",
    "scale_shape": "the scales should be one per output row, shape [{rows}], got {shape}.",
    "not_finite": "an all-zero row gets the scale 0 (or NaN), and w / 0 is NaN: keep the scale "
    "away from zero, e.g. scale.clamp(min=1e-12).",
    "truncated": "values are truncated toward zero (error up to one whole step s) instead of "
    "rounded (error at most s/2): call torch.round before .to(torch.int8).",
    "wrong_scale": "your scales are {ratio:.3g} x max|w| / 127. The symmetric int8 range is "
    "[-127, 127], so each row's scale is max|w_row| / 127: its largest weight becomes ±127.",
}


@exercise("int8 quantization")
def check_quantize_int8(fn) -> str:
    """Check ``fn(w [out, in]) -> (q, scale)``: symmetric per-row int8 quantization as in
    :class:`ptlearn.distill.Int8Linear`, ``scale = max|w_row| / 127``, ``q = round(w / scale)``
    in int8, so that ``|scale[:, None] * q - w| <= scale / 2``.

    Recognises the mistakes in ``QUANTIZE_MISTAKES``: a float q, values outside [-127, 127], one
    scale per tensor or per column, NaN on a zero row, truncation instead of rounding, and a scale
    other than max|w| / 127.
    """
    m, g = QUANTIZE_MISTAKES, torch.Generator().manual_seed(11)
    magnitudes = torch.tensor([1e-3, 1e-2, 0.1, 1.0, 10.0, 0.0])  # rows of very different sizes
    for rows, cols in [(6, 10), (6, 4)]:
        w = torch.randn(rows, cols, generator=g) * magnitudes[:, None]  # [out, in]; row 5 is zero
        result = call(fn, w.clone(), inputs=f"w {[rows, cols]} (its last row is all zeros)")
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise Mistake(m["not_pair"])
        q = expect_tensor(result[0], "q", finite=False)
        scale = torch.as_tensor(result[1], dtype=torch.float32)
        expect_shape(q, (rows, cols), "q", "q has the shape of w.")
        if q.dtype != torch.int8:
            raise Mistake(m["dtype"].format(dtype=q.dtype))
        if scale.numel() == 1:
            raise Mistake(m["per_tensor"])
        if scale.numel() == cols and cols != rows:
            raise Mistake(m["per_column"])
        if scale.numel() != rows:
            raise Mistake(m["scale_shape"].format(rows=rows, shape=list(scale.shape)))
        scale = scale.reshape(rows, 1)  # [out, 1]
        if not (torch.isfinite(scale).all() and (scale > 0).all()):
            raise Mistake(m["not_finite"])
        qf = q.float()
        if qf.min() < -127 or qf.max() > 127:
            raise Mistake(m["range"].format(lo=int(qf.min()), hi=int(qf.max())))
        ref = w.abs().amax(dim=1, keepdim=True) / 127  # [out, 1]
        if not close(scale[:-1], ref[:-1]):  # the zero row may use any positive scale
            ratio = (scale[:-1] / ref[:-1]).median().item()
            raise Mistake(m["wrong_scale"].format(ratio=ratio))
        err = (scale * qf - w).abs()  # [out, in]  at most half a step when rounded
        if (err > scale / 2 * (1 + 1e-3)).any():
            if (err <= scale * (1 + 1e-3)).all():
                raise Mistake(m["truncated"])
            raise Mistake("scale[:, None] * q does not give w back within half a step scale / 2.")
    return "per-row scales max|w| / 127 and rounded int8 values: every weight within half a step."


# ---------------------------------------------------------------------------------------------
# Chapter 06: ALBERT (factorized embeddings, sentence-order pairs; Lan et al. 2019)
# ---------------------------------------------------------------------------------------------

FACTORIZED_MISTAKES = {
    "bert": "without d_embed (BERT) the token embedding is one V x H table: vocab_size * d_model "
    "parameters. For V={V}, H={H} that is {ref:,}; you returned {got:,}.",
    "no_projection": "you counted only the V x E table. The factorized embedding also needs the "
    "projection from E up to the model width H: an nn.Linear(E, H).",
    "no_bias": "the E -> H projection is an nn.Linear, so it has a bias too: E * H weights + H "
    "biases.",
    "bias_size": "the projection's bias has one entry per output, so H of them, not E.",
    "unfactorized": "with d_embed given, the table is V x E, not V x H: shrinking that table is "
    "the whole point of the factorization.",
    "not_a_number": "return the number of parameters as an int, not a {kind}.",
}
# (vocab_size V, d_model H, d_embed E): BERT-base, ALBERT-base, ALBERT-xxlarge, tiny, large E
FACTORIZED_CASES = [(30000, 768, None), (30000, 768, 128), (30000, 4096, 128), (100, 32, 8),
                    (50000, 1024, 256)]  # fmt: skip


def embedding_parameters(vocab_size: int, d_model: int, d_embed: int | None = None) -> int:
    """Parameters of the token embedding: BERT's ``nn.Embedding(V, H)``, or ALBERT's
    ``nn.Embedding(V, E)`` followed by ``nn.Linear(E, H)``, counted on the meta device (no memory)."""
    from torch import nn

    with torch.device("meta"):
        if d_embed is None:
            modules = [nn.Embedding(vocab_size, d_model)]
        else:
            modules = [nn.Embedding(vocab_size, d_embed), nn.Linear(d_embed, d_model)]
    return sum(p.numel() for m in modules for p in m.parameters())


@exercise("factorized embedding parameters")
def check_factorized_param_count(fn) -> str:
    """Check ``fn(vocab_size, d_model, d_embed=None) -> int``: the parameters of the token
    embedding, V * H for BERT (no ``d_embed``) and V * E + (E * H + H) for ALBERT (the table plus
    the E -> H ``nn.Linear``). Recognises a missing projection, a missing or wrong-sized bias and
    an unfactorized table."""
    import numbers

    m = FACTORIZED_MISTAKES
    for V, H, E in FACTORIZED_CASES:
        got = call(fn, V, H, E, inputs=f"vocab_size={V}, d_model={H}, d_embed={E}")
        if isinstance(got, Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            raise Mistake(m["not_a_number"].format(kind=type(got).__name__))
        ref = embedding_parameters(V, H, E)
        if got == ref:
            continue
        if E is None:
            raise Mistake(m["bert"].format(V=V, H=H, ref=ref, got=got))
        variants = {
            m["no_projection"]: V * E,
            m["no_bias"]: V * E + E * H,
            m["bias_size"]: V * E + E * H + E,
            m["unfactorized"]: V * H,
        }
        found = next((message for message, wrong in variants.items() if got == wrong), None)
        raise Mistake(
            found
            or f"for V={V}, H={H}, E={E} the embedding has V*E + E*H + H = {ref:,} "
            f"parameters; you returned {got:,}."
        )
    return (
        "right for BERT (V x H) and ALBERT (V x E + E x H + H). At ALBERT-base sizes that is "
        f"{embedding_parameters(30000, 768, 128):,} instead of {embedding_parameters(30000, 768):,}."
    )


SOP_MISTAKES = {
    "not_a_list": "return a list of (segment_a, segment_b, label) triples, not a {kind}.",
    "count": "a document of {n} segments has {pairs} consecutive pairs (0, 1), (1, 2), ...: one "
    "example each. You returned {got}.",
    "triple": "each example should be a triple (segment_a, segment_b, label); example {i} is {ex!r}.",
    "inverted": "the labels are inverted: 0 means 'in the original order' and 1 'swapped' (HF's "
    "sentence_order_label).",
    "constant_label": "every label is {label}: the label must say whether that pair was swapped "
    "(swap[i] True -> 1).",
    "never_swapped": "the labels are right but the segments are never swapped: when swap[i] is "
    "True the example is (document[i + 1], document[i], 1).",
    "not_consecutive": "example {i} is not a pair of neighbouring segments: SOP only uses "
    "consecutive segments i and i + 1 (both from the same document, so the topic gives nothing "
    "away; only the order can be wrong).",
    "changed_input": "your function changed the document; build new lists instead.",
}


def sop_reference(document, swap):
    """ALBERT's SOP examples from one document: consecutive segments, in order (0) or swapped (1)."""
    return [
        (document[i + 1], document[i], 1) if s else (document[i], document[i + 1], 0)
        for i, s in enumerate(swap)
    ]


def as_triples(result) -> list[tuple[list[int], list[int], int]]:
    """The learner's examples as ([ids], [ids], int) triples (tuples/lists/tensors accepted)."""
    if not isinstance(result, list | tuple):
        raise Mistake(SOP_MISTAKES["not_a_list"].format(kind=type(result).__name__))
    triples = []
    for i, ex in enumerate(result):
        if not isinstance(ex, list | tuple) or len(ex) != 3:
            raise Mistake(SOP_MISTAKES["triple"].format(i=i, ex=ex))
        try:
            triples.append(([int(t) for t in ex[0]], [int(t) for t in ex[1]], int(ex[2])))
        except (TypeError, ValueError):
            raise Mistake(SOP_MISTAKES["triple"].format(i=i, ex=ex)) from None
    return triples


@exercise("sentence-order pairs")
def check_sop_pairs(fn) -> str:
    """Check ``fn(document, swap) -> [(segment_a, segment_b, label), ...]``: one SOP example per
    pair of consecutive segments of ``document`` (a list of token-id lists); ``swap[i]`` says
    whether pair i is swapped. In order: ``(document[i], document[i + 1], 0)``; swapped:
    ``(document[i + 1], document[i], 1)``. Recognises inverted or constant labels, pairs that are
    never swapped, non-consecutive pairs, a wrong number of examples and a changed input."""
    m, g = SOP_MISTAKES, torch.Generator().manual_seed(0)
    for n in (5, 2, 4, 1):
        document = [torch.randint(5, 100, (3 + i,), generator=g).tolist() for i in range(n)]
        swap = [bool(s) for s in torch.rand(n - 1, generator=g) < 0.5]
        if n > 2:
            swap[0], swap[1] = True, False  # at least one pair of each kind
        given = [list(seg) for seg in document]
        got = as_triples(call(fn, given, list(swap), inputs=f"a document of {n} segments"))
        if given != document:
            raise Mistake(m["changed_input"])
        if len(got) != n - 1:
            raise Mistake(m["count"].format(n=n, pairs=n - 1, got=len(got)))
        ref = sop_reference(document, swap)
        if got == ref:
            continue
        labels, ref_labels = [t[2] for t in got], [t[2] for t in ref]
        segments = [(a, b) for a, b, _ in got]
        if segments == [(a, b) for a, b, _ in ref] and labels == [1 - x for x in ref_labels]:
            raise Mistake(m["inverted"])
        if len(set(labels)) == 1 and len(set(ref_labels)) > 1:
            raise Mistake(m["constant_label"].format(label=labels[0]))
        if labels == ref_labels and segments == [
            (document[i], document[i + 1]) for i in range(n - 1)
        ]:
            raise Mistake(m["never_swapped"])
        for i, (a, b) in enumerate(segments):
            if {tuple(a), tuple(b)} != {tuple(document[i]), tuple(document[i + 1])}:
                raise Mistake(m["not_consecutive"].format(i=i))
        i = next(i for i, (x, y) in enumerate(zip(got, ref)) if x != y)
        raise Mistake(f"example {i} is {got[i]}, expected {ref[i]} (swap[{i}] = {swap[i]}).")
    return "consecutive segments, swapped exactly where asked, labelled 0 = in order, 1 = swapped."


# ---------------------------------------------------------------------------------------------
# Chapter 07: ViT (patches as tokens; MAE's random patch mask)
# ---------------------------------------------------------------------------------------------

PATCHIFY_MISTAKES = {
    "shape": "the result has shape {got}, expected {ref} = [B, N, P*P*C] with N = (H/P) * (W/P) "
    "patches. {hint}",
    "channels_axis": "the channels are still a separate axis: each patch must be ONE vector of "
    "P*P*C numbers (its pixels row by row, channels last).",
    "not_flat": "each patch is still a P x P grid: flatten it into one vector of P*P*C numbers.",
    "strips": "your 'patches' are runs of consecutive pixels (strips of whole rows), not P x P "
    "squares: a plain reshape cannot cut squares. Reshape to [B, C, H/P, P, W/P, P] and permute "
    "before flattening.",
    "column_order": "the patches are in column-major order. ViT numbers patches row by row "
    "(raster order): patch 1 is to the right of patch 0, not below it.",
    "pixels_transposed": "the patches are right but inside each patch the pixels are listed "
    "column by column; list them row by row.",
    "channels_first": "inside each patch the values are ordered channel first (C, P, P); "
    "ptlearn's patchify, like MAE, lists them row, column, then channel (channels last).",
}
# (B, C, H, P): grey 8x8 digits with 2x2 patches, RGB with 3x3 patches, one patch per image
PATCHIFY_CASES = [(2, 1, 8, 2), (3, 3, 6, 3), (2, 3, 8, 4), (1, 1, 4, 4)]


def patchify_variants(images: Tensor, P: int) -> dict[str, Tensor]:
    """What the usual patchify mistakes return, for :func:`check_patchify`."""
    B, C, H, W = images.shape
    h, w, m = H // P, W // P, PATCHIFY_MISTAKES
    grid = images.reshape(B, C, h, P, w, P)  # [B, C, h, P, w, P]
    return {
        m["strips"]: images.reshape(B, h * w, P * P * C),
        m["column_order"]: grid.permute(0, 4, 2, 3, 5, 1).reshape(B, h * w, -1),
        m["pixels_transposed"]: grid.permute(0, 2, 4, 5, 3, 1).reshape(B, h * w, -1),
        m["channels_first"]: grid.permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, -1),
    }


@exercise("patchify")
def check_patchify(fn) -> str:
    """Check ``fn(images, patch_size) -> patches``: ``[B, C, H, W]`` -> ``[B, N, P*P*C]``, the
    patches in raster order (row by row), each patch's pixels row by row with the channels last,
    as :func:`ptlearn.models.vit.patchify`. Recognises wrong shapes, strips instead of squares,
    column-major patch order, transposed pixels and channel-first patches."""
    from .models.vit import patchify

    m, g = PATCHIFY_MISTAKES, torch.Generator().manual_seed(0)
    for B, C, H, P in PATCHIFY_CASES:
        images = torch.randn(B, C, H, H, generator=g)
        got = expect_tensor(
            call(fn, images.clone(), P, inputs=f"images {list(images.shape)}, patch_size={P}"),
            "the result",
        )
        ref = patchify(images, P)  # [B, N, P*P*C]
        N = ref.size(1)
        if tuple(got.shape) in {(B, C, N, P * P), (B, N, C, P * P)}:
            raise Mistake(m["channels_axis"])
        if tuple(got.shape) in {(B, N, P, P * C), (B, N, P, P, C), (B, N, C, P, P)}:
            raise Mistake(m["not_flat"])
        hint = f"(images {list(images.shape)}, patch_size={P})"
        if got.shape != ref.shape:
            raise Mistake(m["shape"].format(got=list(got.shape), ref=list(ref.shape), hint=hint))
        if close(got, ref):
            continue
        raise Mistake(
            diagnose(got, patchify_variants(images, P))
            or f"the shape is right but the values differ from ptlearn's patchify {hint}."
        )
    return "the right patches in raster order, pixels row by row, channels last (4 shapes)."


PATCH_MASK_MISTAKES = {
    "pair": "return (keep_idx, mask): keep_idx [B, n_keep] (the visible patches) and mask [B, N] "
    "(bool, True = hidden).",
    "keep_shape": "keep_idx has shape {got}, expected {ref}: n_keep = int(N * (1 - mask_ratio)) "
    "= {n_keep} visible patches per image.",
    "ratio_inverted": "you kept int(N * mask_ratio) patches; mask_ratio is the fraction HIDDEN, "
    "so keep n_keep = int(N * (1 - mask_ratio)).",
    "rounding": "for N={N} and mask_ratio={ratio} keep int(N * (1 - mask_ratio)) = {n_keep} "
    "patches (round down, as ptlearn and MAE do); you kept {got}.",
    "mask_shape": "mask has shape {got}, expected [B, N] = {ref}.",
    "mask_dtype": "mask should be a bool tensor (True = hidden), not {dtype}.",
    "mask_inverted": "the mask is inverted: True must mean HIDDEN (the patches the encoder does "
    "not see), so each row has N - n_keep True values.",
    "mask_count": "each mask row should hide N - n_keep = {hidden} patches; row {row} hides {got}.",
    "range": "keep_idx holds indices outside [0, N).",
    "duplicates": "keep_idx repeats a patch in row {row}: draw WITHOUT replacement, e.g. the "
    "first n_keep entries of a random permutation (torch.rand(B, N).argsort(dim=1)).",
    "unsorted": "keep_idx is not sorted: sort each row (.sort(dim=1).values) so the visible "
    "patches stay in raster order; ViTMAE's decoder puts them back in that order.",
    "inconsistent": "keep_idx and mask disagree: a kept patch is marked hidden in row {row}.",
    "same_mask": "every image got the same mask: draw a separate random permutation per image.",
    "not_random": "the masks are not uniform: patch {patch} is kept in {freq:.0%} of the draws, "
    "expected about {expected:.0%}. Every patch must be equally likely to be kept.",
}


def check_one_mask(result, B: int, N: int, ratio: float) -> tuple[Tensor, Tensor]:
    """The structural checks of :func:`check_patch_mask` on one call's result."""
    m, n_keep = PATCH_MASK_MISTAKES, int(N * (1 - ratio))
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise Mistake(m["pair"])
    keep_idx = expect_tensor(result[0], "keep_idx")
    mask = expect_tensor(result[1], "mask")
    if keep_idx.dim() == 2 and keep_idx.size(0) == B and keep_idx.size(1) != n_keep:
        if keep_idx.size(1) == int(N * ratio) and int(N * ratio) != n_keep:
            raise Mistake(m["ratio_inverted"])
        if abs(keep_idx.size(1) - N * (1 - ratio)) < 1:
            raise Mistake(
                m["rounding"].format(N=N, ratio=ratio, n_keep=n_keep, got=keep_idx.size(1))
            )
    if tuple(keep_idx.shape) != (B, n_keep):
        raise Mistake(
            m["keep_shape"].format(got=list(keep_idx.shape), ref=[B, n_keep], n_keep=n_keep)
        )
    if tuple(mask.shape) != (B, N):
        raise Mistake(m["mask_shape"].format(got=list(mask.shape), ref=[B, N]))
    if mask.dtype != torch.bool:
        raise Mistake(m["mask_dtype"].format(dtype=mask.dtype))
    if keep_idx.dtype.is_floating_point or keep_idx.min() < 0 or keep_idx.max() >= N:
        raise Mistake(m["range"])
    for row in range(B):
        if len(set(keep_idx[row].tolist())) != n_keep:
            raise Mistake(m["duplicates"].format(row=row))
    hidden = mask.sum(dim=1)  # [B]
    if n_keep != N - n_keep and bool((hidden == n_keep).all()):
        raise Mistake(m["mask_inverted"])
    if not bool((hidden == N - n_keep).all()):
        row = int((hidden != N - n_keep).nonzero()[0])
        raise Mistake(m["mask_count"].format(hidden=N - n_keep, row=row, got=int(hidden[row])))
    if not bool((keep_idx.diff(dim=1) > 0).all()):
        raise Mistake(m["unsorted"])
    if mask.gather(1, keep_idx).any():
        row = int(mask.gather(1, keep_idx).any(dim=1).nonzero()[0])
        raise Mistake(m["inconsistent"].format(row=row))
    return keep_idx, mask


@exercise("random patch mask")
def check_patch_mask(fn) -> str:
    """Check ``fn(batch, n_patches, mask_ratio) -> (keep_idx, mask)`` against MAE's rule
    (:func:`ptlearn.objectives.random_patch_mask`): per image, keep ``int(N * (1 - mask_ratio))``
    patches chosen uniformly without replacement; ``keep_idx [B, n_keep]`` sorted, ``mask [B, N]``
    bool with True = hidden. Recognises wrong counts (inverted ratio, rounding), an inverted mask,
    duplicates, unsorted or inconsistent indices, one mask for the whole batch and a mask that is
    not uniformly random."""
    m = PATCH_MASK_MISTAKES
    torch.manual_seed(0)  # the learner's function draws from torch's global generator
    for B, N, ratio in ((4, 16, 0.75), (3, 10, 0.75), (2, 49, 0.6), (5, 4, 0.5)):
        result = call(fn, B, N, ratio, inputs=f"batch={B}, n_patches={N}, mask_ratio={ratio}")
        check_one_mask(result, B, N, ratio)
    B, N, ratio = 2000, 16, 0.75
    keep_idx, mask = check_one_mask(
        call(fn, B, N, ratio, inputs=f"batch={B}, n_patches={N}, mask_ratio={ratio}"), B, N, ratio
    )
    if bool((mask == mask[:1]).all()):
        raise Mistake(m["same_mask"])
    freq = (~mask).float().mean(dim=0)  # [N]  how often each patch is kept
    expected = 1 - ratio
    worst = int((freq - expected).abs().argmax())
    if abs(float(freq[worst]) - expected) > 0.06:  # 6 standard deviations at B=2000
        raise Mistake(
            m["not_random"].format(patch=worst, freq=float(freq[worst]), expected=expected)
        )
    return "the right number of patches, kept uniformly at random per image, sorted and consistent."
