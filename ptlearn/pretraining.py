"""Chapter 08's pretraining objectives as tasks on one backbone size.

Each objective of :data:`OBJECTIVES` becomes a :class:`PretrainTask`: a model and a batch function
of the same backbone shape, so that only the objective changes between runs. The chapter compares
four: causal LM (GPT, autoregressive), masked LM (BERT, autoencoding), span corruption (T5, on
:class:`~ptlearn.EncoderDecoder`; the transforms are in :mod:`ptlearn.objectives`) and
replaced-token detection (ELECTRA, :mod:`ptlearn.models.electra`); MLM + sentence order (ALBERT's
objective, on BERT's encoder) and supervised pretraining on labels are built the same way.
:func:`pretrain_objective` builds each one; :func:`backbone_of` extracts the encoder that
downstream tasks read. Evaluation (zero-shot, linear probe, fine-tuning, baselines) and the study
loop are in :mod:`ptlearn.study`.

This is course code for one experiment, above the core: it imports models, objectives, data and
fine-tuning, and nothing in the core imports it. The ELECTRA, span-corruption and batch names
chapter 08 uses are re-exported here, so ``from ptlearn.pretraining import Electra`` keeps working.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from .data import random_lm_batch
from .data.batches import (
    labeled_batch,
    mlm_batch,
    sop_batch,
    span_batch,
    span_corruption_batch,
    wrap_window,
)
from .finetune import SequenceClassifier
from .layers import init_weights
from .models import GPT, BertConfig, BertForPreTraining, BertModel, GPTConfig
from .models.electra import Electra, ElectraGenerator, replace_and_label, sample_at
from .objectives import (
    fill_spans,
    random_segmentation,
    random_spans_noise_mask,
    spans_to_sentinels,
)
from .transformer import EncoderDecoder, EncoderDecoderConfig

Tensor = torch.Tensor

__all__ = [
    "OBJECTIVES",
    "Backbone",
    "Electra",
    "ElectraGenerator",
    "PretrainTask",
    "backbone_of",
    "fill_spans",
    "labeled_batch",
    "mlm_batch",
    "pretrain_objective",
    "random_segmentation",
    "random_spans_noise_mask",
    "replace_and_label",
    "sample_at",
    "sop_batch",
    "span_batch",
    "span_corruption_batch",
    "spans_to_sentinels",
    "wrap_window",
]

OBJECTIVES = {
    "causal_lm": "causal LM (GPT)",
    "mlm": "masked LM (BERT)",
    "mlm_sop": "MLM + sentence order (ALBERT)",
    "rtd": "replaced-token detection (ELECTRA)",
    "span": "span corruption (T5)",
    "supervised": "supervised (labels)",
}


class Backbone(nn.Module):
    """Embeddings + a block stack with the ptlearn call convention and no pretraining head: GPT's
    decoder (no LM head to compute) or the encoder half of an :class:`~ptlearn.EncoderDecoder`."""

    def __init__(self, embeddings: nn.Module, stack: nn.Module):
        super().__init__()
        self.embeddings, self.stack = embeddings, stack

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        output_attentions=False,
        output_hidden_states=False,
    ):
        return self.stack(
            self.embeddings(input_ids, token_type_ids),
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )


@dataclass
class PretrainTask:
    """What :func:`pretrain_objective` builds: train ``model`` on ``batch_fn(generator)`` batches
    (``model(**batch).loss``), then read ``backbone_of(name, model)`` with ``pooling``.
    ``tokens_per_step`` counts the text tokens one batch shows the model."""

    name: str
    model: nn.Module
    batch_fn: object
    pooling: str
    tokens_per_step: float

    def backbone(self) -> nn.Module:
        return backbone_of(self.name, self.model)


def backbone_of(name: str, model: nn.Module) -> nn.Module:
    """The pretrained encoder the downstream tasks read, with the ptlearn call convention."""
    if name == "causal_lm":
        return Backbone(model.embeddings, model.decoder)
    if name in ("mlm", "mlm_sop"):
        return model.bert
    if name == "rtd":
        return model.discriminator
    if name == "span":
        return Backbone(model.src_embed, model.encoder)
    if name == "supervised":
        return model.encoder
    raise ValueError(f"Unknown objective {name!r}; choose one of {list(OBJECTIVES)}.")


def pretrain_objective(
    name: str,
    backbone: dict,
    tokenizer,
    stream: Tensor | None = None,
    labeled: tuple[list[list[int]], list[int]] | None = None,
    batch_size: int = 32,
    n_sentinels: int = 16,
) -> PretrainTask:
    """Model + batch function for objective ``name`` (:data:`OBJECTIVES`) at one backbone size.

    ``backbone``: ``d_model, n_layers, n_heads, d_ff, max_len`` (and optionally ``dropout``),
    shared by every objective; ``tokenizer``: a WordPiece :class:`~ptlearn.HFTokenizer`.
    The self-supervised objectives sample windows of ``W = max_len - 3`` tokens from ``stream``
    (1-D ids of the unlabelled corpus), so each step shows every one of them ``batch_size * W``
    text tokens; ``"supervised"`` needs ``labeled = (token-id lists, labels)``. The span objective
    gives the :class:`~ptlearn.EncoderDecoder` ``n_sentinels`` extra ids after the vocabulary,
    T5's "extra ids"; its encoder and decoder each have ``n_layers`` blocks.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"Unknown objective {name!r}; choose one of {list(OBJECTIVES)}.")
    V, W, B = tokenizer.vocab_size, backbone["max_len"] - 3, batch_size
    bert = BertConfig(**backbone, vocab_size=V, pad_id=tokenizer.pad_id)
    windows = (stream, W, B, tokenizer)
    if name == "causal_lm":
        model = GPT(GPTConfig(**backbone, vocab_size=V))
        return PretrainTask(
            name, model, functools.partial(random_lm_batch, stream, W, B), "last", B * W
        )
    if name in ("mlm", "mlm_sop", "rtd"):
        model = Electra(bert) if name == "rtd" else BertForPreTraining(bert)
        make = sop_batch if name == "mlm_sop" else mlm_batch
        return PretrainTask(name, model, functools.partial(make, *windows), "mean", B * W)
    if name == "span":
        # learned positions and BERT's N(0, 0.02) init, as in the other backbones (T5 itself
        # uses relative position biases; with sinusoids the tiny init would drown the tokens)
        config = EncoderDecoderConfig(
            **backbone, vocab_size=V + n_sentinels, pad_id=tokenizer.pad_id, positional="learned"
        )
        model = EncoderDecoder(config)
        model.apply(init_weights)
        sentinels = list(range(V, V + n_sentinels))  # T5's extra ids, after the vocabulary
        batch_fn = functools.partial(span_batch, *windows, sentinels)
        return PretrainTask(name, model, batch_fn, "mean", B * W)
    ids, labels = labeled  # "supervised": a classifier, pretrained like any other model
    model = SequenceClassifier(BertModel(bert), bert.d_model, max(labels) + 1, "mean")
    batch_fn = functools.partial(labeled_batch, ids, labels, B, tokenizer.pad_id)
    mean_len = sum(map(len, ids)) / len(ids)
    return PretrainTask(name, model, batch_fn, "mean", B * mean_len)
