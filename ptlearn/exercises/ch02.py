"""Exercise checkers for chapter 02: the Transformer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attention import causal_mask, padding_mask
from ..layers import TransformerBlock, sinusoidal_encoding
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


BLOCK_MISTAKES = {
    "norm_order_pre": "this is the post-norm block (x = LN(x + sublayer(x))), but norm_first=True "
    "asks for pre-norm: x = x + sublayer(LN(x)).",
    "norm_order_post": "this is the pre-norm block (x = x + sublayer(LN(x))), but norm_first=False "
    "asks for post-norm: x = LN(x + sublayer(x)).",
    "residual_of_normed": "residual in the wrong place: you add the sublayer to the normalised x. "
    "Pre-norm keeps the raw x on the residual path: x = x + attn(LN(x)), not LN(x) + attn(LN(x)).",
    "norm_inside_post": "residual in the wrong place: post-norm normalises the sum, "
    "x = LN(x + sublayer(x)); you added the normalised sublayer output to x.",
    "no_residual": "there is no residual connection: each sub-layer's output is added to its "
    "input (x = x + ...), which keeps a direct path for the gradient through the stack.",
    "no_ffn_residual": "the feed-forward sub-layer has no residual connection: add its output to "
    "x, as for attention.",
    "ffn_first": "the sub-layers are in the wrong order: attention first (tokens exchange "
    "information), then the feed-forward network (each position on its own).",
    "mask_ignored": "the mask is not passed to the attention: self.attn(h, mask=mask).",
}


def block_variant(b, x, mask, norm_first, kind):
    """ptlearn's block ``b`` (its weights) computed with a known mistake ``kind``."""

    def attn(h):
        return b.attn(h, mask=None if kind == "mask_ignored" else mask)[0]

    ln1, ln2, ffn = b.norm_attn, b.norm_ffn, b.ffn
    if kind == "swapped":
        norm_first = not norm_first
    if kind == "no_residual":
        if norm_first:
            return ffn(ln2(attn(ln1(x))))
        return ln2(ffn(ln1(attn(x))))
    if kind == "ffn_first":
        if norm_first:
            x = x + ffn(ln2(x))
            return x + attn(ln1(x))
        x = ln2(x + ffn(x))
        return ln1(x + attn(x))
    if norm_first:
        if kind == "residual_of_normed":
            h = ln1(x)
            x = h + attn(h)
            h = ln2(x)
            return h + ffn(h)
        x = x + attn(ln1(x))
        return ffn(ln2(x)) if kind == "no_ffn_residual" else x + ffn(ln2(x))
    if kind == "norm_inside_post":
        x = x + ln1(attn(x))
        return x + ln2(ffn(x))
    x = ln1(x + attn(x))
    return ln2(ffn(x)) if kind == "no_ffn_residual" else ln2(x + ffn(x))


# (B, T, d_model, n_heads, d_ff, mask kind)
BLOCK_CASES = [(2, 5, 32, 4, 64, None), (2, 6, 32, 4, 64, "causal"), (3, 4, 48, 6, 96, "padding")]


@exercise("Transformer block")
def check_transformer_block(cls) -> str:
    """Check a block class ``cls(d_model, n_heads, d_ff, norm_first=True)`` whose
    ``forward(x, mask=None)`` returns ``[B, T, d_model]`` (or a tuple starting with it) against
    :class:`ptlearn.layers.TransformerBlock` with the same weights, pre-norm and post-norm.

    The learner's block keeps ptlearn's parameter names (``attn``, ``norm_attn``, ``ffn``,
    ``norm_ffn``, as in the exercise's stub). Outputs and gradients with no mask, a causal mask and
    a key padding mask. Names the mistakes in ``BLOCK_MISTAKES``: pre/post-norm order swapped,
    residual in the wrong place, no residual, sub-layers in the wrong order, mask not passed on.
    """
    m, g = BLOCK_MISTAKES, torch.Generator().manual_seed(3)
    for norm_first in (True, False):
        for B, T, C, H, d_ff, mask_kind in BLOCK_CASES:
            torch.manual_seed(T + C)
            ref = TransformerBlock(C, H, d_ff, norm_first=norm_first)
            for p in ref.parameters():  # LayerNorms start as the identity: perturb them so that
                p.data += 0.1 * torch.randn(p.shape, generator=g)  # a skipped norm shows
            name = getattr(cls, "__name__", "your class")
            mine = build(cls, C, H, d_ff, norm_first=norm_first, what=f"{name}({C}, {H}, {d_ff})")
            copy_weights(mine, ref.state_dict(), "your block")
            x = torch.randn(B, T, C, generator=g)
            mask = None
            if mask_kind == "causal":
                mask = causal_mask(T)
            elif mask_kind == "padding":
                lengths = torch.randint(2, T, (B,), generator=g)
                mask = (torch.arange(T)[None, :] < lengths[:, None])[:, None, None, :]
            what = describe(x=x) + (f", mask {list(mask.shape)}" if mask is not None else "")
            what += f", norm_first={norm_first}"
            x_mine, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
            got = first_output(call(mine, x_mine, mask=mask, inputs=what), "your block's output")
            expected = ref(x_ref, mask=mask)[0]
            expect_shape(got, expected.shape, "the output", "It should be [B, T, d_model].")
            if not close(got, expected):
                kinds = {
                    m["norm_order_pre" if norm_first else "norm_order_post"]: "swapped",
                    m["residual_of_normed"]: "residual_of_normed",
                    m["norm_inside_post"]: "norm_inside_post",
                    m["no_residual"]: "no_residual",
                    m["no_ffn_residual"]: "no_ffn_residual",
                    m["ffn_first"]: "ffn_first",
                    m["mask_ignored"]: "mask_ignored",
                }
                if mask is None:
                    kinds.pop(m["mask_ignored"])
                if norm_first:
                    kinds.pop(m["norm_inside_post"])
                else:
                    kinds.pop(m["residual_of_normed"])
                with torch.no_grad():
                    variants = {
                        msg: block_variant(ref, x, mask, norm_first, kind)
                        for msg, kind in kinds.items()
                    }
                raise Mistake(
                    diagnose(got.detach(), variants)
                    or f"the output differs from ptlearn's TransformerBlock (called with {what})."
                )
            grad_out = torch.randn(expected.shape, generator=g)
            (got * grad_out).sum().backward()
            (expected * grad_out).sum().backward()
            compare_gradients(mine, ref, {"x": (x_mine, x_ref)}, "your block")
    return (
        "your block matches ptlearn's TransformerBlock with the same weights, pre-norm and "
        "post-norm, with and without masks: outputs and gradients."
    )


def reference_decoder_mask(attention_mask: Tensor) -> Tensor:
    """ptlearn's answer to the decoder-mask exercise: key padding AND causal, ``[B, 1, T, T]``."""
    return padding_mask(attention_mask) & causal_mask(attention_mask.size(1))


DECODER_MASK_MISTAKES = {
    "causal_only": "padding is ignored: the mask is only causal, so queries still attend to "
    "padded keys. Combine it with the padding mask: causal AND padding.",
    "padding_only": "there is no causal part: every query sees the future. Combine the padding "
    "mask with the causal (lower-triangular) mask: causal AND padding.",
    "or": "you combined the masks with OR: a key must be allowed by BOTH masks (in the past and "
    "not padding), so use AND (&).",
    "queries_padded": "the padding is applied to the queries (rows) instead of the keys "
    "(columns): attention_mask[:, None, None, :] hides padded keys for every query.",
    "transposed": "the causal part is transposed (triu instead of tril): queries see the future "
    "and not the past.",
    "inverted": "the mask is inverted: True must mean 'may attend'.",
}

DECODER_MASK_CASES = [  # attention_mask rows: right padding, left padding (batched generation)
    [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]],
    [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]],
    [[1, 1, 1, 0], [0, 1, 1, 1]],
]


@exercise("decoder mask: causal and padding")
def check_decoder_mask(fn) -> str:
    """Check ``fn(attention_mask) -> mask`` for an HF-style ``attention_mask [B, T]`` (1 = token,
    0 = padding): a bool mask broadcastable to ``[B, H, T, T]`` (usually ``[B, 1, T, T]``) where
    query i may attend to key j iff j <= i and key j is not padding.

    Hiding the padded queries' rows as well is accepted (those rows are never used). Names the
    mistakes in ``DECODER_MASK_MISTAKES``: causal or padding part missing, OR instead of AND,
    padding applied to the queries, causal part transposed, mask inverted.
    """
    m = DECODER_MASK_MISTAKES
    for rows in DECODER_MASK_CASES:
        am = torch.tensor(rows)
        B, T = am.shape
        got = expect_tensor(call(fn, am, inputs=f"attention_mask {rows}"), "the mask", False)
        if got.dtype != torch.bool:
            raise Mistake(
                f"the mask has dtype {got.dtype}; return a bool mask (True = may attend)."
            )
        try:
            got = got[:, None] if got.dim() == 3 else got  # [B, T, T] -> [B, 1, T, T]
            got = torch.broadcast_to(got, (B, 1, T, T))
        except RuntimeError:
            raise Mistake(
                f"the mask has shape {list(got.shape)}: it must broadcast to [B, H, T, T] = "
                f"[{B}, H, {T}, {T}], e.g. [B, 1, T, T]."
            ) from None
        keys, queries, causal = padding_mask(am), am.bool()[:, None, :, None], causal_mask(T)
        expected = keys & causal  # [B, 1, T, T]
        if torch.equal(got, expected) or torch.equal(got, expected & queries):
            continue
        variants = {
            m["causal_only"]: causal.expand(B, 1, T, T),
            m["padding_only"]: keys.expand(B, 1, T, T),
            m["or"]: keys | causal,
            m["queries_padded"]: queries & causal,
            m["transposed"]: keys & causal.T,
            m["inverted"]: ~expected,
        }
        message = next((msg for msg, v in variants.items() if torch.equal(got, v)), None)
        raise Mistake(
            message
            or f"the mask differs from causal AND padding for attention_mask {rows}: query "
            f"{(got != expected).nonzero()[0, 2].item()} sees the wrong keys."
        )
    return "causal AND key padding, for right- and left-padded batches."
