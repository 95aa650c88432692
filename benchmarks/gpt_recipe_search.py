"""The small search behind the "cpu" GPT recipe: variants of the reference at an equal compute budget.

    python benchmarks/gpt_recipe_search.py --budget 170                    # every variant below
    python benchmarks/gpt_recipe_search.py --budget 170 --only reference ff2

Each variant changes a few fields of the ``"reference"`` preset (nanoGPT's model with the issue's
best recipe) and trains for ``budget / cost`` steps, where ``cost`` is its measured CPU seconds per
step on one thread: every variant gets the same amount of computation, which on an idle 2-core
machine is the same wall time. Steps counted this way do not depend on the other jobs that share
the machine, so the search can run on a busy one. Validation: 50 random windows of the last 10%
of Tiny Shakespeare, as in ``ptlearn train gpt``. Results: ``benchmarks/results/gpt_recipe_search.json``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import torch

from ptlearn import recipes
from ptlearn.training import Trainer

RESULTS = Path(__file__).resolve().parent / "results" / "gpt_recipe_search.json"
VARIANTS = {  # name -> {"model": {...}, "train": {...}, "batch_size": ...} changes to "reference"
    "reference": {},
    "ff2": {"model": {"d_ff": 256}},
    "ff2-min0": {"model": {"d_ff": 256}, "train": {"min_lr_ratio": 0.0}},
    "ff2-min0-b32": {"model": {"d_ff": 256}, "train": {"min_lr_ratio": 0.0}, "batch_size": 32},
    "ff2-min0-d96": {"model": {"d_ff": 192, "d_model": 96}, "train": {"min_lr_ratio": 0.0}},
    "lr1e-2": {"train": {"lr": 1e-2}},
    "4-layers-ff2": {"model": {"d_ff": 256, "n_layers": 4}},
    "b32": {"batch_size": 32},
    # the "cpu" preset: narrower, a higher learning rate after a longer warm-up, decay to zero
    "d96-lr8e-3-wu100": {
        "model": {"d_ff": 192, "d_model": 96},
        "train": {"lr": 8e-3, "warmup_steps": 100, "min_lr_ratio": 0.0},
    },
}


def variant_preset(changes: dict) -> dict:
    preset = copy.deepcopy(recipes.GPT_RECIPES["reference"])
    for key in ("model", "train"):
        preset[key].update(changes.get(key, {}))
    preset["batch_size"] = changes.get("batch_size", preset["batch_size"])
    return preset


def step_cost(recipe, steps: int = 20) -> float:
    """CPU seconds per training step on one thread (after 5 warm-up steps)."""
    trainer = Trainer(
        copy.deepcopy(recipe.model), _fixed(recipe.config, steps + 5), recipe.train_data
    )
    trainer.fit(5)
    start = time.process_time()
    trainer.fit(steps)
    return (time.process_time() - start) / steps


def _fixed(config, steps: int):
    warmup = min(config.warmup_steps, steps // 10)
    return dataclasses.replace(
        config, max_steps=steps, time_budget=None, warmup_steps=warmup, progress=False
    )


def run_variant(name: str, budget: float) -> dict:
    recipe = recipes.build("gpt", "tinyshakespeare", variant_preset(VARIANTS[name]), device="cpu")
    cost = step_cost(recipe)
    steps = int(budget / cost)
    trainer = Trainer(
        recipe.model, _fixed(recipe.config, steps), recipe.train_data, recipe.eval_data
    )
    trainer.fit()
    return {
        "variant": name, "changes": VARIANTS[name], "cpu_ms_per_step": round(1000 * cost, 1),
        "steps": steps, "val_loss": round(trainer.history.last("eval")["loss"], 4),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=170.0, help="CPU seconds (one thread)")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), help="these variants only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = json.loads(args.out.read_text()) if args.out.is_file() else {}
    print("| variant | changes | CPU ms/step | steps | val loss |\n|---|---|---|---|---|")
    for name in args.only or VARIANTS:
        row = run_variant(name, args.budget)
        records[f"{name}@{args.budget:g}"] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=2) + "\n")
        print(
            f"| {name} | {json.dumps(row['changes'])} | {row['cpu_ms_per_step']} | "
            f"{row['steps']} | {row['val_loss']:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
