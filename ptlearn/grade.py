"""Classroom grading: run every exercise checker against learners' saved notebooks.

``ptlearn grade PATH...`` (and :func:`grade`) finds the exercises of each notebook by their calls
to a ``ptlearn.exercises`` checker (``result = check_attention(my_attention)``). For each one it
builds a small program from the notebook: every top-level import of the cells up to the check,
then the definitions the check needs (the ``def``/``class``/assignment that last bound each name
it uses, and, transitively, the names those use), then the check call itself. Nothing else of the
notebook runs: no training, no downloads. Each program runs in its own Python process with a time
limit, and its verdict becomes one row of a per-learner, per-exercise table:

- ``passed``: the checker accepted the learner's code;
- ``failed``: the checker named a mistake (the ``message`` column says which);
- ``not attempted``: the stub still raises ``NotImplementedError``;
- ``error``: the program could not get to the check (a cell that does not parse, a name that is
  never defined, a crash while defining the learner's code);
- ``timeout``: the learner's definitions and the check ran past the time limit (counted after
  the imports, which a busy machine can make slow).

The table is written as CSV and summarised on the terminal. ``learner`` is the name of the folder
that holds the notebook (``submissions/alice/04_gpt.ipynb`` -> ``alice``).

:func:`student_notebook` (``ptlearn course --student DIR``) removes the collapsed solution blocks
(``<details><summary>Solution</summary>``, and the answers of discussion questions) from a
notebook, so that an instructor can hand out the course without them; hints stay.

Why this module is longer than 350 lines: grading is one pipeline (find the checks, slice the
notebook's definitions each needs, run each in its own process with a time limit, tabulate), and
its parts only make sense together; the slicing alone needs the name-resolution rules above.
"""

from __future__ import annotations

import ast
import builtins
import csv
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RESULT_MARK = "__PTLEARN_GRADE__"
IMPORT_ALLOWANCE = 600.0  # seconds the imports may take on top of an exercise's time limit
STATUSES = ("passed", "failed", "not attempted", "error", "timeout")

# a collapsed block: <details><summary>Solution</summary> ... </details> (or Answer, Hint N)
DETAILS = re.compile(
    r"<details>\s*<summary>\s*(?P<summary>[^<]*?)\s*</summary>(?P<body>.*?)</details>", re.S
)
FENCED_PYTHON = re.compile(r"```python\n(?P<code>.*?)```", re.S)
HIDDEN_KINDS = ("Solution", "Answer")


def checker_names() -> set[str]:
    """The names of the checkers a notebook may call (``ptlearn.exercises.check_*``)."""
    from . import exercises

    return {name for name in exercises.__all__ if name.startswith("check_")}


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def python_source(cell: dict) -> str:
    """A code cell's source without IPython magics and shell lines (``%pip``, ``!ls``)."""
    lines = cell_source(cell).splitlines()
    return "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in lines)


def solution_blocks(markdown: str) -> list[tuple[str, str]]:
    """``(summary, body)`` of every collapsed ``<details>`` block of a markdown cell."""
    return [(m["summary"], m["body"]) for m in DETAILS.finditer(markdown)]


def strip_solutions(markdown: str) -> str:
    """The markdown without its Solution and Answer blocks (hints stay)."""

    def keep(match):
        kind = match["summary"].split()[0] if match["summary"].split() else ""
        return "" if kind in HIDDEN_KINDS else match.group(0)

    return DETAILS.sub(keep, markdown).strip()


def solution_code(nb: dict) -> list[str]:
    """The python code of every Solution block of the notebook, in order."""
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for summary, body in solution_blocks(cell_source(cell)):
            if summary.startswith("Solution"):
                out += [m["code"] for m in FENCED_PYTHON.finditer(body)]
    return out


def solution_name(learner_name: str) -> str:
    """The name a solution uses for the learner's ``learner_name``: ``my_attention`` ->
    ``attention_solution``, ``MyBlock`` -> ``BlockSolution``."""
    if learner_name.startswith("my_"):
        return learner_name[3:] + "_solution"
    if learner_name.startswith("My"):
        return learner_name[2:] + "Solution"
    return learner_name + "_solution"


# --- finding the exercises and what they need --------------------------------------------------


@dataclass
class Exercise:
    """One checker call in a notebook and the program that replays it."""

    checker: str
    cell: int  # index of the notebook cell with the call
    program: str  # imports + needed definitions + the call
    problem: str = ""  # why the program cannot run (then it is reported as an error)


def bound_names(node: ast.stmt) -> set[str]:
    """Names a top-level statement binds (def, class, assignment targets, imports)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    targets = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)  # a copy: the loop below pops from it
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    names = set()
    while targets:  # names only: `recipe.config.x = 1` changes recipe, it does not bind it
        target = targets.pop()
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            targets += target.elts
        elif isinstance(target, ast.Starred):
            targets.append(target.value)
    return names


def used_names(node: ast.AST) -> set[str]:
    """The names a statement reads from outside: loads minus the names bound inside it (a
    function's parameters and locals, a loop's variable), but a name it reads and rebinds
    (``model = model.to(device)``) counts as read."""
    loads, stores = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            (loads if isinstance(n.ctx, ast.Load) else stores).add(n.id)
        elif isinstance(n, ast.arg):
            stores.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n is not node:
            stores.add(n.name)
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        stores -= bound_names(node)  # the statement's own targets: read before they are bound
    return loads - stores


def calls_checker(node: ast.stmt, checkers: set[str]) -> str | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in checkers:
            return sub.func.id
    return None


def find_exercises(nb: dict, with_solutions: bool = False) -> list[Exercise]:
    """Every checker call of the notebook, each with the program that replays it.

    ``with_solutions`` replays the notebook's own Solution blocks instead of the learner's code:
    the solution's names (``attention_solution``) are passed to the checker in place of the
    learner's (``my_attention``). The tests use it to prove every solution passes its checker."""
    checkers = checker_names()
    statements: list[tuple[int, ast.stmt, str]] = []  # (cell, statement, its source)
    broken: list[str] = []
    exercises: list[Exercise] = []
    solutions = []
    if with_solutions:
        for code in solution_code(nb):
            try:
                solutions += [(n, ast.get_source_segment(code, n)) for n in ast.parse(code).body]
            except SyntaxError as error:
                broken.append(f"a solution block does not parse ({error.msg}, line {error.lineno})")
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = python_source(cell)
        try:
            tree = ast.parse(source)
        except SyntaxError as error:
            broken.append(f"cell {index} does not parse ({error.msg}, line {error.lineno})")
            continue
        for node in tree.body:
            checker = calls_checker(node, checkers)
            if checker is None:
                statements.append((index, node, ast.get_source_segment(source, node)))
                continue
            call = node.value if isinstance(node, (ast.Assign, ast.Expr)) else node
            call_source = ast.get_source_segment(source, call)
            program, problem = build_program(statements, call, call_source, broken, solutions)
            exercises.append(Exercise(checker, index, program, problem))
            # a later exercise may build on this one's verdict (use_learner(result, ...))
            statements.append((index, node, ast.get_source_segment(source, node)))
    return exercises


def build_program(statements, call, call_source, broken, solutions) -> tuple[str, str]:
    """Imports, the definitions ``call`` needs (transitively), then ``call``."""
    imports = [src for _, node, src in statements if isinstance(node, (ast.Import, ast.ImportFrom))]
    imported = set()
    for _, node, _ in statements:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= bound_names(node)
    definitions = [
        (n, s) for _, n, s in statements if not isinstance(n, (ast.Import, ast.ImportFrom))
    ]
    pool = definitions + solutions  # solutions come last: they may build on the notebook
    renames = {}
    if solutions:
        solution_bound = set().union(*(bound_names(n) for n, _ in solutions))
        renames = {
            name: solution_name(name)
            for name in used_names(call)
            if solution_name(name) in solution_bound
        }
        for old, new in renames.items():
            call_source = re.sub(rf"\b{old}\b", new, call_source)
        call = ast.parse(call_source, mode="eval")
    chosen: dict[int, str] = {}
    needed = [(name, len(pool)) for name in used_names(call)]  # (name, bound before position)
    seen = set()
    known = set(dir(builtins))
    missing = []
    while needed:
        name, limit = needed.pop()
        if (name, limit) in seen or name in imported or name in known:
            continue
        seen.add((name, limit))
        for position in range(limit - 1, -1, -1):
            node, source = pool[position]
            if name in bound_names(node):
                if position not in chosen:
                    chosen[position] = source
                    needed += [(used, position) for used in used_names(node)]
                break
        else:
            missing.append(name)
    problem = ""
    checked = [n for n in used_names(call) if n in missing]
    if checked:
        problem = f"{', '.join(sorted(checked))} is never defined in the notebook"
        if broken:
            problem += f" ({'; '.join(broken)})"
    body = "\n\n".join(chosen[i] for i in sorted(chosen))
    program = "\n".join(imports) + "\n\n" + ALARM + "\n\n" + body + "\n\n"
    return program + RUNNER.format(call=call_source), problem


# The time limit counts from here, after the imports (which a busy machine can make slow): the
# learner's definitions and the check. A BaseException, so that no checker turns it into a verdict.
ALARM = """
import signal as _grade_signal
import sys as _grade_sys


class GradeTimeout(BaseException):
    pass


def _grade_stop(*_):
    raise GradeTimeout()


if hasattr(_grade_signal, "SIGALRM"):
    _grade_signal.signal(_grade_signal.SIGALRM, _grade_stop)
    _grade_signal.alarm(int(_grade_sys.argv[1]))
"""


RUNNER = """
import json as _grade_json
_grade_result = {call}
print({mark!r} + _grade_json.dumps({{
    "name": getattr(_grade_result, "name", ""),
    "passed": bool(getattr(_grade_result, "passed", False)),
    "message": getattr(_grade_result, "message", repr(_grade_result)),
}}))
""".replace("{mark!r}", repr(RESULT_MARK))


# --- running them ----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the grade table."""

    learner: str
    notebook: str
    exercise: str
    checker: str
    status: str
    message: str
    seconds: float


def run_program(program: str, timeout: float) -> tuple[str, str, str]:
    """``(status, exercise name, message)`` of one exercise program run in a fresh process."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", program, str(max(1, round(timeout)))],
            capture_output=True,
            text=True,
            timeout=timeout + IMPORT_ALLOWANCE,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return "timeout", "", f"stopped after {timeout + IMPORT_ALLOWANCE:.0f} s (with the imports)"
    if "GradeTimeout" in done.stderr:
        return "timeout", "", f"stopped after {timeout:.0f} s"
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            verdict = json.loads(line[len(RESULT_MARK) :])
            message = verdict["message"]
            if verdict["passed"]:
                status = "passed"
            elif "not implemented yet" in message:
                status = "not attempted"
            else:
                status = "failed"
            return status, verdict["name"], message
    error = (done.stderr.strip().splitlines() or ["the program stopped without a verdict"])[-1]
    return "error", "", error


def learner_of(path: Path) -> str:
    return path.parent.name or path.stem


def notebooks_under(paths) -> list[Path]:
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        else:
            found.append(path)
    return found


def grade(paths, timeout: float = 120.0, with_solutions: bool = False, echo=print) -> list[Row]:
    """Grade every notebook under ``paths``; one :class:`Row` per exercise of each notebook."""
    rows = []
    for path in notebooks_under(paths):
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        for exercise in find_exercises(nb, with_solutions=with_solutions):
            start = time.perf_counter()
            if exercise.problem:
                status, name, message = "error", "", exercise.problem
            else:
                status, name, message = run_program(exercise.program, timeout)
            row = Row(
                learner_of(path),
                path.name,
                name or exercise.checker.removeprefix("check_").replace("_", " "),
                exercise.checker,
                status,
                message,
                round(time.perf_counter() - start, 1),
            )
            rows.append(row)
            if echo:
                echo(f"{row.learner:>12} {row.notebook:<22} {row.exercise:<36} {row.status}")
    return rows


def write_csv(rows: list[Row], path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(Row.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


def summary(rows: list[Row]) -> str:
    """Per learner: how many exercises passed, failed, were not attempted, errored, timed out."""
    learners = sorted({r.learner for r in rows})
    header = f"{'learner':<16}" + "".join(f"{s:>15}" for s in STATUSES) + f"{'total':>8}"
    lines = [header, "-" * len(header)]
    for learner in learners:
        mine = [r for r in rows if r.learner == learner]
        counts = "".join(f"{sum(r.status == s for r in mine):>15}" for s in STATUSES)
        lines.append(f"{learner:<16}{counts}{len(mine):>8}")
    return "\n".join(lines)


# --- the course without solutions --------------------------------------------------------------


def student_notebook(nb: dict) -> dict:
    """A copy of the notebook without its Solution and Answer blocks and without outputs."""
    nb = json.loads(json.dumps(nb))
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = cell_source(cell)
            stripped = strip_solutions(text)
            if stripped != text.strip():
                if not stripped:
                    continue  # the cell held only a solution
                cell["source"] = stripped
        elif cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(cell)
    nb["cells"] = cells
    return nb


# --- how long a chapter takes ---------------------------------------------------------------

PLAN_MINUTES = re.compile(r"Plan\s+on\s+about\s+(\d+)\s+minutes")


def time_estimate(nb: dict, wpm: int = 200, code_lines_per_minute: int = 15) -> dict:
    """An honest reading + exercise estimate for one notebook, in minutes (run time comes on top).

    Reading: the words of the markdown outside collapsed blocks at ``wpm`` (200 for technical
    prose), plus the code cells' lines at ``code_lines_per_minute`` (they are read, not only run).
    Exercises: the minutes an exercise's task states ("Plan on about 15 minutes"), else 8 minutes
    for a coding exercise (a checker call) and 5 for a discussion question (an Answer block).
    """
    words = code_lines = exercise_minutes = planned = n_checks = n_discussions = 0
    for cell in nb["cells"]:
        text = cell_source(cell)
        if cell["cell_type"] == "markdown":
            visible = DETAILS.sub("", text)
            words += len(re.findall(r"[A-Za-z0-9']+", visible))
            stated = [int(m) for m in PLAN_MINUTES.findall(visible)]
            planned += len(stated)
            exercise_minutes += sum(stated)
            n_discussions += sum(kind == "Answer" for kind, _ in solution_blocks(text))
        elif cell["cell_type"] == "code":
            code_lines += sum(1 for line in text.splitlines() if line.strip())
            n_checks += len(set(re.findall(r"\b(check_\w+)\(", python_source(cell))))
    exercise_minutes += 8 * max(0, n_checks - planned) + 5 * n_discussions
    reading = words / wpm + code_lines / code_lines_per_minute
    return {
        "words": words,
        "code_lines": code_lines,
        "exercises": n_checks + n_discussions,
        "reading_min": round(reading),
        "exercise_min": exercise_minutes,
        "total_min": round(reading + exercise_minutes),
    }
