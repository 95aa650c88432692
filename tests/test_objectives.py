"""Pretraining objectives: BERT's 80/10/10 masking, NSP and SOP pairs, the causal shift."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ptlearn.objectives import causal_lm_shift, mask_tokens, nsp_pairs, pair_example, sop_pairs

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIAL = {PAD, CLS, SEP, MASK}


def test_masking_follows_bert_rule_in_aggregate():
    g = torch.Generator().manual_seed(0)
    V = 1000
    ids = torch.randint(4, V, (400, 500), generator=g)  # 200k ordinary tokens
    masked, labels = mask_tokens(ids, MASK, V, SPECIAL, generator=g)
    chosen = labels != -100
    n = chosen.sum().item()
    assert abs(n / ids.numel() - 0.15) < 0.005  # std of the fraction is ~0.0008
    to_mask = (masked[chosen] == MASK).float().mean().item()
    unchanged = (masked[chosen] == ids[chosen]).float().mean().item()
    randomised = 1 - to_mask - unchanged
    # ~30k chosen: each share's std is <= 0.0023, so 0.01 would catch a 70/15/15 or 90/5/5 rule
    assert abs(to_mask - 0.8) < 0.01
    assert abs(randomised - 0.1) < 0.01
    assert abs(unchanged - 0.1) < 0.01  # + 0.1/996: a random token may equal the original
    assert torch.equal(masked[~chosen], ids[~chosen])  # unchosen tokens are never touched
    assert torch.equal(labels[chosen], ids[chosen])


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(0, 19), min_size=1, max_size=30), min_size=1, max_size=6),
    special=st.sets(st.integers(0, 19), max_size=8),
    prob=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**31),
)
def test_masking_never_touches_special_or_padding_tokens(rows, special, prob, seed):
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [PAD] * (T - len(r)) for r in rows])  # right-padded with PAD
    special = special | {PAD}
    if len(special | {MASK}) == 20:
        return  # nothing ordinary left to mask
    g = torch.Generator().manual_seed(seed)
    masked, labels = mask_tokens(ids, MASK, 20, special, mask_prob=prob, generator=g)
    is_special = torch.isin(ids, torch.tensor(sorted(special | {MASK})))
    assert torch.all(labels[is_special] == -100)
    assert torch.equal(masked[is_special], ids[is_special])
    changed = masked != ids
    assert torch.all(labels[changed] != -100)  # every change is at a labelled position
    randomised = changed & (masked != MASK)
    assert not torch.isin(masked[randomised], torch.tensor(sorted(special | {MASK}))).any()
    assert torch.equal(torch.where(labels != -100, labels, ids), ids)  # labels = originals


def test_masking_is_reproducible_with_a_generator():
    ids = torch.randint(4, 50, (4, 20), generator=torch.Generator().manual_seed(1))
    a = mask_tokens(ids, MASK, 50, SPECIAL, generator=torch.Generator().manual_seed(7))
    b = mask_tokens(ids, MASK, 50, SPECIAL, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="mask_prob"):
        mask_tokens(ids, MASK, 50, SPECIAL, mask_prob=0.0)
    with pytest.raises(ValueError, match="input_ids"):
        mask_tokens(ids + 50, MASK, 50, SPECIAL)


def documents(n_docs=40, n_sents=6):
    """Document d, sentence s = [10 + d, 100 + s, 100 + s]: origin readable from the ids."""
    return [[[10 + d, 100 + s, 100 + s] for s in range(n_sents)] for d in range(n_docs)]


def split_pair(ids, types):
    """[CLS] A [SEP] B [SEP] (+ padding) -> (A, B), checking the layout on the way."""
    ids, types = ids.tolist(), types.tolist()
    first_sep = ids.index(SEP)
    end = len(ids) - ids[::-1].index(SEP)
    assert ids[0] == CLS and ids[end - 1] == SEP and all(t == PAD for t in ids[end:])
    assert types[: first_sep + 1] == [0] * (first_sep + 1)
    assert types[first_sep + 1 : end] == [1] * (end - first_sep - 1)
    return ids[1:first_sep], ids[first_sep + 1 : end - 1]


def test_nsp_pairs_are_half_true_next_sentences_half_random_other_documents():
    batch = nsp_pairs(
        documents(), CLS, SEP, PAD, max_len=16, generator=torch.Generator().manual_seed(0)
    )
    labels = batch["next_sentence_label"]
    assert len(labels) == 40 * 5 and abs(labels.float().mean().item() - 0.5) < 0.1
    for ids, types, mask, label in zip(
        batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels
    ):
        a, b = split_pair(ids, types)
        assert mask.sum().item() == len(a) + len(b) + 3
        if label == 0:  # IsNext: same document, the following sentence
            assert b[0] == a[0] and b[1] == a[1] + 1
        else:  # NotNext: a sentence of another document
            assert b[0] != a[0]


def test_sop_pairs_are_consecutive_segments_in_or_out_of_order():
    batch = sop_pairs(documents(), CLS, SEP, PAD, generator=torch.Generator().manual_seed(0))
    labels = batch["sentence_order_label"]
    assert abs(labels.float().mean().item() - 0.5) < 0.1
    for ids, types, label in zip(batch["input_ids"], batch["token_type_ids"], labels):
        a, b = split_pair(ids, types)
        assert a[0] == b[0]  # always the same document
        assert b[1] - a[1] == (1 if label == 0 else -1)  # 0 = in order, 1 = swapped


def test_pairs_are_truncated_to_max_len_and_errors_are_clear():
    ids, types = pair_example(list(range(10, 30)), [5, 6], CLS, SEP, max_len=10)
    assert len(ids) == 10 and ids[-3:] == [5, 6, SEP] and types.count(1) == 3
    with pytest.raises(ValueError, match="two non-empty documents"):
        nsp_pairs(documents(n_docs=1), CLS, SEP, PAD)
    with pytest.raises(ValueError, match="two sentences"):
        sop_pairs([[[5, 6]]], CLS, SEP, PAD)


def test_causal_lm_shift_scores_position_t_against_token_t_plus_1():
    logits = torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    labels[1, 3] = -100
    terms = [
        F.cross_entropy(logits[b, t], labels[b, t + 1], reduction="sum")
        for b in range(2)
        for t in range(4)
        if labels[b, t + 1] != -100
    ]
    torch.testing.assert_close(causal_lm_shift(logits, labels), torch.stack(terms).mean())
    perfect = F.one_hot(labels.clamp(min=0).roll(-1, dims=1), 7).float() * 100
    assert causal_lm_shift(perfect, labels).item() < 1e-6
