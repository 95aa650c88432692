"""binder/ installs ptlearn and every package the course notebooks import."""

import ast
import json
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DIST_FOR_IMPORT = {"sklearn": "scikit-learn", "IPython": "ipykernel", "ptlearn": "ptlearn-course"}
PROVIDED_BY = {"ipykernel": "jupyterlab"}  # jupyterlab brings the kernel and IPython


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[<>=!~\[ ;]", line)[0].lower())
    return names


def notebook_imports(nb_path: Path) -> set[str]:
    nb = json.loads(nb_path.read_text())
    found = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).splitlines()
        # IPython magics (%pip, !cmd) are not Python: keep their indentation, drop the command
        code = "\n".join(
            line[: len(line) - len(line.lstrip())] + "pass"
            if line.lstrip()[:1] in "%!" and line.strip()
            else line
            for line in lines
        )
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names)


def test_binder_requirements_cover_ptlearn_runtime_dependencies():
    reqs = requirement_names(ROOT / "binder" / "requirements.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[<>=!~\[ ;]", d)[0].lower() for d in project["dependencies"]}
    assert runtime <= reqs, f"binder/requirements.txt misses {sorted(runtime - reqs)}"
    assert "download.pytorch.org/whl/cpu" in (ROOT / "binder" / "requirements.txt").read_text()


def test_binder_post_build_installs_ptlearn_from_the_repository():
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert re.search(r"pip install .*-e \.", post_build)
    assert not re.search(r"pip install[^\n]*\bptlearn\b(?!-course)", post_build)


def post_build_installs() -> set[str]:
    """Packages that binder/postBuild installs with pip (besides the repository itself)."""
    text = (ROOT / "binder" / "postBuild").read_text()
    words = re.findall(r"pip install ([^\n]+)", text)
    return {w.lower() for line in words for w in line.split() if not w.startswith("-") and w != "."}


def test_binder_installs_every_package_the_notebooks_import():
    reqs = requirement_names(ROOT / "binder" / "requirements.txt") | post_build_installs()
    reqs |= {"ptlearn-course"}
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "the course has no notebooks"
    for nb in notebooks:
        for name in notebook_imports(nb):
            dist = DIST_FOR_IMPORT.get(name, name).lower().replace("_", "-")
            dist = PROVIDED_BY.get(dist, dist)
            assert dist in reqs, (
                f"{nb.name} imports {name}, which binder/requirements.txt does not install"
            )


def test_no_install_cell_or_doc_installs_the_unrelated_ptlearn_package():
    files = [*ROOT.glob("notebooks/*.ipynb"), ROOT / "README.md", *ROOT.glob("binder/*")]
    bad = re.compile(r"pip install[^\n\"]*\bptlearn\b(?![-_]course)")
    offenders = [f.name for f in files if bad.search(f.read_text())]
    assert not offenders, f"these files `pip install ptlearn` (another project): {offenders}"
