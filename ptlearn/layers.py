"""The pieces a Transformer is built from: feed-forward network, block, embeddings, positions.

A block (Vaswani et al. 2017, Fig. 1) is attention then a position-wise feed-forward network, each
wrapped in a residual connection and a LayerNorm. Where the norm sits is the one design choice:

- post-norm (original Transformer, BERT, ALBERT): ``x = norm(x + sublayer(x))``
- pre-norm  (GPT-2, ViT):                         ``x = x + sublayer(norm(x))``

Pre-norm keeps an unnormalised residual "highway" from input to output, which makes deep stacks
train stably without a long learning-rate warm-up (Xiong et al. 2020, https://arxiv.org/abs/2002.04745).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import KVCache, MultiHeadAttention
from .norms import RMSNorm, make_norm
from .rotary import Rotary
from .validation import check_index_range, check_same_shape, check_token_ids

Tensor = torch.Tensor


class ReLUSquared(nn.Module):
    """relu(x)^2 (So et al. 2021, "Primer", https://arxiv.org/abs/2109.08668): as cheap as ReLU,
    smooth at 0 from the right, and found by architecture search to train language models faster."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x).square()


def activation_layer(name: str) -> nn.Module:
    """ "gelu" (exact, BERT/ViT), "gelu_tanh" (GPT-2's tanh approximation), "relu", "relu2"
    (ReLU squared) or "silu" (x * sigmoid(x), the gate of SwiGLU)."""
    layers = {
        "gelu": nn.GELU,
        "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
        "relu": nn.ReLU,
        "relu2": ReLUSquared,
        "silu": nn.SiLU,
    }
    if name not in layers:
        raise ValueError(f"Unknown activation {name!r}; use one of {sorted(layers)}.")
    return layers[name]()


class FeedForward(nn.Module):
    """FFN(x) = W_2 act(W_1 x + b_1) + b_2, applied to every position independently:
    ``[B, T, C] -> [B, T, d_ff] -> [B, T, C]``. No dropout here: the block drops its output."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", bias: bool = True):
        super().__init__()
        self.fc_in = nn.Linear(d_model, d_ff, bias=bias)
        self.act = activation_layer(activation)
        self.fc_out = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_out(self.act(self.fc_in(x)))


class GatedFeedForward(nn.Module):
    """A gated linear unit (Shazeer 2020, https://arxiv.org/abs/2002.05202), SwiGLU with "silu":

        FFN(x) = W_2 (act(W_gate x) * (W_up x))        # [B, T, C] -> [B, T, d_ff] -> [B, T, C]

    One half of the hidden layer decides, per unit, how much of the other half passes. It has three
    matrices instead of two, so Llama shrinks d_ff to about 2/3 of 4C to keep the parameter count.
    W_gate and W_up are stacked into one ``fc_in`` ``[2 d_ff, C]`` (one matmul, like ``qkv_proj``).
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "silu", bias: bool = True):
        super().__init__()
        self.fc_in = nn.Linear(d_model, 2 * d_ff, bias=bias)  # [W_gate; W_up]
        self.act = activation_layer(activation)
        self.fc_out = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.fc_in(x).chunk(2, dim=-1)  # 2 x [B, T, d_ff]
        return self.fc_out(self.act(gate) * up)


class TransformerBlock(nn.Module):
    """Self-attention (+ optional cross-attention) + feed-forward, with residuals and LayerNorms.

    ``attn`` and ``ffn`` may be passed in so that several blocks share one module (ALBERT's
    cross-layer parameter sharing); by default each block builds its own. The modern options of
    chapter 12: ``norm`` ("layernorm" or "rmsnorm"), ``bias=False`` (no bias in any linear layer or
    norm), ``rotary`` (rotary positions in self-attention), ``qk_norm`` and ``gated`` (a GLU
    feed-forward, :class:`GatedFeedForward`). Dropout is applied once to each sublayer's output,
    before it is added to the residual (Vaswani et al. 2017, section 5.4; BERT and GPT-2 do the same).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "gelu",
        norm_eps: float = 1e-5,
        norm_first: bool = True,
        cross_attention: bool = False,
        attn: MultiHeadAttention | None = None,
        ffn: FeedForward | None = None,
        norm: str = "layernorm",
        bias: bool = True,
        rotary: Rotary | None = None,
        qk_norm: bool = False,
        gated: bool = False,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.attn = attn or MultiHeadAttention(
            d_model, n_heads, dropout, bias, rotary=rotary, qk_norm=qk_norm, norm_eps=norm_eps
        )
        self.norm_attn = make_norm(norm, d_model, norm_eps, bias)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout) if cross_attention else None
        self.norm_cross = nn.LayerNorm(d_model, eps=norm_eps) if cross_attention else None
        mlp = GatedFeedForward if gated else FeedForward
        self.ffn = ffn or mlp(d_model, d_ff, activation, bias)
        self.norm_ffn = make_norm(norm, d_model, norm_eps, bias)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        need_weights: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x: ``[B, T, C]`` -> ``(x [B, T, C], self-attention weights [B, H, T, T] or None,
        cross-attention weights [B, H, T, S] or None)``; context: the encoder output ``[B, S, C]``."""
        self_kw = dict(mask=mask, causal=causal, need_weights=need_weights, cache=cache)
        cross_kw = dict(mask=context_mask, need_weights=need_weights)
        cross_w = None
        if self.norm_first:  # pre-norm (GPT-2, ViT):  x = x + sublayer(LN(x))
            h, self_w = self.attn(self.norm_attn(x), **self_kw)  # [B, T, C]
            x = x + self.dropout(h)  # [B, T, C]
            if self.cross_attn is not None:  # decoder of a seq2seq model: queries x, keys context
                h, cross_w = self.cross_attn(self.norm_cross(x), context, **cross_kw)  # [B, T, C]
                x = x + self.dropout(h)  # [B, T, C]
            x = x + self.dropout(self.ffn(self.norm_ffn(x)))  # [B, T, C]
        else:  # post-norm (Vaswani et al. 2017, BERT):  x = LN(x + sublayer(x))
            h, self_w = self.attn(x, **self_kw)  # [B, T, C]
            x = self.norm_attn(x + self.dropout(h))  # [B, T, C]
            if self.cross_attn is not None:
                h, cross_w = self.cross_attn(x, context, **cross_kw)  # [B, T, C]
                x = self.norm_cross(x + self.dropout(h))  # [B, T, C]
            x = self.norm_ffn(x + self.dropout(self.ffn(x)))  # [B, T, C]
        return x, self_w, cross_w


def new_block(
    c, norm_first: bool, cross_attention: bool = False, rotary: Rotary | None = None
) -> TransformerBlock:
    """One block of the shape a model config ``c`` describes (d_model, n_heads, d_ff, ...).
    GPT's config also names the modern options (norm, bias, qk_norm, mlp); others keep GPT-2's."""
    return TransformerBlock(
        c.d_model, c.n_heads, c.d_ff, c.dropout, c.activation, c.norm_eps,
        norm_first=norm_first, cross_attention=cross_attention,
        norm=getattr(c, "norm", "layernorm"), bias=getattr(c, "bias", True), rotary=rotary,
        qk_norm=getattr(c, "qk_norm", False), gated=getattr(c, "mlp", "standard") == "gated",
    )  # fmt: skip


def blocks(
    c, norm_first: bool, cross_attention: bool = False, rotary: Rotary | None = None
) -> list[TransformerBlock]:
    """``c.n_layers`` fresh blocks (no sharing) of the config's shape."""
    return [new_block(c, norm_first, cross_attention, rotary) for _ in range(c.n_layers)]


def final_norm(c) -> nn.LayerNorm | None:
    """Pre-norm stacks end with a LayerNorm; post-norm blocks already end normalised."""
    return nn.LayerNorm(c.d_model, eps=c.norm_eps) if c.norm_first else None


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's and GPT-2's initialisation (use with ``module.apply``): weights ~ N(0, 0.02), biases
    0, and LayerNorms start as the identity. Small weights keep early logits near uniform."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, (nn.LayerNorm, RMSNorm)):
        nn.init.ones_(module.weight)
    if isinstance(module, nn.LayerNorm) and module.bias is not None:
        nn.init.zeros_(module.bias)


def sinusoidal_encoding(max_len: int, d_model: int) -> Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)).

    Each pair of dimensions is a clock at its own frequency, from one turn every 2*pi positions to
    one every 10000*2*pi, so nearby positions get similar vectors and PE[pos + k] is a rotation of
    PE[pos] (Vaswani et al. 2017, section 3.5). Returns ``[max_len, d_model]``.
    """
    position = torch.arange(max_len, dtype=torch.float32)[:, None]  # [T, 1]
    freq = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(position * freq)  # [T, d/2]
    pe[:, 1::2] = torch.cos(position * freq)[:, : d_model // 2]
    return pe


class Embeddings(nn.Module):
    """Token embedding + position (learned or sinusoidal) + optional segment embedding.

    BERT adds all three and normalises (``layer_norm=True``); GPT-2 adds token and learned position
    only; ALBERT does BERT's sum at a small width ``d`` = E and projects up to d_model later.
    ``forward`` checks its input and raises a clear error for ids outside the vocabulary, sequences
    longer than ``max_len`` and mismatched ``token_type_ids``.
    """

    def __init__(
        self,
        vocab_size: int,
        d: int,
        max_len: int,
        type_vocab_size: int = 0,
        positional: str = "learned",
        layer_norm: bool = False,
        norm_eps: float = 1e-5,
        dropout: float = 0.0,
    ):
        super().__init__()
        if positional not in ("learned", "sinusoidal", "none"):
            raise ValueError(
                f"positional must be 'learned', 'sinusoidal' or 'none', got {positional!r}."
            )
        self.vocab_size, self.max_len, self.type_vocab_size = vocab_size, max_len, type_vocab_size
        self.token = nn.Embedding(vocab_size, d)
        self.position = nn.Embedding(max_len, d) if positional == "learned" else None
        if positional == "sinusoidal":
            self.register_buffer("sinusoid", sinusoidal_encoding(max_len, d), persistent=False)
        else:
            self.sinusoid = None  # learned, or "none": positions enter elsewhere (rotary)
        self.segment = nn.Embedding(type_vocab_size, d) if type_vocab_size else None
        self.norm = nn.LayerNorm(d, eps=norm_eps) if layer_norm else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None, offset: int = 0):
        """input_ids ``[B, T]`` -> ``[B, T, d]``; ``offset`` = tokens already in a KV cache."""
        check_token_ids(input_ids, self.vocab_size, self.max_len, offset)
        check_same_shape(token_type_ids, input_ids, "token_type_ids")
        T = input_ids.size(1)
        x = self.token(input_ids)  # [B, T, d]
        if self.position is not None:
            x = x + self.position.weight[offset : offset + T]  # [T, d] broadcast over B
        elif self.sinusoid is not None:
            x = x + self.sinusoid[offset : offset + T]
        if self.segment is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            check_index_range(token_type_ids, self.type_vocab_size, "token_type_ids")
            x = x + self.segment(token_type_ids)
        elif token_type_ids is not None:
            raise ValueError("token_type_ids were given, but this model has no segment embeddings.")
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


# --- heads shared by the encoder models (BERT, ALBERT, ELECTRA) -----------------------------


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

    def reset_parameters(self) -> None:
        """BERT's init for the head's own layers: dense and norm as :func:`init_weights`, the
        output bias 0; the decoder's weight is the (already initialised) embedding matrix."""
        for module in (self.dense, self.norm):
            module.apply(init_weights)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        h = self.norm(self.act(self.dense(hidden)))  # [B, T, d_embed]
        return self.decoder(h)  # [B, T, vocab]
