"""The configuration fields every ptlearn model shares, checked when a config is made.

Each model has its own dataclass (``GPTConfig``, ``BertConfig``, ...) that inherits these fields,
so the same name means the same thing everywhere:

- ``vocab_size``: number of token ids; ``d_model``: width C of the residual stream;
- ``n_layers``: Transformer blocks; ``n_heads``: attention heads H (``d_model / n_heads`` = d_head);
- ``d_ff``: hidden width of the feed-forward network (usually 4 x d_model);
- ``max_len``: longest sequence the position embeddings cover; ``dropout``: dropout probability;
- ``activation``: "gelu" (exact, BERT/ViT), "gelu_tanh" (GPT-2's approximation), "relu", "relu2"
  (ReLU squared) or "silu" (SwiGLU's gate);
- ``norm_eps``: LayerNorm epsilon (BERT 1e-12, GPT-2 1e-5, ViT 1e-12 in HF).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "relu2", "silu")


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
        config = cls(**d)
        check_plausible_size(config)
        return config


# A config read from a file that plans more parameters than this is refused before any layer is
# built: 20 billion fp32 parameters (80 GB) is far past anything this course trains or loads.
MAX_PARAMETERS = 20 * 10**9


def planned_parameters(config) -> int:
    """About how many parameters ``config`` builds, counted from its sizes alone (no allocation):
    the embedding tables plus the attention (4 C^2) and feed-forward (2 C d_ff) matrices of every
    block, counting a block (or half of one) once where ALBERT shares it across layers."""
    C = config.d_model
    E = getattr(config, "d_embed", None) or C
    embed = (config.vocab_size + config.max_len) * E
    attention, ffn = 4 * C * C, 2 * C * config.d_ff
    share = getattr(config, "share", "none")
    copies = {"all": (1, 1), "attention": (1, config.n_layers), "ffn": (config.n_layers, 1)}
    n_attn, n_ffn = copies.get(share, (config.n_layers, config.n_layers))
    return embed + n_attn * attention + n_ffn * ffn


def check_plausible_size(config, source: str | None = None) -> None:
    """Refuse, before anything is allocated, a config (usually from a file) with absurd sizes."""
    planned = planned_parameters(config)
    if planned > MAX_PARAMETERS:
        where = f"{source}: " if source else ""
        sizes = ", ".join(
            f"{k}={getattr(config, k)}" for k in ("vocab_size", "d_model", "n_layers", "d_ff")
        )
        raise ValueError(
            f"{where}this {type(config).__name__} would build about {planned:.3g} parameters "
            f"({sizes}), more than the {MAX_PARAMETERS:.0e} ptlearn accepts from a file. "
            "The config is damaged or not meant for this model: check those fields."
        )


def check_positive_int(config, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{type(config).__name__}.{name} must be an int, got {value!r}.")
    if value <= 0:
        raise ValueError(f"{type(config).__name__}.{name} must be positive, got {value}.")
