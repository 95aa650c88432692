"""Chapter 08's study over several seeds: six pretraining objectives, one backbone, one budget.

    python benchmarks/objectives_study.py                         # preset by device, 3 seeds
    python benchmarks/objectives_study.py --preset cpu --threads 2
    python benchmarks/objectives_study.py --preset ci --seeds 0   # exactly the notebook's run
    python benchmarks/objectives_study.py --render-only           # rewrite the .md from the .json

Each seed pretrains every objective of :data:`ptlearn.pretraining.OBJECTIVES` for the same number
of text tokens (wall and CPU time recorded), then evaluates each backbone, and the same backbone at
random init, by a linear probe and by full fine-tuning on SST-2 and AG News, beside TF-IDF +
logistic regression and the majority class (:mod:`ptlearn.study`). Seeds change the
initialisation, the pretraining batches and the fine-tuning order; the tokenizer and the labelled
subsets are the same for every seed.

Presets (:data:`PRESETS`): ``ci`` = the notebook's CPU run; ``cpu`` = a larger token budget that
still fits a shared 2-core machine; ``gpu`` = a wider, deeper backbone and 100x the tokens.
Writes ``benchmarks/results/objectives_study.json`` (config, machine, every seed's rows, mean and
std) and ``objectives_study.md`` (the table the notebook shows beside its live run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ptlearn.device import describe_device, get_device
from ptlearn.study import StudyConfig, aggregate, load_study_data, run_study, study_table

RESULTS = Path(__file__).resolve().parent / "results" / "objectives_study"
PRESETS = {
    "ci": StudyConfig(),
    "cpu": replace(StudyConfig(), pretrain_tokens=300_000, finetune_steps=100),
    "gpu": StudyConfig(
        backbone=dict(d_model=256, n_layers=4, n_heads=4, d_ff=1024, max_len=64),
        vocab_size=8000, batch_size=128, pretrain_tokens=40_000_000, pretrain_lr=5e-4,
        n_train=6000, n_test=800, finetune_steps=600, finetune_lr=2e-4, finetune_batch_size=32,
    ),
}  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=[*PRESETS, "auto"], default="auto")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--pretrain-tokens", type=int, help="override the preset's token budget")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=RESULTS, help="path without suffix")
    p.add_argument(
        "--render-only", action="store_true", help="rewrite the .md from the stored .json, no run"
    )
    return p.parse_args()


def markdown(config: StudyConfig, rows: list[dict], meta: dict) -> str:
    b = config.backbone
    return f"""# Pretraining objectives: stored benchmark result

Written by `benchmarks/objectives_study.py --preset {meta["preset"]}` on {meta["date"]}:
{meta["device"]} of a {meta["cpus"]}-core machine, {meta["wall_s"] / 60:.0f} min wall time,
{meta["cpu_s"] / 60:.0f} min CPU time (the run got {100 * meta["cpu_s"] / meta["wall_s"]:.0f}% of a core on average: the
machine was shared with other jobs). Mean ± std over seeds {meta["seeds"]}; accuracies in %.

Budget per objective: {config.pretrain_tokens:,} text tokens (batch {config.batch_size} windows of
{b["max_len"] - 3} tokens, lr {config.pretrain_lr}). Backbone: d_model {b["d_model"]},
{b["n_layers"]} layers, {b["n_heads"]} heads, d_ff {b["d_ff"]}, max_len {b["max_len"]},
WordPiece vocabulary {config.vocab_size}. Downstream: {config.n_train} training and
{config.n_test} test examples per task; fine-tuning {config.finetune_steps} steps at lr
{config.finetune_lr} (batch {config.finetune_batch_size}); probe = logistic regression on frozen,
pooled features. Pretraining seconds: wall time, and CPU time summed over threads (on a machine
shared with other jobs the CPU column is the one to compare). The supervised row was pretrained on
AG News labels, so its AG News numbers are in-task, not transfer.

{study_table(rows)}
"""


def render(out: Path) -> None:
    """Rewrite ``out.md`` from ``out.json`` (after a change to the table's format)."""
    record = json.loads(out.with_suffix(".json").read_text())
    config = StudyConfig(
        **{**record["config"], "objectives": tuple(record["config"]["objectives"])}
    )
    out.with_suffix(".md").write_text(markdown(config, record["mean"], record["meta"]))


def main() -> None:
    args = parse_args()
    if args.render_only:
        return render(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    preset = args.preset if args.preset != "auto" else ("gpu" if device.type == "cuda" else "cpu")
    config = PRESETS[preset]
    if args.pretrain_tokens:
        config = replace(config, pretrain_tokens=args.pretrain_tokens)
    wall, cpu = time.perf_counter(), time.process_time()
    data = load_study_data(config)
    runs = []
    for seed in args.seeds:
        print(f"--- seed {seed}", flush=True)
        runs.append(run_study(config, data, device=device, seed=seed))
    rows = aggregate(runs)
    meta = dict(
        preset=preset, seeds=args.seeds, device=describe_device(device),
        threads=torch.get_num_threads(), wall_s=time.perf_counter() - wall,
        cpu_s=time.process_time() - cpu, date=time.strftime("%Y-%m-%d"),
        torch=torch.__version__, python=platform.python_version(), cpus=os.cpu_count(),
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = dict(meta=meta, config=asdict(config), mean=rows, runs=runs)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(config, rows, meta))
    print(study_table(rows))
    print(f"wrote {args.out.with_suffix('.md')} and .json ({meta['wall_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
