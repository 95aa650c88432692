"""The configuration fields every ptlearn model shares, checked when a config is made.

Each model has its own dataclass (``GPTConfig``, ``BertConfig``, ...) that inherits these fields,
so the same name means the same thing everywhere:

- ``vocab_size``: number of token ids; ``d_model``: width C of the residual stream;
- ``n_layers``: Transformer blocks; ``n_heads``: attention heads H (``d_model / n_heads`` = d_head);
- ``d_ff``: hidden width of the feed-forward network (usually 4 x d_model);
- ``max_len``: longest sequence the position embeddings cover; ``dropout``: dropout probability;
- ``activation``: "gelu" (exact, BERT/ViT), "gelu_tanh" (GPT-2's approximation) or "relu";
- ``norm_eps``: LayerNorm epsilon (BERT 1e-12, GPT-2 1e-5, ViT 1e-12 in HF).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


@dataclass
class BaseConfig:
    vocab_size: int = 100
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    max_len: int = 128
    dropout: float = 0.0
    activation: str = "gelu"
    norm_eps: float = 1e-5

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when the config cannot build a working model."""
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len"):
            check_positive_int(self, name)
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"n_heads={self.n_heads} does not divide d_model={self.d_model}: every head gets "
                f"d_model / n_heads dimensions, so pick n_heads among the divisors of d_model."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}.")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps}.")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """Build a config from a dict, refusing unknown keys with a clear message."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"Unknown {cls.__name__} fields {unknown}; known fields: {sorted(known)}."
            )
        return cls(**d)


def check_positive_int(config, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{type(config).__name__}.{name} must be an int, got {value!r}.")
    if value <= 0:
        raise ValueError(f"{type(config).__name__}.{name} must be positive, got {value}.")
