"""Multi-process training on a CPU: ``ptlearn train gpt --nproc 2`` (DDP over gloo) vs one process.

    python benchmarks/ddp_scaling.py               # 60 steps of the "cpu" GPT recipe, three ways
    python benchmarks/ddp_scaling.py --steps 20

The same recipe runs as (a) one process with 2 threads, (b) one process with 1 thread, and
(c) two processes with 1 thread each under torchrun. Each DDP rank draws its own batch of 48
windows, so (c) trains on twice the tokens per step; tokens per second is the fair comparison.
On two cores, (c) can at best match (a): both use both cores, and DDP adds a gradient
all-reduce every step. DDP earns its keep across GPUs or machines, where each rank brings its own
compute; here it shows that the multi-process path runs, not that it is faster.
Results go to ``benchmarks/results/ddp_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from time_to_quality import run

RESULTS = Path(__file__).resolve().parent / "results" / "ddp_scaling.json"
SETUPS = {  # name -> (processes, threads per process)
    "1 process x 2 threads": (1, 2),
    "1 process x 1 thread": (1, 1),
    "2 processes x 1 thread (gloo)": (2, 1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for name, (nproc, threads) in SETUPS.items():
        cli = ["train", "gpt", "--data", "tinyshakespeare", "--device", "cpu"]
        cli += ["--steps", str(args.steps), "--threads", str(threads), "--nproc", str(nproc)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        result = run(cli, env=env)
        rows.append({"setup": name, "processes": nproc, "threads": threads, **result})
        print(f"{name}: {result['tokens_per_s']:,.0f} tokens/s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print("| setup | steps | tokens/step | train seconds | tokens/s | load before/after |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        tokens_per_step = 48 * 64 * r["processes"]
        print(
            f"| {r['setup']} | {r['steps']} | {tokens_per_step:,} | {r['seconds']} | "
            f"{r['tokens_per_s']:,.0f} | {r['load_average_before']}/{r['load_average_after']} |"
        )


if __name__ == "__main__":
    main()
