"""Run a chapter's own code cells in this process, so that a benchmark repeats the chapter's
experiment with its own code (over seeds, label draws, ...) instead of a copy of it."""

from __future__ import annotations

import json
from pathlib import Path


def run_cells(notebook: Path, marker: str, *, include_marker: bool) -> tuple[dict, str]:
    """Execute ``notebook``'s code cells in order (the install cell, which calls ``%pip``, is left
    out) up to the first cell whose source contains ``marker``, and that cell too if
    ``include_marker``. Returns the notebook's globals and that cell's source. Figures go to the
    non-interactive Agg backend; an exercise left undone falls back to ptlearn's reference, as it
    does for a learner."""
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {"__name__": notebook.stem}
    for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or "%pip" in source:
            continue
        found = marker in source
        if found and not include_marker:
            return namespace, source
        exec(compile(source, f"{notebook.name}, cell {index}", "exec"), namespace)
        if found:
            return namespace, source
    raise RuntimeError(f"{notebook.name} has no code cell containing {marker!r}")
