"""GPT-2: a decoder-only Transformer, pretrained to predict the next token.

Radford et al., "Language Models are Unsupervised Multitask Learners" (2019),
https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf
(GPT-1: Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training").

A language model factorises the probability of a text into next-token predictions,

    p(x_1, ..., x_T) = prod_t p(x_t | x_1, ..., x_{t-1}),

and is trained to maximise it: cross-entropy between the prediction at position t and the token
at t + 1, over every position of every sequence. Causal (masked) self-attention makes this one
pass: position t only sees positions <= t, so all T predictions are computed at once and none of
them can peek at the answer.

The model (GPT-2 section 2.3: GPT-1 with the LayerNorm moved to each sub-block's input and one
more LayerNorm after the last block):

    x = wte[ids] + wpe[t]                             # [B, T, C]  token + learned position
    x = x + attn(LN(x)); x = x + mlp(LN(x))           # n_layers pre-norm blocks, causal attention
    logits = LN_f(x) @ wte^T                          # [B, T, vocab]  head tied to the embedding

Chapter 12 swaps parts of this recipe for what language models use since (each a field of
:class:`GPTConfig`, GPT-2's choice the default): rotary positions instead of ``wpe``
(``positional="rotary"``), RMSNorm (``norm="rmsnorm"``), a gated feed-forward (``mlp="gated"``,
SwiGLU with ``activation="silu"``), ReLU² (``activation="relu2"``), QK-norm (``qk_norm=True``), no
biases (``bias=False``) and an untied head (``tie_embeddings=False``). With rotary + RMSNorm +
SwiGLU + no biases the model is Llama's architecture (and Qwen3's with QK-norm): ``to_hf`` then
builds a ``LlamaForCausalLM`` (``Qwen3ForCausalLM``) with the same outputs.

Generation appends one token at a time. Keys and values of earlier tokens never change, so a
:class:`~ptlearn.attention.KVCache` keeps them and each step only runs the newest token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..attention import KVCache
from ..config import BaseConfig
from ..hf import HFConvertible
from ..hf.llama import DECODERS
from ..layers import Embeddings, blocks, init_weights
from ..norms import NORMS, make_norm
from ..objectives import causal_lm_shift
from ..outputs import ModelOutput
from ..rotary import Rotary
from ..transformer import Decoder
from ..validation import check_same_shape, check_token_ids

Tensor = torch.Tensor


@dataclass
class GPTConfig(BaseConfig):
    """GPT's hyper-parameters; the defaults build a tiny model that trains in seconds on a CPU."""

    activation: str = "gelu_tanh"  # GPT-2's tanh approximation of GELU ("gelu_new" in HF)
    norm_eps: float = 1e-5  # GPT-2's LayerNorm epsilon
    # chapter 12's modern options; the defaults are GPT-2
    positional: str = "learned"  # "learned" (a wpe table) or "rotary" (rotate q and k)
    norm: str = "layernorm"  # or "rmsnorm"
    mlp: str = "standard"  # or "gated" (GLU: act(W_gate x) * W_up x)
    qk_norm: bool = False  # RMSNorm on every head's queries and keys
    bias: bool = True  # biases in the linear layers and LayerNorms
    tie_embeddings: bool = True  # the LM head reuses the token embedding matrix
    rope_base: float = 10000.0  # rotary: theta_i = rope_base^(-2i / d_head)

    def validate(self) -> None:
        super().validate()
        for name, allowed in (
            ("positional", ("learned", "rotary")),
            ("norm", NORMS),
            ("mlp", ("standard", "gated")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.positional == "rotary" and self.d_head % 2:
            raise ValueError(f"rotary positions need an even d_head, got {self.d_head}.")


# Named shapes, used as ``GPTConfig(**GPT_PRESETS["char"])`` (override any field by keyword).
GPT_PRESETS = {
    "nano": dict(d_model=64, n_layers=2, n_heads=4, d_ff=256, max_len=128),
    # character-level Tiny Shakespeare (65 symbols) on a 2-core CPU in a few minutes
    "char": dict(vocab_size=65, d_model=128, n_layers=4, n_heads=4, d_ff=512, max_len=128),
    # GPT-2 small: 124M parameters with its 50,257-token byte-level BPE vocabulary
    "gpt2": dict(vocab_size=50257, d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_len=1024),
}


class GPT(HFConvertible, nn.Module):
    """Token + position embeddings -> pre-norm causal decoder -> final LayerNorm -> tied LM head.

    ``model(input_ids, labels=input_ids).loss`` is the next-token cross-entropy: the shift by one
    position happens inside, as in HF. ``GPT.from_hf(GPT2LMHeadModel)`` loads GPT-2 weights.
    """

    config_class = GPTConfig
    hf_converter = DECODERS  # GPT-2, Llama or Qwen3 (ptlearn.hf.llama)

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        positional = "none" if c.positional == "rotary" else "learned"
        self.embeddings = Embeddings(
            c.vocab_size, c.d_model, c.max_len, positional=positional, dropout=c.dropout
        )
        rotary = Rotary(c.d_head, c.max_len, c.rope_base) if c.positional == "rotary" else None
        self.decoder = Decoder(
            blocks(c, norm_first=True, rotary=rotary),
            final_norm=make_norm(c.norm, c.d_model, c.norm_eps, c.bias),
        )
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.lm_head.weight = (
                self.embeddings.token.weight
            )  # tie: one [vocab, C] matrix, two uses
        self.apply(init_weights)
        # GPT-2 scales the init of the layers that write into the residual stream by 1/sqrt(N),
        # N = 2 * n_layers residual additions, so the stream's variance does not grow with depth
        for block in self.decoder.layers:
            for proj in (block.attn.out_proj, block.ffn.fc_out):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * c.n_layers))

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        past_key_values: list[KVCache] | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """input_ids ``[B, T]``; attention_mask ``[B, T_past + T]`` (1 = token, 0 = padding);
        labels ``[B, T]`` (usually input_ids itself; -100 = ignore) or ``[B, T + 1]`` (the inputs plus
        the token after them, so the last position is trained too); past_key_values: the list of
        per-layer :class:`KVCache` returned by an earlier call with ``use_cache=True`` — it is
        extended in place. GPT has no segments: ``token_type_ids`` must stay None."""
        caches = past_key_values
        if caches is None and use_cache:
            caches = [KVCache() for _ in range(self.config.n_layers)]
        past = 0 if caches is None else len(caches[0])
        x = self.embeddings(input_ids, token_type_ids, offset=past)  # [B, T, C]  (checks the ids)
        check_attention_mask(attention_mask, input_ids, past)
        out = self.decoder(
            x,
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            caches=caches,
        )
        logits = self.lm_head(out.last_hidden_state)  # [B, T, vocab]
        loss = None
        if labels is not None:
            loss = causal_lm_shift(logits, labels)  # position t predicts labels[t + 1]
        return replace(out, loss=loss, logits=logits, past_key_values=caches, extra=None)

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Append ``max_new_tokens`` tokens to each prompt in ``input_ids [B, T0]``; returns
        ``[B, T0 + max_new_tokens]``.

        Each step turns the last position's logits into a token: ``temperature=0`` is greedy
        decoding (always the argmax: deterministic, and what parity tests compare); otherwise the
        token is sampled from ``softmax(logits / temperature)`` after :func:`filter_logits` keeps
        the ``top_k`` most likely tokens and/or the nucleus of probability ``top_p``. Lower
        temperatures sharpen the distribution, higher ones flatten it. ``generator`` makes
        sampling reproducible. With ``use_cache`` (default) each step feeds only the newest token
        and reuses the cached keys/values; without it the whole prefix is recomputed every step
        (same tokens, much slower). No sliding window: the prompt plus the new tokens must fit
        in ``max_len`` positions.
        """
        check_token_ids(input_ids, self.config.vocab_size, self.config.max_len)
        check_generation_args(input_ids.size(1), max_new_tokens, self.config.max_len, temperature)
        was_training = self.training
        self.eval()
        caches = [KVCache() for _ in range(self.config.n_layers)] if use_cache else None
        ids = step_input = input_ids
        for _ in range(max_new_tokens):
            logits = self(step_input, past_key_values=caches).logits[:, -1]  # [B, vocab]
            next_id = next_token(logits, temperature, top_k, top_p, generator)  # [B, 1]
            ids = torch.cat([ids, next_id], dim=1)  # [B, T + 1]
            step_input = next_id if use_cache else ids
        self.train(was_training)
        return ids

    def to_hf(self):
        """The same weights in an HF ``transformers.GPT2LMHeadModel`` (eager attention, eval mode),
        or ``LlamaForCausalLM`` / ``Qwen3ForCausalLM`` for a Llama-style config."""
        return self.hf_converter.to_hf(self)


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set every logit outside the allowed set to -inf, so its probability becomes 0.

    - ``top_k``: keep the k highest logits (Fan et al. 2018, https://arxiv.org/abs/1805.04833);
    - ``top_p``: keep the smallest set of most likely tokens whose probability reaches p, the
      "nucleus" (Holtzman et al. 2019, https://arxiv.org/abs/1904.09751). It adapts to the
      distribution: few tokens when the model is sure, many when it is not.

    logits: ``[B, vocab]``. The most likely token always survives.
    """
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}.")
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # [B, vocab]
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability mass of the more likely tokens
        drop_sorted = before >= top_p  # the nucleus is already full without this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(logits, temperature: float, top_k, top_p, generator) -> Tensor:
    """One decoding step: logits ``[B, vocab]`` -> token ids ``[B, 1]``."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # greedy
    probs = filter_logits(logits / temperature, top_k, top_p).softmax(dim=-1)  # [B, vocab]
    return torch.multinomial(probs, num_samples=1, generator=generator)


def check_generation_args(prompt_len: int, max_new_tokens: int, max_len: int, temperature):
    """The prompt plus the new tokens must fit in the position table; temperature >= 0."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {max_new_tokens!r}.")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
    if prompt_len + max_new_tokens > max_len:
        raise ValueError(
            f"Cannot generate {max_new_tokens} tokens after a {prompt_len}-token prompt: the "
            f"model's max_len is {max_len}, so at most {max_len - prompt_len} new tokens fit. "
            f"ptlearn does not slide the context window; shorten the prompt or ask for fewer tokens."
        )
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")


def check_attention_mask(attention_mask: Tensor | None, input_ids: Tensor, past: int) -> None:
    """The padding mask has one entry per key: the cached tokens and the new ones."""
    if past == 0 or attention_mask is None:
        check_same_shape(attention_mask, input_ids, "attention_mask")
    elif attention_mask.shape != (input_ids.size(0), past + input_ids.size(1)):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)}, but with {past} cached "
            f"tokens it must cover them and the new ones: [{input_ids.size(0)}, "
            f"{past + input_ids.size(1)}]."
        )
