"""Attention: the written-out math, the fused fast path, masks and torch.nn.MultiheadAttention parity."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import assert_parity

from ptlearn.attention import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    fused_attention,
    padding_mask,
    scaled_dot_product_attention,
)


def test_written_out_attention_matches_formula():
    q, k, v = torch.randn(3, 2, 3, 5, 8).unbind(0)
    out, w = scaled_dot_product_attention(q, k, v)
    expected_w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    torch.testing.assert_close(w, expected_w, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out, expected_w @ v, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_padding", [False, True])
def test_fast_path_equals_written_out_path(causal, with_padding):
    B, H, T, d = 4, 3, 17, 16
    q, k, v = torch.randn(3, B, H, T, d).unbind(0)
    mask = None
    if with_padding:
        lengths = torch.tensor([17, 10, 3, 1])
        mask = padding_mask((torch.arange(T)[None] < lengths[:, None]).long())
    slow_mask = mask
    if causal:
        slow_mask = causal_mask(T) if mask is None else mask & causal_mask(T)
    slow, _ = scaled_dot_product_attention(q, k, v, slow_mask)
    fast = fused_attention(q, k, v, mask, causal, 0.0)
    assert_parity(fast, slow, "fused vs written out", rtol=1e-5, atol=1e-6)


def test_multihead_fast_and_weights_paths_agree():
    mha = MultiHeadAttention(32, 4).eval()
    x = torch.randn(2, 9, 32)
    mask = padding_mask(torch.tensor([[1] * 9, [1] * 5 + [0] * 4]))
    for causal in (False, True):
        fast, none = mha(x, mask=mask, causal=causal)
        slow, w = mha(x, mask=mask, causal=causal, need_weights=True)
        assert none is None and w.shape == (2, 4, 9, 9)
        assert_parity(fast, slow, f"causal={causal}", rtol=1e-5, atol=1e-6)


def copy_into_torch_mha(ours: MultiHeadAttention, d_model: int, n_heads: int):
    ref = torch.nn.MultiheadAttention(d_model, n_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv_proj.weight)  # both stack W_q, W_k, W_v in this order
        ref.in_proj_bias.copy_(ours.qkv_proj.bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref.eval()


def test_matches_torch_multihead_attention_self_and_cross():
    d, H = 48, 6
    ours = MultiHeadAttention(d, H).eval()
    ref = copy_into_torch_mha(ours, d, H)
    x, ctx = torch.randn(2, 7, d), torch.randn(2, 11, d)
    # self-attention with a causal mask (torch: True = NOT allowed)
    out, w = ours(x, causal=True, need_weights=True)
    ref_out, ref_w = ref(x, x, x, attn_mask=~causal_mask(7), average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w, ref_w, rtol=1e-5, atol=1e-6)
    # cross-attention with padded keys
    key_pad = torch.zeros(2, 11, dtype=torch.bool)
    key_pad[1, 6:] = True
    out, w = ours(x, ctx, mask=padding_mask((~key_pad).long()), need_weights=True)
    ref_out, ref_w = ref(x, ctx, ctx, key_padding_mask=key_pad, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w, ref_w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("need_weights", [False, True])
def test_causal_mask_leaks_nothing_from_the_future(need_weights):
    mha = MultiHeadAttention(16, 2)
    x = torch.randn(1, 8, 16, requires_grad=True)
    out, _ = mha(x, causal=True, need_weights=need_weights)
    for t in range(8):
        (grad,) = torch.autograd.grad(out[0, t].sum(), x, retain_graph=True)
        assert torch.all(grad[0, t + 1 :] == 0), f"position {t} sees the future"
        assert grad[0, : t + 1].abs().sum() > 0


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    length=st.integers(1, 24),
    n_heads=st.integers(1, 4),
    d_head=st.integers(1, 8),
    cut=st.integers(0, 23),
    need_weights=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_causal_attention_never_looks_ahead_for_random_shapes(
    batch, length, n_heads, d_head, cut, need_weights, seed
):
    """Rewriting every token after position ``cut`` leaves the outputs up to ``cut`` unchanged."""
    torch.manual_seed(seed)
    cut = cut % length
    mha = MultiHeadAttention(n_heads * d_head, n_heads)
    x = torch.randn(batch, length, n_heads * d_head)
    changed = x.clone()
    changed[:, cut + 1 :] = torch.randn_like(changed[:, cut + 1 :]) * 10
    out, w = mha(x, causal=True, need_weights=need_weights)
    out_changed, _ = mha(changed, causal=True, need_weights=need_weights)
    torch.testing.assert_close(out_changed[:, : cut + 1], out[:, : cut + 1], rtol=1e-5, atol=1e-5)
    if need_weights:  # [B, H, T, T]: nothing above the diagonal, rows still sum to 1
        assert torch.all(w.triu(diagonal=1) == 0)
        torch.testing.assert_close(w.sum(-1), torch.ones(batch, n_heads, length))


def test_padded_keys_get_exactly_zero_weight():
    mha = MultiHeadAttention(16, 4)
    attention_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    _, w = mha(torch.randn(2, 5, 16), mask=padding_mask(attention_mask), need_weights=True)
    assert torch.all(w[0, :, :, 3:] == 0) and torch.all(w[1, :, :, 1:] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 5))


@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_rows_give_zeros_not_nan(need_weights):
    mha = MultiHeadAttention(16, 4)
    mask = padding_mask(torch.tensor([[1, 1, 0], [0, 0, 0]]))
    out, w = mha(torch.randn(2, 3, 16), mask=mask, need_weights=need_weights)
    assert not out.isnan().any()
    if need_weights:
        assert torch.all(w[1] == 0)


def test_kv_cache_gives_the_same_outputs_as_the_full_sequence():
    mha = MultiHeadAttention(16, 2).eval()
    x = torch.randn(2, 6, 16)
    full, _ = mha(x, causal=True)
    cache = KVCache()
    steps = [mha(x[:, t : t + 1], causal=True, cache=cache)[0] for t in range(6)]
    assert len(cache) == 6
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-6)


def test_causal_mask_with_a_cache_offset():
    m = causal_mask(2, 5)  # two new queries at positions 3 and 4
    assert m.tolist() == [[True, True, True, True, False], [True] * 5]


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="does not divide"):
        MultiHeadAttention(30, 4)
