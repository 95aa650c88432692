"""What every ptlearn model returns.

One small dataclass instead of bare tuples, so a notebook can write ``out.logits`` or
``out.attentions[layer][0, head]`` and a reader always knows what a field holds. The field names
follow HF ``transformers`` so code (and bertviz) written for one works with the other.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from .validation import check_index_range, check_same_shape

Tensor = torch.Tensor


@dataclass
class ModelOutput:
    """Outputs of a ptlearn model; fields a model does not produce stay ``None``.

    - ``loss``: scalar training loss, present when labels were given.
    - ``logits``: the prediction head's scores (LM: ``[B, T, vocab]``; classifier: ``[B, n_classes]``).
    - ``last_hidden_state``: the encoder/decoder output ``[B, T, C]``.
    - ``pooler_output``: the pooled ``[CLS]`` vector ``[B, C]`` (BERT, ALBERT).
    - ``hidden_states``: embeddings plus every layer's output, ``n_layers + 1`` tensors ``[B, T, C]``.
    - ``attentions``: one ``[B, H, Tq, Tk]`` tensor per layer (the HF/bertviz format).
    - ``cross_attentions``: a decoder's cross-attentions, one ``[B, H, T, S]`` per layer.
    - ``pair_logits``: sentence-pair head scores ``[B, 2]`` (NSP for BERT, SOP for ALBERT).
    - ``past_key_values``: the KV cache a decoder returns for fast generation.
    - ``extra``: named by-products of a composite objective (ELECTRA's and distillation's
      separate losses), for display only.
    """

    loss: Tensor | None = None
    logits: Tensor | None = None
    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    cross_attentions: tuple[Tensor, ...] | None = None
    pair_logits: Tensor | None = None
    past_key_values: object | None = None
    extra: dict | None = None

    def __getitem__(self, key: str):
        return getattr(self, key)

    def keys(self) -> list[str]:
        """Names of the fields that are set (like a dict's keys)."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


@dataclass
class Seq2SeqOutput:
    """Outputs of :class:`ptlearn.EncoderDecoder`: the three kinds of attention kept apart.

    ``encoder_attentions`` (encoder self-attention), ``decoder_attentions`` (masked decoder
    self-attention) and ``cross_attentions`` (decoder queries over encoder keys, ``[B, H, T_tgt,
    T_src]``) are each one tensor per layer.
    """

    loss: Tensor | None = None
    logits: Tensor | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_attentions: tuple[Tensor, ...] | None = None
    decoder_attentions: tuple[Tensor, ...] | None = None
    cross_attentions: tuple[Tensor, ...] | None = None

    def __getitem__(self, key: str):
        return getattr(self, key)


def classification_output(
    out: ModelOutput, logits: Tensor, labels: Tensor | None, item: str = "sequence"
) -> ModelOutput:
    """Attach per-``item`` (sequence, image) ``logits [B, n_classes]`` and, given ``labels [B]``,
    their cross-entropy to an encoder output; labels are checked first."""
    loss = None
    if labels is not None:
        check_same_shape(labels, logits[:, 0], "labels", f"the batch (one label per {item})")
        check_index_range(labels, logits.size(-1), "labels")
        loss = F.cross_entropy(logits, labels)
    return replace(out, loss=loss, logits=logits)
