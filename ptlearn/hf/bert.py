"""BERT and ALBERT: HF config and weight names to ptlearn's, and back (``to_hf``, BERT only).

HF BERT layer i lives at ``encoder.layer.{i}``; HF ALBERT keeps its shared layer once, at
``encoder.albert_layer_groups.0.albert_layers.0`` (num_hidden_groups=1), or one per layer
(num_hidden_groups=num_hidden_layers). The renaming is a table per layer
(:func:`bert_layer_names`, :func:`albert_layer_names`) plus the embeddings, the pooler and the
heads of each class; ``.weight``/``.bias`` are appended to both sides. HF's separate query, key
and value are then stacked into ptlearn's one ``qkv_proj`` (:func:`~ptlearn.hf.convertible.stack_qkv`).

Each ptlearn class binds one converter below as its ``hf_converter`` (``BERT_MODEL``,
``BERT_FOR_PRETRAINING``, ...): the converter knows where that class keeps its backbone and heads,
so nothing is looked up by class name. Imports: ``ptlearn.hf.convertible``; never
``ptlearn.models`` (the config class arrives as an argument).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .convertible import (
    ACT_TO_HF,
    activation_from_hf,
    check_model_type,
    check_supported,
    n_classes_from_hf,
    stack_qkv,
    unstack_qkv,
)

Tensor = torch.Tensor

# values HF omits from config.json when they are its defaults
_BERT_HF_DEFAULTS = dict(
    max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.1
)
_ALBERT_HF_DEFAULTS = dict(
    _BERT_HF_DEFAULTS, hidden_act="gelu_new", num_hidden_groups=1, inner_group_num=1
)
EMBEDDING_NAMES = {  # ptlearn Embeddings submodule -> HF embeddings submodule
    "token": "word_embeddings",
    "position": "position_embeddings",
    "segment": "token_type_embeddings",
    "norm": "LayerNorm",
}
_ALWAYS_IGNORED = ("embeddings.position_ids", "embeddings.token_type_ids")  # HF buffers
_OLD_NAMES = {"LayerNorm.gamma": "LayerNorm.weight", "LayerNorm.beta": "LayerNorm.bias"}  # TF-era


def bert_layer_names(i: int) -> dict[str, str]:
    """ptlearn module -> HF module for BERT layer i (``.weight``/``.bias`` appended to both)."""
    ours, hf = f"encoder.layers.{i}", f"encoder.layer.{i}"
    return {
        f"{ours}.attn.q_proj": f"{hf}.attention.self.query",
        f"{ours}.attn.k_proj": f"{hf}.attention.self.key",
        f"{ours}.attn.v_proj": f"{hf}.attention.self.value",
        f"{ours}.attn.out_proj": f"{hf}.attention.output.dense",  # W_O: mixes the heads
        f"{ours}.norm_attn": f"{hf}.attention.output.LayerNorm",  # post-norm after attention
        f"{ours}.ffn.fc_in": f"{hf}.intermediate.dense",  # C -> d_ff
        f"{ours}.ffn.fc_out": f"{hf}.output.dense",  # d_ff -> C
        f"{ours}.norm_ffn": f"{hf}.output.LayerNorm",  # post-norm after the FFN
    }


def albert_layer_names(i: int, group: int) -> dict[str, str]:
    """ptlearn module -> HF module for ALBERT layer i, whose weights sit in HF layer group
    ``group`` (0 for every layer when all layers share one)."""
    ours, hf = f"encoder.layers.{i}", f"encoder.albert_layer_groups.{group}.albert_layers.0"
    return {
        f"{ours}.attn.q_proj": f"{hf}.attention.query",
        f"{ours}.attn.k_proj": f"{hf}.attention.key",
        f"{ours}.attn.v_proj": f"{hf}.attention.value",
        f"{ours}.attn.out_proj": f"{hf}.attention.dense",
        f"{ours}.norm_attn": f"{hf}.attention.LayerNorm",
        f"{ours}.ffn.fc_in": f"{hf}.ffn",
        f"{ours}.ffn.fc_out": f"{hf}.ffn_output",
        f"{ours}.norm_ffn": f"{hf}.full_layer_layer_norm",
    }


def encoder_config_fields(hf: dict, model_type: str) -> dict:
    """The config fields BERT and ALBERT share, from HF's names to ptlearn's."""
    check_model_type(hf, model_type)
    check_supported(hf, {"position_embedding_type": "absolute", "is_decoder": False})
    return dict(
        vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        d_ff=hf["intermediate_size"],
        max_len=hf["max_position_embeddings"],
        type_vocab_size=hf["type_vocab_size"],
        dropout=hf["hidden_dropout_prob"],
        activation=activation_from_hf(hf["hidden_act"]),
        norm_eps=hf["layer_norm_eps"],
        pad_id=hf.get("pad_token_id") or 0,
        n_classes=n_classes_from_hf(hf),
    )


def bert_config_to_hf(config) -> dict:
    """ptlearn BertConfig -> keyword arguments of ``transformers.BertConfig`` (eager attention)."""
    return dict(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        intermediate_size=config.d_ff,
        max_position_embeddings=config.max_len,
        type_vocab_size=config.type_vocab_size,
        hidden_act=ACT_TO_HF[config.activation],
        layer_norm_eps=config.norm_eps,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        pad_token_id=config.pad_id,
        num_labels=config.n_classes,
        attn_implementation="eager",  # sdpa would return no attention maps
    )


def _rename_from_hf(hf_state: dict, pairs: list, base_prefix: str, ignored: tuple) -> dict:
    """HF tensors under ptlearn names. HF tensors with no place in this model keep their HF names,
    so :func:`~ptlearn.hf.convertible.load_state_dict_strict` reports them as unexpected keys."""
    state = {}
    for key, tensor in hf_state.items():
        key = key.removeprefix(base_prefix)
        for old, new in _OLD_NAMES.items():
            key = key.replace(old, new)
        state[key] = tensor
    ours = {o: state[h] for o, h in pairs if h in state}
    used = {h for _, h in pairs}
    leftover = {k: t for k, t in state.items() if k not in used and not k.startswith(ignored)}
    return ours | leftover


@dataclass(frozen=True)
class BertConverter:
    """Conversion for one ptlearn BERT class: where it keeps its backbone and heads in HF terms."""

    hf_class: str  # the transformers class with the same heads (``to_hf`` builds one)
    backbone: str  # our backbone attribute: "" for the bare model, "bert." under heads
    heads: dict[str, str] = field(default_factory=dict)  # our head module -> HF head module
    ignored: tuple[str, ...] = ()  # HF key prefixes this class may ignore: heads it lacks, ties
    model_type: ClassVar[str] = "bert"

    def config_from_hf(self, hf: dict, config_class: type):
        return config_class(**encoder_config_fields({**_BERT_HF_DEFAULTS, **hf}, "bert"))

    def layer_names(self, i: int, config) -> dict[str, str]:
        return bert_layer_names(i)

    def extra_names(self) -> dict[str, str]:
        return {"pooler.dense": "pooler.dense"}

    def weight_pairs(self, config) -> list[tuple[str, str]]:
        """``[(ptlearn tensor name, HF tensor name without the base prefix)]``."""
        modules = {f"embeddings.{o}": f"embeddings.{h}" for o, h in EMBEDDING_NAMES.items()}
        modules |= self.extra_names()
        for i in range(config.n_layers):
            modules |= self.layer_names(i, config)
        suffixes = (".weight", ".bias")
        pairs = [(self.backbone + o + s, h + s) for o, h in modules.items() for s in suffixes]
        pairs += [(o + s, h + s) for o, h in self.heads.items() for s in suffixes]
        if "mlm.decoder" in self.heads:  # tied: the decoder's weight is the token embedding matrix
            pairs.append(("mlm.decoder.weight", "embeddings.word_embeddings.weight"))
        return pairs

    def weights_from_hf(self, hf_state: dict[str, Tensor], config) -> dict[str, Tensor]:
        ignored = _ALWAYS_IGNORED + self.ignored
        pairs, prefix = self.weight_pairs(config), f"{self.model_type}."
        return stack_qkv(_rename_from_hf(hf_state, pairs, prefix, ignored))

    def to_hf(self, model: nn.Module) -> nn.Module:
        """The HF ``transformers`` twin of a ptlearn BERT (``hf_class``), holding its weights."""
        import transformers

        hf_config = transformers.BertConfig(**bert_config_to_hf(model.config))
        hf_model = getattr(transformers, self.hf_class)(hf_config)
        hf_keys, ours = set(hf_model.state_dict()), unstack_qkv(model.state_dict())
        state = {}
        for o, h in self.weight_pairs(model.config):
            key = h if h in hf_keys else f"bert.{h}"
            if key in hf_keys and o in ours:
                state[key] = ours[o]
        missing, unexpected = hf_model.load_state_dict(state, strict=False)
        missing = [
            k for k in missing if ".decoder." not in k
        ]  # tied to embeddings and bias: loaded
        if missing or unexpected:
            raise ValueError(f"to_hf could not fill {missing} (unexpected: {unexpected}).")
        return hf_model.eval()


@dataclass(frozen=True)
class AlbertConverter(BertConverter):
    """ALBERT: BERT's layout with a factorized embedding projection and grouped (shared) layers."""

    model_type: ClassVar[str] = "albert"

    def config_from_hf(self, hf: dict, config_class: type):
        """HF ALBERT groups layers; ptlearn supports one group for all layers (``share="all"``)
        and one group per layer (``share="none"``), each group holding one layer."""
        hf = {**_ALBERT_HF_DEFAULTS, **hf}
        groups, inner = hf["num_hidden_groups"], hf["inner_group_num"]
        if inner != 1 or groups not in (1, hf["num_hidden_layers"]):
            raise ValueError(
                f"ALBERT with num_hidden_groups={groups}, inner_group_num={inner} is not "
                f"supported: ptlearn reads num_hidden_groups=1 (share='all') or "
                f"=num_hidden_layers (share='none'), with inner_group_num=1."
            )
        share = "all" if groups == 1 else "none"
        fields = encoder_config_fields(hf, "albert")
        return config_class(**fields, d_embed=hf["embedding_size"], share=share)

    def layer_names(self, i: int, config) -> dict[str, str]:
        return albert_layer_names(i, group=0 if config.share == "all" else i)

    def extra_names(self) -> dict[str, str]:
        return {"project": "encoder.embedding_hidden_mapping_in", "pooler.dense": "pooler"}

    def to_hf(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError("to_hf is implemented for BERT and GPT-2 only.")


BERT_MODEL = BertConverter("BertModel", "", {}, ("cls.", "classifier."))
BERT_FOR_PRETRAINING = BertConverter(
    "BertForPreTraining",
    "bert.",
    {
        "mlm.dense": "cls.predictions.transform.dense",
        "mlm.norm": "cls.predictions.transform.LayerNorm",
        "mlm.decoder": "cls.predictions",  # bias; the weight is tied to the embeddings
        "pair_head": "cls.seq_relationship",
    },
    ("cls.predictions.decoder.",),
)
BERT_FOR_SEQUENCE_CLASSIFICATION = BertConverter(
    "BertForSequenceClassification", "bert.", {"classifier": "classifier"}
)
ALBERT_MODEL = AlbertConverter(
    "AlbertModel", "", {}, ("predictions.", "sop_classifier.", "classifier.")
)
ALBERT_FOR_PRETRAINING = AlbertConverter(
    "AlbertForPreTraining",
    "albert.",
    {
        "mlm.dense": "predictions.dense",
        "mlm.norm": "predictions.LayerNorm",
        "mlm.decoder": "predictions",
        "pair_head": "sop_classifier.classifier",
    },
    ("predictions.decoder.",),
)
ALBERT_FOR_SEQUENCE_CLASSIFICATION = AlbertConverter(
    "AlbertForSequenceClassification", "albert.", {"classifier": "classifier"}
)


def bert_to_hf(model: nn.Module) -> nn.Module:
    """The HF ``transformers`` twin of a ptlearn BERT, holding its weights."""
    return model.hf_converter.to_hf(model)
