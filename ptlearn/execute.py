"""Run a notebook top to bottom, as a learner would, and measure it.

:func:`execute_notebook` runs every cell of a notebook in a fresh kernel (nbclient), writes the
executed copy (outputs included) and returns an :class:`ExecutionReport`: wall time, peak memory
and the first failing cell. With ``cgroup=binder_limits()`` the kernel runs inside a control group
with mybinder.org's limits (a CPU quota of one core and 2 GiB of memory) when this machine lets us
create one (root, cgroup v1 or v2); otherwise the report says why it ran without one.

CI executes each chapter once this way (``tests/test_notebooks.py``); the executed copies in
``build/executed/`` feed the website, and ``build/executed/report.json`` holds the measurements.
Needs ``nbclient`` and ``ipykernel`` (the ``[dev]`` extra).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import device as _device

__all__ = [
    "BINDER_CPUS",
    "BINDER_MEMORY",
    "Cgroup",
    "CgroupLimits",
    "ExecutionReport",
    "binder_limits",
    "create_cgroup",
    "execute_notebook",
    "update_report",
]

BINDER_CPUS = 1.0  # mybinder.org: about one CPU's quota, whatever os.cpu_count() says
BINDER_MEMORY = 2 * 2**30  # and 2 GiB of memory
_PERIOD_US = 100_000


@dataclass(frozen=True)
class CgroupLimits:
    cpus: float | None = BINDER_CPUS
    memory_bytes: int | None = BINDER_MEMORY

    def describe(self) -> str:
        parts = []
        if self.cpus is not None:
            parts.append(f"{self.cpus:g}-CPU quota")
        if self.memory_bytes is not None:
            parts.append(f"{self.memory_bytes / 2**30:g} GiB memory limit")
        return " and ".join(parts) or "no limits"


def binder_limits() -> CgroupLimits:
    """mybinder.org's limits: a 1-CPU CFS quota and 2 GiB of memory."""
    return CgroupLimits(BINDER_CPUS, BINDER_MEMORY)


@dataclass
class Cgroup:
    """A control group this module created: ``procs`` files to join, files to read the peak."""

    version: int  # 1 or 2
    dirs: list[Path]  # v1: one per controller (cpu, memory); v2: one
    limits: CgroupLimits

    def procs_files(self) -> list[Path]:
        return [d / ("tasks" if self.version == 1 else "cgroup.procs") for d in self.dirs]

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run by a shell that first moves itself into this cgroup, then execs."""
        joins = " ".join(f"echo $$ > '{p}' &&" for p in self.procs_files())
        return ["/bin/sh", "-c", f'{joins} exec "$@"', "sh", *argv]

    def peak_bytes(self) -> int | None:
        for d in self.dirs:
            for name in ("memory.max_usage_in_bytes", "memory.peak"):
                value = _device._read(d / name)
                if value and value.isdigit():
                    return int(value)
        return None

    def remove(self) -> None:
        for d in self.dirs:
            for _ in range(600):  # the kernel's processes may take a while to exit
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def create_cgroup(limits: CgroupLimits, name: str | None = None) -> Cgroup | str:
    """A new cgroup under this process's own with ``limits``, or a sentence saying why not."""
    name = name or f"ptlearn-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    quota = None if limits.cpus is None else str(int(limits.cpus * _PERIOD_US))
    unified = _device.CGROUP_ROOT / "cgroup.controllers"
    made: list[Path] = []
    try:
        if unified.exists():  # cgroup v2
            parents = _device._cgroup_dirs("cpu")
            if not parents:
                return "cannot read /proc/self/cgroup"
            d = parents[0] / name
            d.mkdir()
            made.append(d)
            if quota is not None:
                _write(d / "cpu.max", f"{quota} {_PERIOD_US}")
            if limits.memory_bytes is not None:
                _write(d / "memory.max", str(limits.memory_bytes))
                if (d / "memory.swap.max").exists():
                    _write(d / "memory.swap.max", "0")
            return Cgroup(2, made, limits)
        for controller, wanted in (("cpu", quota), ("memory", limits.memory_bytes)):
            if wanted is None:
                continue
            parents = _device._cgroup_dirs(controller)
            if not parents:
                raise OSError(f"no cgroup v1 {controller} controller is mounted")
            d = parents[0] / name
            d.mkdir()
            made.append(d)
            if controller == "cpu":
                _write(d / "cpu.cfs_period_us", str(_PERIOD_US))
                _write(d / "cpu.cfs_quota_us", quota)
            else:
                _write(d / "memory.limit_in_bytes", str(wanted))
                if (d / "memory.memsw.limit_in_bytes").exists():  # no escape into swap
                    _write(d / "memory.memsw.limit_in_bytes", str(wanted))
        if not made:
            return "no limits asked for"
        return Cgroup(1, made, limits)
    except OSError as err:
        for d in made:
            try:
                d.rmdir()
            except OSError:
                pass
        who = "" if os.geteuid() == 0 else " (creating one needs root)"
        return f"could not create a cgroup{who}: {err}"


@dataclass
class ExecutionReport:
    notebook: str
    executed: str  # the executed copy
    seconds: float = 0.0
    peak_mib: float | None = None
    peak_source: str | None = None  # "cgroup" (all the kernel's processes) or "VmHWM" (kernel only)
    limits: str = "none"  # e.g. "1-CPU quota and 2 GiB memory limit", or why there were none
    cells: int = 0  # code cells run
    failed_cell: int | None = None  # index in the notebook's cells
    error: str | None = None
    cell_seconds: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def line(self) -> str:
        peak = "?" if self.peak_mib is None else f"{self.peak_mib:.0f} MiB ({self.peak_source})"
        status = "ok" if self.ok else f"FAILED at cell {self.failed_cell}"
        return (
            f"{self.notebook}: {status}, {self.seconds:.0f} s, peak {peak}, limits: {self.limits}"
        )


def _vm_hwm_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    status = _device._read(Path(f"/proc/{pid}/status")) or ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def _kernel_spec_dir(root: Path, argv_prefix: list[str]) -> str:
    name = "ptlearn-exec"
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    argv = [*argv_prefix, sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "ptlearn (measured)", "language": "python"}
    (d / "kernel.json").write_text(json.dumps(spec))
    return name


def execute_notebook(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    timeout: int = 1200,
    cgroup: CgroupLimits | None = None,
    env: dict[str, str | None] | None = None,
    until: int | None = None,
) -> ExecutionReport:
    """Run every cell of ``src`` in a fresh kernel, stop at the first error, write the executed
    notebook to ``dst`` (also on failure) and return the report. ``timeout``: seconds per cell.
    ``cgroup``: run the kernel inside a cgroup with these limits if one can be created.
    ``env``: variables set for the kernel on top of this process's environment; ``None`` as a
    value removes that variable (e.g. ``{"PTLEARN_DATA_DIR": None}``: a learner without one).
    ``until``: run the cells up to this index (inclusive) only."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    src, dst = Path(src), Path(dst)
    nb = nbformat.read(src, as_version=4)
    report = ExecutionReport(notebook=src.name, executed=str(dst))
    group: Cgroup | None = None
    if cgroup is not None:
        made = create_cgroup(cgroup)
        if isinstance(made, Cgroup):
            group, report.limits = made, cgroup.describe()
        else:
            report.limits = f"none: {made}"
    spec_root = Path(tempfile.mkdtemp(prefix="ptlearn-kernel-"))
    try:
        kernel_name = _kernel_spec_dir(spec_root, group.wrap([]) if group is not None else [])
        ksm = KernelSpecManager(kernel_dirs=[str(spec_root)])
        km = AsyncKernelManager(kernel_name=kernel_name, kernel_spec_manager=ksm)
        client = NotebookClient(
            nb,
            km=km,
            timeout=timeout,
            kernel_name=kernel_name,
            resources={"metadata": {"path": str(src.parent.resolve())}},
        )
        # figures go into the notebook, as for a learner: a headless MPLBACKEND inherited from CI
        # (Agg) would leave every plt.show() cell without its figure, in the site's copies too
        inline = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
        kernel_env = {**os.environ, **inline, **(env or {})}
        kernel_env = {k: v for k, v in kernel_env.items() if v is not None}
        start = time.perf_counter()
        index = None
        try:
            with client.setup_kernel(env=kernel_env, cleanup_kc=True):  # shut it down after
                pid = getattr(getattr(km.provisioner, "process", None), "pid", None)
                for index, cell in enumerate(nb.cells[: None if until is None else until + 1]):
                    if cell.cell_type != "code":
                        continue
                    t0 = time.perf_counter()
                    try:
                        client.execute_cell(cell, index)
                    finally:
                        report.cell_seconds.append(round(time.perf_counter() - t0, 2))
                    report.cells += 1
                hwm = _vm_hwm_bytes(pid)
        except (CellExecutionError, DeadKernelError, TimeoutError, RuntimeError) as err:
            report.failed_cell = index
            text = str(err)
            if isinstance(err, DeadKernelError) and group is not None:
                text += f": was the {group.limits.describe()} exceeded?"
            report.error = re.sub(r"\x1b\[[0-9;]*m", "", text)[-4000:]  # no terminal colours
            hwm = None
        report.seconds = round(time.perf_counter() - start, 1)
        peak = group.peak_bytes() if group is not None and cgroup.memory_bytes else None
        if peak is not None:
            report.peak_mib, report.peak_source = round(peak / 2**20, 1), "cgroup"
        elif hwm is not None:
            report.peak_mib, report.peak_source = round(hwm / 2**20, 1), "VmHWM"
    finally:
        shutil.rmtree(spec_root, ignore_errors=True)
        if group is not None:
            group.remove()
        dst.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dst)
    return report


def update_report(path: str | os.PathLike, report: ExecutionReport) -> dict:
    """Merge one notebook's report into the JSON file at ``path`` (keyed by notebook name)."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[report.notebook] = {k: v for k, v in asdict(report).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return data
