"""The course's conventions for exercises, checked on every notebook (see ``ptlearn.exercises``):

- solutions and answers sit in collapsed ``<details>`` markdown blocks, hidden on every front end
  (Colab, VS Code, GitHub/nbviewer, JupyterLab); no executable or ``source_hidden`` solution cells;
- solution code never binds a name that the notebook's code cells bind (the learner's names);
- every solution or answer comes after 1-3 hints, each in its own collapsed block;
- every checker call is followed by a solution before the next exercise.
"""

import ast
import json
import re
from pathlib import Path

import pytest

from ptlearn.grade import (
    DETAILS,
    FENCED_PYTHON,
    bound_names,
    cell_source,
    checker_names,
    python_source,
    solution_blocks,
)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
HIDDEN = ("Solution", "Answer")


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def kind(summary: str) -> str:
    return summary.split()[0] if summary.split() else ""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_solution_outside_a_collapsed_block(path):
    problems = []
    for i, cell in enumerate(load(path)["cells"]):
        meta, text = cell.get("metadata", {}), cell_source(cell)
        if meta.get("jupyter", {}).get("source_hidden") or "solution" in meta.get("tags", []):
            problems.append(f"cell {i} is hidden with metadata, which Colab and GitHub ignore")
        if cell["cell_type"] == "code" and re.match(r"\s*# (Solution|Answer)", text):
            problems.append(f"cell {i} is an executable solution")
        if cell["cell_type"] == "markdown":
            outside = DETAILS.sub("", text)
            if re.search(r"click to expand|\*\*(Solution|Answer)\b", outside):
                problems.append(f"cell {i} shows a solution or answer outside <details>")
            if text.count("<details>") != text.count("</details>"):
                problems.append(f"cell {i} has an unclosed <details> block")
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_solutions_never_bind_the_learners_names(path):
    nb = load(path)
    learner_names = set()
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            try:
                tree = ast.parse(python_source(cell))
            except SyntaxError:
                continue
            for node in tree.body:
                learner_names |= bound_names(node)
    clashes = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for summary, body in solution_blocks(cell_source(cell)):
            if kind(summary) != "Solution":
                continue
            for match in FENCED_PYTHON.finditer(body):
                tree = ast.parse(match["code"])  # a solution that does not parse fails here
                for node in tree.body:
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        continue
                    clashes += sorted(bound_names(node) & learner_names)
    assert not clashes, f"solutions rebind names of the notebook's code: {clashes}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_solution_comes_after_one_to_three_hints(path):
    hints, problems, n_solutions = 0, [], 0
    for i, cell in enumerate(load(path)["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for summary, _ in solution_blocks(cell_source(cell)):
            if kind(summary) == "Hint":
                hints += 1
            elif kind(summary) in HIDDEN:
                n_solutions += 1
                if not 1 <= hints <= 3:
                    problems.append(f"the {summary.lower()} in cell {i} follows {hints} hints")
                hints = 0
    assert not problems, "; ".join(problems)
    assert hints == 0, f"{hints} hint(s) at the end of the notebook belong to no solution"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_checker_call_has_a_solution(path):
    checkers = checker_names()
    pending, problems = None, []
    for i, cell in enumerate(load(path)["cells"]):
        if cell["cell_type"] == "code":
            called = set(re.findall(r"\b(check_\w+)\(", python_source(cell))) & checkers
            if called:
                if pending is not None:
                    problems.append(f"{pending[1]} (cell {pending[0]}) has no solution")
                pending = (i, sorted(called)[0])
        else:
            blocks = solution_blocks(cell_source(cell))
            if any(kind(s) == "Solution" for s, _ in blocks):
                pending = None
    if pending is not None:
        problems.append(f"{pending[1]} (cell {pending[0]}) has no solution")
    assert not problems, "; ".join(problems)
