"""Attention, written out: the one operation every model in ptlearn is built on.

Vaswani et al., "Attention Is All You Need" (2017), https://arxiv.org/abs/1706.03762, eq. (1):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Each query row of Q scores every key row of K with a dot product; dividing by sqrt(d_k) keeps the
scores' spread independent of the head size (dot products of d_k random unit-variance numbers have
variance d_k, and a softmax over large scores saturates into a one-hot with vanishing gradients).
The softmax turns each row of scores into weights that sum to 1, and the output is the weighted
average of the value rows.

Masks are boolean and broadcast to ``[B, H, Tq, Tk]``: ``True`` means "this query may look at this
key". A causal mask hides future keys; a padding mask hides padded keys.

Two paths compute the same thing. The written-out path returns the attention weights, so we can look
at them. When nobody asks for the weights, ``F.scaled_dot_product_attention`` (a fused kernel that
never materialises the ``[Tq, Tk]`` matrix in memory) is the fast path; the tests prove the two agree.

Two options of modern decoders change what q and k are before the product (chapter 12):
rotary positions (:mod:`ptlearn.rotary`) rotate them by their position, and QK-norm (Dehghani et al.
2023, https://arxiv.org/abs/2302.05442; used by OLMo 2 and Qwen3) passes every head's q and k
through an RMSNorm, which caps the attention logits and keeps the softmax out of saturation at high
learning rates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .norms import RMSNorm
from .rotary import Rotary

Tensor = torch.Tensor


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d_k)) v, step by step. Returns ``(output, weights)``.

    q: ``[B, H, Tq, d_head]``, k: ``[B, H, Tk, d_head]``, v: ``[B, H, Tk, d_v]``; mask: bool,
    broadcastable to ``[B, H, Tq, Tk]`` (True = attend). A query whose keys are all masked gets zero
    weights and a zero output instead of NaN.
    """
    d_head = q.size(-1)  # the paper's d_k
    scores = q @ k.transpose(-2, -1)  # [B, H, Tq, Tk]  similarity of every query with every key
    scores = scores / math.sqrt(d_head)  # scale: keep the softmax out of saturation
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # masked keys get exactly zero weight
    weights = torch.softmax(scores, dim=-1)  # [B, H, Tq, Tk]  each row sums to 1
    if mask is not None:
        # a row with every key masked is all -inf -> NaN after softmax; it attends to nothing
        weights = weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # [B, H, Tq, d_v]


def causal_mask(t_q: int, t_k: int | None = None, device=None) -> Tensor:
    """``[Tq, Tk]`` bool mask where query i may see keys 0..i (shifted when a KV cache holds the
    first ``Tk - Tq`` keys, so the last query always sits at the last key)."""
    t_k = t_q if t_k is None else t_k
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)


def padding_mask(attention_mask: Tensor) -> Tensor:
    """HF-style ``[B, Tk]`` mask (1 = real token, 0 = padding) -> bool ``[B, 1, 1, Tk]`` key mask."""
    return attention_mask.bool()[:, None, None, :]


class KVCache:
    """Keys and values of the tokens already processed by one attention layer.

    During generation each new token only needs its own query; the keys and values of earlier tokens
    do not change, so we keep them instead of recomputing the whole prefix at every step.
    """

    def __init__(self):
        self.k: Tensor | None = None  # [B, H, T_past, d_head]
        self.v: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.size(2)

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append this step's keys/values and return all of them."""
        if self.k is not None:
            k = torch.cat([self.k, k], dim=2)  # [B, H, T_past + T, d_head]
            v = torch.cat([self.v, v], dim=2)
        self.k, self.v = k, v
        return k, v


class MultiHeadAttention(nn.Module):
    """H attention heads side by side, each on its own d_head = d_model / H slice.

    Self-attention: queries, keys and values all come from ``x``. Cross-attention: the queries come
    from ``x`` (the decoder) and keys/values from ``context`` (the encoder output). Heads let the
    model attend to several things at once; ``out_proj`` mixes what the heads found.

    The paper's three projections W_q, W_k, W_v ``[C, C]`` are stacked into one ``qkv_proj``
    ``[3C, C]`` (as in GPT-2 and nanoGPT): the same numbers, but self-attention computes q, k and v
    with one matrix multiplication instead of three, which is faster. Cross-attention reads two
    inputs: it keeps the queries of x and the keys and values of the context (the unused third of
    each product is a little wasted arithmetic, for one simple code path).

    ``rotary``: a shared :class:`~ptlearn.rotary.Rotary` that rotates q and k by their positions
    (self-attention only); ``qk_norm``: an RMSNorm on every head's q and k (``norm_eps``).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        rotary: Rotary | None = None,
        qk_norm: bool = False,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"n_heads={n_heads} does not divide d_model={d_model}.")
        self.n_heads, self.d_head, self.dropout = n_heads, d_model // n_heads, dropout
        self.qkv_proj = nn.Linear(d_model, 3 * d_model, bias=bias)  # [W_q; W_k; W_v]
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.rotary = rotary
        self.q_norm = RMSNorm(self.d_head, norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(self.d_head, norm_eps) if qk_norm else None

    def split_heads(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)  # [B, H, T, d_head]

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x: ``[B, Tq, C]``; context: ``[B, Tk, C]`` or None (self-attention); mask: bool,
        broadcastable to ``[B, H, Tq, Tk]``. Returns ``(out [B, Tq, C], weights [B, H, Tq, Tk] or None)``."""
        B, T, C = x.shape
        q, k, v = self.qkv_proj(x).split(C, dim=-1)  # 3 x [B, Tq, C]  one matmul for all three
        if context is not None:  # cross-attention: keys and values come from the context instead
            _, k, v = self.qkv_proj(context).split(C, dim=-1)  # 2 x [B, Tk, C]
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)  # [B, H, T, d_head]
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)  # every head's q and k to RMS 1 (times a gain)
        if self.rotary is not None and context is None:
            past = 0 if cache is None else len(cache)  # cached keys were rotated when computed
            q, k = self.rotary(q, past), self.rotary(k, past)  # [B, H, T, d_head]
        if cache is not None:
            k, v = cache.update(k, v)  # [B, H, T_past + Tq, d_head]
        p = self.dropout if self.training else 0.0
        if need_weights:
            if causal:
                future = causal_mask(T, k.size(2), x.device)  # [Tq, Tk]
                mask = future if mask is None else mask & future
            y, weights = scaled_dot_product_attention(q, k, v, mask, p)
        else:
            y, weights = fused_attention(q, k, v, mask, causal, p), None
        y = y.transpose(1, 2).reshape(B, T, C)  # [B, Tq, C]  heads side by side again
        return self.out_proj(y), weights


def fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, p: float):
    """The fast path: PyTorch's fused kernel, same math as :func:`scaled_dot_product_attention`."""
    t_q, t_k = q.size(2), k.size(2)
    causal = causal and t_q > 1  # one query (a cached decoding step) is the newest: it sees all
    if causal and (mask is not None or t_q != t_k):
        future = causal_mask(t_q, t_k, q.device)
        mask, causal = (future if mask is None else mask & future), False
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
    # a query with every key masked attends to nothing: zero output, as in the written-out path
    return y.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
