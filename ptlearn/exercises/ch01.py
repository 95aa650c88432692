"""Exercise checkers for chapter 01: attention.

Why this module is longer than 350 lines: it holds all of chapter 01's checkers, three
function exercises and the multi-head attention build-it, and each checker carries its own
catalogue of wrong variants (no scale, wrong split, mask after softmax, ...) so that it can name
the learner's mistake. Splitting it would scatter one chapter's feedback over several files.
"""

from __future__ import annotations

import math

import torch

from ..attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention
from ..hf.convertible import unstack_qkv
from .framework import (
    Mistake,
    Tensor,
    build,
    call,
    close,
    compare_gradients,
    copy_weights,
    describe,
    diagnose,
    exercise,
    expect_shape,
    expect_tensor,
    first_output,
)

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


MHA_MISTAKES = {
    "unscaled": "the scores are not divided by sqrt(d_head): each head's dot products grow with "
    "its size. Divide q @ k^T by math.sqrt(self.d_head).",
    "scaled_by_d_model": "the scores are divided by sqrt(d_model); each head attends on its own "
    "d_head = d_model / n_heads channels, so divide by sqrt(d_head).",
    "wrong_split": "wrong head split: the shapes are right but each head gets a mix of positions. "
    "Split with .view(B, T, n_heads, d_head).transpose(1, 2), not .reshape(B, n_heads, T, d_head).",
    "wrong_merge": "the heads are merged back in the wrong order: y is [B, H, T, d_head]; "
    "transpose(1, 2) to [B, T, H, d_head] before .reshape(B, T, C).",
    "no_out_proj": "the output projection is missing: after merging the heads, apply "
    "self.out_proj, which mixes what the heads found.",
    "context_ignored": "cross-attention ignores the context: keys and values must come from "
    "`context` (the encoder output) when it is given, queries from x.",
    "mask_ignored": "the mask is ignored: masked keys still get attention. Fill their scores with "
    "-inf before the softmax (scores.masked_fill(~mask, float('-inf'))).",
    "mask_inverted": "the mask is inverted: True means 'may attend', so hide the keys where the "
    "mask is False (masked_fill(~mask, ...)).",
    "mask_after_softmax": "the masked weights were zeroed after the softmax, so the rows no "
    "longer sum to 1: fill the scores with -inf before the softmax.",
}

# (B, Tq, Tk or None for self-attention, d_model, n_heads, mask kind)
MHA_CASES = [
    (2, 5, None, 32, 4, None),
    (2, 6, None, 32, 4, "causal"),
    (3, 3, 5, 48, 6, None),
    (2, 4, 7, 32, 4, "padding"),
    (1, 4, None, 16, 1, "causal"),
]


def mha_variant(
    m, x, context=None, mask=None, *, scale="d_head", split=True, merge=True, out_proj=True,
    use_context=True, mask_mode="before",
):  # fmt: skip
    """Multi-head attention with ptlearn's weights (``m``) and knobs that reproduce mistakes."""
    B, T, C = x.shape
    H = m.n_heads
    d = C // H
    source = x if context is None or not use_context else context

    def heads(t):  # [B, S, C] -> [B, H, S, d]
        S = t.size(1)
        return t.view(B, S, H, d).transpose(1, 2) if split else t.reshape(B, H, S, d)

    q, k, v = m.qkv_proj(x).split(C, dim=-1)  # [B, Tq, C] each
    if source is not x:  # cross-attention: keys and values from the context
        _, k, v = m.qkv_proj(source).split(C, dim=-1)  # [B, Tk, C] each
    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-2, -1)  # [B, H, Tq, Tk]
    scores = scores / {"d_head": math.sqrt(d), "d_model": math.sqrt(C), "none": 1.0}[scale]
    if mask is not None and mask_mode == "before":
        scores = scores.masked_fill(~mask, float("-inf"))
    if mask is not None and mask_mode == "inverted":
        scores = scores.masked_fill(mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if mask is not None and mask_mode == "after":
        weights = weights * mask
    y = weights @ v  # [B, H, Tq, d]
    y = y.transpose(1, 2).reshape(B, T, C) if merge else y.reshape(B, T, C)
    return m.out_proj(y) if out_proj else y


def mha_case_mask(kind, B, Tq, Tk, g):
    """None, a causal ``[Tq, Tk]`` mask, or a key padding mask ``[B, 1, 1, Tk]``."""
    if kind == "causal":
        return causal_mask(Tq, Tk)
    if kind == "padding":
        lengths = torch.randint(2, Tk, (B,), generator=g)
        return (torch.arange(Tk)[None, :] < lengths[:, None])[:, None, None, :]
    return None


@exercise("multi-head attention module")
def check_multi_head_attention(cls) -> str:
    """Check a module class ``cls(d_model, n_heads)`` whose ``forward(x, context=None, mask=None)``
    returns ``[B, Tq, d_model]`` (or a tuple starting with it) against
    :class:`ptlearn.attention.MultiHeadAttention` with the same weights (copied in).

    The learner's module has the paper's three projections ``q_proj``, ``k_proj``, ``v_proj`` and
    ``out_proj`` (``nn.Linear(d_model, d_model)``); ptlearn's ``qkv_proj`` is cut into the first
    three to copy its weights in. Self-attention, cross-attention (``context``
    ``[B, Tk, d_model]``), a causal mask and a key padding mask; outputs and gradients. Names the
    mistakes in ``MHA_MISTAKES``: missing or wrong scale, wrong head split or merge, no output
    projection, context ignored, mask ignored, inverted or applied after the softmax.
    """
    m, g = MHA_MISTAKES, torch.Generator().manual_seed(2)
    for B, Tq, Tk, C, H, mask_kind in MHA_CASES:
        torch.manual_seed(len(str((B, Tq, Tk, C, H))))
        ref = MultiHeadAttention(C, H)
        mine = build(cls, C, H, what=f"{getattr(cls, '__name__', 'your class')}({C}, {H})")
        copy_weights(mine, unstack_qkv(ref.state_dict()), "your module")  # W_q, W_k, W_v
        x = torch.randn(B, Tq, C, generator=g)
        context = None if Tk is None else torch.randn(B, Tk, C, generator=g)
        mask = mha_case_mask(mask_kind, B, Tq, Tk or Tq, g)
        what = describe(x=x) + (f", context {[B, Tk, C]}" if Tk else "")
        what += f", mask {list(mask.shape)}" if mask is not None else ""
        x_mine, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
        got = first_output(
            call(mine, x_mine, context=context, mask=mask, inputs=what), "your module's output"
        )
        expected = ref(x_ref, context=context, mask=mask)[0]  # [B, Tq, C]
        expect_shape(got, expected.shape, "the output", "It should be [B, Tq, d_model].")
        if not close(got, expected):
            with torch.no_grad():
                variants = {
                    m["unscaled"]: mha_variant(ref, x, context, mask, scale="none"),
                    m["scaled_by_d_model"]: mha_variant(ref, x, context, mask, scale="d_model"),
                    m["wrong_split"]: mha_variant(ref, x, context, mask, split=False),
                    m["wrong_merge"]: mha_variant(ref, x, context, mask, merge=False),
                    m["no_out_proj"]: mha_variant(ref, x, context, mask, out_proj=False),
                }
                if context is not None:
                    variants[m["context_ignored"]] = mha_variant(ref, x, None, None)
                if mask is not None:
                    variants[m["mask_ignored"]] = mha_variant(ref, x, context, None)
                    variants[m["mask_after_softmax"]] = mha_variant(
                        ref, x, context, mask, mask_mode="after"
                    )
                    variants[m["mask_inverted"]] = mha_variant(
                        ref, x, context, mask, mask_mode="inverted"
                    )
            raise Mistake(
                diagnose(got.detach(), variants)
                or f"the output differs from ptlearn's MultiHeadAttention (called with {what})."
            )
        grad_out = torch.randn(expected.shape, generator=g)
        (got * grad_out).sum().backward()
        (expected * grad_out).sum().backward()
        ref_grads = unstack_qkv({name: p.grad for name, p in ref.named_parameters()})
        compare_gradients(mine, ref_grads, {"x": (x_mine, x_ref)}, "your module")
    return (
        "your module matches ptlearn's MultiHeadAttention with the same weights: self- and "
        "cross-attention, causal and padding masks, outputs and gradients."
    )
