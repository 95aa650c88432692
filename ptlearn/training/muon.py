"""Muon: momentum whose update matrix is orthogonalised (Jordan et al. 2024).

Keller Jordan et al., "Muon: An optimizer for hidden layers in neural networks" (2024),
https://kellerjordan.github.io/posts/muon/ ; the reference code is github.com/KellerJordan/Muon.

For a weight matrix W with gradient G, SGD with (Nesterov) momentum would step along M, the
running average of G. Muon steps along the *orthogonalised* M instead: with M = U S V^T (its
singular value decomposition), the update is U V^T, i.e. every singular value set to 1. Momentum
matrices of Transformer layers are dominated by a few directions; equalising the singular values
lets the rare directions learn as fast as the common ones.

Computing U V^T exactly needs an SVD; Muon approximates it with five steps of a quintic
Newton-Schulz iteration, X <- a X + b (X X^T) X + c (X X^T)^2 X, which pushes every singular value
of X (scaled to norm <= 1 first) towards 1 using only matrix products. The coefficients
(3.4445, -4.7750, 2.0315) trade exactness (the values end in about [0.7, 1.2]) for speed.

Muon is meant for the hidden 2-D weights (attention and MLP matrices). Embeddings, the output
head, biases and norm gains keep AdamW: :func:`hidden_matrices` picks the parameters for Muon and
:class:`Muon` runs both kinds of group in one optimizer.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import TransformerBlock

Tensor = torch.Tensor
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(G: Tensor, steps: int = 5, eps: float = 1e-7, dtype=None) -> Tensor:
    """Approximately U V^T for G = U S V^T (``[rows, cols]``), by the quintic Newton-Schulz iteration.

    ``dtype``: the precision of the iteration, which is robust to rounding. Default: bfloat16 on
    a GPU (as in the reference code: faster there), float32 on a CPU, where bfloat16 matrix
    products are emulated and measured 7-20x slower than float32 at these sizes."""
    a, b, c = NS_COEFFICIENTS
    X = G.to(dtype or (torch.bfloat16 if G.is_cuda else torch.float32))
    tall = G.size(0) > G.size(1)
    if tall:
        X = X.T  # work on the wide side: X X^T is then the smaller square
    X = X / X.norm().clamp(min=eps)  # Frobenius norm >= spectral norm: singular values <= 1
    for _ in range(steps):
        A = X @ X.T  # [r, r]
        X = a * X + (b * A + c * A @ A) @ X  # each singular value s -> a s + b s^3 + c s^5
    return (X.T if tall else X).to(G.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for the parameter groups marked ``muon=True`` (matrices), AdamW for the others.

    Per step, for each Muon matrix W ``[rows, cols]`` with gradient G:

        M <- beta M + (1 - beta) G                      # momentum
        U  = orthogonalize((1 - beta) G + beta M)       # Nesterov: look one step ahead
        W <- W (1 - lr wd) - lr sqrt(max(1, rows / cols)) U

    The ``sqrt(max(1, rows/cols))`` factor keeps the update's size per entry comparable for tall
    matrices. On a CPU the orthogonalisation runs in float32 (see :func:`orthogonalize`). The other
    groups take an AdamW step (Loshchilov & Hutter 2019, Algorithm 2) with
    their own ``lr``, ``betas``, ``eps`` and ``weight_decay``. Muon groups agree with
    ``torch.optim.Muon`` up to its bfloat16 rounding, AdamW groups with ``torch.optim.AdamW``
    (tests compare them).
    """

    def __init__(self, param_groups: list[dict]):
        defaults = dict(muon=False, momentum=0.95, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
        super().__init__(param_groups, defaults)
        for group in self.param_groups:
            for p in group["params"] if group["muon"] else []:
                if p.dim() != 2:
                    raise ValueError(
                        f"Muon updates matrices only; got a parameter of shape {tuple(p.shape)}. "
                        f"Put vectors and embeddings in an AdamW group (see hidden_matrices)."
                    )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in (p for p in group["params"] if p.grad is not None):
                p.mul_(1 - lr * wd)  # decoupled weight decay
                if group["muon"]:
                    update, scale = self.muon_update(p, group["momentum"])
                    p.add_(update, alpha=-lr * scale)
                else:
                    p.sub_(self.adamw_update(p, group["betas"], group["eps"]) * lr)
        return loss

    def muon_update(self, p: Tensor, beta: float) -> tuple[Tensor, float]:
        momentum = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
        momentum.lerp_(p.grad, 1 - beta)  # M <- beta M + (1 - beta) G
        update = orthogonalize(p.grad.lerp(momentum, beta))  # Nesterov look-ahead
        return update, max(1.0, p.size(0) / p.size(1)) ** 0.5

    def adamw_update(self, p: Tensor, betas: tuple[float, float], eps: float) -> Tensor:
        state = self.state[p]
        if not state:
            state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
        state["step"] += 1
        (b1, b2), t = betas, state["step"]
        state["m"].lerp_(p.grad, 1 - b1)  # first moment
        state["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)  # second moment
        m_hat, v_hat = state["m"] / (1 - b1**t), state["v"] / (1 - b2**t)  # bias correction
        return m_hat / (v_hat.sqrt() + eps)


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The trainable 2-D weights inside the Transformer blocks: what Muon should train."""
    seen, out = set(), []
    for module in model.modules():
        if isinstance(module, TransformerBlock):
            for p in module.parameters():
                if p.dim() == 2 and p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out
