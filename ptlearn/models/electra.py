"""ELECTRA: pretraining by replaced-token detection.

Clark et al., "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators"
(2020), https://arxiv.org/abs/2003.10555, section 2. A small generator is trained as a masked LM;
its samples fill the masked positions, and the discriminator (the model we keep) labels *every*
token as original (0) or replaced (1):

    L = L_MLM(generator) + lambda * L_RTD(discriminator),      lambda = 50 in the paper.

MLM learns from the 15% masked tokens only; RTD gets a signal from all of them, which is where
ELECTRA's compute efficiency comes from. A sample that happens to equal the original counts as
original. The discriminator's loss is not backpropagated through the (discrete) sampling.

The discriminator is a :class:`~ptlearn.models.bert.BertModel`, so this file imports BERT's
model and config; everything else comes from the shared core (layers, objectives, outputs).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import Embeddings, MaskedLMHead, blocks, init_weights
from ..objectives import IGNORE_INDEX, masked_lm_loss
from ..outputs import ModelOutput
from ..transformer import Encoder
from .bert import BertConfig, BertModel

Tensor = torch.Tensor


def replace_and_label(
    original_ids: Tensor, chosen: Tensor, sampled_ids: Tensor, attention_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The discriminator's input and targets (Clark et al. 2020, section 2).

    ``original_ids``, ``sampled_ids`` ``[B, T]``; ``chosen`` ``[B, T]`` bool (the masked positions).
    Returns ``corrupted_ids`` (the generator's sample where chosen, the original elsewhere) and
    ``labels`` ``[B, T]``: 1 where the token differs from the original, 0 where it is the original
    (also where the generator happened to sample the original), -100 at padding.
    """
    corrupted = torch.where(chosen, sampled_ids, original_ids)  # [B, T]
    labels = (corrupted != original_ids).long()  # replaced = 1, original = 0
    if attention_mask is not None:
        labels = labels.masked_fill(attention_mask == 0, IGNORE_INDEX)
    return corrupted, labels


def sample_at(logits: Tensor, chosen: Tensor, input_ids: Tensor) -> Tensor:
    """Sample one token from ``softmax(logits)`` at each chosen position (``input_ids`` elsewhere)."""
    sampled = input_ids.clone()  # [B, T]
    probs = logits[chosen].float().softmax(dim=-1)  # [N, V]  only the N chosen positions
    if len(probs):
        sampled[chosen] = torch.multinomial(probs, 1).squeeze(-1)
    return sampled


class ElectraGenerator(nn.Module):
    """ELECTRA's generator: a narrow BERT-style masked LM that reads the discriminator's embeddings.

    Clark et al. (section 3.2) share the token and position embeddings between generator and
    discriminator and make the generator smaller (1/4 to 1/2 of the discriminator's width works
    best, Fig. 3): a strong generator makes the discriminator's task too hard. As in ELECTRA's
    code, the shared embeddings (width E) are projected to the generator's width.
    """

    def __init__(self, embeddings: Embeddings, config: BertConfig):
        super().__init__()
        c = config
        self.embeddings = embeddings  # the discriminator's module: one set of weights, two users
        self.project = nn.Linear(embeddings.token.embedding_dim, c.d_model)  # E -> generator width
        self.encoder = Encoder(blocks(c, norm_first=False))
        self.mlm = MaskedLMHead(c.d_model, embeddings.token, c.activation, c.norm_eps)
        for module in (self.project, self.encoder):
            module.apply(init_weights)
        self.mlm.reset_parameters()

    def forward(self, input_ids: Tensor, attention_mask=None, token_type_ids=None) -> Tensor:
        x = self.project(self.embeddings(input_ids, token_type_ids))  # [B, T, C_gen]
        return self.mlm(self.encoder(x, attention_mask).last_hidden_state)  # [B, T, vocab]


class Electra(nn.Module):
    """Generator (MLM) + discriminator (a :class:`BertModel` with a per-token binary head).

    Called with an MLM batch (``input_ids`` masked by :func:`~ptlearn.objectives.mask_tokens`,
    ``labels`` = the original ids at the chosen positions, -100 elsewhere), it returns
    ``loss = mlm_loss + rtd_weight * rtd_loss``, ``logits`` = the discriminator's per-token scores
    ``[B, T]`` (> 0: "replaced") and ``extra`` = the two losses, the corrupted ids and the RTD labels.
    Without ``labels`` it runs the discriminator on ``input_ids`` as they are.
    ``generator_d_model`` defaults to half the discriminator's width.
    """

    def __init__(self, config: BertConfig, generator_d_model: int | None = None, rtd_weight=50.0):
        super().__init__()
        self.config, self.rtd_weight = config, rtd_weight
        self.discriminator = BertModel(config)
        width = generator_d_model or config.d_model // 2
        heads = config.n_heads if width % config.n_heads == 0 else 1
        generator = replace(
            config, d_model=width, n_heads=heads, d_ff=config.d_ff * width // config.d_model
        )
        self.generator = ElectraGenerator(self.discriminator.embeddings, generator)
        self.rtd_head = nn.Linear(config.d_model, 1)  # one "was this token replaced?" score
        self.rtd_head.apply(init_weights)

    def discriminate(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs):
        out = self.discriminator(input_ids, attention_mask, token_type_ids, **kwargs)
        return replace(out, logits=self.rtd_head(out.last_hidden_state).squeeze(-1))  # [B, T]

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        views = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        if labels is None:
            return self.discriminate(input_ids, attention_mask, token_type_ids, **views)
        # 1. generator: a masked LM on the masked input
        gen_logits = self.generator(input_ids, attention_mask, token_type_ids)  # [B, T, vocab]
        mlm_loss = masked_lm_loss(gen_logits, labels)
        # 2. corrupt: its samples replace the chosen tokens (no gradient through sampling)
        chosen = labels != IGNORE_INDEX  # [B, T]
        original = torch.where(chosen, labels, input_ids)  # undo the masking
        sampled = sample_at(gen_logits.detach(), chosen, input_ids)
        corrupted, rtd_labels = replace_and_label(original, chosen, sampled, attention_mask)
        # 3. discriminator: original or replaced, at every real token
        out = self.discriminate(corrupted, attention_mask, token_type_ids, **views)
        real = rtd_labels != IGNORE_INDEX
        rtd_loss = F.binary_cross_entropy_with_logits(out.logits[real], rtd_labels[real].float())
        loss = mlm_loss + self.rtd_weight * rtd_loss
        extra = dict(
            mlm_loss=mlm_loss.detach(), rtd_loss=rtd_loss.detach(),
            corrupted_ids=corrupted, rtd_labels=rtd_labels,
        )  # fmt: skip
        return replace(out, loss=loss, extra=extra)
