"""Rotary position embeddings (RoPE; Su et al. 2021, https://arxiv.org/abs/2104.09864).

GPT-2 adds a learned vector per position to the token embedding, once, at the bottom of the
stack. RoPE instead *rotates* every query and key inside every attention layer by an angle that
grows with the position. Split a head's d dimensions into d/2 pairs; pair i of the vector at
position m turns by the angle m * theta_i, with theta_i = base^(-2i/d) (base 10000: fast clocks
for the first pairs, slow ones for the last, like the sinusoidal encoding of chapter 02):

    [x_a, x_b] at position m  ->  [x_a cos(m theta_i) - x_b sin(m theta_i),
                                   x_b cos(m theta_i) + x_a sin(m theta_i)]

A rotation keeps lengths, and the dot product of two rotated vectors depends only on the
*difference* of their angles: q_m . k_n sees the relative offset m - n, never m or n alone. Values
are not rotated, and nothing is added to the residual stream.

Which dimensions form a pair is a convention. HF's Llama (and ptlearn, so weights convert) pairs
dimension j with j + d/2: ``rotate_half([x1, x2]) = [-x2, x1]`` and ``x cos + rotate_half(x) sin``.
"""

from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last dimension (the 90-degree turn of every pair)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    """The cos/sin tables for ``max_len`` positions of a ``d_head``-wide head, and their use.

    One instance is shared by every attention layer of a model. Its tables are buffers that are
    not saved (``persistent=False``): they are recomputed from ``d_head``, ``max_len`` and
    ``base``, so a checkpoint holds only learned weights."""

    def __init__(self, d_head: int, max_len: int, base: float = 10000.0):
        super().__init__()
        if d_head % 2:
            raise ValueError(f"rotary positions pair up dimensions: d_head={d_head} must be even.")
        self.base = base
        inv_freq = base ** -(torch.arange(0, d_head, 2).float() / d_head)  # [d/2]  theta_i
        angles = torch.arange(max_len).float()[:, None] * inv_freq  # [T, d/2]  m * theta_i
        angles = torch.cat((angles, angles), dim=-1)  # [T, d]  pair j with j + d/2
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """Rotate ``x [B, H, T, d_head]`` (queries or keys) for positions offset..offset+T-1."""
        T = x.size(2)
        cos, sin = self.cos[offset : offset + T], self.sin[offset : offset + T]  # [T, d_head]
        return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)
