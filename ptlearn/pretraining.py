"""Comparing pretraining objectives on one backbone: the pieces chapter 08 adds to ptlearn.

:mod:`ptlearn.objectives` turns text into BERT's masked tokens, NSP/SOP pairs and GPT's shifted
targets. This module adds the two objectives that need more than a batch transform, then builds
all six objectives of the study from one backbone size:

- **Replaced-token detection** (ELECTRA; Clark et al. 2020, https://arxiv.org/abs/2003.10555,
  section 2). A small generator is trained as a masked LM; its samples fill the masked positions,
  and the discriminator (the model we keep) labels *every* token as original (0) or replaced (1):

      L = L_MLM(generator) + lambda * L_RTD(discriminator),      lambda = 50 in the paper.

  MLM learns from the 15% masked tokens only; RTD gets a signal from all of them, which is where
  ELECTRA's compute efficiency comes from. A sample that happens to equal the original counts as
  original. The discriminator's loss is not backpropagated through the (discrete) sampling.
- **Span corruption** (T5; Raffel et al. 2019, https://arxiv.org/abs/1910.10683, section 3.1.4
  and Fig. 2). Drop 15% of the tokens in spans of mean length 3; each span becomes one sentinel
  in the input, and the target lists the sentinels, each followed by the span it stands for, plus
  a final sentinel. An encoder-decoder learns to write the missing spans.

The six objectives (:data:`OBJECTIVES`): causal LM (GPT), masked LM (BERT), MLM + sentence order
(ALBERT's objective, on BERT's encoder so only the objective changes), replaced-token detection
(ELECTRA), span corruption (T5, on :class:`~ptlearn.EncoderDecoder`) and supervised pretraining
on topic labels. :func:`pretrain_objective` returns each one's model and batch function;
:func:`backbone_of` extracts the encoder that downstream tasks use. Evaluation (linear probe,
fine-tuning, baselines) and the study loop are in :mod:`ptlearn.study`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .data import collate, random_lm_batch
from .finetune import SequenceClassifier
from .layers import Embeddings, TransformerBlock
from .models import GPT, BertConfig, BertForPreTraining, BertModel, GPTConfig
from .models.bert import MaskedLMHead, init_weights, masked_lm_loss
from .objectives import IGNORE_INDEX, mask_tokens, sop_pairs
from .outputs import ModelOutput
from .transformer import Encoder, EncoderDecoder, EncoderDecoderConfig

Tensor = torch.Tensor

OBJECTIVES = {
    "causal_lm": "causal LM (GPT)",
    "mlm": "masked LM (BERT)",
    "mlm_sop": "MLM + sentence order (ALBERT)",
    "rtd": "replaced-token detection (ELECTRA)",
    "span": "span corruption (T5)",
    "supervised": "supervised (AG News labels)",
}

# --------------------------------------------------------------------------------------------
# Replaced-token detection (ELECTRA)
# --------------------------------------------------------------------------------------------


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
        blocks = [
            TransformerBlock(
                c.d_model, c.n_heads, c.d_ff, c.dropout, c.activation, c.norm_eps, norm_first=False
            )
            for _ in range(c.n_layers)
        ]
        self.encoder = Encoder(blocks)
        self.mlm = MaskedLMHead(c.d_model, embeddings.token, c.activation, c.norm_eps)
        for module in (self.project, self.encoder, self.mlm.dense, self.mlm.norm):
            module.apply(init_weights)
        nn.init.zeros_(self.mlm.decoder.bias)

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


# --------------------------------------------------------------------------------------------
# Span corruption (T5)
# --------------------------------------------------------------------------------------------


def random_segmentation(n_items: int, n_segments: int, generator=None) -> list[int]:
    """Cut ``n_items`` into ``n_segments`` random positive lengths that sum to ``n_items``."""
    cuts = torch.randperm(n_items - 1, generator=generator)[: n_segments - 1] + 1
    bounds = [0, *sorted(cuts.tolist()), n_items]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def random_spans_noise_mask(
    length: int, noise_density: float = 0.15, mean_span_length: float = 3.0, generator=None
) -> Tensor:
    """T5's noise mask ``[length]`` (bool, True = dropped), as in its ``random_spans_noise_mask``:
    ``round(noise_density * length)`` noisy tokens in ``round(n_noise / mean_span_length)``
    spans of random lengths, alternating kept / noisy spans, starting with a kept one."""
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {length}.")
    n_noise = min(max(round(length * noise_density), 1), length - 1)
    n_spans = min(max(round(n_noise / mean_span_length), 1), n_noise, length - n_noise)
    noise_lengths = random_segmentation(n_noise, n_spans, generator)
    keep_lengths = random_segmentation(length - n_noise, n_spans, generator)
    mask = []
    for keep, noise in zip(keep_lengths, noise_lengths):
        mask += [False] * keep + [True] * noise
    return torch.tensor(mask)


def spans_to_sentinels(
    ids: Sequence[int], noise_mask: Sequence[bool], sentinel_ids: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Raffel et al. Fig. 2: ``Thank you <X> me to your party <Y> week.`` -> ``<X> for inviting
    <Y> last <Z>``. Each noisy span becomes the next sentinel in the input; the target is each
    sentinel followed by its span, then one final sentinel. Returns ``(input_ids, target_ids)``."""
    inputs, targets, k, previous = [], [], 0, False
    n_spans = sum(
        1 for i, noisy in enumerate(noise_mask) if noisy and (i == 0 or not noise_mask[i - 1])
    )
    if n_spans + 1 > len(sentinel_ids):
        raise ValueError(f"{n_spans} spans need {n_spans + 1} sentinels, got {len(sentinel_ids)}.")
    for token, noisy in zip(ids, noise_mask):
        if noisy and not previous:  # a span starts: one sentinel stands for all of it
            inputs.append(sentinel_ids[k])
            targets.append(sentinel_ids[k])
            k += 1
        (targets if noisy else inputs).append(int(token))
        previous = bool(noisy)
    targets.append(sentinel_ids[k])  # the final sentinel
    return inputs, targets


def fill_spans(inputs: Sequence[int], targets: Sequence[int], sentinel_ids: Sequence[int]):
    """Undo :func:`spans_to_sentinels`: put each target span back in place of its sentinel."""
    sentinels, spans, current = set(sentinel_ids), {}, None
    for token in targets:
        if token in sentinels:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    return [t for token in inputs for t in (spans[token] if token in sentinels else [token])]


def span_corruption_batch(
    windows: Tensor,
    sentinel_ids: Sequence[int],
    eos_id: int,
    pad_id: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    generator=None,
) -> dict[str, Tensor]:
    """Token windows ``[B, W]`` -> an :class:`~ptlearn.EncoderDecoder` batch: ``input_ids`` (the
    corrupted window + EOS) and ``attention_mask`` ``[B, S]``; ``decoder_input_ids`` (the target
    shifted right behind a start token, T5 starts with the pad id) and ``labels`` (target + EOS,
    -100 at padding) ``[B, T_tgt]``."""
    examples = []
    for window in windows.tolist():
        mask = random_spans_noise_mask(len(window), noise_density, mean_span_length, generator)
        source, target = spans_to_sentinels(window, mask.tolist(), sentinel_ids)
        examples.append(
            {
                "input_ids": source + [eos_id],
                "decoder_input_ids": [pad_id] + target,
                "labels": target + [eos_id],
            }
        )
    return collate(examples, pad_id=pad_id)  # pads ids with pad_id, labels with -100


# --------------------------------------------------------------------------------------------
# Six objectives, one backbone
# --------------------------------------------------------------------------------------------


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


def wrap_window(windows: Tensor, tokenizer) -> Tensor:
    """``[CLS] window [SEP]`` for every row of ``windows [B, W]`` -> ``[B, W + 2]``."""
    B = windows.size(0)
    cls = torch.full((B, 1), tokenizer.cls_id, dtype=windows.dtype)
    sep = torch.full((B, 1), tokenizer.sep_id, dtype=windows.dtype)
    return torch.cat([cls, windows, sep], dim=1)


def mlm_batch(stream, window, batch_size, tokenizer, generator=None) -> dict:
    """BERT: ``[CLS] window [SEP]`` with 15% of the tokens masked (80/10/10)."""
    ids = wrap_window(
        random_lm_batch(stream, window, batch_size, generator)["input_ids"], tokenizer
    )
    masked, labels = mask_tokens(
        ids, tokenizer.mask_id, tokenizer.vocab_size, tokenizer.special_ids, generator=generator
    )
    return {"input_ids": masked, "labels": labels}


def sop_batch(stream, window, batch_size, tokenizer, generator=None) -> dict:
    """ALBERT: each window cut at a random point into segments A, B; swapped half of the time
    (:func:`~ptlearn.objectives.sop_pairs`); then masked. The pair head reads the order label."""
    windows = random_lm_batch(stream, window, batch_size, generator)["input_ids"].tolist()
    cuts = torch.randint(1, window, (batch_size,), generator=generator).tolist()
    docs = [[w[:k], w[k:]] for w, k in zip(windows, cuts)]  # one two-segment document each
    specials = dict(cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, pad_id=tokenizer.pad_id)
    batch = sop_pairs(docs, **specials, max_len=window + 3, generator=generator)
    batch["input_ids"], batch["labels"] = mask_tokens(
        batch["input_ids"], tokenizer.mask_id, tokenizer.vocab_size,
        tokenizer.special_ids, generator=generator,
    )  # fmt: skip
    batch["next_sentence_label"] = batch.pop("sentence_order_label")  # the pair head's labels
    return batch


def span_batch(stream, window, batch_size, tokenizer, sentinel_ids, generator=None) -> dict:
    """T5: span-corrupted windows for the encoder-decoder ([SEP] ends input and target)."""
    windows = random_lm_batch(stream, window, batch_size, generator)["input_ids"]
    return span_corruption_batch(
        windows, sentinel_ids, tokenizer.sep_id, tokenizer.pad_id, generator=generator
    )


def labeled_batch(ids: list[list[int]], labels: list[int], batch_size, pad_id, generator=None):
    """Supervised pretraining: ``batch_size`` random labelled examples, padded."""
    picks = torch.randint(len(ids), (batch_size,), generator=generator).tolist()
    return collate([{"input_ids": ids[i], "labels": labels[i]} for i in picks], pad_id=pad_id)


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
