"""Training-step time: ptlearn's GPT vs nanoGPT's, same architecture, optimizer and batch, one process.

nanoGPT's ``model.py`` is vendored verbatim in ``benchmarks/third_party/``. Both models get nanoGPT's
CPU shape from its README (4 layers, 4 heads, 128 wide, MLP 512, context 64, batch 12, character
vocabulary of 65, no dropout, biases on) and nanoGPT's exact GELU; ptlearn's GPT is built with
``activation="gelu"`` (its default is GPT-2's tanh approximation). Both train on the same batches,
with every one of the 64 positions scored (ptlearn: labels one token longer than the inputs), and
the same loop: forward, backward, gradient clipping at 1.0, optimizer step,
``zero_grad(set_to_none=True)``. The optimizer is the same algorithm and settings on both sides
(AdamW, lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on matrices only), each built by its own
project's code: ptlearn's ``make_optimizer`` (PyTorch's fused AdamW kernel, on CPUs too) and
nanoGPT's ``configure_optimizers`` (fused on CUDA only, so the per-tensor version here). A third
side, ptlearn's model with nanoGPT's optimizer, isolates the model code: its ratio is the
"model only" figure.

Rounds rotate the order of the sides (``--steps`` timed steps each per round) so that a change in
the machine's load hits all of them alike. The ratio of each round (ptlearn / nanoGPT, below 1.0 =
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
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from ptlearn.models import GPT, GPTConfig
from ptlearn.training import TrainConfig
from ptlearn.training.schedule import make_optimizer

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


def ptlearn_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """What ptlearn's Trainer builds for these settings (fused AdamW where PyTorch has it)."""
    config = TrainConfig(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    return make_optimizer(model, config, torch.device("cpu"))


def nanogpt_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """What nanoGPT's train.py builds (its defaults): ``configure_optimizers`` on the CPU."""
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its parameter counts
        return nanogpt_model.GPT.configure_optimizers(model, 0.1, 1e-3, (0.9, 0.99), "cpu")


def ptlearn_loss(model, window):
    return model(window[:, :-1], labels=window).loss  # all 64 positions scored


def nanogpt_loss(model, window):
    x, y = window[:, :-1].contiguous(), window[:, 1:].contiguous()  # as nanoGPT's get_batch
    return model(x, y)[1]


def make_stepper(model, loss_fn, make_optimizer):
    optimizer = make_optimizer(model)

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


def spread(ratios: list[float]) -> dict:
    """Median, quartiles and range of per-round ratios."""
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {
        "median": statistics.median(ratios),
        "quartiles": [quartiles[0], quartiles[2]],
        "min_max": [min(ratios), max(ratios)],
        "ratios": ratios,
    }


def run(rounds: int, steps: int, warmup: int, seed: int) -> dict:
    ours, theirs = build_models(seed)
    ours_again, _ = build_models(seed)  # the same weights, for the model-only comparison
    g = torch.Generator().manual_seed(seed)
    windows = torch.randint(
        0, SHAPE["vocab_size"], (steps, BATCH, SHAPE["max_len"] + 1), generator=g
    )
    steppers = {
        "ptlearn": make_stepper(ours, ptlearn_loss, ptlearn_optimizer),
        "nanogpt": make_stepper(theirs, nanogpt_loss, nanogpt_optimizer),
        "ptlearn model, nanogpt optimizer": make_stepper(
            ours_again, ptlearn_loss, nanogpt_optimizer
        ),
    }
    for step in steppers.values():
        timed(step, windows[: max(1, min(warmup, steps))])
    times = {name: [] for name in steppers}
    names = list(steppers)
    for r in range(rounds):
        for name in names[r % 3 :] + names[: r % 3]:  # rotate who goes first
            times[name].append(timed(steppers[name], windows))
    step_ratio = spread([a / b for a, b in zip(times["ptlearn"], times["nanogpt"])])
    model_ratio = spread(
        [a / b for a, b in zip(times["ptlearn model, nanogpt optimizer"], times["nanogpt"])]
    )
    peak = matmul_peak()
    flops = flops_per_step(ours)
    median = {name: statistics.median(t) for name, t in times.items()}
    return {
        "shape": SHAPE | {"batch": BATCH},
        "rounds": rounds,
        "steps_per_round": steps,
        "ms_per_step": {name: 1000 * t for name, t in median.items()},
        "ratio_median": step_ratio["median"],
        "ratio_quartiles": step_ratio["quartiles"],
        "ratio_min_max": step_ratio["min_max"],
        "ratios": step_ratio["ratios"],
        "model_only": model_ratio,
        "model_flops_per_step": flops,
        "matmul_peak_gflops": peak / 1e9,
        "mfu": {name: flops / t / peak for name, t in median.items()},
    }


def profile(seed: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    ours, theirs = build_models(seed)
    window = torch.randint(0, SHAPE["vocab_size"], (BATCH, SHAPE["max_len"] + 1))
    for name, model, loss_fn, optimizer in [
        ("ptlearn", ours, ptlearn_loss, ptlearn_optimizer),
        ("nanogpt", theirs, nanogpt_loss, nanogpt_optimizer),
    ]:
        step = make_stepper(model, loss_fn, optimizer)
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
    print(
        json.dumps({k: v for k, v in result.items() if k not in ("ratios", "model_only")}, indent=1)
    )
    print("model only:", {k: v for k, v in result["model_only"].items() if k != "ratios"})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
