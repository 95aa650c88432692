"""Data for the course: real corpora, synthetic tasks, a generated grammar, images and batching.

- :mod:`.sources`: where real corpora are found (``$PTLEARN_DATA_DIR``, the cache, a download);
- :mod:`.text`: Tiny Shakespeare, SST-2, AG News, with fixed train/validation/test splits;
- :mod:`.synthetic`: copy, reverse, sort, addition, number-to-words, associative recall;
- :mod:`.grammar`: generated review sentences where negation flips the sentiment;
- :mod:`.images`: scikit-learn's 8x8 digits as image tensors;
- :mod:`.batching`: language-model windows, a dict dataset, a padding ``collate``,
  ``encode_texts`` (truncating ``[CLS] text [SEP]``) and length-bucketed batches;
- :mod:`.batches`: the Trainer's batch functions for each pretraining objective;
- :mod:`.corpora`: the texts ``ptlearn train``/``finetune`` read, by name.
"""

from .batching import (
    DictDataset,
    LMDataset,
    bucketed_batches,
    collate,
    encode_texts,
    eval_batches,
    random_lm_batch,
    sorted_by_length,
)
from .grammar import (
    make_grammar_corpus,
    make_grammar_documents,
    make_grammar_splits,
    sentiment_label,
)
from .images import DIGITS_CLASSES, load_digits
from .sources import DataNotFoundError, dataset_dir, get_cache_dir
from .synthetic import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Seq2SeqData,
    Vocab,
    addition_task,
    associative_recall,
    copy_task,
    number_to_words,
    number_words_task,
    reverse_task,
    sort_task,
)
from .text import (
    AG_NEWS_CLASSES,
    SST2_CLASSES,
    LabeledTexts,
    load_ag_news,
    load_sst2,
    load_tinyshakespeare,
    train_val_split,
)

__all__ = [
    "AG_NEWS_CLASSES",
    "BOS_ID",
    "DIGITS_CLASSES",
    "DataNotFoundError",
    "DictDataset",
    "EOS_ID",
    "LMDataset",
    "LabeledTexts",
    "PAD_ID",
    "SST2_CLASSES",
    "Seq2SeqData",
    "Vocab",
    "addition_task",
    "associative_recall",
    "bucketed_batches",
    "collate",
    "encode_texts",
    "eval_batches",
    "copy_task",
    "dataset_dir",
    "get_cache_dir",
    "load_ag_news",
    "load_digits",
    "load_sst2",
    "load_tinyshakespeare",
    "make_grammar_corpus",
    "make_grammar_splits",
    "make_grammar_documents",
    "number_to_words",
    "number_words_task",
    "random_lm_batch",
    "reverse_task",
    "sentiment_label",
    "sorted_by_length",
    "sort_task",
    "train_val_split",
]
