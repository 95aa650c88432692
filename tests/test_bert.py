"""BERT: shapes, tied MLM head, post-norm, padding, losses, clear errors, and learning MLM."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ptlearn.models import (
    BERT_PRESETS,
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
)
from ptlearn.objectives import mask_tokens

V, C, L, H = 100, 32, 2, 4
CONFIG = BertConfig(vocab_size=V, d_model=C, n_layers=L, n_heads=H, d_ff=64, max_len=16)


def batch(B=3, T=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (B, T), generator=g)
    types = torch.zeros_like(ids)
    types[:, T // 2 :] = 1
    return ids, types


def test_pretraining_outputs_have_the_documented_shapes():
    model = BertForPreTraining(CONFIG).eval()
    ids, types = batch()
    out = model(ids, token_type_ids=types, output_attentions=True, output_hidden_states=True)
    assert out.logits.shape == (3, 10, V)
    assert out.pair_logits.shape == (3, 2)
    assert out.pooler_output.shape == (3, C) and out.last_hidden_state.shape == (3, 10, C)
    assert [a.shape for a in out.attentions] == [(3, H, 10, 10)] * L
    assert len(out.hidden_states) == L + 1
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(3, H, 10))
    assert out.loss is None and model(ids).attentions is None


def test_mlm_decoder_is_tied_to_the_token_embeddings():
    model = BertForPreTraining(CONFIG)
    assert model.mlm.decoder.weight is model.bert.embeddings.token.weight
    n_unique = sum(p.numel() for p in model.parameters())
    n_backbone = sum(p.numel() for p in model.bert.parameters())
    # the heads add only: dense C x C + b, LayerNorm 2C, decoder bias V, NSP 2C + 2
    assert n_unique - n_backbone == C * C + C + 2 * C + V + 2 * C + 2


def test_encoder_is_post_norm_so_every_layer_output_is_normalised():
    model = BertModel(CONFIG).eval()
    ids, _ = batch()
    hidden = model(ids, output_hidden_states=True).hidden_states
    for h in hidden:  # embeddings (LayerNorm) and each post-norm block end in a LayerNorm
        torch.testing.assert_close(h.mean(-1), torch.zeros(3, 10), atol=1e-5, rtol=0)
        torch.testing.assert_close(h.std(-1, unbiased=False), torch.ones(3, 10), atol=1e-3, rtol=0)


def test_pooler_is_tanh_of_a_linear_map_of_cls():
    model = BertModel(CONFIG).eval()
    out = model(batch()[0])
    expected = torch.tanh(model.pooler.dense(out.last_hidden_state[:, 0]))
    torch.testing.assert_close(out.pooler_output, expected)


@settings(max_examples=15, deadline=None)
@given(lengths=st.lists(st.integers(1, 12), min_size=2, max_size=4), seed=st.integers(0, 1000))
def test_padding_never_changes_outputs_at_real_positions(lengths, seed):
    torch.manual_seed(0)
    model = BertForPreTraining(CONFIG).eval()
    T = max(lengths)
    ids, types = batch(len(lengths), T, seed)
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
    padded = model(ids, mask, types, output_attentions=True)
    for row, n in enumerate(lengths):
        alone = model(ids[row : row + 1, :n], token_type_ids=types[row : row + 1, :n])
        torch.testing.assert_close(padded.logits[row, :n], alone.logits[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            padded.pair_logits[row], alone.pair_logits[0], rtol=1e-4, atol=1e-5
        )
        assert all(torch.all(a[row, :, :, n:] == 0) for a in padded.attentions)  # no weight on pads


def test_pretraining_loss_is_mlm_on_chosen_positions_plus_nsp():
    model = BertForPreTraining(CONFIG).eval()
    ids, types = batch()
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    nsp = torch.tensor([0, 1, 1])
    out = model(ids, token_type_ids=types, labels=labels, next_sentence_label=nsp)
    mlm = F.cross_entropy(out.logits[:, 2], ids[:, 2])
    expected = mlm + F.cross_entropy(out.pair_logits, nsp)
    torch.testing.assert_close(out.loss, expected)
    only_mlm = model(ids, token_type_ids=types, labels=labels).loss
    torch.testing.assert_close(only_mlm, mlm)
    nothing_chosen = model(ids, labels=torch.full_like(ids, -100)).loss
    assert nothing_chosen.item() == 0.0  # not NaN


def test_sequence_classification_logits_and_loss():
    model = BertForSequenceClassification(CONFIG, n_classes=5).eval()
    assert model.config.n_classes == 5
    ids, _ = batch()
    labels = torch.tensor([0, 4, 2])
    out = model(ids, labels=labels, output_attentions=True)
    assert out.logits.shape == (3, 5) and len(out.attentions) == L
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))
    with pytest.raises(ValueError, match="labels"):
        model(ids, labels=torch.tensor([0, 5, 1]))


def test_bad_inputs_raise_clear_errors():
    model = BertForPreTraining(CONFIG)
    ids, types = batch()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(ids + V)
    with pytest.raises(TypeError, match="integer"):
        model(ids.float())
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids, attention_mask=torch.ones(3, 9))
    with pytest.raises(ValueError, match="token_type_ids"):
        model(ids, token_type_ids=types[:, :-1])
    with pytest.raises(ValueError, match="token_type_ids"):
        model(ids, token_type_ids=types + 1)  # segment 2 with type_vocab_size 2
    with pytest.raises(ValueError, match="labels"):
        model(ids, labels=ids[:, :-1])
    with pytest.raises(ValueError, match="next_sentence_label"):
        model(ids, next_sentence_label=torch.tensor([0, 2, 1]))


def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="n_heads"):
        BertConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="type_vocab_size"):
        BertConfig(type_vocab_size=0)
    with pytest.raises(ValueError, match="pad_id"):
        BertConfig(vocab_size=10, pad_id=10)
    tiny = BertConfig(**BERT_PRESETS["tiny"], vocab_size=V)
    assert (tiny.d_model, tiny.n_layers, tiny.norm_eps, tiny.activation) == (128, 2, 1e-12, "gelu")


def test_bert_base_has_bert_base_parameter_count():
    with torch.device("meta"):  # shapes only: no memory, no time
        model = BertModel(BertConfig(**BERT_PRESETS["base"]))
    assert sum(p.numel() for p in model.parameters()) == 109_482_240  # HF BertModel, bert-base


def test_mlm_learns_to_fill_in_a_periodic_pattern():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=20, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=16)
    model = BertForPreTraining(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)

    def sequences(n):  # each row repeats a random 3-token motif: a masked token is predictable
        motif = torch.randint(4, 20, (n, 3), generator=g)
        return motif.repeat(1, 5)  # [n, 15]

    for _ in range(300):
        masked, labels = mask_tokens(sequences(32), 3, 20, {0, 1, 2, 3}, generator=g)
        loss = model(masked, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    masked, labels = mask_tokens(sequences(256), 3, 20, {0, 1, 2, 3}, generator=g)
    with torch.no_grad():
        pred = model(masked).logits.argmax(-1)
    chosen = labels != -100
    accuracy = (pred[chosen] == labels[chosen]).float().mean().item()
    assert accuracy > 0.9  # chance is 1/16
