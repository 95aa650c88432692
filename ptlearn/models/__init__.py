"""One architecture per file, each assembled from the shared pieces in ptlearn's core."""

from .albert import (
    ALBERT_PRESETS,
    AlbertConfig,
    AlbertForPreTraining,
    AlbertForSequenceClassification,
    AlbertModel,
)
from .bert import (
    BERT_PRESETS,
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
)
from .gpt import GPT, GPT_PRESETS, GPTConfig
from .vit import (
    VIT_PRESETS,
    VIT_TRAIN_PRESETS,
    MAEOutput,
    ViTConfig,
    ViTForImageClassification,
    ViTMAE,
    ViTModel,
)

__all__ = [
    "ALBERT_PRESETS",
    "AlbertConfig",
    "AlbertForPreTraining",
    "AlbertForSequenceClassification",
    "AlbertModel",
    "BERT_PRESETS",
    "BertConfig",
    "BertForPreTraining",
    "BertForSequenceClassification",
    "BertModel",
    "GPT",
    "GPTConfig",
    "GPT_PRESETS",
    "MAEOutput",
    "VIT_PRESETS",
    "VIT_TRAIN_PRESETS",
    "ViTConfig",
    "ViTForImageClassification",
    "ViTMAE",
    "ViTModel",
]
