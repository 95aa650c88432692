"""Regenerate the widget screenshots in docs/ from a real browser run.

Runs ``tests/browser/all_widgets.ipynb`` (every widget of ``ptlearn.viz``, each tagged with a CSS
class ``shot-NAME``) in JupyterLab, in Debian's Chromium driven by Playwright, with every request
that is not for localhost blocked, exactly like ``tests/test_browser.py``. Then it saves one small
PNG per widget, plus the page written by ``viz.export_html`` opened from disk, into ``docs/``, and
writes ``docs/widgets.md``, a table that links them.

    python scripts/screenshots.py            # needs /usr/bin/chromium (apt-get install chromium)

It fails, naming the widget, when a widget does not render or when the page asked for the network.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))

from lab import (  # noqa: E402
    CHROMIUM,
    JupyterLab,
    chromium,
    offline_context,
    open_and_run_all,
    wait_for_cells,
)

NOTEBOOK = "all_widgets.ipynb"
WAIT_MS = 900_000  # the notebook trains two tiny models: minutes on a busy 2-core machine
MAX_WIDTH = 760  # pixels: readable on GitHub, small on disk

# (file name in docs/, function, what the picture shows)
SHOTS = [
    ("attention_explorer", "viz.attention_explorer", "layer 1, head 1, query token 2 selected"),
    ("export_html", "viz.export_html", "the exported page opened from disk, a token hovered"),
    ("attention_view", "viz.attention_view", "the same view inside a notebook output"),
    ("head_step_by_step", "viz.head_step_by_step", "QK^T, scaling, mask, softmax, V; causal"),
    ("softmax_temperature_demo", "viz.softmax_temperature_demo", "d_k = 64, raw scores"),
    ("fill_mask_playground", "viz.fill_mask_playground", "a tiny BERT after 150 MLM steps"),
    ("live_monitor", "viz.LiveMonitor", "an 80-step Trainer.fit of a tiny GPT"),
    ("attention_replay", "viz.attention_replay", "that run's last AttentionRecorder snapshot"),
    ("generation_playground", "viz.generation_playground", "that GPT, top-k 5"),
    ("parameter_budget", "viz.parameter_budget", "BERT-base vs ALBERT-base by component"),
    ("vit_explorer", "viz.vit_explorer", "a tiny random ViT on a synthetic image"),
    ("rollout_explorer", "viz.rollout_explorer", "its attention rollout over the patches"),
    ("patch_masking_view", "viz.patch_masking_view", "MAE hides 75% of the patches"),
]
# widgets whose whole cell output is worth showing (the monitor sits under Trainer's progress bar)
WHOLE_OUTPUT = {"live_monitor"}


def save_small(png: Path, out: Path) -> int:
    """Downscale to MAX_WIDTH and store with a 256-colour palette; returns the size in bytes."""
    image = Image.open(png).convert("RGB")
    if image.width > MAX_WIDTH:
        height = round(image.height * MAX_WIDTH / image.width)
        image = image.resize((MAX_WIDTH, height), Image.Resampling.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out.stat().st_size


def widget_locator(page, name: str):
    """The widget tagged ``shot-NAME`` (or, for WHOLE_OUTPUT ones, its cell's output area)."""
    if name == "attention_view":
        return page.locator(".jp-OutputArea-output .ptlearn-attention-view")
    widget = page.locator(f".shot-{name}")
    if name in WHOLE_OUTPUT:
        return page.locator(".jp-Cell-outputArea", has=widget)
    return widget


def wait_rendered(page, locator, name: str) -> None:
    """Wait until the widget is on the page and its pictures (if any) have loaded."""
    try:
        locator.first.wait_for(timeout=WAIT_MS)
        locator.first.scroll_into_view_if_needed()
        page.wait_for_function(
            """(el) => [...el.querySelectorAll('img, canvas')].length > 0 &&
                [...el.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)""",
            arg=locator.first.element_handle(),
            timeout=WAIT_MS,
            polling=200,
        )
    except Exception as error:
        raise RuntimeError(f"The widget {name!r} did not render in the browser: {error}") from error


def warn_empty_menus(locator, name: str) -> None:
    """Say so when a drop-down of the widget shows no choice (a value the browser cannot show)."""
    empty = locator.evaluate(
        "(el) => [...el.querySelectorAll('select')].filter(s => s.selectedIndex < 0).length"
    )
    if empty:
        print(f"WARNING: {name}: {empty} drop-down menu(s) show no selected choice", flush=True)


def export_page(context, root: Path, errors: list):
    """The page ``viz.export_html`` wrote, opened from disk, with a query token hovered."""
    page = context.new_page()
    page.set_viewport_size({"width": 800, "height": 600})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((root / "attention_export.html").as_uri())
    locator = page.locator(".ptlearn-attention-view")
    wait_rendered(page, locator, "export_html")
    page.locator(".ptlearn-token-q").nth(2).hover()
    return locator


def take(root: Path, out_dir: Path) -> list[tuple[str, str, str, int]]:
    """Run the notebook in JupyterLab and save one small PNG per entry of SHOTS."""
    from playwright.sync_api import sync_playwright

    rows = []
    shots = root.parent / "raw"
    shots.mkdir()
    with (
        JupyterLab(root, root.parent / "jupyter") as lab,
        sync_playwright() as playwright,
        chromium(playwright) as browser,
    ):
        context, blocked = offline_context(browser, viewport={"width": 1280, "height": 2000})
        notebook = context.new_page()
        errors: list[str] = []
        notebook.on("pageerror", lambda e: errors.append(str(e)))
        open_and_run_all(notebook, lab, NOTEBOOK, timeout=WAIT_MS / 1000)
        wait_for_cells(notebook, timeout=WAIT_MS / 1000)
        for name, function, caption in SHOTS:
            if name == "export_html":
                locator = export_page(context, root, errors)
            else:
                locator = widget_locator(notebook, name)
                wait_rendered(notebook, locator, name)
            warn_empty_menus(locator.first, name)
            raw = shots / f"{name}.png"
            locator.first.screenshot(path=raw)
            size = save_small(raw, out_dir / f"{name}.png")
            rows.append((name, function, caption, size))
            print(f"{name}: {size / 1024:.0f} kB", flush=True)
        if blocked:
            raise RuntimeError(f"The page asked for the network (blocked): {blocked}")
        if errors:
            raise RuntimeError(f"Script errors on the page: {errors}")
    return rows


def write_index(rows, out_dir: Path) -> None:
    lines = [
        "# The widgets, as a browser shows them",
        "",
        "Screenshots from a real run: JupyterLab 4 and ipywidgets 8 in Chromium, with every request",
        "that is not for localhost blocked (no CDN, no network). Regenerate them with",
        "`python scripts/screenshots.py`; the notebook it runs is `tests/browser/all_widgets.ipynb`.",
        "Its models are tiny and trained for seconds (the ViT not at all): the pictures show the",
        "widgets, not good models. Every widget also leaves a static PNG in a saved notebook, so",
        "GitHub and nbviewer show a picture where no kernel runs.",
        "",
        "| widget | shows | screenshot |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| `{function}` | {caption} | [![{name}]({name}.png)]({name}.png) |"
        for name, function, caption, _ in rows
    ]
    (out_dir / "widgets.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where the PNGs go")
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        sys.exit(f"No Chromium at {CHROMIUM}: apt-get install chromium, then run this again.")
    start = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up (stop JupyterLab)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ptlearn-shots-") as tmp:
        root = Path(tmp) / "notebooks"
        root.mkdir()
        for name in (NOTEBOOK, "demo.py"):
            shutil.copy(REPO / "tests" / "browser" / name, root / name)
        rows = take(root, args.out)
    write_index(rows, args.out)
    print(f"{len(rows)} screenshots in {args.out} ({time.monotonic() - start:.0f} s)")


if __name__ == "__main__":
    main()
