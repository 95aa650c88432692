"""ptlearn: learn how pretrained Transformers work by building them.

The public API: configs, models, the Trainer, data loaders and the visualization entry points.
Everything is written out in PyTorch in small files; start reading at ``ptlearn/attention.py``.
"""

from importlib.metadata import PackageNotFoundError, version

from . import data, doctor  # ptlearn.doctor() prints what this machine gives the course
from .attention import KVCache, MultiHeadAttention, causal_mask, scaled_dot_product_attention
from .checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from .config import BaseConfig
from .device import describe_device, get_device, scale_for_device
from .layers import Embeddings, FeedForward, TransformerBlock, sinusoidal_encoding
from .metrics import accuracy, bleu, perplexity
from .models import (
    GPT,
    AlbertConfig,
    AlbertForPreTraining,
    AlbertForSequenceClassification,
    AlbertModel,
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
    GPTConfig,
    ViTConfig,
    ViTForImageClassification,
    ViTMAE,
    ViTModel,
)
from .outputs import ModelOutput, Seq2SeqOutput
from .tokenization import CharTokenizer, HFTokenizer, load_tokenizer
from .training import (
    AttentionRecorder,
    Callback,
    History,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    set_seed,
)
from .transformer import Decoder, Encoder, EncoderDecoder, EncoderDecoderConfig

try:  # the installed distribution's version, never a hand-copied string
    __version__ = version("ptlearn-course")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was not installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    """``ptlearn.viz`` is imported on first use: it pulls in matplotlib and ipywidgets, which the
    CLI and plain training scripts do not need."""
    if name == "viz":
        import importlib

        return importlib.import_module(".viz", __name__)
    raise AttributeError(f"module 'ptlearn' has no attribute {name!r}")


__all__ = [
    "AlbertConfig",
    "AlbertForPreTraining",
    "AlbertForSequenceClassification",
    "AlbertModel",
    "BertConfig",
    "BertForPreTraining",
    "BertForSequenceClassification",
    "BertModel",
    "GPT",
    "GPTConfig",
    "ViTConfig",
    "ViTForImageClassification",
    "ViTMAE",
    "ViTModel",
    "viz",
    "AttentionRecorder",
    "Callback",
    "CharTokenizer",
    "HFTokenizer",
    "History",
    "Trainer",
    "TrainConfig",
    "TrainingDivergedError",
    "accuracy",
    "bleu",
    "data",
    "describe_device",
    "doctor",
    "get_device",
    "load_checkpoint",
    "load_model_weights",
    "load_tokenizer",
    "perplexity",
    "save_checkpoint",
    "scale_for_device",
    "set_seed",
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
