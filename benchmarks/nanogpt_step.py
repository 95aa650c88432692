"""Training-step time: ptlearn's GPT vs nanoGPT's, same architecture, optimizer and batch, one process.

nanoGPT's ``model.py`` is vendored verbatim in ``benchmarks/third_party/``. Both models get nanoGPT's
CPU shape from its README (4 layers, 4 heads, 128 wide, MLP 512, context 64, batch 12, character
vocabulary of 65, no dropout, biases on) and nanoGPT's exact GELU; ptlearn's GPT is built with
``activation="gelu"`` (its default is GPT-2's tanh approximation). Both train on the same batches,
with every one of the 64 positions scored (ptlearn: labels one token longer than the inputs), and
the same loop: forward, backward, gradient clipping at 1.0, AdamW (weight decay on matrices only),
``zero_grad(set_to_none=True)``.

Rounds alternate A B, B A, ... (``--steps`` timed steps each side per round) so that a change in the
machine's load hits both sides alike. The ratio of each round (ptlearn / nanoGPT, below 1.0 =
ptlearn faster) is reported as its median and spread over rounds.

Model-FLOPs utilisation (MFU): the training step's model FLOPs (nanoGPT's estimate from the PaLM
paper, appendix B: 6 N per token for the weights plus 12 L T C per token for attention) per second,
divided by this CPU's peak measured here with one large float32 matmul at the same thread count.

    python benchmarks/nanogpt_step.py                  # writes results/nanogpt_step.json
    python benchmarks/nanogpt_step.py --rounds 5 --steps 5
    python benchmarks/nanogpt_step.py --profile        # torch.profiler table of each side
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from ptlearn.models import GPT, GPTConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from third_party import nanogpt_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "nanogpt_step.json"
SHAPE = dict(n_layers=4, n_heads=4, d_model=128, d_ff=512, max_len=64, vocab_size=65)
BATCH = 12


def build_models(seed: int = 0):
    """(ptlearn GPT, nanoGPT GPT), both freshly initialised, in training mode."""
    torch.manual_seed(seed)
    ours = GPT(GPTConfig(**SHAPE, dropout=0.0, activation="gelu"))
    theirs_config = nanogpt_model.GPTConfig(
        block_size=SHAPE["max_len"],
        vocab_size=SHAPE["vocab_size"],
        n_layer=SHAPE["n_layers"],
        n_head=SHAPE["n_heads"],
        n_embd=SHAPE["d_model"],
        dropout=0.0,
        bias=True,
    )
    theirs = nanogpt_model.GPT(theirs_config)  # prints its parameter count
    return ours.train(), theirs.train()


def adamw(model: torch.nn.Module) -> torch.optim.AdamW:
    """nanoGPT's optimizer (train.py defaults): AdamW, weight decay 0.1 on matrices only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99))


def ptlearn_loss(model, window):
    return model(window[:, :-1], labels=window).loss  # all 64 positions scored


def nanogpt_loss(model, window):
    x, y = window[:, :-1].contiguous(), window[:, 1:].contiguous()  # as nanoGPT's get_batch
    return model(x, y)[1]


def make_stepper(model, loss_fn):
    optimizer = adamw(model)

    def step(window):
        loss = loss_fn(model, window)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def timed(step, windows) -> float:
    """Seconds per step over ``windows``."""
    start = time.perf_counter()
    for window in windows:
        step(window)
    return (time.perf_counter() - start) / len(windows)


def matmul_peak(n: int = 1024, repeats: int = 20) -> float:
    """This CPU's float32 matmul throughput in FLOP/s (best of ``repeats``), at torch's threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = min(timed(lambda _: a @ b, [None] * 5) for _ in range(repeats))
    return 2 * n**3 / best


def flops_per_step(model: GPT) -> float:
    """nanoGPT's ``estimate_mfu`` count (PaLM appendix B) for one training step of BATCH x T tokens."""
    c = model.config
    n_params = sum(p.numel() for p in model.parameters()) - model.embeddings.position.weight.numel()
    T = c.max_len
    per_token = 6 * n_params + 12 * c.n_layers * c.d_model * T
    return per_token * T * BATCH


def run(rounds: int, steps: int, warmup: int, seed: int) -> dict:
    ours, theirs = build_models(seed)
    g = torch.Generator().manual_seed(seed)
    windows = torch.randint(
        0, SHAPE["vocab_size"], (steps, BATCH, SHAPE["max_len"] + 1), generator=g
    )
    steppers = {
        "ptlearn": make_stepper(ours, ptlearn_loss),
        "nanogpt": make_stepper(theirs, nanogpt_loss),
    }
    for step in steppers.values():
        timed(step, windows[: max(1, min(warmup, steps))])
    times = {name: [] for name in steppers}
    for r in range(rounds):
        order = ["ptlearn", "nanogpt"] if r % 2 == 0 else ["nanogpt", "ptlearn"]
        for name in order:
            times[name].append(timed(steppers[name], windows))
    ratios = [a / b for a, b in zip(times["ptlearn"], times["nanogpt"])]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    peak = matmul_peak()
    flops = flops_per_step(ours)
    median = {name: statistics.median(t) for name, t in times.items()}
    return {
        "shape": SHAPE | {"batch": BATCH},
        "rounds": rounds,
        "steps_per_round": steps,
        "ms_per_step": {name: 1000 * t for name, t in median.items()},
        "ratio_median": statistics.median(ratios),
        "ratio_quartiles": [quartiles[0], quartiles[2]],
        "ratio_min_max": [min(ratios), max(ratios)],
        "ratios": ratios,
        "model_flops_per_step": flops,
        "matmul_peak_gflops": peak / 1e9,
        "mfu": {name: flops / t / peak for name, t in median.items()},
    }


def profile(seed: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    ours, theirs = build_models(seed)
    window = torch.randint(0, SHAPE["vocab_size"], (BATCH, SHAPE["max_len"] + 1))
    for name, model, loss_fn in [
        ("ptlearn", ours, ptlearn_loss),
        ("nanogpt", theirs, nanogpt_loss),
    ]:
        step = make_stepper(model, loss_fn)
        for _ in range(5):
            step(window)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(20):
                step(window)
        print(f"=== {name}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.profile:
        return profile(args.seed)
    result = run(args.rounds, args.steps, args.warmup, args.seed)
    result |= {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": list(os.getloadavg()),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "ratios"}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
