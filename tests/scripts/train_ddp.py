"""Run under torchrun by tests/test_ddp.py: the tiny DDP runs, results saved by rank 0.

Usage: torchrun --nproc_per_node=2 train_ddp.py OUT_DIR
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers_train import ddp_run, params  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    results = {}
    for kind in ("dataset", "batch_fn"):
        model, metrics = ddp_run(kind, distributed=True, out_dir=out / kind)
        results[kind] = {"params": params(model), "eval": metrics}
    results["world_size"] = dist.get_world_size()
    if dist.get_rank() == 0:
        torch.save(results, out / "results.pt")
