"""Chapter 08's testbed and study: rated reviews, held-out sentences, zero-shot readings, margins."""

from dataclasses import replace

import pytest
import torch

from ptlearn.data.grammar import (
    NEGATIONS,
    VERDICTS,
    make_grammar_corpus,
    make_rated_reviews,
    sentiment_label,
)
from ptlearn.pretraining import pretrain_objective
from ptlearn.study import (
    StudyConfig,
    load_study_data,
    margins_over_random,
    pretrain,
    verdict_scores,
    zero_shot,
)

SMALL = StudyConfig(
    backbone=dict(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=24, dropout=0.0),
    n_reviews=400, n_test=60, n_train=16, n_bow=200, pretrain_tokens=2000, finetune_steps=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return load_study_data(SMALL)


def test_rated_reviews_carry_the_latent_label():
    sentences, verdicts = make_rated_reviews(2000, seed=0, negation_rate=0.2)
    assert (sentences, verdicts) == make_rated_reviews(2000, seed=0, negation_rate=0.2)
    assert verdicts == [VERDICTS[sentiment_label(s)] for s in sentences]
    negated = sum(any(w in NEGATIONS for w in s.split()) for s in sentences) / len(sentences)
    assert 0.17 < negated < 0.23
    assert {"recommended", "avoid"} == set(verdicts)


def test_rated_reviews_avoid_excluded_sentences():
    held_out = set(make_grammar_corpus(500, seed=1)[0])
    sentences, _ = make_rated_reviews(3000, seed=0, exclude=held_out)
    assert not held_out & set(sentences)
    with pytest.raises(ValueError, match="excluded sentences"):
        make_rated_reviews(10, exclude=set(make_grammar_corpus(60_000, seed=2)[0]))
    with pytest.raises(ValueError, match="negation_rate"):
        make_rated_reviews(10, negation_rate=1.5)


def test_study_data_holds_out_the_test_sentences(data):
    tok, (sentences, verdicts) = data.tokenizer, data.reviews
    assert len(set(data.test.texts)) == len(data.test) == SMALL.n_test
    assert not set(data.test.texts) & set(sentences)
    assert not set(data.test.texts) & set(data.pool.texts)  # nor among the labels
    tokens = tok.convert_ids_to_tokens(data.stream.tolist())
    assert not any(t.startswith("##") for t in tokens)  # every word is one token
    first = tok.encode(sentences[0]) + [tok.token_to_id(verdicts[0]), tok.sep_id]
    assert data.stream[: len(first)].tolist() == first  # [CLS] sentence [SEP] verdict [SEP]
    assert 0.4 < sum(data.test.labels) / len(data.test) < 0.6


class PositionLogits(torch.nn.Module):
    """A stand-in LM whose logit for every token is the position: tells which position is read."""

    def forward(self, input_ids, attention_mask=None):
        B, T = input_ids.shape
        logits = torch.arange(T, dtype=torch.float)[None, :, None].expand(B, T, 300).clone()
        return type("Out", (), {"logits": logits})

    def parameters(self):
        return iter([torch.zeros(1)])


@pytest.mark.parametrize("name, offset", [("causal_lm", 1), ("mlm", 2)])
def test_zero_shot_reads_the_verdict_position(data, name, offset):
    ids = [data.tokenizer.encode("the plot was good"), data.tokenizer.encode("i liked the cast")]
    scores = verdict_scores(name, PositionLogits(), ids, data.tokenizer)  # [N, 2]
    # causal LM: the last real token ([SEP]) predicts the verdict; MLM: the [MASK] after it
    expected = torch.tensor([len(x) - 1 + (offset - 1) for x in ids], dtype=torch.float)
    torch.testing.assert_close(scores[:, 0], expected)


@pytest.mark.parametrize("name", ["causal_lm", "mlm", "span", "rtd"])
def test_every_objective_has_a_zero_shot_reading(data, name):
    torch.manual_seed(0)
    task = pretrain_objective(name, SMALL.backbone, data.tokenizer, stream=data.stream)
    ids = [data.tokenizer.encode(t) for t in data.test.texts[:5]]
    scores = verdict_scores(name, task.model, ids, data.tokenizer)
    assert scores.shape == (5, 2) and torch.isfinite(scores).all()
    assert 0.0 <= zero_shot(name, task.model, data, SMALL.backbone["max_len"]) <= 1.0


def test_unknown_zero_shot_objective_is_named(data):
    with pytest.raises(ValueError, match="no zero-shot reading for objective 'xlnet'"):
        verdict_scores("xlnet", PositionLogits(), [[2, 3]], data.tokenizer)


def test_margins_are_paired_by_seed():
    runs = [
        [{"objective": "causal_lm", "finetune": 0.9}, {"objective": "random", "finetune": 0.55}],
        [{"objective": "causal_lm", "finetune": 0.8}, {"objective": "random", "finetune": 0.6}],
    ]
    gains = margins_over_random(runs)
    assert gains == {"causal_lm": [pytest.approx(0.35), pytest.approx(0.2)]}


@pytest.mark.slow
def test_causal_lm_learns_the_negation_rule_from_verdicts_alone():
    """The chapter's lever: next-token prediction on rated reviews reads negated sentiment
    zero-shot (a model that ignored negation would score 50% on this 50%-negated test set)."""
    config = replace(StudyConfig(), n_reviews=20_000, n_test=200)
    data = load_study_data(config)
    torch.manual_seed(0)
    task = pretrain_objective("causal_lm", config.backbone, data.tokenizer, stream=data.stream)
    pretrain(task, config, "cpu", seed=0)
    assert zero_shot("causal_lm", task.model, data, config.backbone["max_len"]) > 0.9
