"""Time to quality: what `ptlearn train` reaches in a fixed time on this machine, as a user runs it.

    python benchmarks/time_to_quality.py gpt                # ptlearn train gpt --time-budget 90 --device cpu
    python benchmarks/time_to_quality.py vit                # ptlearn train vit --data digits --time-budget 60
    python benchmarks/time_to_quality.py gpt --steps 600    # the same recipe for a fixed number of steps
    python benchmarks/time_to_quality.py gpt --reference --steps 600   # the reference recipe, same steps
    python benchmarks/time_to_quality.py gpt --seed 1       # another seed (record "gpt-seed1")

Each run is a fresh ``python -m ptlearn.cli train ...`` subprocess whose final JSON line is kept,
together with the CPU seconds the run used and the load average before and after it: on a
machine shared with other jobs a time budget buys fewer steps, so a ``--steps`` run (the number
of steps an idle machine does in the budget) tells what the recipe reaches without the others.

``--reference`` trains the ``"reference"`` preset: the recipe the issue quotes for nanoGPT's
model (3 layers, 128 wide, context 64, batch 48, lr 5e-3, exact GELU, warm-up then cosine) with
ptlearn's GPT, which has nanoGPT's architecture, so the two recipes compare at equal steps.
Results accumulate in ``benchmarks/results/time_to_quality.json`` (one record per run name).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "time_to_quality.json"
ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "gpt": ["train", "gpt", "--data", "tinyshakespeare", "--time-budget", "90", "--device", "cpu"],
    "vit": ["train", "vit", "--data", "digits", "--time-budget", "60", "--device", "cpu"],
}


def cpu_seconds_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], env: dict | None = None) -> dict:
    """Run ``ptlearn`` with ``args`` in a subprocess; its JSON line plus CPU time and load."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "ptlearn.cli", *args, "--out", out, "--no-progress"]
        load_before, cpu_before, start = os.getloadavg()[0], cpu_seconds_of_children(), time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(
        command="ptlearn " + " ".join(args),
        process_cpu_seconds=round(cpu_seconds_of_children() - cpu_before, 1),
        process_wall_seconds=round(time.time() - start, 1),
        load_average_before=round(load_before, 1),
        load_average_after=round(os.getloadavg()[0], 1),
    )
    return result


def command(args: argparse.Namespace) -> tuple[str, list[str]]:
    """(record name, CLI arguments) for the requested run."""
    cli = list(COMMANDS[args.model])
    name = args.model
    if args.steps:
        at = cli.index("--time-budget")
        cli[at : at + 2] = ["--steps", str(args.steps)]
        name += f"-steps{args.steps}"
    if args.time_budget:
        cli[cli.index("--time-budget") + 1] = str(args.time_budget)
        name += f"-{args.time_budget:g}s"
    if args.reference:
        cli += ["--preset", "reference"]
        name += "-reference"
    if args.threads:
        cli += ["--threads", str(args.threads)]
        name += f"-threads{args.threads}"
    if args.seed:
        cli += ["--seed", str(args.seed)]
        name += f"-seed{args.seed}"
    return name, cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=list(COMMANDS))
    parser.add_argument("--steps", type=int, help="train for this many steps instead of the budget")
    parser.add_argument("--time-budget", type=float, help="another budget than the default")
    parser.add_argument("--reference", action="store_true", help="the issue's reference recipe")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    name, cli = command(args)
    result = run(cli)
    records = json.loads(args.out.read_text()) if args.out.is_file() else {}
    records[name] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=2) + "\n")
    metric = "val_accuracy" if "val_accuracy" in result else "val_loss"
    print(f"| run | {metric} | steps | seconds | tokens/s | CPU s | load before/after |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {name} | {result[metric]:.4f} | {result['steps']} | {result['seconds']} | "
        f"{result['tokens_per_s']:,.0f} | {result['process_cpu_seconds']} | "
        f"{result['load_average_before']}/{result['load_average_after']} |"
    )


if __name__ == "__main__":
    main()
