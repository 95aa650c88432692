"""Chapter 08's objectives: span corruption, replaced-token detection, the six-objective builder."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ptlearn.data import LabeledTexts, make_grammar_corpus
from ptlearn.finetune import SequenceClassifier
from ptlearn.models import BertConfig
from ptlearn.pretraining import (
    OBJECTIVES,
    Electra,
    fill_spans,
    pretrain_objective,
    random_spans_noise_mask,
    replace_and_label,
    span_corruption_batch,
    spans_to_sentinels,
)
from ptlearn.study import aggregate, encode_texts, majority_baseline, study_table
from ptlearn.tokenization import HFTokenizer
from ptlearn.training import TrainConfig, Trainer

SENTINELS = list(range(1000, 1016))
BACKBONE = dict(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=24, dropout=0.0)


@pytest.fixture(scope="module")
def corpus():
    texts, _ = make_grammar_corpus(600, seed=0)
    labels = [["the", "i", "this"].index(t.split()[0]) for t in texts]  # the template: 3 classes
    tokenizer = HFTokenizer.train_wordpiece(texts, vocab_size=100)
    ids = encode_texts(tokenizer, texts, BACKBONE["max_len"])
    stream = torch.tensor([i for x in ids for i in x])
    return tokenizer, stream, (ids, labels)


# --- span corruption ---------------------------------------------------------------------------


def test_span_corruption_reproduces_t5_figure_2():
    words = "Thank you for inviting me to your party last week .".split()
    noise = [w in ("for", "inviting", "last") for w in words]
    vocab = {w: i for i, w in enumerate(words)}
    X, Y, Z = SENTINELS[:3]
    inputs, targets = spans_to_sentinels([vocab[w] for w in words], noise, SENTINELS)
    ids = [vocab[w] for w in "Thank you me to your party week .".split()]
    assert inputs == ids[:2] + [X] + ids[2:6] + [Y] + ids[6:]
    assert targets == [X, vocab["for"], vocab["inviting"], Y, vocab["last"], Z]


@settings(max_examples=60, deadline=None)
@given(length=st.integers(2, 200), seed=st.integers(0, 10_000))
def test_span_corruption_round_trip(length, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 900, (length,), generator=g).tolist()
    mask = random_spans_noise_mask(length, generator=g).tolist()
    inputs, targets = spans_to_sentinels(ids, mask, list(range(1000, 1100)))
    assert fill_spans(inputs, targets, list(range(1000, 1100))) == ids
    assert not mask[0] and 1 <= sum(mask) < length  # starts with a kept token; something dropped
    n_spans = sum(t >= 1000 for t in inputs)  # one sentinel per span in the input
    assert len(inputs) == length - sum(mask) + n_spans
    assert len(targets) == sum(mask) + n_spans + 1  # + the final sentinel


def test_noise_mask_has_t5_density_and_span_length():
    g = torch.Generator().manual_seed(0)
    masks = torch.stack([random_spans_noise_mask(100, generator=g) for _ in range(200)])  # [N, L]
    assert masks.float().mean().item() == pytest.approx(0.15)  # round(0.15 * 100) each time
    starts = (masks[:, 1:] & ~masks[:, :-1]).sum().item()  # a span starts after a kept token
    assert masks.sum().item() / starts == pytest.approx(3.0, rel=0.01)  # 15 tokens in 5 spans


def test_span_corruption_batch_feeds_the_encoder_decoder():
    g = torch.Generator().manual_seed(0)
    windows = torch.randint(5, 90, (4, 20), generator=g)
    batch = span_corruption_batch(windows, SENTINELS, eos_id=3, pad_id=0, generator=g)
    labels, dec = batch["labels"], batch["decoder_input_ids"]
    assert labels.shape == dec.shape and batch["input_ids"].shape == batch["attention_mask"].shape
    assert (dec[:, 0] == 0).all()  # T5 starts the decoder with the pad id
    real = labels != -100
    assert torch.equal(dec[:, 1:][real[:, :-1]], labels[:, :-1][real[:, :-1]])  # shifted right
    for row in range(4):
        source = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        target = labels[row][real[row]].tolist()
        assert source[-1] == 3 and target[-1] == 3  # both end with EOS
        assert fill_spans(source[:-1], target[:-1], SENTINELS) == windows[row].tolist()


# --- replaced-token detection ------------------------------------------------------------------


def test_rtd_labels_mark_only_tokens_that_changed():
    original = torch.tensor([[5, 6, 7, 8, 0]])
    chosen = torch.tensor([[True, True, False, False, False]])
    sampled = torch.tensor([[9, 6, 42, 42, 42]])  # position 1: the generator guessed right
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    corrupted, labels = replace_and_label(original, chosen, sampled, mask)
    assert corrupted.tolist() == [[9, 6, 7, 8, 0]]  # only chosen positions take the sample
    assert labels.tolist() == [[1, 0, 0, 0, -100]]  # a correct guess counts as original


def test_electra_loss_is_mlm_plus_weighted_rtd_and_embeddings_are_shared():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, **BACKBONE)
    model = Electra(config)
    assert model.generator.embeddings is model.discriminator.embeddings
    assert model.generator.mlm.decoder.weight is model.discriminator.embeddings.token.weight
    ids = torch.randint(5, 100, (4, 12))
    labels = torch.full_like(ids, -100)
    labels[:, ::3] = ids[:, ::3]
    masked = ids.masked_fill(labels != -100, 4)
    out = model(input_ids=masked, labels=labels)
    extra = out.extra
    torch.testing.assert_close(out.loss, extra["mlm_loss"] + 50.0 * extra["rtd_loss"])
    chosen = labels != -100
    assert torch.equal(extra["corrupted_ids"][~chosen], ids[~chosen])
    assert torch.equal(extra["rtd_labels"], (extra["corrupted_ids"] != ids).long())
    assert out.logits.shape == (4, 12)
    out.loss.backward()
    assert model.generator.encoder.layers[0].ffn.fc_in.weight.grad.abs().sum() > 0


# --- the six objectives ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_each_objective_trains_and_gives_a_backbone(corpus, name):
    tokenizer, stream, labeled = corpus
    torch.manual_seed(0)
    task = pretrain_objective(
        name, BACKBONE, tokenizer, stream=stream, labeled=labeled, batch_size=16
    )
    config = TrainConfig(lr=3e-3, warmup_steps=2, max_steps=40, progress=False, log_every=5)
    losses = Trainer(task.model, config, task.batch_fn).fit().series("loss")[1]
    assert sum(losses[-2:]) < 0.95 * sum(losses[:2]), losses  # the mean of 2 records, 5 steps each
    classifier = SequenceClassifier(copy.deepcopy(task.backbone()), 32, 3, task.pooling)
    batch = {"input_ids": torch.tensor(labeled[0][:2])[:, :5], "labels": torch.tensor([0, 2])}
    assert classifier(**batch).logits.shape == (2, 3)


def test_unknown_objective_is_named():
    with pytest.raises(ValueError, match="Unknown objective 'xlnet'"):
        pretrain_objective("xlnet", BACKBONE, None)


# --- study helpers -----------------------------------------------------------------------------


def test_encode_texts_keeps_sep_when_cutting(corpus):
    tokenizer = corpus[0]
    ids = encode_texts(tokenizer, ["the plot was not very good " * 10], max_len=8)[0]
    assert len(ids) == 8 and ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id


def test_majority_baseline_and_aggregate():
    train, test = LabeledTexts(["a"] * 3, [1, 1, 0]), LabeledTexts(["b"] * 4, [1, 0, 0, 0])
    assert majority_baseline(train, test) == 0.25
    rows = [[{"objective": "mlm", "label": "MLM", "tokens": 10, "probe": p}] for p in (0.6, 0.8)]
    (row,) = aggregate(rows)
    assert row["probe"] == pytest.approx(0.7) and row["probe_std"] == pytest.approx(
        0.1414, abs=1e-3
    )
    assert row["probe_seeds"] == [0.6, 0.8]
    assert "70.0 ± 14.1" in study_table([row])
