"""Chapter 08's study over several seeds: four pretraining objectives, one backbone, one budget.

    python benchmarks/objectives_study.py --threads 1             # the notebook's run, 3 seeds
    python benchmarks/objectives_study.py --preset long --seeds 0 # 3x the pretraining tokens
    python benchmarks/objectives_study.py --render-only           # rewrite the .md from the .json
    python benchmarks/objectives_study.py --merge s0.json s1.json s2.json  # seeds run in parallel

Each seed pretrains every objective of ``StudyConfig.objectives`` (causal LM, masked LM, span
corruption, replaced-token detection) on the same unlabelled rated reviews for the same number of
text tokens, then evaluates each backbone, and the same backbone at random init, on the negation
grammar's sentiment task with few labels: zero-shot through the objective's own head, a linear
probe and full fine-tuning, beside TF-IDF + logistic regression on the same labels and on many
labels, and the majority class (:mod:`ptlearn.study`). Seeds change the initialisation, the
pretraining batches, the fine-tuning order and which few labels are drawn; the unlabelled text,
the tokenizer and the test sentences are the same for every seed.

Presets (:data:`PRESETS`): ``cpu`` = the notebook's run; ``long`` = 3x the pretraining tokens.
Writes ``benchmarks/results/objectives_study.json`` (config, machine, every seed's rows, mean and
std) and ``objectives_study.md`` (the table the notebook shows and checks beside its live run).
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
from ptlearn.study import (
    StudyConfig,
    aggregate,
    load_study_data,
    margins_over_random,
    run_study,
    study_table,
)

RESULTS = Path(__file__).resolve().parent / "results" / "objectives_study"
PRESETS = {"cpu": StudyConfig(), "long": replace(StudyConfig(), pretrain_tokens=2_100_000)}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=list(PRESETS), default="cpu")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--pretrain-tokens", type=int, help="override the preset's token budget")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=RESULTS, help="path without suffix")
    p.add_argument(
        "--render-only", action="store_true", help="rewrite the .md from the stored .json, no run"
    )
    p.add_argument(
        "--merge", type=Path, nargs="+", help="combine one-seed records (same config) into --out"
    )
    return p.parse_args()


def markdown(config: StudyConfig, rows: list[dict], meta: dict) -> str:
    b = config.backbone
    return f"""# Pretraining objectives: stored benchmark result

Written by `benchmarks/objectives_study.py --preset {meta["preset"]}` on {meta["date"]}:
{meta["device"]}, {meta.get("parallel_processes", 1)} process(es) side by side, on a
{meta["cpus"]}-core machine shared with other jobs, {meta["wall_s"] / 60:.0f} min wall time,
{meta["cpu_s"] / 60:.0f} min CPU time. Mean ± std over
seeds {meta["seeds"]}; accuracies in % on {config.n_test} held-out grammar sentences (half of them
negated; label = polarity XOR negation), none of which occurs in the unlabelled text.

Unlabelled text: {config.n_reviews:,} rated reviews (`[CLS] sentence [SEP] verdict [SEP]`, verdict
`recommended` / `avoid`; {100 * config.negation_rate:.0f}% negated). Budget per objective:
{config.pretrain_tokens:,} text tokens (batch {config.batch_size} windows of {b["max_len"] - 3}
tokens, lr {config.pretrain_lr}). Backbone: d_model {b["d_model"]}, {b["n_layers"]} layers,
{b["n_heads"]} heads, d_ff {b["d_ff"]}, max_len {b["max_len"]}; WordPiece vocabulary
{config.vocab_size} (every word one token). Downstream: {config.n_train} labelled sentences drawn
per seed; fine-tuning {config.finetune_steps} steps at lr {config.finetune_lr} (batch
{config.finetune_batch_size}); probe = logistic regression on frozen, pooled features; zero-shot =
the verdict the objective's own head prefers, no labels. Baselines read their labels directly (the
probe column): TF-IDF of words and word pairs on the same {config.n_train} labels and on
{config.n_bow:,} labels.

{study_table(rows)}

Fine-tuning gain over random init on the same seed (same labels), per seed, in points:
{gains_line(meta.get("gains", {}))}
"""


def gains_line(gains: dict) -> str:
    return "; ".join(
        f"{name} " + " / ".join(f"{100 * g:+.1f}" for g in values) for name, values in gains.items()
    )


def render(out: Path) -> None:
    """Rewrite ``out.md`` from ``out.json`` (after a change to the table's format)."""
    record = json.loads(out.with_suffix(".json").read_text())
    config = StudyConfig(
        **{**record["config"], "objectives": tuple(record["config"]["objectives"])}
    )
    out.with_suffix(".md").write_text(markdown(config, record["mean"], record["meta"]))


def merge(paths: list[Path], out: Path) -> None:
    """One record from one-seed records of the same config run side by side: every seed's rows,
    their mean and std, the paired gains; wall time is the longest run's, CPU time the sum."""
    records = [json.loads(p.read_text()) for p in paths]
    if any(r["config"] != records[0]["config"] for r in records):
        raise ValueError(f"the records in {[str(p) for p in paths]} have different configs.")
    runs = [rows for r in records for rows in r["runs"]]
    meta = dict(records[0]["meta"], seeds=[s for r in records for s in r["meta"]["seeds"]])
    meta.update(
        wall_s=max(r["meta"]["wall_s"] for r in records),
        cpu_s=sum(r["meta"]["cpu_s"] for r in records),
        gains=margins_over_random(runs), parallel_processes=len(records),
    )  # fmt: skip
    record = dict(meta=meta, config=records[0]["config"], mean=aggregate(runs), runs=runs)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    render(out)


def main() -> None:
    args = parse_args()
    if args.render_only:
        return render(args.out)
    if args.merge:
        return merge(args.merge, args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    preset, config = args.preset, PRESETS[args.preset]
    if args.pretrain_tokens:
        config = replace(config, pretrain_tokens=args.pretrain_tokens)
    wall, cpu = time.perf_counter(), time.process_time()
    data = load_study_data(config)
    runs = []
    for seed in args.seeds:
        print(f"--- seed {seed}", flush=True)
        runs.append(run_study(config, data, device=device, seed=seed))
    rows = aggregate(runs)
    gains = margins_over_random(runs)
    meta = dict(
        preset=preset, seeds=args.seeds, device=describe_device(device),
        threads=torch.get_num_threads(), wall_s=time.perf_counter() - wall,
        cpu_s=time.process_time() - cpu, date=time.strftime("%Y-%m-%d"),
        torch=torch.__version__, python=platform.python_version(), cpus=os.cpu_count(),
        gains=gains,
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = dict(meta=meta, config=asdict(config), mean=rows, runs=runs)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(config, rows, meta))
    print(study_table(rows))
    print(f"wrote {args.out.with_suffix('.md')} and .json ({meta['wall_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
