"""Blocks and embeddings: pre-/post-norm wiring, sinusoidal encodings, input validation."""

import math

import pytest
import torch

from ptlearn.layers import Embeddings, FeedForward, TransformerBlock, sinusoidal_encoding


def test_sinusoidal_encoding_follows_the_formula():
    pe = sinusoidal_encoding(50, 16)
    pos, i = 7, 3
    angle = pos / 10000 ** (2 * i / 16)
    assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    # nearby positions are more similar than distant ones
    sim = pe @ pe.T
    assert sim[10, 11] > sim[10, 30]


def test_post_norm_block_output_is_normalised_and_pre_norm_is_not():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 32) * 3 + 1
    post = TransformerBlock(32, 4, 64, norm_first=False).eval()
    pre = TransformerBlock(32, 4, 64, norm_first=True).eval()
    y_post, _, _ = post(x)
    torch.testing.assert_close(y_post.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    y_pre, _, _ = pre(x)
    assert y_pre.mean(-1).abs().max() > 0.1  # the residual stream keeps its offset


def test_pre_norm_block_equals_its_definition():
    block = TransformerBlock(16, 2, 32, norm_first=True).eval()
    x = torch.randn(1, 4, 16)
    h = x + block.attn(block.norm_attn(x), causal=True)[0]
    expected = h + block.ffn(block.norm_ffn(h))
    torch.testing.assert_close(block(x, causal=True)[0], expected)


@pytest.mark.parametrize("gated", [False, True])
def test_training_drops_the_feed_forward_output_once(gated):
    """BERT and GPT-2 drop each sublayer's output once before the residual add. With the attention
    silenced, x_out - x is dropout(ffn(LN(x))): a share p of zeros and the rest scaled by 1/(1-p).
    Dropping twice (in the FFN and again in the block) would zero 1 - (1-p)^2 = 75% at p = 0.5."""
    torch.manual_seed(0)
    p = 0.5
    block = TransformerBlock(32, 4, 64, dropout=p, norm_first=True, gated=gated).train()
    with torch.no_grad():
        block.attn.out_proj.weight.zero_()
        block.attn.out_proj.bias.zero_()
    x = torch.randn(8, 16, 32)
    delta = block(x)[0] - x  # [B, T, C]: the dropped feed-forward output
    ffn_out = block.ffn(block.norm_ffn(x))
    kept = delta != 0
    assert abs((~kept).float().mean().item() - p) < 0.03
    torch.testing.assert_close(delta[kept], ffn_out[kept] / (1 - p))


def test_cross_attention_block_returns_cross_weights():
    block = TransformerBlock(16, 2, 32, cross_attention=True)
    x, ctx = torch.randn(2, 4, 16), torch.randn(2, 6, 16)
    y, self_w, cross_w = block(x, causal=True, context=ctx, need_weights=True)
    assert y.shape == (2, 4, 16) and self_w.shape == (2, 2, 4, 4) and cross_w.shape == (2, 2, 4, 6)
    assert torch.all(self_w[..., 0, 1:] == 0)  # causal


def test_feed_forward_shapes_and_activation():
    ffn = FeedForward(8, 32, activation="relu")
    assert ffn(torch.randn(3, 5, 8)).shape == (3, 5, 8)
    with pytest.raises(ValueError, match="activation"):
        FeedForward(8, 32, activation="swish")


def test_embeddings_sum_token_position_and_segment():
    emb = Embeddings(10, 8, max_len=6, type_vocab_size=2).eval()
    ids, seg = torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1, 1]])
    expected = emb.token(ids) + emb.position.weight[:3] + emb.segment(seg)
    torch.testing.assert_close(emb(ids, seg), expected)


@pytest.mark.parametrize(
    "ids, error, pattern",
    [
        (torch.tensor([[1, 2, 10]]), ValueError, r"id 10, outside the vocabulary \[0, 10\)"),
        (torch.tensor([[1, -1]]), ValueError, "outside the vocabulary"),
        (torch.tensor([[1.0, 2.0]]), TypeError, "integer token ids"),
        (torch.tensor([1, 2]), ValueError, r"unsqueeze\(0\)"),
        (torch.zeros(1, 7, dtype=torch.long), ValueError, "max_len is 6"),
        ([[1, 2]], TypeError, "torch.Tensor"),
    ],
)
def test_embeddings_reject_bad_ids_with_clear_messages(ids, error, pattern):
    emb = Embeddings(10, 8, max_len=6, type_vocab_size=2)
    with pytest.raises(error, match=pattern):
        emb(ids)


def test_the_id_check_does_not_break_a_compiled_graph():
    """Under torch.compile the range check (a read-back of min and max ids) is skipped: on a GPU it
    split the graph on every forward (seen on an H200). Eager calls still check."""
    emb = Embeddings(10, 8, max_len=6)
    compiled = torch.compile(emb, backend="eager", fullgraph=True)  # fullgraph: a break raises
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(compiled(ids), emb(ids))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        emb(torch.tensor([[1, 10]]))


def test_embeddings_reject_bad_token_type_ids():
    emb = Embeddings(10, 8, max_len=6, type_vocab_size=2)
    with pytest.raises(ValueError, match="token_type_ids has shape"):
        emb(torch.tensor([[1, 2]]), torch.tensor([[0, 1, 1]]))
    with pytest.raises(ValueError, match=r"token_type_ids must lie in \[0, 2\)"):
        emb(torch.tensor([[1, 2]]), torch.tensor([[0, 2]]))
    with pytest.raises(ValueError, match="no segment embeddings"):
        Embeddings(10, 8, 6)(torch.tensor([[1, 2]]), torch.tensor([[0, 1]]))
