"""ALBERT: factorized embeddings, the four sharing modes, SOP head, padding, and clear errors."""

import pytest
import torch
import torch.nn.functional as F

import ptlearn.models.albert as albert_module
from ptlearn.models import (
    ALBERT_PRESETS,
    AlbertConfig,
    AlbertForPreTraining,
    AlbertForSequenceClassification,
    AlbertModel,
)

V, E, C, L, H = 100, 16, 32, 3, 4


def config(**overrides):
    return AlbertConfig(
        **{**dict(vocab_size=V, d_embed=E, d_model=C, n_layers=L, n_heads=H, d_ff=64), **overrides}
    )


def n_params(model):
    return sum(p.numel() for p in model.parameters())  # shared parameters count once


def ids_batch(B=2, T=9):
    return torch.randint(1, V, (B, T), generator=torch.Generator().manual_seed(0))


def test_factorized_embedding_lives_at_width_e_and_projects_to_c():
    model = AlbertForPreTraining(config()).eval()
    assert model.albert.embeddings.token.weight.shape == (V, E)
    assert model.albert.project.weight.shape == (C, E)
    assert model.mlm.decoder.weight is model.albert.embeddings.token.weight  # tied, [V, E]
    out = model(ids_batch(), output_hidden_states=True)
    assert out.logits.shape == (2, 9, V) and out.pair_logits.shape == (2, 2)
    assert [h.shape for h in out.hidden_states] == [(2, 9, C)] * (L + 1)


def test_sharing_modes_share_exactly_the_named_sublayers():
    layers = {s: AlbertModel(config(share=s)).encoder.layers for s in albert_module.SHARING}
    assert all(block is layers["all"][0] for block in layers["all"])
    att, ffn, none = layers["attention"], layers["ffn"], layers["none"]
    assert att[1].attn is att[0].attn and att[1].norm_attn is att[0].norm_attn
    assert att[1].ffn is not att[0].ffn
    assert ffn[1].ffn is ffn[0].ffn and ffn[1].norm_ffn is ffn[0].norm_ffn
    assert ffn[1].attn is not ffn[0].attn
    assert none[1].attn is not none[0].attn and none[1].ffn is not none[0].ffn


def test_parameter_counts_follow_from_sharing():
    count = {s: n_params(AlbertModel(config(share=s))) for s in albert_module.SHARING}
    block = n_params(AlbertModel(config(share="none")).encoder.layers[0])
    assert count["none"] - count["all"] == (L - 1) * block  # "all" keeps one layer of L
    assert (
        count["all"] < count["attention"] < count["ffn"] < count["none"]
    )  # FFN is the bigger half
    # sharing attention and sharing the FFN are the two halves of sharing everything
    assert count["attention"] + count["ffn"] == count["all"] + count["none"]


def test_shared_layers_still_report_one_attention_map_per_application():
    model = AlbertModel(config(share="all")).eval()
    out = model(ids_batch(), output_attentions=True)
    assert [a.shape for a in out.attentions] == [(2, H, 9, 9)] * L
    assert not torch.allclose(out.attentions[0], out.attentions[1])  # same weights, new input


def test_albert_is_self_attention_only():
    # ALBERT has no "cross-attention decomposition" (nor any cross-attention)
    model = AlbertModel(config(share="none"))
    assert all(block.cross_attn is None for block in model.encoder.layers)
    doc = albert_module.__doc__
    for change in ("Factorized embedding", "Cross-layer parameter sharing", "sentence-order"):
        assert change in doc


def test_padding_never_changes_outputs_at_real_positions():
    model = AlbertForPreTraining(config()).eval()
    ids = ids_batch(2, 9)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    padded = model(ids, mask)
    alone = model(ids[1:, :5])
    torch.testing.assert_close(padded.logits[1, :5], alone.logits[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(padded.pair_logits[1], alone.pair_logits[0], rtol=1e-4, atol=1e-5)


def test_sop_and_mlm_losses():
    model = AlbertForPreTraining(config()).eval()
    ids = ids_batch()
    labels = torch.full_like(ids, -100)
    labels[:, 4] = ids[:, 4]
    order = torch.tensor([1, 0])
    out = model(ids, labels=labels, sentence_order_label=order)
    expected = F.cross_entropy(out.logits[:, 4], ids[:, 4]) + F.cross_entropy(
        out.pair_logits, order
    )
    torch.testing.assert_close(out.loss, expected)
    with pytest.raises(ValueError, match="sentence_order_label"):
        model(ids, sentence_order_label=torch.tensor([0, 1, 1]))


def test_sequence_classification():
    model = AlbertForSequenceClassification(config(share="ffn"), n_classes=3).eval()
    out = model(ids_batch(), labels=torch.tensor([2, 0]))
    assert out.logits.shape == (2, 3)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, torch.tensor([2, 0])))


def test_bad_config_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="'all', 'attention', 'ffn', 'none'"):
        AlbertConfig(share="layers")
    with pytest.raises(ValueError, match="d_embed"):
        AlbertConfig(d_embed=0)
    model = AlbertModel(config())
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[1, V]]))
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids_batch(), attention_mask=torch.ones(2, 8))


def test_albert_base_has_albert_base_parameter_count():
    with torch.device("meta"):
        model = AlbertModel(AlbertConfig(**ALBERT_PRESETS["base"]))
    assert n_params(model) == 11_683_584  # HF AlbertModel, albert-base-v2 (12M)
