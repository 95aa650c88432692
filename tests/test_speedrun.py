"""Chapter 12's speedrun helpers: the keep rule, recipes built from stages, runs of a fixed length."""

import copy
import json
from pathlib import Path

import pytest

from ptlearn.recipes import GPT_RECIPES
from ptlearn.speedrun import (
    KEEP_MARGIN,
    STAGES,
    Stage,
    ablation_table,
    recipe_with,
    speedrun,
    step_times,
    summarize,
    train_recipe,
)


def test_recipe_with_overrides_a_copy():
    start = GPT_RECIPES["cpu-adamw"]
    before = copy.deepcopy(start)
    changed = recipe_with(start, {"model": {"norm": "rmsnorm"}, "train": {"muon_lr": 0.02}})
    assert changed["model"]["norm"] == "rmsnorm" and changed["train"]["muon_lr"] == 0.02
    assert changed["model"]["d_model"] == start["model"]["d_model"]
    assert start == before  # the preset itself is untouched


def test_every_stage_builds_a_model():
    from ptlearn.models import GPT, GPTConfig

    for stage in STAGES:
        preset = recipe_with(GPT_RECIPES["cpu-adamw"], stage.overrides)
        GPT(GPTConfig(**preset["model"], vocab_size=65))  # raises on a wrong option


def fake_trainer(losses: dict):
    """A stand-in for train_recipe: the loss of a recipe is looked up by what it changed."""

    def train(preset, seed, budget, device):
        key = (preset["model"].get("activation"), preset["train"].get("muon_lr"))
        return {
            "seed": seed,
            "val_loss": losses[key] + 0.001 * seed,
            "steps": 10,
            "steps_per_s": 5.0,
        }

    return train


def test_a_stage_is_kept_only_if_it_beats_the_best_by_the_margin():
    stages = [
        Stage("start", "", ""),
        Stage("a", "", "", {"train": {"muon_lr": 0.02}}),  # better by 0.1: kept
        Stage("b", "", "", {"model": {"activation": "relu2"}}),  # better by less than the margin
    ]
    losses = {
        ("gelu", None): 2.0,
        ("gelu", 0.02): 1.9,
        ("relu2", 0.02): 1.9 - KEEP_MARGIN / 2,
    }
    rows = speedrun(
        stages, seeds=(0, 1), budget=1.0, train=fake_trainer(losses), log=lambda s: None
    )
    assert [r["kept"] for r in rows] == [True, True, False]
    assert rows[2]["recipe"]["train"]["muon_lr"] == 0.02  # built on the kept stage
    assert rows[1]["mean"] == pytest.approx(1.9005) and rows[1]["spread"] == pytest.approx(0.0005)
    table = ablation_table(rows)
    assert table.count("\n") == 4 and "| b |" in table and "| no |" in table


def test_summarize_reports_mean_and_half_range():
    runs = [{"val_loss": v, "steps_per_s": s} for v, s in [(1.0, 10.0), (1.2, 12.0), (1.1, 11.0)]]
    assert summarize(runs) == {"mean": 1.1, "spread": 0.1, "steps_per_s": 11.0}


TINY = GPT_RECIPES["tiny"]


def test_train_recipe_runs_exactly_the_steps_asked():
    result = train_recipe(TINY, seed=0, steps=6)
    assert result["steps"] == 6 and result["val_loss"] > 0 and result["params"] > 0
    with pytest.raises(ValueError, match="exactly one"):
        train_recipe(TINY, steps=3, budget=1.0)


def test_step_times_times_every_preset():
    times = step_times({"a": TINY, "b": recipe_with(TINY, {"model": {"norm": "rmsnorm"}})},
                       steps=2, rounds=1)  # fmt: skip
    assert set(times) == {"a", "b"} and all(t > 0 for t in times.values())


def test_the_default_cpu_recipe_is_the_stored_races_winner():
    stored = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "speedrun.json"
    rows = json.loads(stored.read_text())["stages"]
    assert [r["stage"] for r in rows] == [s.name for s in STAGES]
    assert rows[0]["recipe"]["model"] == GPT_RECIPES["cpu-adamw"]["model"]
    winner = [r for r in rows if r["kept"]][-1]["recipe"]
    final = json.loads(json.dumps(GPT_RECIPES["cpu"]))  # tuples -> lists, as the file holds them
    assert winner["model"] == final["model"] and winner["train"] == final["train"]
