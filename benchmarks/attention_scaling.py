"""Attention scaling: the written-out path vs the fused path, time and peak memory vs sequence length.

The written-out path materialises the [B, H, T, T] score and weight matrices, so its memory grows
quadratically with T; the fused kernel (F.scaled_dot_product_attention) works block by block and
never holds the full matrix. Each (path, T) runs in a fresh subprocess so that its peak resident
memory (ru_maxrss) is its own; we report the peak minus the memory held before the call.

    python benchmarks/attention_scaling.py            # T = 128 ... 4096, writes results/attention_scaling.{json,png}
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def measure(path: str, T: int, heads: int, d_head: int, repeats: int) -> dict:
    """Run in a subprocess: time one causal attention forward and its extra peak memory (MiB)."""
    import torch

    from ptlearn.attention import causal_mask, fused_attention, scaled_dot_product_attention

    torch.manual_seed(0)
    q, k, v = torch.randn(3, 1, heads, T, d_head).unbind(0)  # [B, H, T, d_head]
    mask = causal_mask(T)

    def run():
        if path == "written-out":
            return scaled_dot_product_attention(q, k, v, mask)[0]
        return fused_attention(q, k, v, None, True, 0.0)

    with torch.no_grad():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run()  # warm-up, and the peak-memory measurement
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        seconds = (time.perf_counter() - start) / repeats
    return {"path": path, "T": T, "ms": 1000 * seconds, "peak_extra_mib": (peak - before) / 1024}


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for path in ("written-out", "fused"):
        r = [x for x in rows if x["path"] == path]
        axes[0].plot([x["T"] for x in r], [x["peak_extra_mib"] for x in r], "o-", label=path)
        axes[1].plot([x["T"] for x in r], [x["ms"] for x in r], "o-", label=path)
    for ax, label in zip(axes, ("extra peak memory (MiB)", "time per forward (ms)")):
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel=label)
        ax.set_xticks([x["T"] for x in rows if x["path"] == "fused"], minor=False)
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.legend()
    fig.suptitle("Causal attention, 1 x 8 heads x 64 dims, fp32, CPU")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="128,256,512,1024,2048,4096")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--d-head", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("PATH", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        row = measure(args.child[0], int(args.child[1]), args.heads, args.d_head, args.repeats)
        print(json.dumps(row))
        return
    rows = []
    for T in map(int, args.lengths.split(",")):
        for path in ("written-out", "fused"):
            cmd = [sys.executable, __file__, "--child", path, str(T), "--heads", str(args.heads)]
            cmd += ["--d-head", str(args.d_head), "--repeats", str(args.repeats)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(
                f"{path:>12} T={T:5d} {rows[-1]['ms']:9.1f} ms {rows[-1]['peak_extra_mib']:8.1f} MiB"
            )
    RESULTS.mkdir(exist_ok=True)
    machine = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    (RESULTS / "attention_scaling.json").write_text(
        json.dumps({"machine": machine, "rows": rows}, indent=1)
    )
    plot(rows, RESULTS / "attention_scaling.png")


if __name__ == "__main__":
    main()
