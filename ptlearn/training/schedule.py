"""The optimiser and its learning-rate schedule: AdamW with decoupled weight decay on matrices,
linear warm-up then cosine decay (see :mod:`ptlearn.training` for why).

Imports: :mod:`.config`, :mod:`.muon`.
"""

from __future__ import annotations

import math

import torch

from .config import TrainConfig
from .muon import Muon, hidden_matrices


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
    """AdamW with weight decay on matrices (>= 2-D) only: decaying biases and norm gains hurts.

    With ``config.muon_lr``, the matrices inside the Transformer blocks train with Muon instead
    (:class:`~ptlearn.training.muon.Muon`, same weight decay); embeddings, head, biases and norms
    keep AdamW. Each group's ``lr_scale`` is its peak rate over ``config.lr``: the schedule
    multiplies it in, so both kinds warm up and decay together.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    wd, common = config.weight_decay, dict(betas=config.betas, eps=config.eps)
    if config.muon_lr is None:
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": wd},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        fused = device.type == "cuda"  # one kernel for all parameters instead of one per tensor
        return torch.optim.AdamW(groups, lr=config.lr, fused=fused, **common)
    matrices = hidden_matrices(model)
    chosen = {id(p) for p in matrices}
    rest = [p for p in params if id(p) not in chosen]
    groups = [
        dict(params=matrices, muon=True, lr=config.muon_lr, weight_decay=wd),
        dict(params=[p for p in rest if p.dim() >= 2], lr=config.lr, weight_decay=wd, **common),
        dict(params=[p for p in rest if p.dim() < 2], lr=config.lr, weight_decay=0.0, **common),
    ]
    for group in groups:
        group["lr_scale"] = group["lr"] / config.lr
    return Muon([g for g in groups if g["params"]])
