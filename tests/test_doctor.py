"""ptlearn doctor: one table of what the machine gives the course, with a fix for each problem."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch

from ptlearn import device as device_mod
from ptlearn import doctor as doctor_mod
from ptlearn.doctor import PROBLEM, WARN, doctor, front_end, run_checks


def rows_by_item():
    return {r.item: r for r in run_checks()}


def test_table_has_every_row_and_prints(capsys):
    rows = doctor()
    items = [r.item for r in rows]
    for item in ["Python", "torch", "CUDA", "MPS (Apple GPU)", "device, AMP", "CPU threads",
                 "memory", "ipywidgets", "data sets", "real weights"]:  # fmt: skip
        assert item in items
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["check", "status", "value"]
    assert torch.__version__ in out
    every_non_ok_has_advice = all(r.advice for r in rows if r.status != "ok")
    assert every_non_ok_has_advice


def test_device_row_shows_the_amp_the_trainer_will_use(monkeypatch):
    monkeypatch.setattr(device_mod, "get_device", lambda prefer="auto": torch.device("cuda"))
    monkeypatch.setattr(device_mod, "describe_device", lambda d: "cuda:0 (Tesla T4, 15.0 GiB)")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert rows_by_item()["device, AMP"].value == (
        "cuda:0 (Tesla T4, 15.0 GiB); fp16 autocast + GradScaler"
    )
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert rows_by_item()["device, AMP"].value.endswith("bf16 autocast")


def test_threads_over_the_quota_is_a_warning_with_the_fix(monkeypatch):
    monkeypatch.setattr(
        device_mod, "cpu_allowance", lambda: device_mod.CpuAllowance(1, 16, "quota")
    )
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    row = rows_by_item()["CPU threads"]
    assert row.status == WARN and "1 of 16 cores allowed (CPU quota)" in row.value
    assert "PTLEARN_THREADS=1" in row.advice


def test_memory_row_reads_the_cgroup_limit(monkeypatch, tmp_path):
    # a Binder-like pod: 2 GiB limit, 1.8 GiB already used
    (tmp_path / "memory" / "pod").mkdir(parents=True)
    (tmp_path / "memory" / "pod" / "memory.limit_in_bytes").write_text(str(2 * 2**30))
    (tmp_path / "memory" / "pod" / "memory.usage_in_bytes").write_text(str(int(1.8 * 2**30)))
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/pod\n")
    monkeypatch.setattr(device_mod, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(device_mod, "PROC_SELF_CGROUP", proc)
    row = rows_by_item()["memory"]
    assert row.value == "0.2 GiB available (cgroup limit 2.0 GiB)"
    assert row.status == WARN and "Shut Down" in row.advice


@pytest.mark.parametrize(
    ("where", "version", "status"),
    [("vscode", "8.1.9", WARN), ("vscode", "8.1.8", "ok"), ("colab", "7.7.1", "ok"),
     ("colab", "8.1.5", WARN), ("jupyter", "8.1.9", "ok")],
)  # fmt: skip
def test_widgets_row_knows_which_front_end_renders_what(monkeypatch, where, version, status):
    monkeypatch.setattr(doctor_mod, "front_end", lambda: where)
    monkeypatch.setattr(doctor_mod, "_version", lambda dist: version)
    row = doctor_mod._widgets_check()
    assert row.status == status and version in row.value and where in row.value
    if status != "ok":
        assert row.advice


def test_front_end_detection(monkeypatch):
    for name in ("VSCODE_PID", "VSCODE_CWD", "VSCODE_IPC_HOOK_CLI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert front_end() == "terminal"
    monkeypatch.setenv("VSCODE_PID", "123")
    assert front_end() == "vscode"
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert front_end() == "colab"


def test_data_and_weights_rows(monkeypatch, tmp_path):
    monkeypatch.delenv("PTLEARN_DATA_DIR", raising=False)
    assert rows_by_item()["data sets"].status == WARN
    (tmp_path / "sst2").mkdir()
    monkeypatch.setenv("PTLEARN_DATA_DIR", str(tmp_path))
    row = rows_by_item()["data sets"]
    assert "sst2" in row.value and "missing tinyshakespeare, ag_news" in row.value
    from ptlearn import weights

    monkeypatch.setattr(weights, "_PACKAGES", {})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    row = rows_by_item()["real weights"]
    assert row.status == PROBLEM and "[course]" in row.advice
    assert doctor_mod.main.__doc__ and doctor(io.StringIO())  # prints to any file


def test_cli_doctor_runs():
    out = subprocess.run(
        [sys.executable, "-m", "ptlearn.cli", "doctor"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode in (0, 1), out.stderr
    assert "device, AMP" in out.stdout and "real weights" in out.stdout


def test_callable_from_a_notebook_as_ptlearn_doctor():
    import ptlearn

    out = io.StringIO()
    rows = ptlearn.doctor(out)
    assert rows and "device, AMP" in out.getvalue()


def test_import_ptlearn_does_not_import_transformers():
    code = "import sys, ptlearn; ptlearn.doctor; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr
