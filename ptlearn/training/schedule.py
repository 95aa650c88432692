"""The optimiser and its learning-rate schedule: AdamW with decoupled weight decay on matrices,
linear warm-up then cosine decay (see :mod:`ptlearn.training` for why).

Imports: :mod:`.config`.
"""

from __future__ import annotations

import math

import torch

from .config import TrainConfig


def lr_at(step, *, lr, warmup_steps, max_steps=None, min_lr_ratio=0.1, progress=None) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then cosine decay.

    ``progress`` in [0, 1] replaces the step-based position when training is bounded by time.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if progress is None:
        progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    min_lr = lr * min_lr_ratio
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device):
    """AdamW with weight decay on matrices (>= 2-D) only: decaying biases and norm gains hurts."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"  # one kernel for all parameters instead of one per tensor
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused)
