"""The architecture diagrams: the generator runs and reproduces the committed SVG files byte for
byte, every file is well-formed SVG, every model chapter shows the current file inline, and
JupyterLab (in Chromium, offline) displays each one."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ptlearn.viz.diagrams import DIAGRAMS, embedded_figures, write_all

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
SVG = "{http://www.w3.org/2000/svg}"


def test_generator_reproduces_the_committed_files(tmp_path):
    written = write_all(tmp_path)
    assert sorted(p.name for p in written) == sorted(DIAGRAMS)
    for path in written:
        committed = FIGURES / path.name
        assert committed.exists(), f"{committed} missing: run python -m ptlearn.viz.diagrams"
        assert path.read_bytes() == committed.read_bytes(), (
            f"{path.name} is out of date: run python -m ptlearn.viz.diagrams"
        )
    again = write_all(tmp_path / "again")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_every_svg_is_well_formed_and_small(name):
    path = FIGURES / name
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    assert float(root.get("width")) > 0 and float(root.get("height")) > 0
    title = root.find(f"{SVG}title")
    assert title is not None and title.text.strip()
    texts = [t.text for t in root.iter(f"{SVG}text") if t.text]
    assert len(texts) >= 8, "a diagram labels its parts"
    assert len(list(root.iter(f"{SVG}rect"))) >= 5
    assert path.stat().st_size < 30_000, "keep the SVG files small"
    # every arrowhead a line uses is defined
    defined = {m.get("id") for m in root.iter(f"{SVG}marker")}
    used = {
        line.get("marker-end")[len("url(#") : -1]
        for line in root.iter(f"{SVG}polyline")
        if line.get("marker-end")
    }
    assert used <= defined


def figure_cells(notebook: str, name: str) -> list[dict]:
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    return [c for c in cells if c.get("id") == "diagram-" + name.split("_")[0]]


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_each_chapter_shows_its_current_diagram(name):
    _, notebook, alt = DIAGRAMS[name]
    cells = figure_cells(notebook, name)
    assert len(cells) == 1, f"{notebook} should show {name} exactly once"
    cell = cells[0]
    assert cell["cell_type"] == "markdown"
    assert f"docs/figures/{name}" in "".join(cell["source"]), "the caption names the file"
    figures = embedded_figures(cell)
    assert [shown_alt for shown_alt, _ in figures] == [alt]
    assert figures[0][1] == (FIGURES / name).read_bytes(), (
        f"the copy of {name} in {notebook} is out of date: refresh it with "
        "ptlearn.viz.diagrams.figure_cell"
    )


# --- what a learner sees: JupyterLab renders the attachments, offline -----------------------------

IMAGE_SIZES = """() => [...document.querySelectorAll('.jp-RenderedMarkdown img')].map(
    img => [img.getAttribute("alt"), img.naturalWidth, img.naturalHeight])"""


@pytest.mark.browser
@pytest.mark.timeout(600)
def test_jupyterlab_shows_every_diagram_offline(tmp_path):
    """A notebook holding the chapters' figure cells, opened in JupyterLab in Chromium with every
    non-local request blocked: each figure loads at the size its SVG declares (an SVG cell
    attachment would fail here: jupyterlab/jupyterlab#10464)."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    from lab import CHROMIUM, JupyterLab, chromium, offline_context

    if not CHROMIUM.is_file():
        pytest.skip(f"No Chromium binary at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    cells = [c for name, (_, nb, _) in sorted(DIAGRAMS.items()) for c in figure_cells(nb, name)]
    root = tmp_path / "notebooks"
    root.mkdir()
    (root / "diagrams.ipynb").write_text(
        json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    expected = {}
    for name, (_, _, alt) in DIAGRAMS.items():
        svg = ET.parse(FIGURES / name).getroot()
        expected[alt] = (int(svg.get("width")), int(svg.get("height")))
    with JupyterLab(root, tmp_path / "jupyter") as lab, sync_playwright() as pw:
        with chromium(pw) as browser:
            context, blocked = offline_context(browser, viewport={"width": 1200, "height": 900})
            page = context.new_page()
            page.goto(lab.url("lab/tree/diagrams.ipynb"), timeout=180_000)
            page.wait_for_function(
                f"() => document.querySelectorAll('.jp-RenderedMarkdown img').length >= "
                f"{len(DIAGRAMS)}",
                timeout=180_000,
            )
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-RenderedMarkdown img')]"
                ".every(img => img.complete)",
                timeout=60_000,
            )
            shown = {alt: (w, h) for alt, w, h in page.evaluate(IMAGE_SIZES)}
            context.close()
    assert shown == expected
    assert not blocked, f"the figures needed the network: {blocked}"
