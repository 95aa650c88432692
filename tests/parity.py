"""One way to say "ours equals theirs" in the parity tests (ptlearn vs HF, fast vs written-out).

``torch.testing.assert_close`` compares element by element (|ours - theirs| <= atol + rtol *
|theirs| everywhere) and names the worst element when it fails, so one wrong entry of a large
attention map cannot hide behind a norm pooled over the whole tensor.

Default tolerances are for float32 forward passes of a few layers: ``rtol=1e-4`` (float32 keeps
~7 digits; a few layers of sums lose about two) and ``atol=1e-5`` for entries near zero.
Attention probabilities, in [0, 1], are checked with ``atol=1e-6``.
"""

from __future__ import annotations

import torch

RTOL, ATOL = 1e-4, 1e-5
ATTENTION = dict(rtol=1e-4, atol=1e-6)


def assert_parity(ours, theirs, what: str = "", rtol: float = RTOL, atol: float = ATOL) -> None:
    """``ours`` equals ``theirs`` element-wise within ``rtol``/``atol`` (same shape and dtype)."""
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    torch.testing.assert_close(
        ours, theirs, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}" if what else m
    )


def assert_all_parity(ours, theirs, what: str, **tolerances) -> None:
    """Two equally long sequences of tensors (one per layer), each pair within tolerance."""
    assert len(ours) == len(theirs) > 0, f"{what}: {len(ours)} vs {len(theirs)} tensors"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert_parity(a, b, f"{what}[{i}]", **tolerances)
