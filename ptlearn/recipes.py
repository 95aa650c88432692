"""Recipes: a model, its data and its training settings, by name. ``ptlearn train`` runs them.

A recipe answers "train model M on data D with preset P": it builds the model from the preset's
shape, turns the corpus into batches, and fills a :class:`~ptlearn.training.TrainConfig`
(learning rate, warm-up, cosine schedule, time budget). The CLI and the chapters call the same
:func:`build` and :func:`build_finetune`, so a number in ``benchmarks/RESULTS.md`` is one command
away for a learner::

    recipe = build("gpt", "tinyshakespeare")            # the 90-second CPU recipe
    Trainer(recipe.model, recipe.config, recipe.train_data, recipe.eval_data).fit()

Presets are plain dicts (``RECIPES["gpt"]["cpu"]``): ``model`` holds config fields, ``train``
holds TrainConfig fields, and the rest sizes the batches. Read them as a record of what was
measured to work: the ``"cpu"`` GPT preset is the time-to-quality recipe (90 s of char-level
Tiny Shakespeare on two CPU cores; its measured loss is in benchmarks/RESULTS.md), the ``"gpu"``
one is nanoGPT's Shakespeare shape (6 layers, 384 wide, 256 characters of context), ``"tiny"``
keeps tests fast.

Data for each model:

- ``gpt``: characters of Tiny Shakespeare (nanoGPT's split: the last 10% is validation; the loss
  is averaged over ``eval_batches`` random windows of it) or of the generated review grammar;
- ``bert`` / ``albert``: a WordPiece tokenizer trained on the training text, then masked language
  modelling (15%, 80/10/10) plus next-sentence (BERT) or sentence-order (ALBERT) prediction on
  pairs of consecutive lines (:func:`sentence_documents`; validation: the last 10% of the text);
- ``vit``: scikit-learn's 8x8 digits (train 1,437 / test 360 images, evaluated on test).

Fine-tuning (:func:`build_finetune`) trains a BERT/ALBERT classifier on SST-2, AG News or the
review grammar, from scratch or from a ``ptlearn train bert --out DIR`` run (``from_dir=DIR``).
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import data as D
from .checkpoint import load_checkpoint
from .data.batches import pair_batch, random_image_batch, whole_set
from .data.batching import encode_texts
from .data.corpora import char_corpus, labeled_texts, sentence_documents
from .metrics import accuracy
from .models import (
    BERT_PRESETS,
    GPT,
    VIT_PRESETS,
    VIT_TRAIN_PRESETS,
    AlbertConfig,
    AlbertForPreTraining,
    AlbertForSequenceClassification,
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    GPTConfig,
    ViTConfig,
    ViTForImageClassification,
)
from .tokenization import CharTokenizer, HFTokenizer
from .training import TrainConfig

# batch functions and corpora live in ptlearn.data; these names stay importable from here
__all__ = [
    "DATA",
    "FINETUNE_DATA",
    "FINETUNE_RECIPES",
    "RECIPES",
    "Recipe",
    "build",
    "build_finetune",
    "char_corpus",
    "default_preset",
    "labeled_texts",
    "pair_batch",
    "random_image_batch",
    "sentence_documents",
    "whole_set",
]

# --- presets ---------------------------------------------------------------------------------

_RUN = dict(max_steps=None, eval_every=None)  # time-budgeted: cosine decay follows the clock

# Chapter 04's recipe at the CPU shape: GPT-2's architecture (learned positions, LayerNorm, GELU,
# biases, tied head) with AdamW, warm-up and cosine decay. It is where chapter 12's speedrun starts.
_CPU_GPT2 = dict(
    model=dict(d_model=96, n_layers=3, n_heads=4, d_ff=192, max_len=64, activation="gelu"),
    batch_size=48,
    train=dict(
        lr=8e-3, warmup_steps=100, min_lr_ratio=0.0, weight_decay=0.1, betas=(0.9, 0.99),
        time_budget=90.0, eval_batches=50, **_RUN,
    ),
)  # fmt: skip

GPT_RECIPES = {
    # the 90-second CPU recipe (benchmarks/RESULTS.md, "Time to quality"): chapter 04's recipe
    # ("cpu-adamw", below) with what chapter 12's speedrun kept (benchmarks/results/speedrun.json):
    # the blocks' matrices train with Muon (ptlearn.training.muon, lr 0.02) and positions are
    # rotary (ptlearn.rotary); WSD, ReLU², no biases, RMSNorm, QK-norm and SwiGLU did not pay here
    "cpu": dict(
        copy.deepcopy(_CPU_GPT2),
        model=dict(_CPU_GPT2["model"], positional="rotary"),
        train=dict(_CPU_GPT2["train"], muon_lr=0.02),
    ),
    # chapter 04's recipe: AdamW for every parameter (narrower than "reference": 96 wide, a 2x
    # feed-forward layer, ~1.7x the steps in the same time, a higher learning rate that the
    # smaller model tolerates after a longer warm-up, the cosine decayed to zero)
    "cpu-adamw": _CPU_GPT2,
    # nanoGPT's Shakespeare-char shape for a GPU (bf16 autocast and fused AdamW come with CUDA)
    "gpu": dict(
        model=dict(d_model=384, n_layers=6, n_heads=6, d_ff=1536, max_len=256, dropout=0.2),
        batch_size=64,
        train=dict(
            lr=1e-3, warmup_steps=100, min_lr_ratio=0.1, weight_decay=0.1, betas=(0.9, 0.99),
            time_budget=180.0, eval_batches=200, **_RUN,
        ),
    ),
    # the reference: nanoGPT's model with the best recipe of benchmarks/gpt_recipe_search.py
    # (1.71 in 90 s)
    "reference": dict(
        model=dict(d_model=128, n_layers=3, n_heads=4, d_ff=512, max_len=64, activation="gelu"),
        batch_size=48,
        train=dict(
            lr=5e-3, warmup_steps=20, min_lr_ratio=0.1, weight_decay=0.1, betas=(0.9, 0.99),
            time_budget=90.0, eval_batches=50, **_RUN,
        ),
    ),
    "tiny": dict(
        model=dict(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=32),
        batch_size=8,
        train=dict(lr=3e-3, warmup_steps=2, time_budget=5.0, eval_batches=4, **_RUN),
    ),
}  # fmt: skip

# the settings of benchmarks/pretrain_bert.py: BERT_PRESETS["tiny"] with a 500-piece WordPiece
_PRETRAIN_CPU = dict(
    model=dict(BERT_PRESETS["tiny"], max_len=64),
    vocab_size=500, batch_size=32,
    train=dict(lr=2e-3, warmup_steps=100, weight_decay=0.01, betas=(0.9, 0.999),
               time_budget=120.0, eval_batches=20, **_RUN),
)  # fmt: skip
_PRETRAIN_GPU = dict(  # BERT_PRESETS["mini"]
    model=dict(BERT_PRESETS["mini"], max_len=128),
    vocab_size=4000, batch_size=128,
    train=dict(lr=5e-4, warmup_steps=200, weight_decay=0.01, time_budget=180.0, eval_batches=50,
               **_RUN),
)  # fmt: skip
_PRETRAIN_TINY = dict(
    model=dict(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=32),
    vocab_size=200, batch_size=8,
    train=dict(lr=1e-3, warmup_steps=2, time_budget=5.0, eval_batches=2, **_RUN),
)  # fmt: skip
BERT_RECIPES = {"cpu": _PRETRAIN_CPU, "gpu": _PRETRAIN_GPU, "tiny": _PRETRAIN_TINY}
# ALBERT: the same runs with a factorized embedding (E = d_model / 2) and all layers shared
ALBERT_RECIPES = {
    name: {**p, "model": {**p["model"], "d_embed": p["model"]["d_model"] // 2, "share": "all"}}
    for name, p in BERT_RECIPES.items()
}

_VIT_TRAIN = {k: v for k, v in VIT_TRAIN_PRESETS["digits"].items() if k != "batch_size"}
VIT_RECIPES = {
    # the 8x8 digits recipe (VIT_PRESETS / VIT_TRAIN_PRESETS["digits"], also run by
    # benchmarks/vit_digits.py); its 60-second test accuracy is in benchmarks/RESULTS.md
    "cpu": dict(
        model=dict(VIT_PRESETS["digits"]),
        batch_size=VIT_TRAIN_PRESETS["digits"]["batch_size"],
        max_shift=1,  # random 1-pixel shifts: 60 s is ~115 passes over the 1,437 images
        train=dict(_VIT_TRAIN, time_budget=60.0, eval_batches=1, **_RUN),
    ),
    "tiny": dict(
        model=dict(d_model=32, n_layers=2, n_heads=2, d_ff=64),
        batch_size=32,
        train=dict(lr=2e-3, warmup_steps=2, time_budget=5.0, eval_batches=1, **_RUN),
    ),
}
VIT_RECIPES["gpu"] = VIT_RECIPES["cpu"]

RECIPES = {"gpt": GPT_RECIPES, "bert": BERT_RECIPES, "albert": ALBERT_RECIPES, "vit": VIT_RECIPES}
DATA = {
    "gpt": ("tinyshakespeare", "grammar"),
    "bert": ("tinyshakespeare", "grammar"),
    "albert": ("tinyshakespeare", "grammar"),
    "vit": ("digits",),
}

_FINETUNE_CPU = dict(  # BERT_PRESETS["tiny"]
    model=dict(BERT_PRESETS["tiny"], max_len=64, dropout=0.1),
    vocab_size=4000, batch_size=32,
    train=dict(lr=5e-4, warmup_steps=50, weight_decay=0.01, time_budget=120.0, eval_batches=1,
               **_RUN),
)  # fmt: skip
_FINETUNE_TINY = dict(
    model=dict(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=32),
    vocab_size=200, batch_size=16,
    train=dict(lr=1e-3, warmup_steps=2, time_budget=5.0, eval_batches=1, **_RUN),
)  # fmt: skip
FINETUNE_RECIPES = {
    "bert": {"cpu": _FINETUNE_CPU, "gpu": _FINETUNE_CPU, "tiny": _FINETUNE_TINY},
    "albert": {
        name: {**p, "model": {**p["model"], "d_embed": p["model"]["d_model"] // 2}}
        for name, p in {"cpu": _FINETUNE_CPU, "gpu": _FINETUNE_CPU, "tiny": _FINETUNE_TINY}.items()
    },
}
FINETUNE_DATA = ("sst2", "ag_news", "grammar")


# --- the recipe object -----------------------------------------------------------------------


@dataclass
class Recipe:
    """Everything a Trainer needs, plus what the CLI reports and saves.

    ``train_data``/``eval_data`` are batch functions ``fn(generator) -> dict`` or datasets (then
    ``collate_fn`` batches them); ``metrics(outputs, batch) -> dict`` adds evaluation metrics;
    ``tokenizer`` is saved beside the checkpoint so a later run (``finetune --from``) reads text
    the same way; ``info`` names the run (model, data, preset, parameter count).
    """

    model: nn.Module
    config: TrainConfig
    train_data: object
    eval_data: object
    metrics: object = None
    collate_fn: object = None
    tokenizer: object = None
    info: dict = field(default_factory=dict)


def choose(kind: str, value: str, choices) -> str:
    """``value`` if it is one of ``choices``, else a ValueError that lists them."""
    if value not in choices:
        raise ValueError(f"Unknown {kind} {value!r}; choose one of: {', '.join(choices)}.")
    return value


def default_preset(device: str = "auto") -> str:
    """``"gpu"`` when training will run on CUDA, else ``"cpu"``."""
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "gpu" if on_cuda else "cpu"


def _preset(table: dict, model: str, preset, device: str) -> tuple[str, dict]:
    """(name, a copy of the preset): ``preset`` is a name in ``table[model]`` or a preset dict."""
    if isinstance(preset, dict):
        return "custom", copy.deepcopy(preset)
    presets = table[model]
    name = choose(f"preset for {model}", preset or default_preset(device), list(presets))
    return name, copy.deepcopy(presets[name])


def _train_config(p: dict, seed: int, device: str) -> TrainConfig:
    return TrainConfig(**p["train"], batch_size=p["batch_size"], seed=seed, device=device)


def _info(module: nn.Module, **names) -> dict:
    n_params = sum(t.numel() for t in module.parameters())  # shared/tied tensors counted once
    return {**names, "params": n_params}


def build(
    model: str, data: str | None = None, preset=None, device="auto", seed: int = 0, tokenizer=None
) -> Recipe:
    """The pretraining recipe for ``model`` (gpt, bert, albert, vit) on ``data`` (default: the
    first of ``DATA[model]``) with ``preset``: a name (default: ``"gpu"`` on CUDA, else
    ``"cpu"``) or a dict shaped like ``RECIPES[model]["cpu"]``. The model is initialised under
    ``torch.manual_seed(seed)``. ``tokenizer``: BERT/ALBERT's WordPiece vocabulary instead of
    training one (a resumed run must keep its own: WordPiece training breaks ties differently
    from run to run)."""
    choose("model", model, list(RECIPES))
    data = choose(f"data for {model}", data or DATA[model][0], DATA[model])
    name, p = _preset(RECIPES, model, preset, device)
    torch.manual_seed(seed)
    if model == "gpt":
        recipe = _gpt_recipe(data, p)
    elif model == "vit":
        recipe = _vit_recipe(p)
    else:
        recipe = _pretrain_recipe(model, data, p, tokenizer)
    recipe.config = _train_config(p, seed, device)
    recipe.info = _info(recipe.model, model=model, data=data, preset=name)
    return recipe


# --- GPT: characters ------------------------------------------------------------------------


def _gpt_recipe(data: str, p: dict) -> Recipe:
    text = char_corpus(data)
    tokenizer = CharTokenizer(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train_ids, val_ids = D.train_val_split(ids)  # nanoGPT: first 90% train, last 10% validation
    block, batch = p["model"]["max_len"], p["batch_size"]
    model = GPT(GPTConfig(**p["model"], vocab_size=tokenizer.vocab_size))
    return Recipe(
        model=model,
        config=None,
        train_data=functools.partial(D.random_lm_batch, train_ids, block, batch),
        eval_data=functools.partial(D.random_lm_batch, val_ids, block, batch),
        tokenizer=tokenizer,
    )


# --- BERT / ALBERT: WordPiece, masked LM and sentence pairs ----------------------------------


def pretraining_metrics(outputs, batch: dict) -> dict:
    """Accuracy of the masked-token predictions and of the sentence-pair head."""
    pair_key = "next_sentence_label" if "next_sentence_label" in batch else "sentence_order_label"
    pair_name = "nsp" if pair_key == "next_sentence_label" else "sop"
    return {
        "mlm_accuracy": accuracy(outputs.logits, batch["labels"]),
        f"{pair_name}_accuracy": accuracy(outputs.pair_logits, batch[pair_key]),
    }


def train_wordpiece(texts, vocab_size: int) -> HFTokenizer:
    """A BERT-style WordPiece vocabulary learned from ``texts`` (see :mod:`ptlearn.tokenization`)."""
    return HFTokenizer.train_wordpiece(texts, vocab_size=vocab_size)


def _pretrain_recipe(model: str, data: str, p: dict, tokenizer=None) -> Recipe:
    train_text, val_text = sentence_documents(data)
    if tokenizer is None:
        tokenizer = train_wordpiece((s for d in train_text for s in d), p["vocab_size"])
    train_docs, val_docs = (
        [[tokenizer.encode(s, add_special_tokens=False) for s in d] for d in docs if len(d) > 1]
        for docs in (train_text, val_text)
    )
    objective = "nsp" if model == "bert" else "sop"
    config_cls, model_cls = _PRETRAIN_CLASSES[model]
    config = config_cls(**p["model"], vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)
    args = (tokenizer, p["batch_size"], p["model"]["max_len"], objective)
    return Recipe(
        model=model_cls(config),
        config=None,
        train_data=functools.partial(pair_batch, train_docs, *args),
        eval_data=functools.partial(pair_batch, val_docs, *args),
        metrics=pretraining_metrics,
        tokenizer=tokenizer,
    )


_PRETRAIN_CLASSES = {
    "bert": (BertConfig, BertForPreTraining),
    "albert": (AlbertConfig, AlbertForPreTraining),
}


# --- ViT: 8x8 digits -------------------------------------------------------------------------


def classification_metrics(outputs, batch: dict) -> dict:
    return {"accuracy": accuracy(outputs.logits, batch["labels"])}


def _vit_recipe(p: dict) -> Recipe:
    pixels, labels = D.load_digits("train")  # [1437, 1, 8, 8], [1437]
    test_pixels, test_labels = D.load_digits("test")  # [360, 1, 8, 8], [360]
    return Recipe(
        model=ViTForImageClassification(ViTConfig(**p["model"])),
        config=None,
        train_data=functools.partial(
            random_image_batch, pixels, labels, p["batch_size"], max_shift=p.get("max_shift", 0)
        ),
        eval_data=functools.partial(
            whole_set, {"pixel_values": test_pixels, "labels": test_labels}
        ),
        metrics=classification_metrics,
    )


# --- fine-tuning: sentence classification ----------------------------------------------------

_CLASSIFIERS = {
    "bert": (BertConfig, BertForSequenceClassification, "bert."),
    "albert": (AlbertConfig, AlbertForSequenceClassification, "albert."),
}


def _from_checkpoint(model: str, from_dir: str) -> tuple[dict, HFTokenizer, dict]:
    """(model config fields, tokenizer, encoder weights) of a ``ptlearn train`` output folder."""
    folder = Path(from_dir)
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(
            f"{tokenizer_file} not found: --from needs the --out folder of a "
            f"`ptlearn train {model}` run (it holds checkpoint/ and tokenizer.json)."
        )
    ckpt = load_checkpoint(folder)
    prefix = _CLASSIFIERS[model][2]
    config = ckpt["meta"]["model_config"]
    encoder = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not encoder or ("d_embed" in config) != (model == "albert"):
        raise ValueError(
            f"{folder} holds a {ckpt['meta']['model_class']}; fine-tuning {model} needs the "
            f"output of `ptlearn train {model}`."
        )
    return config, HFTokenizer.load(tokenizer_file), encoder


def build_finetune(
    model: str,
    data: str,
    preset: str | None = None,
    device="auto",
    seed: int = 0,
    from_dir: str | None = None,
    tokenizer=None,
) -> Recipe:
    """A BERT/ALBERT sentence classifier on ``data`` (sst2, ag_news, grammar), evaluated on the
    validation split. With ``from_dir`` (a ``ptlearn train`` output folder) the encoder and the
    tokenizer come from that pretraining run; otherwise both start fresh from the training text
    (or the vocabulary is ``tokenizer``: a resumed run keeps its own)."""
    config_cls, model_cls, prefix = _CLASSIFIERS[choose("model to fine-tune", model, _CLASSIFIERS)]
    choose("data for fine-tuning", data, FINETUNE_DATA)
    name, p = _preset(FINETUNE_RECIPES, model, preset, device)
    train, val = labeled_texts(data, "train"), labeled_texts(data, "validation")
    torch.manual_seed(seed)
    if from_dir:
        fields_, tokenizer, encoder = _from_checkpoint(model, from_dir)
        config = config_cls.from_dict(fields_)  # the checkpoint's own config, unknown keys refused
        classifier = model_cls(config, n_classes=len(train.classes))
        classifier.load_state_dict(encoder, strict=False)  # the head stays freshly initialised
    else:
        if tokenizer is None:
            tokenizer = train_wordpiece(train.texts, p["vocab_size"])
        config = config_cls(**p["model"], vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)
        classifier = model_cls(config, n_classes=len(train.classes))
    max_len = classifier.config.max_len
    collate = functools.partial(D.collate, pad_id=tokenizer.pad_id)
    val_ids = encode_texts(tokenizer, val.texts, max_len)
    val_set = D.DictDataset(input_ids=val_ids, labels=val.labels)
    return Recipe(
        model=classifier,
        config=_train_config(p, seed, device),
        train_data=D.DictDataset(
            input_ids=encode_texts(tokenizer, train.texts, max_len), labels=train.labels
        ),
        eval_data=functools.partial(whole_set, collate([val_set[i] for i in range(len(val))])),
        metrics=classification_metrics,
        collate_fn=collate,
        tokenizer=tokenizer,
        info=_info(classifier, model=model, data=data, preset=name, from_dir=from_dir),
    )


def save_run_files(recipe: Recipe, out_dir: str | Path) -> None:
    """Write ``tokenizer.json`` and ``recipe.json`` (names and sizes) into a run's folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if recipe.tokenizer is not None:
        recipe.tokenizer.save(out / "tokenizer.json")
    (out / "recipe.json").write_text(json.dumps(recipe.info, indent=2))
