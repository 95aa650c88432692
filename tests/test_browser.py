"""The widgets in a real browser: JupyterLab 4 + ipywidgets 8 in Chromium, network blocked.

Headless tests (test_viz_widgets.py) prove the kernel side: controls change ``box.current``. These
tests prove what a learner sees. The first starts JupyterLab on localhost, opens
``tests/browser/widgets_demo.ipynb`` in Debian's Chromium (driven by Playwright) with every request
that is not for localhost aborted, runs all cells from the menu, then moves the attention explorer's
layer slider with the keyboard and picks a head from its menu, and checks that the picture on
screen is byte for byte the figure the widget draws for that layer and head. The second opens a
page written by ``viz.export_html`` from disk, switches its layer and head selectors and reads the
heatmap's pixels. The third freezes Chromium's crash handler (which holds the browser's output
open) and checks that the browser still closes: a hang there once showed up as a teardown error.
Skipped only where no Chromium binary exists.
"""

from __future__ import annotations

import base64
import functools
import itertools
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "browser"))

from demo import RULES, TOKENS, demo_attentions, target  # noqa: E402
from lab import (  # noqa: E402
    CHROMIUM,
    JupyterLab,
    chromium,
    offline_context,
    open_and_run_all,
    wait_for_cells,
)

from ptlearn import viz  # noqa: E402

BROWSER_DIR = Path(__file__).parent / "browser"
NOTEBOOK = "widgets_demo.ipynb"
WAIT_MS = 180_000  # generous: CI machines have 2 cores and may be busy

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"No Chromium binary at {CHROMIUM}: install Debian's package (`apt-get install "
        f"chromium`, as .ci/run does) to run the real-browser widget test.",
    ),
]

FETCH_IMAGE = """async (img) => {
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let text = "";
    for (let i = 0; i < bytes.length; i += 8192) {
        text += String.fromCharCode(...bytes.subarray(i, i + 8192));
    }
    return btoa(text);
}"""

# the colour of each heatmap cell's centre, [row][column] -> [r, g, b]
CANVAS_CELLS = """([canvas, n]) => {
    const ctx = canvas.getContext("2d"), cell = canvas.width / n;
    return [...Array(n).keys()].map(i => [...Array(n).keys()].map(j =>
        Array.from(ctx.getImageData((j + 0.5) * cell, (i + 0.5) * cell, 1, 1).data.slice(0, 3))));
}"""


def shown_png(img) -> bytes:
    """The PNG bytes an ``<img>`` of an ipywidgets Image currently shows (its blob: URL)."""
    return base64.b64decode(img.evaluate(FETCH_IMAGE))


def wait_for_new_image(page, img, old_src: str) -> None:
    """Wait until the kernel has sent a new picture (ipywidgets swaps the blob: URL)."""
    page.wait_for_function(
        "([img, old]) => img.src && img.src !== old",
        arg=[img.element_handle(), old_src],
        timeout=WAIT_MS,
        polling=100,
    )


@functools.cache
def explorer_pngs() -> dict:
    """The figure the attention explorer draws for each (layer, head), rendered in this process."""
    box = viz.attention_explorer(demo_attentions(), TOKENS)
    pngs = {}
    for layer, head in itertools.product(range(2), ["mean", 0, 1]):
        box.controls["layer"].value, box.controls["head"].value = layer, head
        pngs[layer, head] = bytes(box.image.value)
    return pngs


def view_shown(img):
    """Which (layer, head) the explorer's ``<img>`` shows, byte for byte."""
    png = shown_png(img)
    return next((view for view, p in explorer_pngs().items() if p == png), "an unknown picture")


def steps_png(mode: str) -> bytes:
    """The panels head_step_by_step draws for the demo sentence in ``mode``, rendered here."""
    box = viz.head_step_by_step(text="the cat sat on the mat")
    box.controls["mode"].value = mode
    return bytes(box.image.value)


def brightest_keys(page, canvas) -> list[int]:
    """For each query row of an exported page's heatmap, the key column drawn brightest."""
    cells = np.array(page.evaluate(CANVAS_CELLS, [canvas.element_handle(), len(TOKENS)]))
    # cells: [Tq, Tk, 3]
    return cells[..., :2].sum(-1).argmax(-1).tolist()  # viridis: bright = much red and green


def expected_keys(layer: int, head: int) -> list[int]:
    return [target(RULES[layer, head], q, len(TOKENS)) for q in range(len(TOKENS))]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a copy of the demo notebook; stopped (with its kernel) afterwards."""
    root = tmp_path / "notebooks"
    root.mkdir()
    for name in (NOTEBOOK, "demo.py"):
        shutil.copy(BROWSER_DIR / name, root / name)
    server = JupyterLab(root, tmp_path / "jupyter")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as started:  # one per process: the sync API cannot nest
        yield started


@pytest.fixture(scope="module")
def browser(playwright):
    with chromium(playwright) as launched:
        yield launched


@pytest.fixture
def offline(browser):
    """A browser context that reaches only localhost, and the list of URLs it refused."""
    context, blocked = offline_context(browser, viewport={"width": 1400, "height": 1000})
    try:
        yield context, blocked
    finally:
        context.close()


def watch_errors(page) -> list[str]:
    """Collect the page's uncaught script errors."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


@pytest.mark.timeout(900)
def test_notebook_widgets_follow_real_input_offline(lab, offline, tmp_path):
    context, blocked = offline
    page = context.new_page()
    errors = watch_errors(page)
    try:
        open_and_run_all(page, lab, NOTEBOOK, timeout=WAIT_MS / 1000)
        wait_for_cells(page, timeout=WAIT_MS / 1000)
        check_attention_explorer(page, tmp_path)
        check_head_step_by_step(page)
    except BaseException:
        page.screenshot(path=tmp_path / "failure.png")
        print(f"page at failure: {tmp_path / 'failure.png'}\nJupyterLab log:\n{lab.log_tail()}")
        raise
    assert not blocked, f"the notebook page asked for the network: {blocked}"
    assert not errors, f"script errors on the notebook page: {errors}"


def check_attention_explorer(page, tmp_path) -> None:
    """Move the layer slider with the keyboard and pick a head: the picture must follow."""
    explorer = page.locator(".demo-explorer")
    img = explorer.locator("img.widget-image")
    img.wait_for(timeout=WAIT_MS)
    readout = explorer.locator(".widget-slider .widget-readout")
    head_menu = explorer.locator(".widget-dropdown select").first
    assert (readout.inner_text(), head_menu.input_value()) == ("0", "head 0")
    assert view_shown(img) == (0, 0)
    explorer.screenshot(path=tmp_path / "attention_explorer.png")

    old = img.get_attribute("src")
    explorer.locator(".widget-slider .noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    wait_for_new_image(page, img, old)
    assert readout.inner_text() == "1"
    assert view_shown(img) == (1, 0)

    old = img.get_attribute("src")
    head_menu.select_option(label="head 1")
    wait_for_new_image(page, img, old)
    assert view_shown(img) == (1, 1)
    explorer.screenshot(path=tmp_path / "attention_explorer_layer1_head1.png")


def check_head_step_by_step(page) -> None:
    """Click the causal toggle: the panels must be redrawn with the mask."""
    steps = page.locator(".demo-steps")
    img = steps.locator("img.widget-image")
    assert shown_png(img) == steps_png("bidirectional")
    old = img.get_attribute("src")
    steps.get_by_role("button", name="causal").click()
    wait_for_new_image(page, img, old)
    assert shown_png(img) == steps_png("causal")


@pytest.mark.timeout(300)
def test_exported_page_works_from_disk_offline(offline, tmp_path):
    context, blocked = offline
    path = viz.export_html(demo_attentions(), TOKENS, tmp_path / "attention.html")
    page = context.new_page()
    errors = watch_errors(page)
    page.goto(path.resolve().as_uri())
    view = page.locator(".ptlearn-attention-view")
    canvas = view.locator("canvas.ptlearn-heatmap")
    canvas.wait_for(timeout=WAIT_MS)
    assert page.locator(".ptlearn-token-q text").all_text_contents() == TOKENS
    assert page.locator(".ptlearn-token-k text").all_text_contents() == TOKENS
    assert (view.get_attribute("data-layer"), view.get_attribute("data-head")) == ("0", "0")
    assert brightest_keys(page, canvas) == expected_keys(0, 0)

    page.locator("select.ptlearn-layer").select_option("1")
    page.locator("select.ptlearn-head").select_option("1")
    assert (view.get_attribute("data-layer"), view.get_attribute("data-head")) == ("1", "1")
    assert brightest_keys(page, canvas) == expected_keys(1, 1)
    page.locator("select.ptlearn-head").select_option("0")
    assert brightest_keys(page, canvas) == expected_keys(1, 0)

    # hovering a query token keeps only its lines: one per key
    page.locator(".ptlearn-token-q").nth(2).hover()
    assert view.get_attribute("data-lines") == str(len(TOKENS))
    view.screenshot(path=tmp_path / "export_html.png")
    assert not blocked, f"the exported page asked for the network: {blocked}"
    assert not errors, f"script errors on the exported page: {errors}"


@pytest.mark.timeout(120)
def test_browser_closes_even_when_its_crash_handler_is_frozen(playwright):
    """Chromium's crash handler holds the browser's stdout/stderr, and Playwright's close() waits
    for them: with the handler stopped (SIGSTOP), a plain close() hangs for good. Ours must not."""
    import signal
    import time

    from lab import crash_handlers

    with chromium(playwright, grace=2.0) as launched:
        launched.new_page().goto("about:blank")
        home = Path(launched.ptlearn_home)
        handlers = crash_handlers(home)
        if not handlers:
            pytest.skip("this Chromium starts no crash handler: nothing can hold close() up")
        for pid in handlers:
            os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
    assert time.monotonic() - start < 30, "close() waited for the frozen crash handler"
    assert crash_handlers(home) == []
