"""The package's import graph, read from the source: no cycle, and imports run one way.

Every ``import`` and ``from ... import`` in ``ptlearn/`` is parsed, at module level and inside
functions alike (an import hidden in a function still ties two modules together), and resolved to
the ptlearn module it names. The layers, lowest first (DESIGN.md's layout, the order a reader
follows):

    0  validation, config, outputs, device, checkpoint, metrics, tokenization, data.* (loaders)
    1  attention, objectives, hf (conversion: knows no model; models bind their converters)
    2  layers, data.batches (batch functions built on the objectives)
    3  transformer
    4  models.*
    5  training
    6  course helpers: finetune, distill, pretraining, recipes, study, exercises, viz, cli, ...

A module may import its own layer or a lower one, never a higher one; any ptlearn module not named
below is a course helper (layer 6), so a new chapter helper needs no entry here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ptlearn"

LAYERS = {
    "ptlearn.validation": 0,
    "ptlearn.config": 0,
    "ptlearn.outputs": 0,
    "ptlearn.device": 0,
    "ptlearn.checkpoint": 0,
    "ptlearn.metrics": 0,
    "ptlearn.tokenization": 0,
    "ptlearn.data": 0,
    "ptlearn.norms": 1,  # RMSNorm: used by attention (QK-norm) and the blocks
    "ptlearn.rotary": 1,  # rotary positions: used by attention
    "ptlearn.attention": 1,
    "ptlearn.objectives": 1,
    "ptlearn.hf": 1,
    "ptlearn.layers": 2,
    "ptlearn.data.batches": 2,
    "ptlearn.transformer": 3,
    "ptlearn.models": 4,
    "ptlearn.training": 5,
}
COURSE = 6


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name a ``from`` import refers to (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def runtime_nodes(tree: ast.AST):
    """Every node that can run: all of them but the bodies of ``if TYPE_CHECKING:`` (imports made
    for annotations only, which never execute)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, modules: dict) -> dict[str, list[str]]:
    """{imported ptlearn module: [names taken from it]} for every import anywhere in the file."""
    found: dict[str, list[str]] = {}
    for node in runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ptlearn"):
                    found.setdefault(alias.name, [])
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, path.name == "__init__.py", node)
            if not target.startswith("ptlearn"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:  # ``from . import data``: the submodule itself
                    found.setdefault(sub, [])
                else:
                    found.setdefault(target, []).append(alias.name)
    found.pop(name, None)
    return found


def layer(module: str) -> int:
    """The layer of the longest prefix of ``module`` named in LAYERS, else a course helper's."""
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in LAYERS:
            return LAYERS[prefix]
    return COURSE


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, list[str]]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_parser_sees_imports_at_module_level_and_inside_functions(tmp_path):
    source = (
        "from .models import GPT\n\ndef f():\n    from ..hf.bert import BERT_MODEL\n"
        "if TYPE_CHECKING:\n    from ..training import Trainer\n"
    )
    path = tmp_path / "x.py"
    path.write_text(source)
    found = imports_of("ptlearn.data.x", path, {"ptlearn.hf.bert": None})
    assert found == {"ptlearn.data.models": ["GPT"], "ptlearn.hf.bert": ["BERT_MODEL"]}


def find_cycle(graph: dict) -> list[str] | None:
    """One import cycle of ``graph`` ({module: {imported module: ...}}) as a path, or None."""
    state: dict[str, str] = {}  # "visiting" while on the current path, then "done"

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "visiting"
        for nxt in graph.get(node, {}):
            if state.get(nxt) == "visiting":
                return path[path.index(nxt) :] + [nxt]
            if nxt in graph and nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_hidden_behind_a_chain():
    graph = {"a": {"b": []}, "b": {"c": []}, "c": {"d": [], "b": []}, "d": {}}
    assert find_cycle(graph) == ["b", "c", "b"]
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {}}) is None


def test_the_package_has_no_import_cycle(graph):
    assert len(graph) > 40  # every module was read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_run_one_way(graph):
    upward = [
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, targets in graph.items()
        if m != "ptlearn"  # the package's __init__ is the public API: it may import everything
        for t in targets
        if layer(t) > layer(m)
    ]
    assert not upward, "\n".join(upward)


def test_hf_knows_no_model_and_models_use_hf_only_through_their_converters(graph):
    hf = {m: t for m, t in graph.items() if m == "ptlearn.hf" or m.startswith("ptlearn.hf.")}
    assert {"ptlearn.hf.io", "ptlearn.hf.convertible", "ptlearn.hf.bert"} <= set(hf)
    assert not [(m, t) for m, ts in hf.items() for t in ts if t.startswith("ptlearn.models")]
    for m, targets in graph.items():
        if m.startswith("ptlearn.models."):
            for t, names in targets.items():
                if t == "ptlearn.hf":
                    assert names == ["HFConvertible"], (m, names)
                elif t.startswith("ptlearn.hf."):
                    assert all(n.isupper() for n in names), (m, names)  # converter objects


def test_gpt_and_albert_take_nothing_but_a_config_from_bert(graph):
    """Shared pieces (init_weights, heads, losses) live in layers/objectives/outputs; ALBERT's
    config extends BERT's (BERT's fields plus E and the sharing mode), GPT needs nothing of BERT."""
    assert "ptlearn.models.bert" not in graph["ptlearn.models.gpt"]
    assert graph["ptlearn.models.albert"].get("ptlearn.models.bert") == ["BertConfig"]
