"""ptlearn.execute: notebooks run in a fresh kernel, measured, inside Binder-like cgroups."""

from __future__ import annotations

import json
import os

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

from ptlearn import device as device_mod  # noqa: E402
from ptlearn.execute import (  # noqa: E402
    CgroupLimits,
    binder_limits,
    create_cgroup,
    execute_notebook,
    update_report,
)


def write_notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# a test")]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def can_make_cgroups():
    group = create_cgroup(CgroupLimits(cpus=1.0, memory_bytes=256 * 2**20))
    if isinstance(group, str):
        return False
    group.remove()
    return True


CGROUPS = can_make_cgroups()


def test_runs_every_cell_and_writes_the_executed_copy(tmp_path):
    src = write_notebook(tmp_path / "ok.ipynb", "x = 6 * 7", "print(x)", "assert x == 42")
    report = execute_notebook(src, tmp_path / "out" / "ok.ipynb", timeout=60)
    assert report.ok and report.cells == 3 and report.failed_cell is None
    assert len(report.cell_seconds) == 3 and report.seconds > 0
    assert report.peak_source == "VmHWM" and report.peak_mib > 10  # a Python kernel: tens of MiB
    out = nbformat.read(tmp_path / "out" / "ok.ipynb", as_version=4)
    assert out.cells[2].outputs[0]["text"] == "42\n"
    assert report.limits == "none"


def test_stops_at_the_first_failing_check(tmp_path):
    src = write_notebook(
        tmp_path / "bad.ipynb", "x = 1", "assert x == 2, 'the check failed'", "print('never')"
    )
    report = execute_notebook(src, tmp_path / "bad_out.ipynb", timeout=60)
    assert not report.ok and report.failed_cell == 2  # index in all cells (cell 0 is markdown)
    assert "AssertionError" in report.error and "the check failed" in report.error
    assert "\x1b[" not in report.error  # no terminal colours in the report
    out = nbformat.read(tmp_path / "bad_out.ipynb", as_version=4)  # written also on failure
    assert out.cells[3].get("outputs", []) == []
    assert "FAILED at cell 2" in report.line()


def test_update_report_merges_by_notebook(tmp_path):
    src = write_notebook(tmp_path / "a.ipynb", "pass")
    report = execute_notebook(src, tmp_path / "x" / "a.ipynb", timeout=60)
    path = tmp_path / "x" / "report.json"
    path.write_text(json.dumps({"other.ipynb": {"seconds": 1.0}}))
    data = update_report(path, report)
    assert set(data) == {"a.ipynb", "other.ipynb"}
    assert json.loads(path.read_text())["a.ipynb"]["cells"] == 1


def test_without_cgroups_it_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(device_mod, "CGROUP_ROOT", tmp_path / "no-cgroups")
    monkeypatch.setattr(device_mod, "PROC_SELF_CGROUP", tmp_path / "no-proc")
    assert isinstance(create_cgroup(binder_limits()), str)
    src = write_notebook(tmp_path / "n.ipynb", "print(1)")
    report = execute_notebook(src, tmp_path / "n_out.ipynb", timeout=60, cgroup=binder_limits())
    assert report.ok and report.limits.startswith("none: ")


@pytest.mark.skipif(not CGROUPS, reason="creating cgroups needs root and a cgroup v1/v2 mount")
def test_kernel_runs_under_binder_limits(tmp_path):
    src = write_notebook(
        tmp_path / "b.ipynb",
        "from ptlearn.device import allowed_cpus, memory_limit_bytes\n"
        "print(allowed_cpus(), memory_limit_bytes())",
        "block = bytearray(300 * 2**20)  # touch 300 MiB",
    )
    report = execute_notebook(src, tmp_path / "b_out.ipynb", timeout=120, cgroup=binder_limits())
    assert report.ok, report.error
    assert report.limits == "1-CPU quota and 2 GiB memory limit"
    out = nbformat.read(tmp_path / "b_out.ipynb", as_version=4)
    assert out.cells[1].outputs[0]["text"].split() == ["1", str(2 * 2**30)]
    assert report.peak_source == "cgroup" and 300 < report.peak_mib < 2048


@pytest.mark.skipif(not CGROUPS, reason="creating cgroups needs root and a cgroup v1/v2 mount")
def test_kernel_over_the_memory_limit_is_reported(tmp_path):
    src = write_notebook(tmp_path / "m.ipynb", "block = bytearray(600 * 2**20)", "print('alive')")
    limits = CgroupLimits(cpus=None, memory_bytes=256 * 2**20)
    report = execute_notebook(src, tmp_path / "m_out.ipynb", timeout=120, cgroup=limits)
    assert not report.ok and report.failed_cell == 1
    assert "256 MiB" in report.error or "0.25 GiB" in report.error or "died" in report.error


def test_environment_reaches_the_kernel(tmp_path):
    src = write_notebook(tmp_path / "e.ipynb", "import os\nprint(os.environ['PTLEARN_TEST_VAR'])")
    report = execute_notebook(
        src, tmp_path / "e_out.ipynb", timeout=60, env={"PTLEARN_TEST_VAR": "seen"}
    )
    assert report.ok
    out = nbformat.read(tmp_path / "e_out.ipynb", as_version=4)
    assert out.cells[1].outputs[0]["text"] == "seen\n"
    assert os.environ.get("PTLEARN_TEST_VAR") is None
