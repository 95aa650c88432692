"""Exercise checkers for chapter 12: the CPU speedrun (RMSNorm and rotary position embeddings)."""

from __future__ import annotations

import torch

from ..norms import RMSNorm
from ..rotary import Rotary
from .framework import (
    Mistake,
    call,
    close,
    describe,
    diagnose,
    exercise,
    expect_shape,
    expect_tensor,
)

Tensor = torch.Tensor

RMS_NORM_MISTAKES = {
    "centred": "you subtracted the mean: that is LayerNorm without its bias. RMSNorm divides x by "
    "its root mean square, sqrt(mean(x^2) + eps), and never centres it.",
    "sum": "you divided by sqrt(sum(x^2)), the vector's length; RMSNorm uses the MEAN of the "
    "squares, so the output has root mean square 1 (length sqrt(C)).",
    "eps_outside": "eps belongs inside the square root: x / sqrt(mean(x^2) + eps), not "
    "x / (sqrt(mean(x^2)) + eps).",
    "no_weight": "the learned gain is missing: multiply the normalised x by weight.",
    "wrong_dim": "you averaged over the wrong dimension: every [C] vector (the last dimension) "
    "gets its own root mean square.",
}


def rms_norm_reference(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    norm = RMSNorm(x.size(-1), eps)
    with torch.no_grad():
        norm.weight.copy_(weight)
        return norm(x)


@exercise("RMSNorm")
def check_rms_norm(fn) -> str:
    """Check ``fn(x, weight, eps) -> y`` with ``y = x / sqrt(mean(x^2) + eps) * weight`` over the
    last dimension, against :class:`ptlearn.norms.RMSNorm`. Recognises ``RMS_NORM_MISTAKES``."""
    m, g, eps = RMS_NORM_MISTAKES, torch.Generator().manual_seed(12), 1e-5
    for B, T, C, spread in [(4, 6, 16, 1.0), (2, 3, 8, 0.01), (5, 2, 32, 3.0)]:
        x = torch.randn(B, T, C, generator=g) * spread + 0.5 * spread  # a mean RMSNorm keeps
        weight = torch.randn(C, generator=g)
        got = expect_tensor(call(fn, x, weight, eps, inputs=describe(x=x, weight=weight)), "y")
        expect_shape(got, x.shape, "the result", "RMSNorm keeps the shape of x.")
        if close(got, rms_norm_reference(x, weight, eps)):
            continue
        ms = x.pow(2).mean(-1, keepdim=True)
        centred = x - x.mean(-1, keepdim=True)
        variants = {
            m["centred"]: centred / (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt() * weight,
            m["sum"]: x / (x.pow(2).sum(-1, keepdim=True) + eps).sqrt() * weight,
            m["eps_outside"]: x / (ms.sqrt() + eps) * weight,
            m["no_weight"]: x / (ms + eps).sqrt(),
            m["wrong_dim"]: x / (x.pow(2).mean(1, keepdim=True) + eps).sqrt() * weight,
        }
        raise Mistake(
            diagnose(got, variants) or "the values differ from x / sqrt(mean(x^2) + eps) * weight."
        )
    return "your RMSNorm matches ptlearn's, also on inputs with a small spread."


ROTARY_MISTAKES = {
    "interleaved": "your rotation pairs neighbouring dimensions (0, 1), (2, 3), ...: that is the "
    "RoFormer / GPT-J convention, a valid RoPE, but not Llama's, whose weights (and ptlearn's) pair "
    "dimension j with j + d/2: x * cos + rotate_half(x) * sin with rotate_half([x1, x2]) = [-x2, x1].",
    "direction": "you rotate the other way (x * cos - rotate_half(x) * sin): the angle must grow "
    "with the position, rotate_half([x1, x2]) = [-x2, x1].",
    "no_offset": "the offset is ignored: with a KV cache holding `offset` tokens, the first new "
    "token sits at position `offset`, not 0.",
    "theta": "the frequencies are off: theta_i = base^(-2i/d) for i = 0 .. d/2 - 1 "
    "(torch.arange(0, d, 2) / d), not base^(-i/d).",
    "from_one": "positions start at 0 (the first token is not rotated), not at 1.",
}


def rotary_variants(x: Tensor, offset: int, base: float) -> dict[str, Tensor]:
    """What the typical mistakes of ``ROTARY_MISTAKES`` return for ``x [B, H, T, d]``."""
    T, d = x.size(2), x.size(-1)

    def rotate(positions: Tensor, inv_freq: Tensor, interleave: bool = False, sign: float = 1.0):
        angles = positions[:, None].float() * inv_freq  # [T, d/2]
        cos, sin = angles.cos(), angles.sin()
        if interleave:
            x1, x2 = x[..., 0::2], x[..., 1::2]
            out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
            return out.flatten(-2)
        cos, sin = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + sign * torch.cat((-x2, x1), -1) * sin

    inv_freq = base ** -(torch.arange(0, d, 2).float() / d)
    positions = torch.arange(offset, offset + T)
    m = ROTARY_MISTAKES
    return {
        m["interleaved"]: rotate(positions, inv_freq, interleave=True),
        m["direction"]: rotate(positions, inv_freq, sign=-1.0),
        m["no_offset"]: rotate(torch.arange(T), inv_freq),
        m["theta"]: rotate(positions, base ** -(torch.arange(0, d // 2).float() / d)),
        m["from_one"]: rotate(positions + 1, inv_freq),
    }


@exercise("rotary positions")
def check_rotary(fn) -> str:
    """Check ``fn(x, offset, base) -> x rotated`` for queries or keys ``x [B, H, T, d_head]`` at
    positions offset .. offset + T - 1, against :class:`ptlearn.rotary.Rotary` (Llama's pairing of
    dimension j with j + d/2). Recognises ``ROTARY_MISTAKES``."""
    g = torch.Generator().manual_seed(12)
    for B, H, T, d, offset, base in [(2, 3, 5, 8, 0, 10000.0), (1, 2, 4, 16, 7, 10000.0),
                                     (2, 1, 6, 4, 3, 100.0)]:  # fmt: skip
        x = torch.randn(B, H, T, d, generator=g)
        inputs = describe(x=x) + f", offset={offset}, base={base}"
        got = expect_tensor(call(fn, x, offset, base, inputs=inputs), "the rotated x")
        expect_shape(got, x.shape, "the rotated x", "A rotation keeps the shape.")
        if close(got, Rotary(d, offset + T, base)(x, offset)):
            continue
        if not close(got.norm(dim=-1), x.norm(dim=-1)):
            raise Mistake(
                "the lengths changed: a rotation keeps every vector's length. Each pair of "
                "dimensions is turned by an angle; nothing is added or scaled."
            )
        raise Mistake(
            diagnose(got, rotary_variants(x, offset, base))
            or "the values differ from x * cos + rotate_half(x) * sin at positions offset.."
        )
    return "your rotation matches ptlearn's Rotary (and so HF's Llama), with and without an offset."
