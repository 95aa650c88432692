"""``ptlearn grade`` on saved notebooks with correct, wrong, missing and broken answers, and
``ptlearn course --student`` (the course without solutions)."""

import csv
import json

import pytest

from ptlearn import cli
from ptlearn.grade import (
    find_exercises,
    grade,
    solution_name,
    strip_solutions,
    student_notebook,
    summary,
    write_csv,
)


def cell(kind, text):
    if kind == "code":
        return {
            "cell_type": "code",
            "metadata": {},
            "source": text,
            "outputs": [],
            "execution_count": 1,
        }
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def notebook(answer: str) -> dict:
    """A chapter-like notebook: setup, an expensive cell grading must skip, one exercise."""
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            cell(
                "code",
                "%pip install nothing\nimport time\n\nfrom ptlearn.exercises import check_causal_mask",
            ),
            cell("code", "time.sleep(600)  # training: grading must not run this"),
            cell("markdown", "### Exercise: a causal mask"),
            cell("code", "import torch\n\n\n" + answer),
            cell("code", "result = check_causal_mask(my_causal_mask)"),
            cell("markdown", "<details><summary>Hint 1</summary>\n\nUse torch.tril.\n\n</details>"),
            cell(
                "markdown",
                "<details><summary>Solution</summary>\n\n```python\ndef causal_mask_solution(T):\n"
                "    return torch.ones(T, T, dtype=torch.bool).tril()\n```\n\n</details>",
            ),
        ],
    }


ANSWERS = {
    "alice": "def my_causal_mask(T):\n    return torch.ones(T, T).tril().bool()",  # correct
    "bob": "def my_causal_mask(T):\n    return torch.ones(T, T, dtype=torch.bool).triu()",  # wrong
    "carol": "def my_causal_mask(T):\n    raise NotImplementedError",  # missing
    "dave": "def my_causal_mask(T)\n    return None",  # does not parse
    "erin": "def my_causal_mask(T):\n    while True:\n        pass",  # never returns
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("submissions")
    for learner, answer in ANSWERS.items():
        (root / learner).mkdir()
        (root / learner / "01_attention.ipynb").write_text(json.dumps(notebook(answer)))
    return root, grade([root], timeout=15, echo=None)


def test_grade_gives_each_learner_a_verdict(graded):
    _, rows = graded
    status = {r.learner: r.status for r in rows}
    assert status == {
        "alice": "passed",
        "bob": "failed",
        "carol": "not attempted",
        "dave": "error",
        "erin": "timeout",
    }
    by = {r.learner: r for r in rows}
    assert "transposed" in by["bob"].message  # the checker's diagnosis reaches the table
    assert "does not parse" in by["dave"].message
    assert all(
        r.checker == "check_causal_mask" and r.notebook == "01_attention.ipynb" for r in rows
    )
    assert "time.sleep(600)" not in find_exercises(notebook(ANSWERS["alice"]))[0].program


def test_grade_writes_csv_and_summary(graded, tmp_path):
    _, rows = graded
    write_csv(rows, tmp_path / "grades.csv")
    table = list(csv.DictReader(open(tmp_path / "grades.csv")))
    assert [r["learner"] for r in table] == [r.learner for r in rows]
    assert {r["status"] for r in table} == {"passed", "failed", "not attempted", "error", "timeout"}
    text = summary(rows)
    alice = next(line for line in text.splitlines() if line.startswith("alice"))
    assert alice.split()[1:] == ["1", "0", "0", "0", "0", "1"]


def test_grade_replays_only_what_the_check_needs():
    nb = notebook(ANSWERS["alice"])
    (exercise,) = find_exercises(nb)
    assert "time.sleep(600)" not in exercise.program
    assert "def my_causal_mask" in exercise.program and "import torch" in exercise.program
    assert "pip install" not in exercise.program


def test_grade_with_solutions_checks_the_notebooks_own_solution(tmp_path):
    (tmp_path / "x").mkdir()
    path = tmp_path / "x" / "01_attention.ipynb"
    path.write_text(json.dumps(notebook(ANSWERS["carol"])))
    (row,) = grade([path], timeout=60, with_solutions=True, echo=None)
    assert row.status == "passed"
    assert solution_name("my_attention") == "attention_solution"
    assert solution_name("MyBlock") == "BlockSolution"


def test_student_notebooks_keep_hints_and_lose_solutions():
    nb = notebook(ANSWERS["alice"])
    nb["cells"].append(
        cell("markdown", "Discuss.\n\n<details><summary>Answer</summary>\n\nYes.\n\n</details>")
    )
    student = student_notebook(nb)
    text = json.dumps(student)
    assert "causal_mask_solution" not in text and "summary>Answer" not in text
    assert "summary>Hint 1" in text and "Discuss." in text
    assert len(student["cells"]) == len(nb["cells"]) - 1  # the solution-only cell is gone
    assert all(c.get("outputs", []) == [] for c in student["cells"])
    assert strip_solutions("a <details><summary>Hint 2</summary>b</details>").endswith("</details>")


def test_course_student_writes_every_notebook_without_solutions(tmp_path, capsys):
    assert cli.main(["course", "--student", str(tmp_path / "handout")]) == 0
    written = sorted((tmp_path / "handout").glob("*.ipynb"))
    assert len(written) == len(list(cli.course_dir().glob("*.ipynb")))
    for path in written:
        text = path.read_text()
        assert "<summary>Solution</summary>" not in text and "<summary>Answer</summary>" not in text
    assert "<summary>Hint 1</summary>" in (tmp_path / "handout" / "01_attention.ipynb").read_text()


def test_time_estimate_counts_visible_words_code_and_exercises():
    from ptlearn.grade import time_estimate

    nb = notebook(ANSWERS["alice"])
    nb["cells"].append(cell("markdown", " ".join(["word"] * 400) + " Plan on about\n15 minutes."))
    nb["cells"].append(
        cell("markdown", "<details><summary>Answer</summary>\n\nhidden words\n\n</details>")
    )
    estimate = time_estimate(nb, wpm=200, code_lines_per_minute=15)
    assert estimate["words"] > 400 and "hidden" not in json.dumps(estimate)
    assert estimate["exercises"] == 2  # one checker call, one discussion answer
    assert estimate["exercise_min"] == 15 + 5  # the stated 15 minutes replace the default 8
    assert estimate["total_min"] == round(
        estimate["words"] / 200 + estimate["code_lines"] / 15 + 20
    )


def test_grade_follows_dependencies_between_exercises_and_rebindings():
    nb = notebook(ANSWERS["alice"])
    nb["cells"] += [
        cell("code", "from ptlearn.exercises import check_pair_counts, use_learner\n\nsize = 3"),
        cell("code", "size = size + 1\nunrelated = torch.zeros(10**9)  # must not run"),
        cell("code", "mask_fn = use_learner(result, my_causal_mask, reference=None)"),
        cell("code", "def my_pair_counts(ids):\n    n = size\n    return mask_fn(n)"),
        cell("code", "pairs = check_pair_counts(my_pair_counts)"),
    ]
    program = find_exercises(nb)[-1].program
    for needed in (
        "result = check_causal_mask(my_causal_mask)",
        "mask_fn = use_learner(",
        "size = 3",
    ):
        assert needed in program
    assert "size = size + 1" in program and "unrelated" not in program
    assert program.index("size = 3") < program.index("size = size + 1")
