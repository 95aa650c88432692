"""Exercise checkers for chapter 11: pretrained models (mask-aware mean pooling, finding a head)."""

from __future__ import annotations

import torch

from .framework import Mistake, call, close, describe, exercise, expect_shape, expect_tensor

MEAN_POOL_MISTAKES = {
    "plain_mean": "padding is counted: a plain hidden.mean(1) averages the padded positions too, so "
    "a padded sentence gets another embedding than the same sentence alone. Weight the tokens by "
    "the mask and divide by the number of real tokens.",
    "divided_by_T": "the padded positions are zeroed but you divide by T, the padded length; "
    "divide by the number of real tokens, attention_mask.sum(1).",
    "sum": "you return the sum of the real tokens; divide it by their number to get the mean.",
}


@exercise("mean pooling")
def check_mean_pool(fn) -> str:
    """Check ``fn(hidden [B, T, C], attention_mask [B, T]) -> [B, C]``: the mean of the real tokens'
    vectors only. Random hidden states with large values at the padded positions, so that a
    pooling that lets padding in cannot pass; the same sentence alone (no padding) must get the same
    vector. Names the mistakes in ``MEAN_POOL_MISTAKES``: plain mean, division by T, a sum.
    """
    m, g = MEAN_POOL_MISTAKES, torch.Generator().manual_seed(11)
    for B, T, C in [(3, 7, 16), (2, 5, 8)]:
        hidden = torch.randn(B, T, C, generator=g)
        lengths = torch.randint(1, T, (B,), generator=g)
        lengths[0] = T  # one sentence without padding
        mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # [B, T]
        hidden = hidden + 10.0 * (1 - mask)[..., None]  # padded positions hold other values
        got = expect_tensor(
            call(fn, hidden, mask, inputs=describe(hidden=hidden, attention_mask=mask)),
            "the result",
        )
        expect_shape(got, (B, C), "the result", "It should be [B, C]: one vector per sentence.")
        expected = torch.stack([hidden[b, : lengths[b]].mean(0) for b in range(B)])  # [B, C]
        if close(got, expected):
            alone = call(fn, hidden[1:2, : lengths[1]], mask[1:2, : lengths[1]], inputs="one row")
            if not close(expect_tensor(alone, "the result"), expected[1:2]):
                raise Mistake(
                    "a sentence alone (no padding) gets another vector than in the batch."
                )
            continue
        m_f = mask[..., None].float()
        variants = {
            m["plain_mean"]: hidden.mean(1),
            m["divided_by_T"]: (hidden * m_f).sum(1) / T,
            m["sum"]: (hidden * m_f).sum(1),
        }
        found = next((msg for msg, v in variants.items() if close(got, v)), None)
        raise Mistake(found or "the result differs from the mean over each sentence's real tokens.")
    return "padding is ignored: each sentence's vector is the mean of its real tokens."


PREVIOUS_HEAD_MISTAKES = {
    "padding": "the padded positions were counted: average the diagonal below the main one over "
    "each sentence's real tokens only (attention[b, :, :, :n, :n] with n = lengths[b]).",
    "next_token": "you found the next-token head: the attention from token t to token t - 1 is on "
    "the diagonal *below* the main one, torch.diagonal(..., offset=-1, dim1=-2, dim2=-1).",
    "flat_index": "the (layer, head) pair is decoded wrongly from the flat index: with H heads per "
    "layer, layer = i // H and head = i % H.",
}


def _attentions(L, H, B, T, lengths, target, next_head, padding_head, g):
    """Random attention tuples with a previous-token head at ``target``, a next-token head, and a
    head that attends to the previous token only at the padded positions."""
    att = torch.rand(B, L, H, T, T, generator=g) * 0.3  # [B, L, H, T, T]
    for b in range(B):
        n = int(lengths[b])
        att[b, :, :, n:] = 0.0  # padded queries: nothing
        real, padded = torch.arange(1, n), torch.arange(n, T)
        att[b, target[0], target[1], real, real - 1] = 0.6  # t -> t - 1 on the real tokens
        att[b, next_head[0], next_head[1], real - 1, real] = 0.95  # t -> t + 1
        att[b, padding_head[0], padding_head[1], padded, padded - 1] = 1.0  # only on padding
    return tuple(att[:, layer] for layer in range(L))  # L x [B, H, T, T]


@exercise("previous-token head")
def check_previous_token_head(fn) -> str:
    """Check ``fn(attentions, lengths) -> (layer, head)``: the head with the largest mean attention
    from each real token to the token before it. ``attentions`` is a tuple of ``[B, H, T, T]`` per
    layer, ``lengths[b]`` the number of real tokens of sentence b. Synthetic attentions hide a
    next-token head and a head that attends to the previous token only on the padded positions.
    Names the mistakes in ``PREVIOUS_HEAD_MISTAKES``.
    """
    m, g = PREVIOUS_HEAD_MISTAKES, torch.Generator().manual_seed(12)
    for L, H, target, next_head, padding_head in [
        (3, 4, (1, 2), (0, 1), (0, 3)),
        (2, 3, (1, 0), (0, 2), (1, 2)),
    ]:
        B, T = 3, 9
        lengths = torch.tensor([3, 9, 4])
        attentions = _attentions(L, H, B, T, lengths, target, next_head, padding_head, g)
        got = call(fn, attentions, lengths, inputs=f"{L} layers x [B, {H}, T, T], lengths")
        try:
            got = tuple(int(v) for v in got)
        except (TypeError, ValueError):
            raise Mistake(f"return (layer, head) as two ints, not {got!r}.") from None
        if got == target:
            continue
        if got == padding_head:
            raise Mistake(m["padding"])
        if got == next_head:
            raise Mistake(m["next_token"])
        if got in ((target[1], target[0]), divmod(target[0] * H + target[1], L)):
            raise Mistake(m["flat_index"])
        raise Mistake(f"you returned {got}; the previous-token head of this test is {target}.")
    return "you found the previous-token head, counting real tokens only."
