"""Device selection: auto-detection, clear errors for missing accelerators, config scaling."""

from types import SimpleNamespace

import pytest
import torch

from ptlearn import device as device_mod
from ptlearn.device import (
    autocast_dtype,
    describe_device,
    get_device,
    needs_grad_scaler,
    scale_for_device,
)


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)


def test_cpu_and_auto():
    assert get_device("cpu") == torch.device("cpu")
    expected = (
        "cuda" if torch.cuda.is_available() else "mps" if device_mod._mps_available() else "cpu"
    )
    assert get_device().type == expected
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_falls_back_to_cpu(no_accelerator):
    assert get_device("auto") == torch.device("cpu")


def test_auto_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps"])
def test_missing_accelerator_is_a_clear_error(no_accelerator, name):
    with pytest.raises(ValueError, match=f"'{name}' was asked for.*Use 'auto' or 'cpu'"):
        get_device(name)


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert get_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="only 1 CUDA GPU"):
        get_device("cuda:1")


def test_unknown_device_name():
    with pytest.raises(ValueError, match="choose one of auto, cpu, cuda, mps"):
        get_device("gpu")


def test_describe_cpu(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_allowance", lambda: device_mod.CpuAllowance(2, 2, None))
    n = torch.get_num_threads()
    assert describe_device("cpu") == f"cpu ({n} thread{'s' if n != 1 else ''})"


def test_describe_cpu_under_a_quota(monkeypatch):
    monkeypatch.setattr(
        device_mod, "cpu_allowance", lambda: device_mod.CpuAllowance(1, 16, "quota")
    )
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert describe_device("cpu") == "cpu (1 thread; 1 of 16 cores allowed by the quota)"


def test_describe_cuda(monkeypatch):
    props = SimpleNamespace(name="NVIDIA Test GPU", total_memory=80 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert describe_device("cuda") == "cuda:0 (NVIDIA Test GPU, 80.0 GiB)"
    assert describe_device(torch.device("cuda", 0)).startswith("cuda:0 (NVIDIA")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_describe_real_cuda():
    text = describe_device(get_device("cuda"))
    assert text.startswith("cuda:0 (") and text.endswith(" GiB)")


def test_scale_for_device():
    cpu, gpu = {"d_model": 64, "steps": 300, "batch_size": 32}, {"d_model": 256, "steps": 3000}
    assert scale_for_device(cpu, gpu, device="cpu") == cpu
    assert scale_for_device(cpu, gpu, device="cuda") == {
        "d_model": 256,
        "steps": 3000,
        "batch_size": 32,
    }
    assert scale_for_device(cpu, gpu, device=torch.device("mps"))["d_model"] == 256
    out = scale_for_device(cpu, gpu, device="cpu")
    out["d_model"] = 1
    assert cpu["d_model"] == 64  # a copy, never the caller's dict


def test_scale_for_device_default(no_accelerator):
    assert scale_for_device({"a": 1}, {"a": 2}) == {"a": 1}


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ((7, 5), torch.float16),
        ((7, 0), torch.float16),
        ((6, 0), torch.float16),
        ((8, 0), torch.bfloat16),
        ((9, 0), torch.bfloat16),
    ],
)
def test_autocast_dtype_follows_native_bf16_not_emulation(monkeypatch, capability, expected):
    # A T4 (7.5) says is_bf16_supported() is True through emulation: fp16 + GradScaler is faster.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert autocast_dtype("cuda") == expected
    assert needs_grad_scaler(autocast_dtype("cuda")) == (expected == torch.float16)


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_autocast_dtype_is_fp32_on_cpu_and_mps_unless_asked(device):
    assert autocast_dtype(device) is None
    assert autocast_dtype(device, "bf16") == torch.bfloat16
    assert autocast_dtype(device, "off") is None
    with pytest.raises(ValueError, match="Unknown AMP mode 'half'"):
        autocast_dtype(device, "half")


def test_trainconfig_accepts_every_device_get_device_returns():
    from ptlearn.training import TrainConfig

    for device in (
        "auto",
        "cpu",
        "cuda",
        "cuda:1",
        "mps",
        torch.device("cpu"),
        torch.device("mps"),
    ):
        assert TrainConfig(max_steps=1, device=device).device == str(device)


# --- CPU threads that respect quotas --------------------------------------------------------------


def fake_cgroups(tmp_path, monkeypatch, proc_lines, files, cpus=16, affinity=None):
    """A fake /sys/fs/cgroup tree and /proc/self/cgroup for the cgroup readers."""
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("\n".join(proc_lines) + "\n")
    monkeypatch.setattr(device_mod, "CGROUP_ROOT", root)
    monkeypatch.setattr(device_mod, "PROC_SELF_CGROUP", proc)
    monkeypatch.setattr(device_mod.os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(
        device_mod.os, "sched_getaffinity", lambda pid: set(range(affinity or cpus)), raising=False
    )


def test_allowed_cpus_v1_quota(tmp_path, monkeypatch):
    # mybinder.org-like: 16 visible cores, a CFS quota of one core on the pod's cgroup
    fake_cgroups(
        tmp_path,
        monkeypatch,
        ["4:memory:/pod", "2:cpu,cpuacct:/pod/kernel"],
        {
            "cpu,cpuacct/pod/cpu.cfs_quota_us": "100000",
            "cpu,cpuacct/pod/cpu.cfs_period_us": "100000",
            "cpu,cpuacct/pod/kernel/cpu.cfs_quota_us": "-1",
            "cpu,cpuacct/pod/kernel/cpu.cfs_period_us": "100000",
            "memory/pod/memory.limit_in_bytes": str(2 * 2**30),
        },
    )
    assert device_mod.cpu_allowance() == device_mod.CpuAllowance(1, 16, "quota")
    assert device_mod.allowed_cpus() == 1
    assert device_mod.memory_limit_bytes() == 2 * 2**30


def test_allowed_cpus_v1_fractional_quota_rounds_up(tmp_path, monkeypatch):
    fake_cgroups(
        tmp_path,
        monkeypatch,
        ["1:cpu:/"],
        {"cpu/cpu.cfs_quota_us": "250000", "cpu/cpu.cfs_period_us": "100000"},
    )
    assert device_mod.allowed_cpus() == 3  # 2.5 CPUs of time: three threads keep it busy


def test_allowed_cpus_v2_cpu_max(tmp_path, monkeypatch):
    fake_cgroups(
        tmp_path,
        monkeypatch,
        ["0::/user.slice/binder"],
        {
            "cgroup.controllers": "cpu memory",
            "user.slice/cpu.max": "max 100000",
            "user.slice/binder/cpu.max": "50000 100000",
            "user.slice/binder/memory.max": "max",
            "user.slice/memory.max": str(3 * 2**30),
        },
    )
    assert device_mod.cpu_allowance() == device_mod.CpuAllowance(1, 16, "quota")  # 0.5 -> 1
    assert device_mod.memory_limit_bytes() == 3 * 2**30


def test_allowed_cpus_without_limits_and_with_affinity(tmp_path, monkeypatch):
    fake_cgroups(
        tmp_path, monkeypatch, ["0::/"], {"cgroup.controllers": "", "cpu.max": "max 100000"}
    )
    assert device_mod.cpu_allowance() == device_mod.CpuAllowance(16, 16, None)
    assert device_mod.memory_limit_bytes() is None
    fake_cgroups(tmp_path, monkeypatch, ["0::/"], {}, cpus=16, affinity=4)
    assert device_mod.cpu_allowance() == device_mod.CpuAllowance(4, 16, "affinity")


def test_allowed_cpus_unreadable_proc(tmp_path, monkeypatch):
    monkeypatch.setattr(device_mod, "PROC_SELF_CGROUP", tmp_path / "missing")
    assert device_mod.allowed_cpus() >= 1


@pytest.fixture
def fresh_threads(monkeypatch):
    """get_device() decides the thread count once per process: make it undecided again."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(device_mod, "_threads_decided", False)
    monkeypatch.setattr(device_mod, "_threads_at_import", threads)
    for name in device_mod._THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    yield threads
    torch.set_num_threads(threads)


def test_get_device_caps_threads_at_the_quota_once(fresh_threads, monkeypatch, no_accelerator):
    torch.set_num_threads(2)
    monkeypatch.setattr(device_mod, "_threads_at_import", 2)
    monkeypatch.setattr(device_mod, "allowed_cpus", lambda: 1)
    get_device()
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)  # the user's choice after the first call is left alone
    get_device("cpu")
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize(
    "how", ["set_num_threads", "PTLEARN_THREADS", "OMP_NUM_THREADS", "set_threads"]
)
def test_get_device_respects_the_users_thread_choice(fresh_threads, monkeypatch, how):
    monkeypatch.setattr(device_mod, "allowed_cpus", lambda: 1)
    torch.set_num_threads(2)
    monkeypatch.setattr(device_mod, "_threads_at_import", 2)
    if how == "set_num_threads":
        torch.set_num_threads(3)
    elif how == "set_threads":
        device_mod.set_threads(3)
    else:
        monkeypatch.setenv(how, "3")
        if how == "OMP_NUM_THREADS":
            torch.set_num_threads(3)  # what torch does with OMP_NUM_THREADS at start-up
    get_device("cpu")
    assert torch.get_num_threads() == 3


CHILD = """
import torch
from ptlearn.device import allowed_cpus, describe_device, get_device
print(allowed_cpus(), describe_device(get_device("cpu")), torch.get_num_threads(), sep="|")
"""


def test_threads_capped_inside_a_real_one_cpu_cgroup():
    """For real: a child process in a cgroup with a 1-CPU CFS quota (needs root and cgroups)."""
    import os
    import subprocess
    import sys

    from ptlearn.execute import CgroupLimits, create_cgroup

    group = create_cgroup(CgroupLimits(cpus=1.0, memory_bytes=None))
    if isinstance(group, str):
        pytest.skip(f"no cgroup on this machine: {group}")
    env = {k: v for k, v in os.environ.items() if k not in device_mod._THREAD_ENV}
    try:
        out = (
            subprocess.run(
                group.wrap([sys.executable, "-c", CHILD]),
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
    finally:
        group.remove()
    allowed, line, threads = out.split("|")
    assert allowed == "1" and threads == "1", out
    visible = os.cpu_count()
    if visible > 1:
        assert line == f"cpu (1 thread; 1 of {visible} cores allowed by the quota)"


def test_gpu_check_script_says_so_without_a_gpu(tmp_path):
    """benchmarks/gpu_check.sh never records made-up figures: no GPU, exit 2, nothing written."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run the script itself")
    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "repo"
    (copy / "benchmarks").mkdir(parents=True)
    shutil.copy(root / "benchmarks" / "gpu_check.sh", copy / "benchmarks")
    (copy / "benchmarks" / "RESULTS.md").write_text("# results\n")
    proc = subprocess.run(
        ["bash", str(copy / "benchmarks" / "gpu_check.sh"), "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 2 and "no CUDA GPU visible" in proc.stderr
    assert (copy / "benchmarks" / "RESULTS.md").read_text() == "# results\n"
