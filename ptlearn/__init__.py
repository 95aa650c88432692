"""ptlearn: learn how pretrained Transformers work by building them.

The public API: configs, models, the Trainer, data loaders and the visualization entry points.
Everything is written out in PyTorch in small files; start reading at ``ptlearn/attention.py``.
"""

from .attention import KVCache, MultiHeadAttention, causal_mask, scaled_dot_product_attention
from .config import BaseConfig
from .layers import Embeddings, FeedForward, TransformerBlock, sinusoidal_encoding
from .outputs import ModelOutput, Seq2SeqOutput
from .transformer import Decoder, Encoder, EncoderDecoder, EncoderDecoderConfig

__version__ = "0.1.0"

__all__ = [
    "BaseConfig",
    "Decoder",
    "Embeddings",
    "Encoder",
    "EncoderDecoder",
    "EncoderDecoderConfig",
    "FeedForward",
    "KVCache",
    "ModelOutput",
    "MultiHeadAttention",
    "Seq2SeqOutput",
    "TransformerBlock",
    "causal_mask",
    "scaled_dot_product_attention",
    "sinusoidal_encoding",
]
