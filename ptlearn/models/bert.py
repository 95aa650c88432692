"""BERT: a bidirectional Transformer encoder, pretrained by filling in blanks.

Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"
(2018), https://arxiv.org/abs/1810.04805.

A GPT reads left to right, so each position only knows its past. BERT drops the causal mask: every
token attends to every other token, left and right. Predicting the next token would then be
trivial (the model could just look), so BERT is pretrained on two other tasks (Fig. 1):

- masked language modelling (MLM): hide 15% of the tokens and predict them from both sides;
- next sentence prediction (NSP): given ``[CLS] A [SEP] B [SEP]``, is B the sentence that follows
  A in the corpus, or a random one? (see :mod:`ptlearn.objectives` for how batches are built).

The input representation (Fig. 2) is the sum of three embeddings, then LayerNorm and dropout:

    x = LayerNorm(token[id] + position[t] + segment[A or B])        # [B, T, C]

The encoder is the original post-norm Transformer stack: ``x = LayerNorm(x + sublayer(x))``.
Two small heads sit on top: the MLM head maps every position back to vocabulary scores with the
input embedding matrix itself (weight tying, Press & Wolf 2017, https://arxiv.org/abs/1608.05859),
and the pooler turns the final ``[CLS]`` vector into a sentence vector for NSP and classification.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..config import BaseConfig, check_positive_int
from ..hf import HFConvertible
from ..hf.bert import BERT_FOR_PRETRAINING, BERT_FOR_SEQUENCE_CLASSIFICATION, BERT_MODEL
from ..layers import Embeddings, MaskedLMHead, Pooler, blocks, init_weights
from ..objectives import masked_lm_loss, pretraining_loss
from ..outputs import ModelOutput, classification_output
from ..transformer import Encoder
from ..validation import check_same_shape

Tensor = torch.Tensor

# Moved to the shared modules (GPT, ALBERT and ELECTRA use them too); still importable from here.
__all__ = [
    "BERT_PRESETS",
    "BertConfig",
    "BertForPreTraining",
    "BertForSequenceClassification",
    "BertModel",
    "MaskedLMHead",
    "Pooler",
    "classification_output",
    "init_weights",
    "masked_lm_loss",
    "pretraining_loss",
]


@dataclass
class BertConfig(BaseConfig):
    """BERT's hyper-parameters; the defaults build a tiny model that trains in seconds on a CPU."""

    norm_eps: float = 1e-12  # HF BERT's LayerNorm epsilon
    type_vocab_size: int = 2  # segments: 0 = sentence A, 1 = sentence B
    pad_id: int = 0  # id of [PAD]; batch builders pad with it, to_hf writes it as pad_token_id
    n_classes: int = 2  # labels of BertForSequenceClassification

    def validate(self) -> None:
        super().validate()
        for name in ("type_vocab_size", "n_classes"):
            check_positive_int(self, name)
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(
                f"pad_id={self.pad_id} is outside the vocabulary [0, {self.vocab_size})."
            )


# Named shapes, used as ``BertConfig(**BERT_PRESETS["mini"], vocab_size=tokenizer.vocab_size)``.
# tiny/mini/small/medium are the compact BERTs of Turc et al. 2019 (https://arxiv.org/abs/1908.08962);
# base is BERT-base itself (110M parameters with its 30,522-token WordPiece vocabulary).
BERT_PRESETS = {
    "tiny": dict(d_model=128, n_layers=2, n_heads=2, d_ff=512),
    "mini": dict(d_model=256, n_layers=4, n_heads=4, d_ff=1024),
    "small": dict(d_model=512, n_layers=4, n_heads=8, d_ff=2048),
    "medium": dict(d_model=512, n_layers=8, n_heads=8, d_ff=2048),
    "base": dict(vocab_size=30522, d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_len=512),
}


class BertModel(HFConvertible, nn.Module):
    """Embeddings -> post-norm encoder -> pooler. Returns ``last_hidden_state [B, T, C]`` and
    ``pooler_output [B, C]`` (plus ``attentions``/``hidden_states`` on request)."""

    config_class = BertConfig
    hf_converter = BERT_MODEL

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = c = config
        self.embeddings = Embeddings(
            c.vocab_size, c.d_model, c.max_len, c.type_vocab_size,
            layer_norm=True, norm_eps=c.norm_eps, dropout=c.dropout,
        )  # fmt: skip
        self.encoder = Encoder(blocks(c, norm_first=False))
        self.pooler = Pooler(c.d_model)
        self.apply(init_weights)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """input_ids ``[B, T]``; attention_mask ``[B, T]`` (1 = token, 0 = padding); token_type_ids
        ``[B, T]`` (0 = sentence A, 1 = sentence B; default all 0)."""
        x = self.embeddings(input_ids, token_type_ids)  # [B, T, C]  (checks ids, length, segments)
        check_same_shape(attention_mask, input_ids, "attention_mask")
        out = self.encoder(x, attention_mask, output_attentions, output_hidden_states)
        out.pooler_output = self.pooler(out.last_hidden_state)  # [B, C]
        return out

    def to_hf(self):
        """The same weights in an HF ``transformers.BertModel`` (eager attention, eval mode)."""
        return self.hf_converter.to_hf(self)


class BertForPreTraining(HFConvertible, nn.Module):
    """BERT with both pretraining heads: ``.logits`` = MLM scores ``[B, T, vocab]``,
    ``.pair_logits`` = NSP scores ``[B, 2]`` (label 0 = B follows A, 1 = B is random).

    ``loss`` = MLM cross-entropy over the masked positions (``labels``, -100 elsewhere) + NSP
    cross-entropy (``next_sentence_label``), each when given.
    """

    config_class = BertConfig
    hf_converter = BERT_FOR_PRETRAINING

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = c = config
        self.bert = BertModel(c)
        self.mlm = MaskedLMHead(c.d_model, self.bert.embeddings.token, c.activation, c.norm_eps)
        self.pair_head = nn.Linear(c.d_model, 2)  # NSP: IsNext / NotNext from the pooled [CLS]
        self.mlm.reset_parameters()
        self.pair_head.apply(init_weights)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        next_sentence_label: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        out = self.bert(
            input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states
        )
        logits = self.mlm(out.last_hidden_state)  # [B, T, vocab]
        pair_logits = self.pair_head(out.pooler_output)  # [B, 2]
        loss = pretraining_loss(
            logits, labels, pair_logits, next_sentence_label, input_ids, "next_sentence_label"
        )
        return replace(out, loss=loss, logits=logits, pair_logits=pair_logits)

    def to_hf(self):
        """The same weights in an HF ``transformers.BertForPreTraining`` (eager, eval mode)."""
        return self.hf_converter.to_hf(self)


class BertForSequenceClassification(HFConvertible, nn.Module):
    """BERT + dropout + a linear layer on the pooled ``[CLS]`` vector: ``.logits [B, n_classes]``,
    cross-entropy ``loss`` against ``labels [B]``. ``n_classes`` overrides ``config.n_classes``."""

    config_class = BertConfig
    hf_converter = BERT_FOR_SEQUENCE_CLASSIFICATION

    def __init__(self, config: BertConfig, n_classes: int | None = None):
        super().__init__()
        if n_classes is not None:
            config = replace(config, n_classes=n_classes)  # validated again
        self.config = c = config
        self.bert = BertModel(c)
        self.dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.d_model, c.n_classes)
        self.classifier.apply(init_weights)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        out = self.bert(
            input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states
        )
        logits = self.classifier(self.dropout(out.pooler_output))  # [B, n_classes]
        return classification_output(out, logits, labels)

    def to_hf(self):
        """The same weights in an HF ``transformers.BertForSequenceClassification``."""
        return self.hf_converter.to_hf(self)
