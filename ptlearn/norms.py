"""Normalisation layers: LayerNorm (GPT-2, BERT) and RMSNorm (Llama and most models since 2023).

LayerNorm (Ba et al. 2016, https://arxiv.org/abs/1607.06450) centres each vector and scales it to
unit variance, then applies a learned gain g and bias b:  ``(x - mean(x)) / sqrt(var(x) + eps) * g + b``.

RMSNorm (Zhang & Sennrich 2019, https://arxiv.org/abs/1910.07467) drops the centring and the bias:

    RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g           # one statistic instead of two

The paper's argument is that re-scaling, not re-centring, is what stabilises training, so the
cheaper norm trains as well. Whether it is *faster* depends on the kernels: on a GPU both are fused;
on a CPU in PyTorch 2.13, ``nn.LayerNorm``'s forward and backward are one fused kernel each while
RMSNorm is several element-wise ops (chapter 12 measures what that costs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor
NORMS = ("layernorm", "rmsnorm")


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension; ``[..., d] -> [..., d]``.

    Computed in float32 (as HF's LlamaRMSNorm does) and cast back, so bf16 activations keep an
    exact statistic. ``F.rms_norm`` is the same formula in one call; the tests prove it equal to
    :meth:`forward_written_out`, the line above as code."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward_written_out(self, x: Tensor) -> Tensor:
        x32 = x.float()
        rms = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # [..., 1]
        return (x32 * rms).to(x.dtype) * self.weight

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), (x.size(-1),), eps=self.eps).to(x.dtype) * self.weight


def make_norm(kind: str, d: int, eps: float, bias: bool = True) -> nn.Module:
    """The norm a config names: "layernorm" (with or without its bias) or "rmsnorm" (never one)."""
    if kind == "layernorm":
        return nn.LayerNorm(d, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(d, eps=eps)
    raise ValueError(f"Unknown norm {kind!r}; use one of {NORMS}.")
