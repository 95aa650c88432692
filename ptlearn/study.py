"""Chapter 08's experiment: six pretraining objectives, one backbone, one token budget.

1. **Data.** Unlabelled in-domain text = the SST-2 training sentences (labels dropped) plus the AG
   News training texts, shuffled into one token stream. A WordPiece vocabulary is learned from it.
   The downstream tasks draw ``n_train`` labelled training examples and ``n_test`` test examples
   (SST-2: the official dev set; AG News: ptlearn's test split), never seen in pretraining.
2. **Pretraining.** Every objective of :data:`~ptlearn.pretraining.OBJECTIVES` trains the same
   backbone size for the same number of text tokens (``pretrain_tokens``); wall time is recorded.
3. **Evaluation**, for each pretrained backbone and for the same backbone at random init:
   a *linear probe* (frozen features, pooled, then logistic regression) and *full fine-tuning*
   (backbone + linear head, every weight trained), on SST-2 (2 classes) and AG News (4 classes).
   Baselines: TF-IDF + logistic regression (scikit-learn) and the majority class.

:func:`run_study` runs it all and returns one row per objective or baseline; :func:`study_table`
and :func:`plot_study` show the rows; :func:`aggregate` averages several seeds (mean +- std).
"""

from __future__ import annotations

import copy
import functools
import math
import statistics
import time
from dataclasses import dataclass, field

import torch

from . import data as D
from .data.batching import encode_texts
from .finetune import SequenceClassifier, count_parameters, pool
from .metrics import majority_baseline
from .models import BertConfig, BertModel
from .pretraining import OBJECTIVES, pretrain_objective
from .tokenization import HFTokenizer
from .training import TrainConfig, Trainer, set_seed

TASKS = {"sst2": D.load_sst2, "ag_news": D.load_ag_news}
BASELINES = {
    "random": "no pretraining (random init)",
    "tfidf": "TF-IDF + logistic regression",
    "majority": "majority class",
}
SCORES = ("sst2_probe", "sst2_finetune", "ag_news_probe", "ag_news_finetune")


@dataclass
class StudyConfig:
    """The sizes of one study run (the defaults are the notebook's CPU run)."""

    backbone: dict = field(
        default_factory=lambda: dict(d_model=64, n_layers=2, n_heads=2, d_ff=256, max_len=48)
    )
    vocab_size: int = 2000  # WordPiece vocabulary learned from the unlabelled corpus
    batch_size: int = 32  # pretraining batch (windows of max_len - 3 tokens)
    pretrain_tokens: int = 150_000  # text tokens each objective sees
    pretrain_lr: float = 1e-3
    n_train: int = 2000  # labelled training examples per downstream task
    n_test: int = 500  # test examples per downstream task
    finetune_steps: int = 100
    finetune_lr: float = 1e-3
    finetune_batch_size: int = 32
    objectives: tuple = tuple(OBJECTIVES)


# --- data --------------------------------------------------------------------------------------


def subset(data: D.LabeledTexts, n: int, seed: int = 0) -> D.LabeledTexts:
    """``n`` examples drawn without replacement by a fixed seed (all of them if fewer)."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    return D.LabeledTexts(
        [data.texts[i] for i in order], [data.labels[i] for i in order], data.classes
    )


@dataclass
class StudyData:
    """The unlabelled corpus as a token stream, its tokenizer, and the labelled task subsets."""

    tokenizer: HFTokenizer
    stream: torch.Tensor  # 1-D ids: [CLS] text [SEP] [CLS] text [SEP] ...
    tasks: dict  # name -> {"train": LabeledTexts, "test": LabeledTexts}
    n_texts: int


def load_study_data(config: StudyConfig) -> StudyData:
    """Unlabelled text (SST-2 train sentences + AG News train texts, shuffled), a WordPiece
    tokenizer learned on it, and ``n_train`` / ``n_test`` labelled examples per task."""
    corpus = D.load_sst2("train").texts + D.load_ag_news("train").texts
    corpus = [
        corpus[i] for i in torch.randperm(len(corpus), generator=torch.Generator().manual_seed(0))
    ]
    tokenizer = HFTokenizer.train_wordpiece(corpus, vocab_size=config.vocab_size)
    stream = torch.tensor([i for e in tokenizer.tokenizer.encode_batch(corpus) for i in e.ids])
    tasks = {
        name: {
            "train": subset(load("train"), config.n_train),
            "test": subset(load("test"), config.n_test),
        }
        for name, load in TASKS.items()
    }
    return StudyData(tokenizer, stream, tasks, len(corpus))


# --- evaluation --------------------------------------------------------------------------------


def batches(ids: list[list[int]], pad_id: int, batch_size: int = 256):
    """Padded ``input_ids`` / ``attention_mask`` batches, in order (for evaluation)."""
    for start in range(0, len(ids), batch_size):
        yield D.collate([{"input_ids": x} for x in ids[start : start + batch_size]], pad_id=pad_id)


@torch.no_grad()
def predict(model, ids, pad_id: int) -> torch.Tensor:
    """Argmax class of a classifier for every example ``[N]``."""
    model.eval()
    device = next(model.parameters()).device
    preds = [
        model(**{k: v.to(device) for k, v in b.items()}).logits.argmax(-1).cpu()
        for b in batches(ids, pad_id)
    ]
    return torch.cat(preds)


@torch.no_grad()
def features(backbone, pooling: str, ids, pad_id: int) -> torch.Tensor:
    """Frozen sentence vectors ``[N, C]``: the backbone's hidden states, pooled."""
    backbone.eval()
    device = next(backbone.parameters()).device
    out = []
    for b in batches(ids, pad_id):
        b = {k: v.to(device) for k, v in b.items()}
        hidden = backbone(**b).last_hidden_state  # [B, T, C]
        out.append(pool(hidden, b["attention_mask"], pooling).float().cpu())  # [B, C]
    return torch.cat(out)


def logistic_regression(train_x, train_y, test_x, test_y) -> float:
    """Test accuracy of scikit-learn's logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


def linear_probe(backbone, pooling: str, train, test, pad_id: int) -> float:
    """Frozen backbone -> pooled features -> logistic regression: what the features already hold."""
    train_x = features(backbone, pooling, train[0], pad_id).numpy()
    test_x = features(backbone, pooling, test[0], pad_id).numpy()
    return logistic_regression(train_x, train[1], test_x, test[1])


def finetune(backbone, pooling: str, n_classes: int, train, test, pad_id, config, device, seed):
    """Copy the backbone, add a linear head, train every weight; test accuracy."""
    d_model = config.backbone["d_model"]
    model = SequenceClassifier(copy.deepcopy(backbone), d_model, n_classes, pooling)
    steps = config.finetune_steps
    train_config = TrainConfig(
        lr=config.finetune_lr, warmup_steps=max(1, steps // 10), max_steps=steps,
        batch_size=config.finetune_batch_size, weight_decay=0.01, progress=False,
        device=str(device), seed=seed,
    )  # fmt: skip
    dataset = D.DictDataset(input_ids=train[0], labels=train[1])
    collate = functools.partial(D.collate, pad_id=pad_id)
    model.train()  # features() leaves the backbone in eval mode
    Trainer(model, train_config, dataset, collate_fn=collate).fit()
    return (predict(model, test[0], pad_id) == torch.tensor(test[1])).float().mean().item()


def tfidf_baseline(train: D.LabeledTexts, test: D.LabeledTexts) -> float:
    """TF-IDF of words and word pairs + logistic regression: a strong bag-of-words baseline."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    clf = LogisticRegression(max_iter=2000, C=10.0)
    clf.fit(vectorizer.fit_transform(train.texts), train.labels)
    return float(clf.score(vectorizer.transform(test.texts), test.labels))


# --- the study ---------------------------------------------------------------------------------


def pretrain(task, config: StudyConfig, device, seed: int) -> dict:
    """Train ``task.model`` on ``pretrain_tokens`` text tokens; returns what the table reports."""
    steps = max(1, round(config.pretrain_tokens / task.tokens_per_step))
    train_config = TrainConfig(
        lr=config.pretrain_lr, warmup_steps=max(1, steps // 10), max_steps=steps,
        batch_size=config.batch_size, weight_decay=0.01, progress=False,
        log_every=max(1, steps // 25), device=str(device), seed=seed,
    )  # fmt: skip
    trainer = Trainer(task.model, train_config, task.batch_fn)
    wall, cpu = time.perf_counter(), time.process_time()
    steps_logged, losses = trainer.fit().series("loss")
    return dict(
        steps=steps, tokens=round(steps * task.tokens_per_step),
        pretrain_s=time.perf_counter() - wall, pretrain_cpu_s=time.process_time() - cpu,
        pretrain_params=count_parameters(task.model), first_loss=losses[0], final_loss=losses[-1],
        loss_curve=[steps_logged, losses],
    )  # fmt: skip


def evaluate_backbone(backbone, pooling: str, data: StudyData, config, device, seed) -> dict:
    """Linear probe and fine-tuning accuracy on every task."""
    scores, pad_id = {}, data.tokenizer.pad_id
    max_len = config.backbone["max_len"]
    for name, split in data.tasks.items():
        train = (encode_texts(data.tokenizer, split["train"].texts, max_len), split["train"].labels)
        test = (encode_texts(data.tokenizer, split["test"].texts, max_len), split["test"].labels)
        n_classes = len(split["train"].classes)
        scores[f"{name}_probe"] = linear_probe(backbone, pooling, train, test, pad_id)
        scores[f"{name}_finetune"] = finetune(
            backbone, pooling, n_classes, train, test, pad_id, config, device, seed
        )
    return scores


def run_objective(name, data: StudyData, config: StudyConfig, device="cpu", seed: int = 0) -> dict:
    """Pretrain one objective (or, for ``"random"``, nothing) and evaluate its backbone."""
    set_seed(seed)  # the same initialisation stream for every objective
    row = {"objective": name, "label": OBJECTIVES.get(name) or BASELINES[name]}
    if name == "random":
        bert = BertConfig(**config.backbone, vocab_size=data.tokenizer.vocab_size)
        backbone, pooling = BertModel(bert).to(device), "mean"
        row.update(steps=0, tokens=0)
    else:
        task = pretrain_objective(
            name, config.backbone, data.tokenizer, stream=data.stream,
            labeled=supervised_data(data, config) if name == "supervised" else None,
            batch_size=config.batch_size,
        )  # fmt: skip
        row.update(pretrain(task, config, device, seed))
        backbone, pooling = task.backbone(), task.pooling
    row.update(params=count_parameters(backbone), pooling=pooling)
    row.update(evaluate_backbone(backbone, pooling, data, config, device, seed))
    return row


def supervised_data(data: StudyData, config: StudyConfig):
    """Supervised pretraining data: AG News's full training split (6,000 articles), tokenized."""
    texts = D.load_ag_news("train")
    return encode_texts(data.tokenizer, texts.texts, config.backbone["max_len"]), texts.labels


def baseline_rows(data: StudyData) -> list[dict]:
    """TF-IDF + logistic regression and the majority class (no pretraining, no network)."""
    rows = []
    for name, fn in (("tfidf", tfidf_baseline), ("majority", majority_baseline)):
        row = {"objective": name, "label": BASELINES[name]}
        for task, split in data.tasks.items():
            acc = fn(split["train"], split["test"])
            row[f"{task}_probe"] = acc
            row[f"{task}_finetune"] = acc if name == "majority" else None
        rows.append(row)
    return rows


def run_study(config: StudyConfig, data: StudyData | None = None, device="cpu", seed=0, log=print):
    """Every objective, the random-init backbone and the two baselines: a list of row dicts."""
    data = data or load_study_data(config)
    rows = []
    for name in (*config.objectives, "random"):
        start = time.perf_counter()
        rows.append(run_objective(name, data, config, device, seed))
        if log:
            seconds = time.perf_counter() - start
            log(f"{rows[-1]['label']:<36} {format_scores(rows[-1])}  ({seconds:.0f} s)")
    return rows + baseline_rows(data)


# --- reporting ---------------------------------------------------------------------------------


def format_scores(row: dict) -> str:
    return "  ".join(f"{k} {row[k]:.3f}" for k in SCORES if row.get(k) is not None)


def _cell(value, std=None, fmt="{:.1f}", scale=100.0) -> str:
    if value is None:
        return "—"
    text = fmt.format(scale * value)
    return text if std is None else f"{text} ± {fmt.format(scale * std)}"


def study_table(rows: list[dict]) -> str:
    """A Markdown table: accuracies in %, parameters, tokens, pretraining wall and CPU seconds
    (CPU time counts every thread; keys ending in ``_std``, from :func:`aggregate`, add ± std)."""
    lines = [
        "| objective | params (pretraining) | tokens seen | pretrain s (wall) | pretrain s (CPU) "
        "| SST-2 probe | SST-2 fine-tune | AG News probe | AG News fine-tune |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [
            _cell(r.get("pretrain_params"), fmt="{:.2f}M", scale=1e-6),
            _cell(r.get("tokens"), fmt="{:,.0f}", scale=1),
            _cell(r.get("pretrain_s"), r.get("pretrain_s_std"), fmt="{:.0f}", scale=1),
            _cell(r.get("pretrain_cpu_s"), r.get("pretrain_cpu_s_std"), fmt="{:.0f}", scale=1),
            *(_cell(r.get(k), r.get(f"{k}_std")) for k in SCORES),
        ]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


AVERAGED = ("tokens", "pretrain_s", "pretrain_cpu_s", "final_loss", *SCORES)


def aggregate(runs: list[list[dict]]) -> list[dict]:
    """The rows of several seeds -> one row per objective: the mean of each number in
    :data:`AVERAGED` and its sample standard deviation as ``key_std``; other fields from the
    first seed (loss curves dropped)."""
    out = []
    for rows in zip(*runs):
        row = {k: v for k, v in rows[0].items() if k != "loss_curve"}
        for key in AVERAGED:
            values = [r.get(key) for r in rows]
            if all(isinstance(v, (int, float)) for v in values):
                row[key] = statistics.fmean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["seeds"] = len(rows)
        out.append(row)
    return out


def plot_study(rows: list[dict], title: str = "accuracy by pretraining objective"):
    """Grouped bars: one group per objective, one bar per (task, probe / fine-tune)."""
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [r for r in rows if r["objective"] != "majority"]
    majority = next((r for r in rows if r["objective"] == "majority"), None)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=False)
    x = np.arange(len(shown))
    for ax, task, name in zip(axes, ("sst2", "ag_news"), ("SST-2", "AG News")):
        for j, mode in enumerate(("probe", "finetune")):
            key = f"{task}_{mode}"
            vals = [100 * (r.get(key) or math.nan) for r in shown]
            errs = [100 * (r.get(f"{key}_std") or 0.0) for r in shown]
            ax.bar(
                x + (j - 0.5) * 0.38,
                vals,
                0.38,
                yerr=errs,
                label=mode.replace("finetune", "fine-tune"),
            )
        if majority:
            ax.axhline(
                100 * majority[f"{task}_probe"], color="gray", ls="--", lw=1, label="majority class"
            )
        ax.set_xticks(
            x, [r["label"].split(" (")[0] for r in shown], rotation=35, ha="right", fontsize=8
        )
        ax.set(title=name, ylabel="test accuracy (%)", ylim=(0, 118))  # headroom for the legend
        ax.legend(fontsize=8, ncol=3, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
