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
import torch.nn.functional as F
from torch import nn

from ..config import BaseConfig, check_positive_int
from ..hf import HFConvertible, bert_to_hf
from ..layers import Embeddings, TransformerBlock, activation_layer
from ..outputs import ModelOutput
from ..transformer import Encoder
from ..validation import check_index_range, check_same_shape

Tensor = torch.Tensor


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


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation (use with ``module.apply``): weights ~ N(0, 0.02), biases 0, and
    LayerNorms start as the identity. Small weights keep early logits near uniform."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Pooler(nn.Module):
    """Sentence vector = tanh(W h_[CLS] + b): the final hidden state of the first token, passed
    through one dense layer. ``[B, T, C] -> [B, C]``."""

    def __init__(self, d_model: int):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # [B, C]


class MaskedLMHead(nn.Module):
    """Vocabulary scores at every position: dense -> activation -> LayerNorm -> decoder.

    The decoder's weight IS the token embedding matrix (tied), plus its own output bias: the score
    of token v is the dot product of the transformed hidden state with v's input embedding. The
    head works at the embedding's width, so ALBERT's factorized embedding (width E < C) reuses it.
    """

    def __init__(self, d_model: int, embedding: nn.Embedding, activation: str, norm_eps: float):
        super().__init__()
        vocab_size, d_embed = embedding.weight.shape
        self.dense = nn.Linear(d_model, d_embed)
        self.act = activation_layer(activation)
        self.norm = nn.LayerNorm(d_embed, eps=norm_eps)
        self.decoder = nn.Linear(d_embed, vocab_size)
        self.decoder.weight = embedding.weight  # tie: one [vocab, d_embed] matrix, two uses

    def forward(self, hidden: Tensor) -> Tensor:
        h = self.norm(self.act(self.dense(hidden)))  # [B, T, d_embed]
        return self.decoder(h)  # [B, T, vocab]


def masked_lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over the chosen positions only (label -100 elsewhere); 0 if none is chosen."""
    total = F.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
    )
    return total / (labels != -100).sum().clamp(min=1)


def pretraining_loss(logits, labels, pair_logits, pair_labels, input_ids, pair_name: str):
    """MLM loss (when ``labels`` are given) + sentence-pair loss (when ``pair_labels`` are given)."""
    losses = []
    if labels is not None:
        check_same_shape(labels, input_ids, "labels")
        losses.append(masked_lm_loss(logits, labels))
    if pair_labels is not None:
        check_same_shape(pair_labels, input_ids[:, 0], pair_name, "input_ids[:, 0] (one per pair)")
        check_index_range(pair_labels, 2, pair_name)
        losses.append(F.cross_entropy(pair_logits, pair_labels))
    return sum(losses) if losses else None


def classification_output(out: ModelOutput, logits: Tensor, labels: Tensor | None) -> ModelOutput:
    """Attach sentence-level ``logits [B, n_classes]`` (and their cross-entropy) to an encoder output."""
    loss = None
    if labels is not None:
        check_same_shape(labels, logits[:, 0], "labels", "the batch (one label per sequence)")
        check_index_range(labels, logits.size(-1), "labels")
        loss = F.cross_entropy(logits, labels)
    return replace(out, loss=loss, logits=logits)


class BertModel(HFConvertible, nn.Module):
    """Embeddings -> post-norm encoder -> pooler. Returns ``last_hidden_state [B, T, C]`` and
    ``pooler_output [B, C]`` (plus ``attentions``/``hidden_states`` on request)."""

    hf_family = "bert"

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = c = config
        self.embeddings = Embeddings(
            c.vocab_size, c.d_model, c.max_len, c.type_vocab_size,
            layer_norm=True, norm_eps=c.norm_eps, dropout=c.dropout,
        )  # fmt: skip
        blocks = [
            TransformerBlock(
                c.d_model, c.n_heads, c.d_ff, c.dropout, c.activation, c.norm_eps, norm_first=False
            )
            for _ in range(c.n_layers)
        ]
        self.encoder = Encoder(blocks)
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
        return bert_to_hf(self)


class BertForPreTraining(HFConvertible, nn.Module):
    """BERT with both pretraining heads: ``.logits`` = MLM scores ``[B, T, vocab]``,
    ``.pair_logits`` = NSP scores ``[B, 2]`` (label 0 = B follows A, 1 = B is random).

    ``loss`` = MLM cross-entropy over the masked positions (``labels``, -100 elsewhere) + NSP
    cross-entropy (``next_sentence_label``), each when given.
    """

    hf_family = "bert"

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = c = config
        self.bert = BertModel(c)
        self.mlm = MaskedLMHead(c.d_model, self.bert.embeddings.token, c.activation, c.norm_eps)
        self.pair_head = nn.Linear(c.d_model, 2)  # NSP: IsNext / NotNext from the pooled [CLS]
        for head in (self.mlm.dense, self.mlm.norm, self.pair_head):
            head.apply(init_weights)
        nn.init.zeros_(self.mlm.decoder.bias)

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
        return bert_to_hf(self)


class BertForSequenceClassification(HFConvertible, nn.Module):
    """BERT + dropout + a linear layer on the pooled ``[CLS]`` vector: ``.logits [B, n_classes]``,
    cross-entropy ``loss`` against ``labels [B]``. ``n_classes`` overrides ``config.n_classes``."""

    hf_family = "bert"

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
        return bert_to_hf(self)
