"""Chapter 08's experiment: four pretraining objectives on unlabelled reviews, then few labels.

The testbed is the negation grammar (:mod:`ptlearn.data.grammar`), where a sentence's sentiment is
``polarity XOR negated``: a bag of words is capped at 75%, and a network trained from scratch on a
few dozen labels sees no single word that predicts the label (each is positive half of the time).

1. **Unlabelled text.** ``n_reviews`` rated reviews, ``[CLS] sentence [SEP] verdict [SEP]``, with
   the verdict word (``recommended`` / ``avoid``) following the sentence's sentiment
   (:func:`~ptlearn.data.grammar.make_rated_reviews`). No labels, yet predicting the verdict needs
   the negation rule. The test sentences never occur in it. A word-level WordPiece vocabulary.
2. **Pretraining.** Every objective of ``config.objectives`` (:data:`~ptlearn.pretraining.OBJECTIVES`)
   trains the same backbone size for the same number of text tokens (``pretrain_tokens``).
3. **Evaluation**, on the sentiment of a sentence *alone* (no verdict; 50% negated), for each
   pretrained backbone and the same backbone at random init, with ``n_train`` labels drawn per seed:
   a *linear probe* (frozen pooled features + logistic regression) and *full fine-tuning*; and,
   without any label, a *zero-shot* reading of each objective's own head (:func:`zero_shot`).
   Baselines: TF-IDF (words and word pairs) + logistic regression on the same few labels and on
   ``n_bow`` labels (a bag of single words is capped at 75% here), and the majority class.

:func:`run_study` runs it for one seed and returns one row per objective or baseline;
:func:`study_table` and :func:`plot_study` show the rows; :func:`aggregate` averages seeds.
The module is over 350 lines because it is one experiment that chapter 08 reads as a whole
(data, three evaluations, the loop, reporting); nothing else imports it.
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
from .data.grammar import VERDICTS, distinct, make_grammar_corpus, make_rated_reviews
from .finetune import SequenceClassifier, count_parameters, pool
from .metrics import majority_baseline
from .models import BertConfig, BertModel
from .pretraining import OBJECTIVES, pretrain_objective
from .tokenization import HFTokenizer
from .training import TrainConfig, Trainer, set_seed

BASELINES = {
    "random": "no pretraining (random init)",
    "tfidf": "TF-IDF + logistic regression",
    "bow_many": "TF-IDF + logistic regression, many labels",
    "majority": "majority class",
}
SCORES = ("zero_shot", "probe", "finetune")
FAMILIES = {
    "causal_lm": "autoregressive",
    "mlm": "autoencoding",
    "mlm_sop": "autoencoding",
    "span": "seq2seq denoising",
    "rtd": "discriminative",
}


@dataclass
class StudyConfig:
    """The sizes of one study run (the defaults are the notebook's CPU run)."""

    backbone: dict = field(
        default_factory=lambda: dict(
            d_model=32, n_layers=2, n_heads=2, d_ff=128, max_len=24, dropout=0.0
        )
    )
    vocab_size: int = 250  # WordPiece on a ~70-word language: every word is one token
    n_reviews: int = 20_000  # unlabelled rated reviews
    negation_rate: float = 0.2  # in the unlabelled reviews (the labelled task has 0.5)
    batch_size: int = 32  # pretraining batch (windows of max_len - 3 tokens)
    pretrain_tokens: int = 700_000  # text tokens each objective sees
    pretrain_lr: float = 1e-2
    n_train: int = 64  # labelled sentences for the probe and fine-tuning (drawn per seed)
    n_test: int = 500  # held-out distinct sentences
    n_bow: int = 2000  # labels for the bag-of-words ceiling
    finetune_steps: int = 100
    finetune_lr: float = 1e-3
    finetune_batch_size: int = 32
    objectives: tuple = ("causal_lm", "mlm", "span", "rtd")


# --- data --------------------------------------------------------------------------------------


def subset(data: D.LabeledTexts, n: int, seed: int = 0) -> D.LabeledTexts:
    """``n`` examples drawn without replacement by a fixed seed (all of them if fewer)."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    return D.LabeledTexts(
        [data.texts[i] for i in order], [data.labels[i] for i in order], data.classes
    )


@dataclass
class StudyData:
    """The unlabelled reviews as a token stream, their tokenizer, and the labelled sentences."""

    tokenizer: HFTokenizer
    stream: torch.Tensor  # 1-D ids: [CLS] sentence [SEP] verdict [SEP] [CLS] ...
    reviews: tuple  # (sentences, verdicts) of the unlabelled text
    pool: D.LabeledTexts  # labelled sentences the training labels are drawn from (no test one)
    test: D.LabeledTexts  # held-out sentences, none of them in the unlabelled text

    @property
    def n_texts(self) -> int:
        return len(self.reviews[0])


def load_study_data(config: StudyConfig) -> StudyData:
    """Held-out test sentences, rated reviews that avoid them, a word-level tokenizer, the stream."""
    classes = ["negative", "positive"]
    test = D.LabeledTexts(
        *distinct(*make_grammar_corpus(20 * config.n_test, seed=101), config.n_test), classes
    )
    held_out = set(test.texts)  # no test sentence among the labels either
    drawn = make_grammar_corpus(2 * max(2000, config.n_bow), seed=202)
    kept = [(t, y) for t, y in zip(*drawn) if t not in held_out]
    pool = D.LabeledTexts([t for t, _ in kept], [y for _, y in kept], classes)
    sentences, verdicts = make_rated_reviews(
        config.n_reviews, seed=303, negation_rate=config.negation_rate, exclude=test.texts
    )
    reviews = [f"{s} {v}" for s, v in zip(sentences, verdicts)]
    tokenizer = HFTokenizer.train_wordpiece(reviews + pool.texts, vocab_size=config.vocab_size)
    stream = []
    for sentence, verdict in zip(sentences, verdicts):  # [CLS] sentence [SEP] verdict [SEP]
        stream += tokenizer.encode(sentence) + [tokenizer.token_to_id(verdict), tokenizer.sep_id]
    return StudyData(tokenizer, torch.tensor(stream), (sentences, verdicts), pool, test)


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
def features(backbone, pooling, ids, pad_id: int) -> torch.Tensor:
    """Frozen sentence vectors ``[N, C]``: the backbone's hidden states, pooled. ``pooling`` is a
    name of :func:`~ptlearn.finetune.pool` or a function ``(hidden [B, T, C], mask [B, T]) -> [B, C]``
    (chapter 08 passes the learner's last-token reader)."""
    backbone.eval()
    device = next(backbone.parameters()).device
    read = pooling if callable(pooling) else functools.partial(pool, how=pooling)
    out = []
    for b in batches(ids, pad_id):
        b = {k: v.to(device) for k, v in b.items()}
        hidden = backbone(**b).last_hidden_state  # [B, T, C]
        out.append(read(hidden, b["attention_mask"]).float().cpu())  # [B, C]
    return torch.cat(out)


def logistic_regression(train_x, train_y, test_x, test_y) -> float:
    """Test accuracy of scikit-learn's logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


def linear_probe(backbone, pooling, train, test, pad_id: int) -> float:
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


def tfidf_baseline(train: D.LabeledTexts, test: D.LabeledTexts, ngrams=(1, 2)) -> float:
    """TF-IDF of words (and word pairs) + logistic regression: a strong bag-of-words baseline."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=ngrams, min_df=1, sublinear_tf=True)
    clf = LogisticRegression(max_iter=2000, C=10.0)
    clf.fit(vectorizer.fit_transform(train.texts), train.labels)
    return float(clf.score(vectorizer.transform(test.texts), test.labels))


# --- zero-shot: each objective's own head, no labels --------------------------------------------


@torch.no_grad()
def verdict_scores(name: str, model, ids: list[list[int]], tokenizer, device="cpu") -> torch.Tensor:
    """``[N, 2]`` scores of the verdicts (avoid, recommended) after each ``[CLS] sentence [SEP]``,
    read from the pretraining head of objective ``name`` — the task cast as the pretraining text:

    - causal LM: the next-token logits of the two verdict words after ``[SEP]``;
    - masked LM: the logits at a ``[MASK]`` in the verdict's place, ``... [SEP] [MASK] [SEP]``;
    - span corruption: a sentinel in the verdict's place, ``... [SEP] <X0> [SEP]``; the decoder
      has written ``<X0>`` and scores the next token (T5's text-to-text framing);
    - replaced-token detection: each verdict put in place; minus the discriminator's "replaced"
      logit (the verdict it finds more original wins).
    """
    model.eval().to(device)
    verdicts = [tokenizer.token_to_id(VERDICTS[label]) for label in (0, 1)]
    sep, pad = tokenizer.sep_id, tokenizer.pad_id
    scores = []
    for start in range(0, len(ids), 256):
        rows = ids[start : start + 256]
        if name == "causal_lm":
            batch = D.collate([{"input_ids": x} for x in rows], pad_id=pad)
            logits = model(input_ids=batch["input_ids"].to(device)).logits  # [B, T, V]
            last = batch["attention_mask"].sum(1) - 1  # [B]
            scores.append(logits[torch.arange(len(rows)), last][:, verdicts].cpu())
        elif name in ("mlm", "mlm_sop"):
            batch = D.collate([{"input_ids": x + [tokenizer.mask_id, sep]} for x in rows], pad)
            logits = model(input_ids=batch["input_ids"].to(device)).logits  # [B, T, V]
            at = batch["attention_mask"].sum(1) - 2  # [B]  the [MASK]
            scores.append(logits[torch.arange(len(rows)), at][:, verdicts].cpu())
        elif name == "span":
            x0 = model.config.vocab_size - 16  # the first sentinel (16 extra ids, see pretraining)
            batch = D.collate([{"input_ids": x + [x0, sep, sep]} for x in rows], pad)
            dec = torch.tensor([[pad, x0]] * len(rows), device=device)  # [B, 2]
            logits = model(input_ids=batch["input_ids"].to(device), decoder_input_ids=dec).logits
            scores.append(logits[:, 1, verdicts].cpu())  # [B, 2]
        elif name == "rtd":
            per_verdict = []
            for v in verdicts:
                batch = D.collate([{"input_ids": x + [v, sep]} for x in rows], pad)
                mask = batch["attention_mask"].to(device)
                replaced = model(
                    input_ids=batch["input_ids"].to(device), attention_mask=mask
                ).logits
                per_verdict.append(-replaced[torch.arange(len(rows)), mask.sum(1) - 2].cpu())
            scores.append(torch.stack(per_verdict, dim=1))
        else:
            raise ValueError(f"no zero-shot reading for objective {name!r}.")
    return torch.cat(scores)


def zero_shot(name: str, model, data: StudyData, max_len: int, device="cpu") -> float:
    """Accuracy of the verdict the pretrained model prefers, as the sentiment of each test sentence."""
    ids = encode_texts(data.tokenizer, data.test.texts, max_len - 3)  # room for the verdict
    preds = verdict_scores(name, model, ids, data.tokenizer, device).argmax(1)
    return (preds == torch.tensor(data.test.labels)).float().mean().item()


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


def few_labels(data: StudyData, config: StudyConfig, seed: int) -> D.LabeledTexts:
    """The ``n_train`` labelled sentences of one seed (each seed draws its own)."""
    return subset(data.pool, config.n_train, seed=seed)


def evaluate_backbone(backbone, pooling: str, data: StudyData, config, device, seed) -> dict:
    """Linear probe and fine-tuning accuracy with the seed's few labels."""
    max_len, pad_id = config.backbone["max_len"], data.tokenizer.pad_id
    labelled = few_labels(data, config, seed)
    train = (encode_texts(data.tokenizer, labelled.texts, max_len), labelled.labels)
    test = (encode_texts(data.tokenizer, data.test.texts, max_len), data.test.labels)
    return dict(
        probe=linear_probe(backbone, pooling, train, test, pad_id),
        finetune=finetune(backbone, pooling, 2, train, test, pad_id, config, device, seed),
    )


def run_objective(
    name, data: StudyData, config: StudyConfig, device="cpu", seed: int = 0, keep=None
) -> dict:
    """Pretrain one objective (or, for ``"random"``, nothing) and evaluate its backbone. With a
    dict ``keep``, ``keep[name] = (backbone, pooling)``: the pretrained encoder, for a closer look."""
    set_seed(seed)  # the same initialisation stream for every objective
    row = {"objective": name, "label": OBJECTIVES.get(name) or BASELINES[name], "seed": seed}
    if name == "random":
        bert = BertConfig(**config.backbone, vocab_size=data.tokenizer.vocab_size)
        backbone, pooling = BertModel(bert).to(device), "mean"
        row.update(steps=0, tokens=0)
    else:
        task = pretrain_objective(
            name, config.backbone, data.tokenizer, stream=data.stream,
            batch_size=config.batch_size,
        )  # fmt: skip
        row.update(pretrain(task, config, device, seed))
        row["zero_shot"] = zero_shot(name, task.model, data, config.backbone["max_len"], device)
        backbone, pooling = task.backbone(), task.pooling
    if keep is not None:
        keep[name] = (backbone, pooling)
    row.update(params=count_parameters(backbone), pooling=pooling)
    row.update(evaluate_backbone(backbone, pooling, data, config, device, seed))
    return row


def baseline_rows(data: StudyData, config: StudyConfig, seed: int) -> list[dict]:
    """TF-IDF on the seed's few labels and on ``n_bow`` labels, and the majority class."""
    few = few_labels(data, config, seed)
    many = subset(data.pool, config.n_bow, seed=seed)
    scores = {
        "tfidf": tfidf_baseline(few, data.test),
        "bow_many": tfidf_baseline(many, data.test),
        "majority": majority_baseline(few, data.test),
    }
    return [
        {"objective": k, "label": BASELINES[k], "seed": seed, "probe": v} for k, v in scores.items()
    ]


def run_study(
    config: StudyConfig, data: StudyData | None = None, device="cpu", seed=0, log=print, keep=None
):
    """Every objective, the random-init backbone and the baselines for one seed: row dicts.
    ``keep``: a dict that receives each ``(backbone, pooling)`` (see :func:`run_objective`)."""
    data = data or load_study_data(config)
    rows = []
    for name in (*config.objectives, "random"):
        start = time.perf_counter()
        rows.append(run_objective(name, data, config, device, seed, keep=keep))
        if log:
            seconds = time.perf_counter() - start
            log(f"seed {seed} {rows[-1]['label']:<36} {format_scores(rows[-1])}  ({seconds:.0f} s)")
    return rows + baseline_rows(data, config, seed)


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
    (CPU time counts every thread; keys ending in ``_std``, from :func:`aggregate`, add ± std).
    A baseline's one number is in the probe column (it reads the few labels directly)."""
    lines = [
        "| objective | family | params (pretraining) | tokens seen | pretrain s (CPU) "
        "| zero-shot (no labels) | probe | fine-tune |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [
            FAMILIES.get(r["objective"], "—"),
            _cell(r.get("pretrain_params"), fmt="{:.3f}M", scale=1e-6),
            _cell(r.get("tokens"), fmt="{:,.0f}", scale=1),
            _cell(r.get("pretrain_cpu_s"), r.get("pretrain_cpu_s_std"), fmt="{:.0f}", scale=1),
            *(_cell(r.get(k), r.get(f"{k}_std")) for k in SCORES),
        ]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


AVERAGED = ("tokens", "pretrain_s", "pretrain_cpu_s", "final_loss", *SCORES)


def aggregate(runs: list[list[dict]]) -> list[dict]:
    """The rows of several seeds -> one row per objective: the mean of each number in
    :data:`AVERAGED` and its sample standard deviation as ``key_std``; ``key_seeds`` keeps every
    seed's value; other fields from the first seed (loss curves dropped)."""
    out = []
    for rows in zip(*runs):
        row = {k: v for k, v in rows[0].items() if k not in ("loss_curve", "seed")}
        for key in AVERAGED:
            values = [r.get(key) for r in rows]
            if all(isinstance(v, (int, float)) for v in values):
                row[key] = statistics.fmean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
                row[f"{key}_seeds"] = values
        row["seeds"] = len(rows)
        out.append(row)
    return out


def margins_over_random(runs: list[list[dict]], key: str = "finetune") -> dict[str, list[float]]:
    """Per objective, its accuracy minus random init's on the same seed (same labels, same
    fine-tuning): the paired gains the chapter's check asserts."""
    gains: dict[str, list[float]] = {}
    for rows in runs:
        by = {r["objective"]: r for r in rows}
        for name, r in by.items():
            if name in OBJECTIVES and r.get(key) is not None:
                gains.setdefault(name, []).append(r[key] - by["random"][key])
    return gains


def plot_study(rows: list[dict], title: str = "accuracy by pretraining objective"):
    """Bars per objective (zero-shot, probe, fine-tune; ± std when aggregated), with the random-init
    fine-tuning, TF-IDF and bag-of-words ceiling as reference lines."""
    import matplotlib.pyplot as plt
    import numpy as np

    by = {r["objective"]: r for r in rows}
    shown = [r for r in rows if r["objective"] in OBJECTIVES or r["objective"] == "random"]
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(shown))
    for j, key in enumerate(SCORES):
        vals = [100 * (r.get(key) if r.get(key) is not None else math.nan) for r in shown]
        errs = [100 * (r.get(f"{key}_std") or 0.0) for r in shown]
        ax.bar(x + (j - 1) * 0.27, vals, 0.27, yerr=errs, label=key.replace("_", "-"))
    lines = (
        ("tfidf", "probe", "TF-IDF, same labels", ":"),
        ("bow_many", "probe", "TF-IDF, many labels", "--"),
    )
    for name, key, label, style in lines:
        if name in by:
            ax.axhline(100 * by[name][key], color="gray", ls=style, lw=1, label=label)
    ax.set_xticks(
        x, [r["label"].split(" (")[0] for r in shown], rotation=20, ha="right", fontsize=8
    )
    ax.set(title=title, ylabel="test accuracy (%)", ylim=(0, 118))  # headroom for the legend
    ax.legend(fontsize=8, ncol=3, loc="upper left")
    fig.tight_layout()
    return fig
