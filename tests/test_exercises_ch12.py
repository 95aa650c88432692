"""Chapter 12's checkers: an independently written solution passes, typical mistakes are named."""

import pytest
import torch

from ptlearn.exercises.ch12 import (
    RMS_NORM_MISTAKES,
    ROTARY_MISTAKES,
    check_rms_norm,
    check_rotary,
)


def rms_norm(x, weight, eps):
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight


def centred(x, weight, eps):
    c = x - x.mean(-1, keepdim=True)
    return c / torch.sqrt((c * c).mean(-1, keepdim=True) + eps) * weight


@pytest.mark.parametrize(
    "fn, mistake",
    [
        (rms_norm, None),
        (centred, "centred"),
        (lambda x, w, e: x / torch.sqrt((x * x).sum(-1, keepdim=True) + e) * w, "sum"),
        (lambda x, w, e: x / (torch.sqrt((x * x).mean(-1, keepdim=True)) + e) * w, "eps_outside"),
        (lambda x, w, e: x / torch.sqrt((x * x).mean(-1, keepdim=True) + e), "no_weight"),
        (lambda x, w, e: x / torch.sqrt((x * x).mean(1, keepdim=True) + e) * w, "wrong_dim"),
    ],
)
def test_rms_norm_checker(fn, mistake):
    result = check_rms_norm(fn)
    assert result.passed == (mistake is None), result.message
    if mistake:
        assert result.message == RMS_NORM_MISTAKES[mistake]


def rotary(x, offset, base, pairs="half", sign=1.0, freq_step=2):
    """Rotary positions written from the paper's formula, pair by pair."""
    B, H, T, d = x.shape
    out = torch.empty_like(x)
    for t in range(T):
        m = offset + t
        for i in range(d // 2):
            theta = base ** (-freq_step * i / d)
            a, b = (i, i + d // 2) if pairs == "half" else (2 * i, 2 * i + 1)
            c, s = torch.cos(torch.tensor(m * theta)), sign * torch.sin(torch.tensor(m * theta))
            out[:, :, t, a] = x[:, :, t, a] * c - x[:, :, t, b] * s
            out[:, :, t, b] = x[:, :, t, b] * c + x[:, :, t, a] * s
    return out


@pytest.mark.parametrize(
    "fn, mistake",
    [
        (rotary, None),
        (lambda x, o, b: rotary(x, o, b, pairs="adjacent"), "interleaved"),
        (lambda x, o, b: rotary(x, o, b, sign=-1.0), "direction"),
        (lambda x, o, b: rotary(x, 0, b), "no_offset"),
        (lambda x, o, b: rotary(x, o, b, freq_step=1), "theta"),
        (lambda x, o, b: rotary(x, o + 1, b), "from_one"),
    ],
)
def test_rotary_checker(fn, mistake):
    result = check_rotary(fn)
    assert result.passed == (mistake is None), result.message
    if mistake:
        assert result.message == ROTARY_MISTAKES[mistake]


def test_rotary_checker_catches_a_scaled_vector_and_a_crash():
    assert "lengths changed" in check_rotary(lambda x, o, b: 2 * x).message
    assert "not implemented yet" in check_rotary(lambda x, o, b: (_ for _ in ()).throw(
        NotImplementedError)).message  # fmt: skip
