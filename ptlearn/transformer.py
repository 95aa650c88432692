"""Stacks of blocks: the Encoder, the Decoder and the original encoder-decoder Transformer.

- ``Encoder``: bidirectional self-attention; every token sees every (non-padded) token. BERT,
  ALBERT and ViT are encoders with different embeddings and heads.
- ``Decoder``: masked (causal) self-attention, so position t sees only positions <= t, plus — in a
  sequence-to-sequence model — cross-attention, whose queries come from the decoder and whose keys
  and values are the encoder's output. GPT is a decoder without cross-attention.
- ``EncoderDecoder``: Vaswani et al. (2017), Fig. 1: encode the source once, then generate the
  target token by token while attending to the source. Its three attentions are returned apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import KVCache, padding_mask
from .config import BaseConfig
from .layers import Embeddings, TransformerBlock, blocks, final_norm
from .outputs import ModelOutput, Seq2SeqOutput
from .validation import check_same_shape

Tensor = torch.Tensor


class Encoder(nn.Module):
    """A stack of blocks with bidirectional self-attention (and an optional final LayerNorm).

    ``blocks`` may list the same module several times (ALBERT's shared layers); every application
    still reports its own attention map.
    """

    def __init__(self, blocks: Sequence[TransformerBlock], final_norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(blocks)
        self.final_norm = final_norm

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """x: ``[B, T, C]`` embeddings; attention_mask: ``[B, T]`` (1 = token, 0 = padding)."""
        mask = None if attention_mask is None else padding_mask(attention_mask)  # [B, 1, 1, T]
        hidden, attentions = [x], []
        for block in self.layers:
            x, weights, _ = block(x, mask=mask, need_weights=output_attentions)
            hidden.append(x)  # [B, T, C]
            attentions.append(weights)  # [B, H, T, T] or None
        return finish(self.final_norm, hidden, attentions, output_attentions, output_hidden_states)


class Decoder(nn.Module):
    """A stack of blocks with causal self-attention and, when given a ``context``, cross-attention."""

    def __init__(self, blocks: Sequence[TransformerBlock], final_norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(blocks)
        self.final_norm = final_norm

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        attention_mask: Tensor | None = None,
        context_mask: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        caches: Sequence[KVCache] | None = None,
    ) -> ModelOutput:
        """x: ``[B, T, C]``; context: encoder output ``[B, S, C]``; masks are ``[B, T]``/``[B, S]``
        padding masks; caches: one :class:`KVCache` per layer for incremental decoding.

        Returns a ModelOutput whose ``attentions`` are the masked self-attentions and whose
        ``cross_attentions`` are the cross-attentions (one per layer each).
        """
        self_mask = None if attention_mask is None else padding_mask(attention_mask)
        cross_mask = None if context_mask is None else padding_mask(context_mask)
        hidden, self_attns, cross_attns = [x], [], []
        for i, block in enumerate(self.layers):
            x, self_w, cross_w = block(
                x,
                mask=self_mask,
                causal=True,
                context=context,
                context_mask=cross_mask,
                need_weights=output_attentions,
                cache=None if caches is None else caches[i],
            )
            hidden.append(x)  # [B, T, C]
            self_attns.append(self_w)  # [B, H, T, T] or None
            cross_attns.append(cross_w)  # [B, H, T, S] or None
        out = finish(self.final_norm, hidden, self_attns, output_attentions, output_hidden_states)
        out.cross_attentions = tuple(cross_attns) if output_attentions else None
        return out


def finish(norm, hidden: list, attentions: list, output_attentions, output_hidden_states):
    """The end both stacks share: apply the final LayerNorm (pre-norm stacks) to the last hidden
    state and keep only the outputs that were asked for."""
    if norm is not None:
        hidden[-1] = norm(hidden[-1])  # [B, T, C]
    return ModelOutput(
        last_hidden_state=hidden[-1],
        hidden_states=tuple(hidden) if output_hidden_states else None,
        attentions=tuple(attentions) if output_attentions else None,
    )


@dataclass
class EncoderDecoderConfig(BaseConfig):
    """Sequence-to-sequence Transformer. ``vocab_size`` covers source and target tokens (one
    shared vocabulary); ``pad_id`` marks padding in both; ``norm_first`` picks pre-/post-norm."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    max_len: int = 64
    activation: str = "relu"
    pad_id: int = 0
    norm_first: bool = True
    positional: str = "sinusoidal"


class EncoderDecoder(nn.Module):
    """The original Transformer: an encoder over the source, a decoder over the target that
    cross-attends to the encoder output, and a linear layer to target-token logits."""

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        self.config = c = config
        self.src_embed = Embeddings(
            c.vocab_size, c.d_model, c.max_len, positional=c.positional, dropout=c.dropout
        )
        self.tgt_embed = Embeddings(
            c.vocab_size, c.d_model, c.max_len, positional=c.positional, dropout=c.dropout
        )
        self.encoder = Encoder(blocks(c, c.norm_first), final_norm(c))
        self.decoder = Decoder(blocks(c, c.norm_first, cross_attention=True), final_norm(c))
        self.lm_head = nn.Linear(c.d_model, c.vocab_size)  # [B, T, C] -> [B, T, vocab]

    def encode(
        self, input_ids: Tensor, attention_mask=None, output_attentions=False
    ) -> ModelOutput:
        """Source ids ``[B, S]`` -> encoder output ``[B, S, C]`` (and its self-attentions)."""
        check_same_shape(attention_mask, input_ids, "attention_mask")
        return self.encoder(self.src_embed(input_ids), attention_mask, output_attentions)

    def forward(
        self,
        input_ids: Tensor,
        decoder_input_ids: Tensor,
        attention_mask: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
    ) -> Seq2SeqOutput:
        """Teacher forcing: the decoder reads the target shifted right (``decoder_input_ids`` =
        BOS + target) and predicts ``labels`` (target + EOS; -100 = ignore) at every position."""
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_id).long()
        enc = self.encode(input_ids, attention_mask, output_attentions)
        check_same_shape(
            decoder_attention_mask, decoder_input_ids, "decoder_attention_mask", "decoder_input_ids"
        )
        dec = self.decoder(
            self.tgt_embed(decoder_input_ids),
            context=enc.last_hidden_state,
            attention_mask=decoder_attention_mask,
            context_mask=attention_mask,
            output_attentions=output_attentions,
        )
        logits = self.lm_head(dec.last_hidden_state)  # [B, T, vocab]
        loss = None
        if labels is not None:
            check_same_shape(labels, decoder_input_ids, "labels", "decoder_input_ids")
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return Seq2SeqOutput(
            loss=loss,
            logits=logits,
            encoder_last_hidden_state=enc.last_hidden_state,
            encoder_attentions=enc.attentions,
            decoder_attentions=dec.attentions,
            cross_attentions=dec.cross_attentions,
        )

    @torch.no_grad()
    def generate(self, input_ids: Tensor, max_new_tokens: int, bos_id: int, eos_id=None) -> Tensor:
        """Greedy decoding: start from BOS, append the most likely token until EOS or the limit.
        Returns the generated ids ``[B, <= max_new_tokens]`` (without BOS)."""
        if max_new_tokens + 1 > self.config.max_len:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} does not fit: the decoder's max_len is "
                f"{self.config.max_len}, so at most {self.config.max_len - 1} new tokens."
            )
        was_training = self.training
        self.eval()
        attention_mask = (input_ids != self.config.pad_id).long()
        memory = self.encode(input_ids, attention_mask).last_hidden_state  # [B, S, C]
        out = torch.full((input_ids.size(0), 1), bos_id, dtype=torch.long, device=input_ids.device)
        caches = [KVCache() for _ in self.decoder.layers]
        done = torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            x = self.tgt_embed(out[:, -1:], offset=out.size(1) - 1)  # only the newest token
            h = self.decoder(
                x, memory, context_mask=attention_mask, caches=caches
            ).last_hidden_state
            next_id = self.lm_head(h[:, -1]).argmax(-1)  # [B]
            out = torch.cat([out, next_id[:, None]], dim=1)
            if eos_id is not None:
                done |= next_id == eos_id
                if done.all():
                    break
        self.train(was_training)
        return out[:, 1:]
