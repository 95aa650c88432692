"""The CPU speedrun of chapter 12: chapter 04's GPT-2 recipe, then one modern change at a time.

    python benchmarks/speedrun.py                       # every stage, 3 seeds x 90 s (~45 min)
    python benchmarks/speedrun.py --budget 5 --seeds 0  # a smoke run

Each stage of ``ptlearn.speedrun.STAGES`` adds one change to the best recipe so far and trains
it for the same wall-clock budget on character-level Tiny Shakespeare, once per seed, in this
process, one run after another — run it on an otherwise idle machine. A change is kept when its
mean validation loss is at least ``KEEP_MARGIN`` (0.01 nats, about the spread between seeds)
below the best so far. Writes ``benchmarks/results/speedrun.json`` and ``.md`` (chapter 12 shows
them); the recipe it ends with is ``GPT_RECIPES["cpu"]``, the default of ``ptlearn train gpt``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from ptlearn.speedrun import KEEP_MARGIN, STAGES, ablation_table, speedrun

RESULTS = Path(__file__).resolve().parent / "results" / "speedrun"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=90.0, help="seconds per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--stages", nargs="+", help="only these stages (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="path without suffix")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    stages = [s for s in STAGES if not args.stages or s.name in args.stages]
    load_before = os.getloadavg()[0]
    rows = speedrun(stages, args.seeds, args.budget)
    header = (
        f"{args.budget:g} s per run, seeds {args.seeds}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after; "
        f"kept = mean at least {KEEP_MARGIN} below the best so far"
    )
    record = {"header": header, "budget_s": args.budget, "seeds": args.seeds,
              "keep_margin": KEEP_MARGIN, "stages": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(f"{header}\n\n{ablation_table(rows)}\n")
    print(ablation_table(rows))


if __name__ == "__main__":
    main()
