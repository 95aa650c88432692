"""BERT and ALBERT against HF transformers: every logit, hidden state and attention map equal.

HF models are randomly initialised and their weights redrawn from N(0, 0.25) (LayerNorm gains
around 1), so attention is far from uniform and a wrong mapping cannot hide behind averages.
"""

import json
import pickle

import pytest
import torch
from parity import ATTENTION, assert_all_parity, assert_parity
from torch import nn

from ptlearn.models import (
    ALBERT_PRESETS,
    BERT_PRESETS,
    AlbertConfig,
    AlbertForPreTraining,
    AlbertForSequenceClassification,
    AlbertModel,
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
)

transformers = pytest.importorskip("transformers", reason="HF parity tests need transformers")


BERT_CONFIGS = [  # vary layers, heads, widths, activation, eps and segment count
    dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    dict(
        hidden_size=24, num_hidden_layers=3, num_attention_heads=2, intermediate_size=50,
        hidden_act="gelu_new", layer_norm_eps=1e-5,
    ),
    dict(
        hidden_size=48, num_hidden_layers=1, num_attention_heads=8, intermediate_size=96,
        hidden_act="relu", layer_norm_eps=1e-6, type_vocab_size=3,
    ),
]  # fmt: skip
ALBERT_CONFIGS = [  # num_hidden_groups=1 is share="all"; = num_hidden_layers is share="none"
    dict(embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
         intermediate_size=64),
    dict(embedding_size=24, hidden_size=48, num_hidden_layers=2, num_attention_heads=6,
         intermediate_size=80, hidden_act="gelu", layer_norm_eps=1e-7, num_hidden_groups=2),
    dict(embedding_size=8, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
         intermediate_size=40, hidden_act="relu", layer_norm_eps=1e-5),
]  # fmt: skip
BERT_PAIRS = [  # (HF class name, ptlearn class, pair-logits field)
    ("BertForPreTraining", BertForPreTraining, "seq_relationship_logits"),
    ("BertModel", BertModel, None),
    ("BertForSequenceClassification", BertForSequenceClassification, None),
]
ALBERT_PAIRS = [
    ("AlbertForPreTraining", AlbertForPreTraining, "sop_logits"),
    ("AlbertModel", AlbertModel, None),
    ("AlbertForSequenceClassification", AlbertForSequenceClassification, None),
]


def hf_model(family: str, cls_name: str, **overrides):
    config_cls = transformers.BertConfig if family == "bert" else transformers.AlbertConfig
    config = config_cls(
        vocab_size=101, max_position_embeddings=24, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, attn_implementation="eager", **overrides,
        num_labels=3 if "Classification" in cls_name else 2,  # HF's SOP head has num_labels outputs
    )  # fmt: skip
    torch.manual_seed(0)
    return redraw(getattr(transformers, cls_name)(config))


def redraw(model: nn.Module) -> nn.Module:
    """Every parameter ~ N(0, 0.25), LayerNorm gains ~ N(1, 0.25): peaked attention."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.25)
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.add_(1.0)
    return model.eval()


def inputs(type_vocab_size=2):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 101, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # padding in the batch
    mask[2, 4:] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = type_vocab_size - 1
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def run_both(ours, theirs, batch):
    with torch.no_grad():
        a = ours(**batch, output_attentions=True, output_hidden_states=True)
        b = theirs(**batch, output_attentions=True, output_hidden_states=True)
    return a, b


def assert_same_outputs(a, b, pair_field=None):
    """Every output of ptlearn (a) equals HF's (b): logits, pair logits, states, attentions."""
    expected_logits = getattr(b, "prediction_logits", None)
    if expected_logits is None:
        expected_logits = getattr(b, "logits", None)
    if expected_logits is not None:
        assert_parity(a.logits, expected_logits, "logits")
    if pair_field:
        assert_parity(a.pair_logits, getattr(b, pair_field), pair_field)
    if hasattr(b, "last_hidden_state"):
        assert_parity(a.last_hidden_state, b.last_hidden_state, "last_hidden_state")
        assert_parity(a.pooler_output, b.pooler_output, "pooler_output")
    assert_all_parity(a.hidden_states, b.hidden_states, "hidden_states")
    assert_all_parity(a.attentions, b.attentions, "attentions", **ATTENTION)
    top = torch.stack([att.max(-1).values.mean() for att in b.attentions]).mean()
    assert top > 2 / a.attentions[0].size(-1)  # far from uniform attention


@pytest.mark.parametrize("overrides", BERT_CONFIGS)
@pytest.mark.parametrize("hf_name, cls, pair_field", BERT_PAIRS)
def test_bert_from_hf_matches_every_output(hf_name, cls, pair_field, overrides):
    theirs = hf_model("bert", hf_name, **overrides)
    ours = cls.from_hf(theirs)
    batch = inputs(overrides.get("type_vocab_size", 2))
    assert_same_outputs(*run_both(ours, theirs, batch), pair_field)


@pytest.mark.parametrize("overrides", ALBERT_CONFIGS)
@pytest.mark.parametrize("hf_name, cls, pair_field", ALBERT_PAIRS)
def test_albert_from_hf_matches_every_output(hf_name, cls, pair_field, overrides):
    theirs = hf_model("albert", hf_name, **overrides)
    ours = cls.from_hf(theirs)
    expected_share = "none" if overrides.get("num_hidden_groups", 1) > 1 else "all"
    assert ours.config.share == expected_share
    assert_same_outputs(*run_both(ours, theirs, inputs()), pair_field)


def test_configs_convert_names_activation_and_eps():
    ours = BertModel.from_hf(hf_model("bert", "BertModel", **BERT_CONFIGS[1])).config
    assert (ours.d_model, ours.n_layers, ours.n_heads, ours.d_ff) == (24, 3, 2, 50)
    assert (ours.activation, ours.norm_eps, ours.max_len) == ("gelu_tanh", 1e-5, 24)
    albert = AlbertModel.from_hf(hf_model("albert", "AlbertModel", **ALBERT_CONFIGS[0])).config
    assert (albert.d_embed, albert.activation, albert.norm_eps) == (16, "gelu_tanh", 1e-12)


@pytest.mark.parametrize(
    "family, hf_name, cls, pair_field",
    [("bert", *BERT_PAIRS[0]), ("bert", *BERT_PAIRS[1]), ("albert", *ALBERT_PAIRS[0])],
)
def test_from_pretrained_reads_a_save_pretrained_directory(
    family, hf_name, cls, pair_field, tmp_path
):
    overrides = (BERT_CONFIGS if family == "bert" else ALBERT_CONFIGS)[1]
    theirs = hf_model(family, hf_name, **overrides)
    theirs.save_pretrained(tmp_path)
    ours = cls.from_pretrained(tmp_path)
    assert_same_outputs(*run_both(ours, theirs, inputs()), pair_field)


def test_backbone_loads_from_a_pretraining_checkpoint(tmp_path):
    theirs = hf_model("bert", "BertForPreTraining", **BERT_CONFIGS[0])
    theirs.save_pretrained(tmp_path)
    backbone = BertModel.from_pretrained(tmp_path)  # the heads are left out
    a, b = run_both(backbone, theirs.bert, inputs())
    assert_same_outputs(a, b)


@pytest.mark.parametrize("cls", [BertForPreTraining, BertModel, BertForSequenceClassification])
def test_to_hf_round_trip(cls):
    config = BertConfig(vocab_size=101, d_model=32, n_layers=2, n_heads=4, d_ff=48, max_len=24)
    torch.manual_seed(3)
    ours = redraw(cls(config))
    theirs = ours.to_hf()
    assert type(theirs).__name__ == cls.__name__
    pair_field = "seq_relationship_logits" if cls is BertForPreTraining else None
    assert_same_outputs(*run_both(ours, theirs, inputs()), pair_field)
    back = cls.from_hf(theirs)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in ours.state_dict().items())


def test_config_that_does_not_fit_the_weights_lists_the_mismatched_keys(tmp_path):
    hf_model("bert", "BertForPreTraining", **BERT_CONFIGS[0]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(intermediate_size=65, num_hidden_layers=1)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit") as err:
        BertForPreTraining.from_pretrained(tmp_path)
    message = str(err.value)
    assert (
        "bert.encoder.layers.0.ffn.fc_in.weight: model expects (65, 32)" in message
    )  # shape mismatch
    assert "encoder.layer.1.attention.self.query.weight" in message  # weights with no place


def test_a_checkpoint_of_another_family_is_refused(tmp_path):
    hf_model("albert", "AlbertModel", **ALBERT_CONFIGS[0]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'albert' model, not 'bert'"):
        BertModel.from_pretrained(tmp_path)


class RunsCode:
    """Unpickling this object would call ``open(marker, "w")``: arbitrary code execution."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_weights_are_refused_and_never_run(tmp_path):
    hf_model("bert", "BertModel", **BERT_CONFIGS[0]).config.to_json_file(tmp_path / "config.json")
    marker = tmp_path / "pwned"
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps({"w": RunsCode(marker)}, protocol=2))
    with pytest.raises(ValueError, match="allow_pickle"):
        BertModel.from_pretrained(tmp_path)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # opted in: still weights_only=True
        BertModel.from_pretrained(tmp_path, allow_pickle=True)
    assert not marker.exists()


def test_parameter_counts_equal_hf_for_base_shapes():
    with torch.device("meta"):  # shapes only
        hf_bert = transformers.BertModel(transformers.BertConfig())
        hf_albert = transformers.AlbertModel(transformers.AlbertConfig(**ALBERT_BASE_HF))
        bert = BertModel(BertConfig(**BERT_PRESETS["base"]))
        albert = AlbertModel(AlbertConfig(**ALBERT_PRESETS["base"]))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(bert) == count(hf_bert) == 109_482_240
    assert count(albert) == count(hf_albert) == 11_683_584


ALBERT_BASE_HF = dict(  # albert-base-v2's shapes
    vocab_size=30000, embedding_size=128, hidden_size=768, num_hidden_layers=12,
    num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
)  # fmt: skip
