"""The seed concepts of issue 16 as library behaviour: chapter 05's continuation pairs, chapter 08's
last-token reading through ``study.features``, chapter 11's parameter counts on the meta device."""

import pytest
import torch

from ptlearn import GPT, BertModel, GPTConfig
from ptlearn.config import planned_parameters
from ptlearn.data.grammar import make_continuation_pairs, make_grammar_documents
from ptlearn.models.bert import BERT_PRESETS, BertConfig
from ptlearn.pretraining import backbone_of
from ptlearn.study import features


def test_continuation_pairs_follow_or_come_from_another_review():
    a_texts, b_texts, labels = make_continuation_pairs(300, seed=5)
    docs = make_grammar_documents(300, seed=5)
    assert len(a_texts) == len(b_texts) == len(labels) == 300
    assert 0.4 < sum(labels) / len(labels) < 0.6  # about half continue
    for doc, a, b, y in zip(docs, a_texts, b_texts, labels):
        i = doc.index(a)
        assert i < len(doc) - 1, "A is never the last sentence of its review"
        if y == 1:
            assert b == doc[i + 1]
        else:
            assert b != doc[i + 1]
            assert any(b in other for other in docs if other is not doc)
    assert make_continuation_pairs(300, seed=5) == (a_texts, b_texts, labels)
    assert make_continuation_pairs(300, seed=6) != (a_texts, b_texts, labels)


def test_continuation_pairs_need_two_reviews():
    with pytest.raises(ValueError, match="at least 2"):
        make_continuation_pairs(1)


def test_features_accept_a_pooling_function():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=30, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=12)
    encoder = backbone_of("causal_lm", GPT(config))  # a GPT read as chapter 08's study reads it
    ids = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 10, 11, 2]]
    by_name = features(encoder, "last", ids, pad_id=0)
    by_function = features(encoder, lambda h, m: h[torch.arange(len(h)), m.sum(1) - 1], ids, 0)
    minus_one = features(encoder, lambda h, m: h[:, -1], ids, 0)
    assert torch.allclose(by_name, by_function)
    assert torch.allclose(by_name[2], minus_one[2])  # the longest row has no padding
    assert not torch.allclose(by_name[0], minus_one[0])  # a padded row ends in [PAD]
    assert not torch.allclose(by_name[1], minus_one[1])


# (config, the exact count of the released checkpoints, as transformers counts them)
RELEASED = {
    "bert-base": (BertModel, BertConfig(**BERT_PRESETS["base"]), 109_482_240),
    "gpt2-xl": (
        GPT,
        GPTConfig(vocab_size=50257, d_model=1600, n_layers=48, n_heads=25, d_ff=6400, max_len=1024),
        1_557_611_200,
    ),
}


@pytest.mark.parametrize("name", RELEASED)
def test_meta_device_counts_match_the_released_models(name):
    model_class, config, released = RELEASED[name]
    with torch.device("meta"):
        model = model_class(config)
    assert sum(p.numel() for p in model.parameters()) == released
    assert abs(planned_parameters(config) / released - 1) < 0.01  # 12 L C^2 + embeddings
