"""Choosing where to compute: a CPU, an NVIDIA GPU (CUDA) or an Apple GPU (MPS).

The course runs everywhere: notebooks call :func:`get_device` once, print
:func:`describe_device`, and pick a run size with :func:`scale_for_device` — a small config that
trains on a 2-core laptop in minutes, a larger one when a GPU is there.
"""

from __future__ import annotations

import torch

__all__ = [
    "autocast_dtype",
    "describe_device",
    "get_device",
    "needs_grad_scaler",
    "scale_for_device",
]

_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def get_device(prefer: str | torch.device = "auto") -> torch.device:
    """The device to use: ``"auto"`` picks CUDA, then MPS, then the CPU; ``"cpu"``, ``"cuda"``
    (or ``"cuda:1"``) and ``"mps"`` ask for one and raise ValueError if it is not available."""
    name = prefer.type if isinstance(prefer, torch.device) else str(prefer).split(":")[0]
    if name not in _CHOICES:
        raise ValueError(f"Unknown device {prefer!r}; choose one of {', '.join(_CHOICES)}.")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    device = torch.device(prefer)
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"Device {str(prefer)!r} was asked for, but PyTorch sees no CUDA GPU "
            "(torch.cuda.is_available() is False). Use 'auto' or 'cpu', or install a CUDA build "
            "of PyTorch on a machine with an NVIDIA GPU."
        )
    if name == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"Device {str(prefer)!r} was asked for, but only {torch.cuda.device_count()} CUDA "
            "GPU(s) are visible (numbered from 0)."
        )
    if name == "mps" and not _mps_available():
        raise ValueError(
            "Device 'mps' was asked for, but PyTorch sees no Apple GPU "
            "(torch.backends.mps.is_available() is False). Use 'auto' or 'cpu'."
        )
    return device


AMP_MODES = ("auto", "bf16", "fp16", "off")


def autocast_dtype(device: str | torch.device, mode: str = "auto") -> torch.dtype | None:
    """The dtype to autocast to on ``device``, or None for plain fp32.

    ``"auto"`` uses mixed precision only where it is fast: bf16 on GPUs that compute it natively
    (compute capability >= 8.0: A100, H100, RTX 30xx/40xx), fp16 on older ones (T4, V100, P100),
    which then needs a ``torch.amp.GradScaler`` (see :func:`needs_grad_scaler`). A T4 reports
    ``torch.cuda.is_bf16_supported()`` as True, but only through slow emulation, so that flag is
    not used. CPUs and Apple GPUs train in fp32 unless ``mode`` asks for "bf16" or "fp16".
    ``"off"`` always means fp32.
    """
    if mode not in AMP_MODES:
        raise ValueError(f"Unknown AMP mode {mode!r}; choose one of {', '.join(AMP_MODES)}.")
    device = torch.device(device)
    if mode == "off":
        return None
    if mode != "auto":
        return torch.bfloat16 if mode == "bf16" else torch.float16
    if device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def needs_grad_scaler(dtype: torch.dtype | None) -> bool:
    """fp16 has a narrow range: small gradients underflow to 0 unless the loss is scaled up."""
    return dtype == torch.float16


def describe_device(device: str | torch.device | None = None) -> str:
    """One line about a device, e.g. ``"cpu (2 threads)"`` or
    ``"cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB)"``; ``None`` describes ``get_device()``."""
    device = get_device() if device is None else torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"cuda:{index} ({props.name}, {props.total_memory / 2**30:.1f} GiB)"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"{device.type} ({torch.get_num_threads()} threads)"


def scale_for_device(cpu: dict, gpu: dict, device: str | torch.device | None = None) -> dict:
    """The run settings for ``device`` (default: ``get_device()``): ``cpu`` on a CPU, otherwise
    ``cpu`` updated with ``gpu`` — so ``gpu`` only lists what changes::

        cfg = scale_for_device(cpu=dict(d_model=64, steps=300), gpu=dict(d_model=256, steps=3000))
    """
    device = get_device() if device is None else torch.device(device)
    return {**cpu, **gpu} if device.type in ("cuda", "mps") else dict(cpu)
