"""Chapter 12's speedrun: modern training changes stacked on chapter 04's GPT-2 recipe, each kept
only if it lowers the validation loss reached in a fixed wall-clock budget.

The race: character-level Tiny Shakespeare, the ``"cpu"`` GPT preset's shape (3 layers, 96 wide,
context 64, batch 48), a fixed budget of seconds on the learner's machine (90 s on two CPU cores
in ``benchmarks/speedrun.py``), validation loss at the end. A change pays only if what it gains
per step beats what it costs per step, so speed is measured with the loss.

- :data:`STAGES`: the changes in the order they are tried, with their sources;
- :func:`train_recipe`: one run of a preset, for a budget of seconds or a number of steps;
- :func:`speedrun`: every stage on top of the best recipe so far, over seeds; the rows of the table;
- :func:`step_times`: seconds per training step of several presets, measured interleaved;
- :func:`ablation_table` / :func:`plot_ablation`: the figure of the chapter.

``GPT_RECIPES["cpu-adamw"]`` is the start (GPT-2's architecture, AdamW, warm-up + cosine) and
``GPT_RECIPES["cpu"]`` the recipe the stored speedrun kept (``benchmarks/results/speedrun.json``).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field

from .recipes import GPT_RECIPES, build
from .training import Trainer

KEEP_MARGIN = 0.01  # nats: a change is kept if it lowers the mean loss over seeds by this much


@dataclass
class Stage:
    """One change of the speedrun: its name, what it does, where it comes from, and the preset
    fields it sets (``{"model": {...}, "train": {...}}``)."""

    name: str
    change: str
    source: str
    overrides: dict = field(default_factory=dict)


STAGES = [
    Stage("gpt2", "chapter 04's recipe: GPT-2 + AdamW, warm-up + cosine",
          "Radford et al. 2019; Loshchilov & Hutter 2019 (AdamW)"),
    Stage("muon", "Muon (lr 0.02) for the blocks' matrices, AdamW for the rest",
          "Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/",
          {"train": {"muon_lr": 0.02}}),
    Stage("wsd", "warm-up, stable, then a linear cool-down over the last 30%",
          "Hägele et al. 2024, https://arxiv.org/abs/2405.18392",
          {"train": {"schedule": "wsd", "decay_frac": 0.3}}),
    Stage("relu2", "ReLU² instead of GELU", "So et al. 2021, https://arxiv.org/abs/2109.08668",
          {"model": {"activation": "relu2"}}),
    Stage("no_bias", "no biases in the linear layers and norms",
          "Chowdhery et al. 2022 (PaLM), https://arxiv.org/abs/2204.02311",
          {"model": {"bias": False}}),
    Stage("rmsnorm", "RMSNorm instead of LayerNorm",
          "Zhang & Sennrich 2019, https://arxiv.org/abs/1910.07467",
          {"model": {"norm": "rmsnorm"}}),
    Stage("rotary", "rotary positions instead of a learned position table",
          "Su et al. 2021, https://arxiv.org/abs/2104.09864",
          {"model": {"positional": "rotary"}}),
    Stage("qk_norm", "RMSNorm on every head's queries and keys",
          "Dehghani et al. 2023, https://arxiv.org/abs/2302.05442",
          {"model": {"qk_norm": True}}),
    Stage("swiglu", "SwiGLU feed-forward at equal parameters (d_ff 192 -> 128)",
          "Shazeer 2020, https://arxiv.org/abs/2002.05202",
          {"model": {"mlp": "gated", "activation": "silu", "d_ff": 128}}),
]  # fmt: skip


def recipe_with(preset: dict, overrides: dict) -> dict:
    """A copy of ``preset`` with ``overrides["model"]`` and ``overrides["train"]`` applied."""
    out = copy.deepcopy(preset)
    for part in ("model", "train"):
        out[part].update(overrides.get(part, {}))
    return out


def train_recipe(
    preset: dict, seed: int = 0, budget: float | None = None, steps: int | None = None,
    device="cpu", data: str = "tinyshakespeare",
) -> dict:  # fmt: skip
    """Train ``preset`` for ``budget`` seconds or for ``steps`` steps (the schedule spans them);
    returns the final validation loss, the steps taken, steps per second and the parameters."""
    if (budget is None) == (steps is None):
        raise ValueError("give exactly one of budget (seconds) and steps.")
    limits = {"time_budget": budget, "max_steps": steps, "progress": False}
    if steps is not None:
        limits["warmup_steps"] = min(preset["train"].get("warmup_steps", 0), steps // 4)
    preset = recipe_with(preset, {"train": limits})
    recipe = build("gpt", data, preset=preset, device=device, seed=seed)
    trainer = Trainer(recipe.model, recipe.config, recipe.train_data, recipe.eval_data)
    trainer.fit()
    return {
        "seed": seed,
        "val_loss": round(trainer.evaluate()["loss"], 4),
        "steps": trainer.state.step,
        "steps_per_s": round(trainer.state.step / trainer.state.elapsed, 2),
        "params": recipe.info["params"],
    }


def summarize(runs: list[dict]) -> dict:
    """Mean loss, half the range over seeds (the spread) and mean steps per second."""
    losses = [r["val_loss"] for r in runs]
    return {
        "mean": round(statistics.mean(losses), 4),
        "spread": round((max(losses) - min(losses)) / 2, 4),
        "steps_per_s": round(statistics.mean(r["steps_per_s"] for r in runs), 2),
    }


def speedrun(
    stages=STAGES, seeds=(0, 1, 2), budget: float = 90.0, device="cpu", log=print, train=None
):
    """Each stage on top of the best recipe so far, trained ``budget`` seconds per seed; a stage
    is kept if its mean loss is at least ``KEEP_MARGIN`` below the best so far. One row each.
    ``train``: the function that runs one preset (default :func:`train_recipe`)."""
    train = train or train_recipe
    best, best_mean, rows = copy.deepcopy(GPT_RECIPES["cpu-adamw"]), None, []
    for stage in stages:
        candidate = recipe_with(best, stage.overrides)
        runs = [train(candidate, seed, budget=budget, device=device) for seed in seeds]
        row = {"stage": stage.name, "change": stage.change, "source": stage.source}
        row.update(summarize(runs), runs=runs)
        row["kept"] = best_mean is None or row["mean"] <= best_mean - KEEP_MARGIN
        if row["kept"]:
            best, best_mean = candidate, row["mean"]
        row["recipe"] = {"model": candidate["model"], "train": candidate["train"]}
        rows.append(row)
        log(f"{stage.name:8s} {row['mean']:.4f} ± {row['spread']:.4f}  "
            f"{row['steps_per_s']:5.2f} steps/s  {'kept' if row['kept'] else 'dropped'}  "
            f"{[r['val_loss'] for r in runs]}")  # fmt: skip
    return rows


def step_times(presets: dict[str, dict], steps: int = 20, rounds: int = 3, device="cpu") -> dict:
    """Median seconds per training step of each preset, timed in ``rounds`` interleaved rounds of
    ``steps`` steps (after one warm-up step), so a machine that slows down hits all of them."""
    trainers = {}
    for name, preset in presets.items():
        p = recipe_with(preset, {"train": {"max_steps": 10**6, "time_budget": None,
                                           "warmup_steps": 0, "progress": False}})  # fmt: skip
        recipe = build("gpt", "tinyshakespeare", preset=p, device=device)
        trainers[name] = Trainer(recipe.model, recipe.config, recipe.train_data)
        trainers[name].fit(steps=1)
    times = {name: [] for name in presets}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.fit(steps=steps)
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def ablation_table(rows: list[dict]) -> str:
    """The speedrun as a markdown table: stage, change, loss ± spread, steps/s, kept."""
    lines = [
        "| stage | change | val loss (mean ± spread) | steps/s | kept |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['change']} | {r['mean']:.3f} ± {r['spread']:.3f} | "
                     f"{r['steps_per_s']:.1f} | {'yes' if r['kept'] else 'no'} |")  # fmt: skip
    return "\n".join(lines)


def plot_ablation(rows: list[dict], title: str = "speedrun: validation loss after the budget"):
    """Bar per stage (mean loss, error bar = spread over seeds); kept stages in colour."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.4))
    names = [r["stage"] for r in rows]
    colors = ["tab:green" if r["kept"] else "tab:gray" for r in rows]
    ax.bar(names, [r["mean"] for r in rows], yerr=[r["spread"] for r in rows], color=colors,
           capsize=3)  # fmt: skip
    low = min(r["mean"] - r["spread"] for r in rows)
    high = max(r["mean"] + r["spread"] for r in rows)
    ax.set_ylim(low - 0.05, high + 0.03)
    ax.set_ylabel("validation loss (nats)")
    ax.set_title(title + " (green: kept, grey: dropped)")
    fig.tight_layout()
    return fig
