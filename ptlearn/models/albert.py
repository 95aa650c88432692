"""ALBERT: BERT with far fewer parameters, from three changes.

Lan et al., "ALBERT: A Lite BERT for Self-supervised Learning of Language Representations" (2019),
https://arxiv.org/abs/1909.11942, section 3.1. Everything else is BERT (:mod:`ptlearn.models.bert`):
the same post-norm encoder blocks, the same attention, the same MLM objective. The changes are:

1. **Factorized embedding parameterization.** BERT's token embedding is ``vocab x C`` (the
   paper's H, the hidden width; here H always counts heads): with V = 30,000 and C = 768 that is
   23M parameters, and it grows with every widening of the model. ALBERT embeds tokens in a small
   space E (128) and projects up: ``vocab x E + E x C``, i.e. O(V E + E C) instead of O(V C) --
   3.9M + 0.1M at ALBERT-base sizes. Token, position and
   segment embeddings, their LayerNorm and the MLM decoder all live at width E.
2. **Cross-layer parameter sharing.** All layers can share one set of weights
   (``share="all"``, ALBERT's default): the 12-layer encoder then has the parameters of one
   layer, applied 12 times. The paper also ablates sharing only the attention sublayers
   (``"attention"``) or only the feed-forward sublayers (``"ffn"``); ``"none"`` is BERT's
   layout. Here a shared sublayer is shared together with the LayerNorm that follows it (as in
   HF's ALBERT, whose attention module owns its LayerNorm), so "attention" + "ffn" = "all".
   A shared layer is still *applied* n_layers times, so the model reports one attention map per
   application, n_layers in all.
3. **Inter-sentence coherence loss: sentence-order prediction (SOP) replaces NSP.** NSP's
   negatives come from another document, so a model can solve it by topic alone. SOP's negatives
   are the *same* two consecutive segments in swapped order, which only coherence can tell
   apart (:func:`ptlearn.objectives.sop_pairs`; label 0 = in order, 1 = swapped, as in HF).

That is the whole list. Some write-ups add a "cross-attention decomposition" to it: ALBERT has no
such thing. It is an encoder-only model with ordinary self-attention and no cross-attention at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..config import check_positive_int
from ..hf import HFConvertible
from ..hf.bert import ALBERT_FOR_PRETRAINING, ALBERT_FOR_SEQUENCE_CLASSIFICATION, ALBERT_MODEL
from ..layers import Embeddings, MaskedLMHead, Pooler, TransformerBlock, init_weights, new_block
from ..objectives import pretraining_loss
from ..outputs import ModelOutput, classification_output
from ..transformer import Encoder
from ..validation import check_same_shape
from .bert import BertConfig

Tensor = torch.Tensor

SHARING = ("all", "attention", "ffn", "none")


@dataclass
class AlbertConfig(BertConfig):
    """BERT's fields plus the embedding width ``d_embed`` (E) and the layer-sharing mode."""

    d_embed: int = 32  # E: width of the token/position/segment embeddings (E < d_model)
    share: str = "all"  # which parameters the layers share: "all", "attention", "ffn" or "none"
    activation: str = "gelu_tanh"  # released ALBERT v2 models use the tanh GELU (HF "gelu_new")

    def validate(self) -> None:
        super().validate()
        check_positive_int(self, "d_embed")
        if self.share not in SHARING:
            raise ValueError(
                f"share={self.share!r} is not a sharing mode; use one of {SHARING} "
                f"(all layers share everything / only attention / only the FFN / nothing)."
            )


# Named shapes, used as ``AlbertConfig(**ALBERT_PRESETS["base"])`` (Lan et al. 2019, Table 1).
ALBERT_PRESETS = {
    "tiny": dict(d_embed=64, d_model=128, n_layers=4, n_heads=2, d_ff=512),
    "base": dict(
        vocab_size=30000, d_embed=128, d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_len=512
    ),
    "large": dict(
        vocab_size=30000, d_embed=128, d_model=1024, n_layers=24, n_heads=16, d_ff=4096, max_len=512
    ),
}


def albert_blocks(c: AlbertConfig) -> list[TransformerBlock]:
    """``n_layers`` post-norm blocks whose parameters are shared as ``c.share`` says."""
    first = new_block(c, norm_first=False)
    if c.share == "all":
        return [first] * c.n_layers  # the same module n_layers times: one layer's parameters
    blocks = [first]
    for _ in range(c.n_layers - 1):
        block = new_block(c, norm_first=False)
        if c.share == "attention":  # one attention sublayer (and its LayerNorm) for every layer
            block.attn, block.norm_attn = first.attn, first.norm_attn
        elif c.share == "ffn":  # one feed-forward sublayer (and its LayerNorm) for every layer
            block.ffn, block.norm_ffn = first.ffn, first.norm_ffn
        blocks.append(block)
    return blocks


class AlbertModel(HFConvertible, nn.Module):
    """Embeddings at width E -> Linear E -> C -> post-norm encoder with shared layers -> pooler."""

    config_class = AlbertConfig
    hf_converter = ALBERT_MODEL

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.config = c = config
        self.embeddings = Embeddings(
            c.vocab_size, c.d_embed, c.max_len, c.type_vocab_size,
            layer_norm=True, norm_eps=c.norm_eps, dropout=c.dropout,
        )  # fmt: skip
        self.project = nn.Linear(c.d_embed, c.d_model)  # the factorization's E x C matrix
        self.encoder = Encoder(albert_blocks(c))
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
        """Same inputs and outputs as :class:`BertModel`; ``hidden_states[0]`` is the projected
        embedding ``[B, T, C]`` (as in HF)."""
        e = self.embeddings(input_ids, token_type_ids)  # [B, T, E]
        check_same_shape(attention_mask, input_ids, "attention_mask")
        x = self.project(e)  # [B, T, C]
        out = self.encoder(x, attention_mask, output_attentions, output_hidden_states)
        out.pooler_output = self.pooler(out.last_hidden_state)  # [B, C]
        return out


class AlbertForPreTraining(HFConvertible, nn.Module):
    """ALBERT with its pretraining heads: ``.logits`` = MLM scores ``[B, T, vocab]`` (the head
    projects C -> E and decodes with the tied E-wide embeddings), ``.pair_logits`` = SOP scores
    ``[B, 2]`` (label 0 = segments in order, 1 = swapped).

    ``loss`` = MLM cross-entropy (``labels``, -100 = not masked) + SOP cross-entropy
    (``sentence_order_label``), each when given.
    """

    config_class = AlbertConfig
    hf_converter = ALBERT_FOR_PRETRAINING

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.config = c = config
        self.albert = AlbertModel(c)
        self.mlm = MaskedLMHead(c.d_model, self.albert.embeddings.token, c.activation, c.norm_eps)
        self.pair_head = nn.Linear(c.d_model, 2)  # SOP: in order / swapped, from the pooled [CLS]
        self.mlm.reset_parameters()
        self.pair_head.apply(init_weights)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        sentence_order_label: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        out = self.albert(
            input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states
        )
        logits = self.mlm(out.last_hidden_state)  # [B, T, vocab]
        pair_logits = self.pair_head(out.pooler_output)  # [B, 2]
        loss = pretraining_loss(
            logits, labels, pair_logits, sentence_order_label, input_ids, "sentence_order_label"
        )
        return replace(out, loss=loss, logits=logits, pair_logits=pair_logits)


class AlbertForSequenceClassification(HFConvertible, nn.Module):
    """ALBERT + dropout + a linear layer on the pooled ``[CLS]`` vector (``.logits [B, n_classes]``)."""

    config_class = AlbertConfig
    hf_converter = ALBERT_FOR_SEQUENCE_CLASSIFICATION

    def __init__(self, config: AlbertConfig, n_classes: int | None = None):
        super().__init__()
        if n_classes is not None:
            config = replace(config, n_classes=n_classes)
        self.config = c = config
        self.albert = AlbertModel(c)
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
        out = self.albert(
            input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states
        )
        logits = self.classifier(self.dropout(out.pooler_output))  # [B, n_classes]
        return classification_output(out, logits, labels)
