"""``TrainConfig``: every setting of a training run, checked when it is made.

Imports: ``ptlearn.device`` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..device import AMP_MODES


@dataclass
class TrainConfig:
    lr: float = 3e-4  # peak learning rate, reached at the end of warm-up
    min_lr_ratio: float = 0.1  # the decay ends at min_lr_ratio * lr
    schedule: str = "cosine"  # after warm-up: "cosine", or "wsd" (flat, then a linear cool-down)
    decay_frac: float = 0.3  # "wsd": the last fraction of the run that decays
    weight_decay: float = 0.1  # AdamW decay, only on >=2-D weights (not biases or norms)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    muon_lr: float | None = None  # set: the blocks' matrices train with Muon at this peak lr
    warmup_steps: int = 0
    max_steps: int | None = 1000  # None: train until time_budget
    time_budget: float | None = None  # seconds; stop there, then evaluate
    batch_size: int | None = None  # per-rank batch for datasets; informational for batch_fn
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping
    grad_accum: int = 1  # micro-batches per optimizer step
    amp: str = (
        "auto"  # see ptlearn.device.autocast_dtype: "auto" = bf16/fp16 on CUDA, fp32 elsewhere
    )
    eval_every: int | None = None  # steps between evaluations (and one at the end)
    eval_batches: int = 20  # batches per evaluation when eval_data is a batch function
    log_every: int = 10  # steps per history record (mean loss over the window)
    seed: int = 0
    out_dir: str | None = None  # checkpoints go to out_dir/checkpoint; None: none written
    checkpoint_every: int | None = None  # steps between checkpoints (and one at the end)
    device: str | torch.device = (
        "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps" | a torch.device
    )
    compile: bool = False  # torch.compile the model for training
    progress: bool = True  # show a tqdm progress bar

    def __post_init__(self):
        def need(ok: bool, name: str, why: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {why}.")

        def optional_int(name: str) -> bool:
            value = getattr(self, name)
            return value is None or (isinstance(value, int) and value > 0)

        need(self.lr > 0, "lr", "must be > 0")
        need(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "must be in [0, 1]")
        need(self.schedule in ("cosine", "wsd"), "schedule", 'must be "cosine" or "wsd"')
        need(0 < self.decay_frac <= 1, "decay_frac", "must be in (0, 1]")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "two in [0, 1)")
        need(self.eps > 0, "eps", "must be > 0")
        need(self.muon_lr is None or self.muon_lr > 0, "muon_lr", "must be > 0 or None")
        need(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "warmup_steps", ">= 0")
        for name in ("max_steps", "batch_size", "eval_every", "checkpoint_every"):
            need(optional_int(name), name, "must be a positive int or None")
        need(self.time_budget is None or self.time_budget > 0, "time_budget", "seconds > 0 or None")
        need(self.max_steps or self.time_budget, "max_steps", "give max_steps or a time_budget")
        need(self.warmup_steps <= (self.max_steps or math.inf), "warmup_steps", "exceeds max_steps")
        need(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be > 0 or None")
        for name in ("grad_accum", "eval_batches", "log_every"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name, ">= 1")
        need(self.amp in AMP_MODES, "amp", f"must be one of {AMP_MODES}")
        if isinstance(self.device, torch.device):
            self.device = str(self.device)
        name = str(self.device).split(":")[0]
        need(
            name in ("auto", "cpu", "cuda", "mps"),
            "device",
            'must be "auto", "cpu", "cuda[:N]" or "mps"',
        )
        need(bool(self.out_dir) or not self.checkpoint_every, "checkpoint_every", "needs out_dir")
