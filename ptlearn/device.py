"""Choosing where to compute: a CPU, an NVIDIA GPU (CUDA) or an Apple GPU (MPS).

The course runs everywhere: notebooks call :func:`get_device` once, print
:func:`describe_device`, and pick a run size with :func:`scale_for_device` — a small config that
trains on a 2-core laptop in minutes, a larger one when a GPU is there.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "CpuAllowance",
    "allowed_cpus",
    "autocast_dtype",
    "cpu_allowance",
    "describe_device",
    "get_device",
    "memory_limit_bytes",
    "needs_grad_scaler",
    "scale_for_device",
    "set_threads",
]

# Where the kernel describes this process's control groups; tests point these at fake files.
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def _cgroup_dirs(controller: str) -> list[Path]:
    """The cgroup folders of this process for ``controller`` (v1) or the unified tree (v2),
    from its own folder up to the root: a limit set on any ancestor applies too."""
    try:
        lines = PROC_SELF_CGROUP.read_text().splitlines()
    except OSError:
        return []
    dirs = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # v2: "0::/path"
            base = CGROUP_ROOT if (CGROUP_ROOT / "cgroup.controllers").exists() else None
            base = base or (CGROUP_ROOT / "unified")
        elif controller in controllers.split(","):
            base = next(
                (
                    CGROUP_ROOT / name
                    for name in (controllers, controller, "cpu,cpuacct", "cpuacct,cpu")
                    if (CGROUP_ROOT / name).is_dir()
                ),
                None,
            )
            if base is None:
                continue
        else:
            continue
        here = base / rel.lstrip("/")
        while True:
            dirs.append(here)
            if here == base or base not in here.parents:
                break
            here = here.parent
    return dirs


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpu_quota() -> float | None:
    """The tightest CFS quota on this process's cgroups, in CPUs (e.g. 1.0), or None."""
    quotas = []
    for d in _cgroup_dirs("cpu"):
        v2 = _read(d / "cpu.max")  # "max 100000" or "150000 100000"
        if v2:
            quota, _, period = v2.partition(" ")
            if quota != "max" and period:
                quotas.append(int(quota) / int(period))
            continue
        quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        if quota and period and int(quota) > 0 and int(period) > 0:
            quotas.append(int(quota) / int(period))
    return min(quotas) if quotas else None


@dataclass(frozen=True)
class CpuAllowance:
    allowed: int  # CPUs this process may use at once (at least 1)
    visible: int  # what os.cpu_count() reports
    reason: str | None  # "quota", "affinity" or None (nothing limits it)


def cpu_allowance() -> CpuAllowance:
    """How many CPUs this process may really use, and why (see :func:`allowed_cpus`)."""
    visible = os.cpu_count() or 1
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        affinity = visible
    allowed, reason = affinity, ("affinity" if affinity < visible else None)
    quota = _cpu_quota()
    if quota is not None and math.ceil(quota) < allowed:
        allowed, reason = max(1, math.ceil(quota)), "quota"
    return CpuAllowance(max(1, allowed), visible, reason)


def allowed_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (v1
    ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` or v2 ``cpu.max``), at least 1. On mybinder.org
    ``os.cpu_count()`` says 16 or more while the quota allows about one."""
    return cpu_allowance().allowed


def memory_limit_bytes() -> int | None:
    """The tightest cgroup memory limit on this process (v1 ``memory.limit_in_bytes``, v2
    ``memory.max``), or None when there is none."""
    limits = []
    for d in _cgroup_dirs("memory"):
        for name in ("memory.max", "memory.limit_in_bytes"):
            value = _read(d / name)
            if value and value != "max" and value.isdigit() and int(value) < 2**60:
                limits.append(int(value))
                break
    return min(limits) if limits else None


_THREAD_ENV = ("PTLEARN_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_threads_at_import = torch.get_num_threads()
_threads_decided = False  # get_device() sets the thread count once


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads for torch from now on (the CLI's ``--threads``); get_device() then
    leaves the count alone."""
    global _threads_decided
    torch.set_num_threads(max(1, int(n)))
    _threads_decided = True


def _decide_threads() -> None:
    """Once per process: cap torch's intra-op threads at allowed_cpus(), unless the user chose a
    count (PTLEARN_THREADS, OMP_NUM_THREADS, --threads, or torch.set_num_threads before)."""
    global _threads_decided
    if _threads_decided:
        return
    _threads_decided = True
    if os.environ.get("PTLEARN_THREADS"):
        torch.set_num_threads(max(1, int(os.environ["PTLEARN_THREADS"])))
        return
    if any(os.environ.get(k) for k in _THREAD_ENV) or torch.get_num_threads() != _threads_at_import:
        return
    allowed = allowed_cpus()
    if torch.get_num_threads() > allowed:
        torch.set_num_threads(allowed)


_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def get_device(prefer: str | torch.device = "auto") -> torch.device:
    """The device to use: ``"auto"`` picks CUDA, then MPS, then the CPU; ``"cpu"``, ``"cuda"``
    (or ``"cuda:1"``) and ``"mps"`` ask for one and raise ValueError if it is not available.

    The first call also caps torch's CPU threads at :func:`allowed_cpus` (a Binder pod sees many
    cores but may use about one), unless you chose a count: ``PTLEARN_THREADS``,
    ``OMP_NUM_THREADS``, the CLI's ``--threads``, or ``torch.set_num_threads`` called before."""
    name = prefer.type if isinstance(prefer, torch.device) else str(prefer).split(":")[0]
    _decide_threads()
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
    """One line about a device, e.g. ``"cpu (2 threads)"``,
    ``"cpu (1 thread; 1 of 16 cores allowed by the quota)"`` or
    ``"cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB)"``; ``None`` describes ``get_device()``."""
    device = get_device() if device is None else torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"cuda:{index} ({props.name}, {props.total_memory / 2**30:.1f} GiB)"
    if device.type == "mps":
        return "mps (Apple GPU)"
    n = torch.get_num_threads()
    threads = f"{n} thread{'s' if n != 1 else ''}"
    cpus = cpu_allowance()
    if cpus.reason is None:
        return f"{device.type} ({threads})"
    why = "the quota" if cpus.reason == "quota" else "the affinity mask"
    return f"{device.type} ({threads}; {cpus.allowed} of {cpus.visible} cores allowed by {why})"


def scale_for_device(cpu: dict, gpu: dict, device: str | torch.device | None = None) -> dict:
    """The run settings for ``device`` (default: ``get_device()``): ``cpu`` on a CPU, otherwise
    ``cpu`` updated with ``gpu`` — so ``gpu`` only lists what changes::

        cfg = scale_for_device(cpu=dict(d_model=64, steps=300), gpu=dict(d_model=256, steps=3000))
    """
    device = get_device() if device is None else torch.device(device)
    return {**cpu, **gpu} if device.type in ("cuda", "mps") else dict(cpu)
