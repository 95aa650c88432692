"""The course website in a real browser with the network cut (``ptlearn site``).

The site is built (``ptlearn.site.build_site``) from the executed notebooks that
``tests/test_notebooks.py`` left in ``build/executed/`` earlier in the same pytest run, so CI runs
every chapter once. Where no executed copy exists (this file run alone), it executes a fast subset
(chapters 01 to 03) into a temporary folder instead, and says so. A chapter whose execution failed
(``report.json``) is left out here: its own notebook test already fails.

Chromium (Playwright, Debian's /usr/bin/chromium) then opens every page from a local HTTP server in a
context where every request that is not for localhost is aborted (tests/browser/lab.py), and
``tests/browser/site_check.py`` checks each page: no request left localhost or failed, every image
decoded with a non-zero size, as many figures as the executed notebook holds, math typeset by the
site's own MathJax, no script error, a heatmap in every embedded attention view. On one embedded
view with several heads it switches the head and checks that the heatmap's pixels changed. A last
test breaks a copy of a chapter page (a figure lost, a CDN script added) and checks that the same
checker reports both: the browser test fails if a page loses its figures or asks for a CDN.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "browser"))

from lab import CHROMIUM, chromium, offline_context  # noqa: E402
from site_check import WAIT_MS, check_page, serve  # noqa: E402

from ptlearn.site import build_site, find_chapters  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# where tests/test_notebooks.py leaves the executed chapters (PTLEARN_EXECUTED_DIR overrides it)
EXECUTED = Path(os.environ.get("PTLEARN_EXECUTED_DIR", REPO / "build" / "executed"))
FAST_SUBSET = ["01", "02", "03"]  # the quick chapters, executed only when no executed copy exists
TEX = re.compile(r"\$[^$\n]+\$|\\\(|\\\[")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"No Chromium binary at {CHROMIUM}: install Debian's package (`apt-get install "
        f"chromium`, as .ci/run does) to run the website test.",
    ),
]

# the heatmap's pixels, as a short fingerprint
CANVAS_PIXELS = """(canvas) => {
    const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] * 7 + d[i + 1] * 3 + d[i + 2]) % 1000000007;
    return h;
}"""


def executed_chapters() -> tuple[Path, list[str], str]:
    """Where the executed notebooks are, which chapters to build, and how they got there."""
    all_chapters = find_chapters(REPO)
    present = [c for c in all_chapters if (EXECUTED / c.source.name).is_file()]
    failed = set()
    report = EXECUTED / "report.json"
    if report.is_file():
        failed = {name for name, r in json.loads(report.read_text()).items() if r.get("error")}
    usable = [c.number for c in present if c.source.name not in failed]
    if usable:
        note = f"reusing {len(usable)} executed chapter(s) from {EXECUTED}"
        if failed:
            note += f"; left out (their execution failed): {sorted(failed)}"
        return EXECUTED, usable, note
    return None, FAST_SUBSET, f"no executed notebooks in {EXECUTED}: executing {FAST_SUBSET}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built site: (folder, build report, chapters' executed notebooks folder)."""
    executed, chapters, note = executed_chapters()
    print(f"website test: {note}")
    if executed is None:
        executed = tmp_path_factory.mktemp("executed")
    out = tmp_path_factory.mktemp("site") / "site"
    report = build_site(
        out, root=REPO, executed=executed, chapters=chapters, timeout=1200, log=print
    )
    return out, report, Path(executed)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as started, chromium(started) as launched:
        yield launched


@pytest.fixture(scope="module")
def served(site):
    with serve(site[0]) as base:
        yield base


def expected_figures(executed: Path, notebook: str) -> int:
    """Image outputs in an executed notebook: each must be on its page."""
    nb = json.loads((executed / notebook).read_text(encoding="utf-8"))
    return sum(
        1
        for cell in nb["cells"]
        for out in cell.get("outputs", [])
        if {"image/png", "image/jpeg"} & set(out.get("data", {}))
    )


def has_math(notebook: Path) -> bool:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return any(
        TEX.search("".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "markdown"
    )


@pytest.mark.timeout(3600)
def test_every_page_is_whole_offline(site, served, browser):
    out, report, executed = site
    pages = sorted(p.name for p in out.glob("*.html"))
    assert set(pages) == set(report.pages)
    assert {"index.html", "widgets.html", "benchmarks.html", "troubleshooting.html"} <= set(pages)
    assert len([p for p in pages if p.startswith("widget-")]) >= 10, "a page per widget"
    chapters = {f"{name}.html": name for name in report.chapters}
    assert chapters, "no chapter was built"
    context, blocked = offline_context(browser, viewport={"width": 1300, "height": 900})
    problems = {}
    try:
        for name in pages:
            figures, math, images = 0, False, 0
            if name in chapters:
                notebook = f"{chapters[name]}.ipynb"
                figures = expected_figures(executed, notebook)
                assert figures >= 1, f"{notebook} has no figure: was it executed headless?"
                math = has_math(REPO / "notebooks" / notebook)
            elif name.startswith("widget-") or name in ("widgets.html", "benchmarks.html"):
                images = 1  # the screenshot(s), the attention-scaling plot
            found = check_page(
                context, blocked, served + name, figures=figures, math=math, min_images=images
            )
            if found:
                problems[name] = found
    finally:
        context.close()
    assert not problems, f"broken pages: {json.dumps(problems, indent=1)}"


@pytest.mark.timeout(900)
def test_pages_have_their_parts(site):
    """What a reader needs, in the HTML itself: launch buttons, widget screenshots, the tables."""
    out, report, _ = site
    for name in report.chapters:
        page = (out / f"{name}.html").read_text(encoding="utf-8")
        colab = f"colab.research.google.com/github/ptlearn-course/ptlearn-course/blob/main/notebooks/{name}.ipynb"
        assert colab in page, f"{name}: no Colab button"
        assert (
            f"mybinder.org/v2/gh/ptlearn-course/ptlearn-course/main?urlpath=lab/tree/notebooks/{name}.ipynb"
            in page
        )
        download = re.search(r"<a\b[^>]*ptlearn-download[^>]*>", page).group(0)
        assert f'href="notebooks/{name}.ipynb"' in download and "download" in download
        assert (out / "notebooks" / f"{name}.ipynb").is_file()
        assert "require.min.js" not in page and "cdnjs" not in page and "unpkg" not in page
    for page in out.glob("*.html"):  # every link inside the site leads to a file of the site
        for href in re.findall(r'<a\b[^>]*\shref="([^"#]+)', page.read_text(encoding="utf-8")):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", href):
                assert (out / href.split("?")[0]).is_file(), f"{page.name} links to missing {href}"
    index = (out / "index.html").read_text(encoding="utf-8")
    for name in report.chapters:
        assert f'href="{name}.html"' in index, f"the course table does not link {name}"
    assert "<table>" in (out / "troubleshooting.html").read_text(encoding="utf-8")
    shot = (out / "widget-attention_explorer.html").read_text(encoding="utf-8")
    assert re.search(r'<img src="images/docs-attention_explorer\.png"', shot)
    assert (out / "images" / "docs-attention_explorer.png").stat().st_size > 1000
    bench = (out / "benchmarks.html").read_text(encoding="utf-8")
    assert "images/benchmarks-results-attention_scaling.png" in bench


@pytest.mark.timeout(900)
def test_embedded_attention_view_switches_head(site, served, browser):
    out, report, _ = site
    assert report.attention_views, "no chapter page embeds an attention view"
    assert all(size < 300_000 for sizes in report.attention_views.values() for size in sizes)
    context, blocked = offline_context(browser, viewport={"width": 1300, "height": 900})
    try:
        page = context.new_page()
        for name in sorted(report.attention_views):
            page.goto(served + name, wait_until="load", timeout=WAIT_MS)
            frames = page.frame_locator("iframe.ptlearn-attention-embed")
            for i in range(page.locator("iframe.ptlearn-attention-embed").count()):
                view = frames.nth(i)
                heads = view.locator("select.ptlearn-head option").count() - 1  # minus "mean"
                if heads >= 2:
                    break
            else:
                continue
            break
        else:
            pytest.fail(
                f"no embedded view with two heads or more on {sorted(report.attention_views)}"
            )
        canvas = view.locator("canvas.ptlearn-heatmap")
        canvas.wait_for(timeout=WAIT_MS)
        root = view.locator(".ptlearn-attention-view")
        assert root.get_attribute("data-head") == "0"
        before = canvas.evaluate(CANVAS_PIXELS)
        view.locator("select.ptlearn-head").select_option("1")
        assert root.get_attribute("data-head") == "1"
        after = canvas.evaluate(CANVAS_PIXELS)
        assert after != before, f"{name}: switching to head 1 left the heatmap unchanged"
        view.locator("select.ptlearn-head").select_option("0")
        assert canvas.evaluate(CANVAS_PIXELS) == before
        page.screenshot(path=out.parent / "attention_view_head1.png")
    finally:
        context.close()
    assert not blocked, f"the attention view asked for the network: {blocked}"


@pytest.mark.timeout(900)
def test_checker_catches_lost_figure_and_cdn(site, browser, tmp_path):
    """Break a copy of a chapter page twice: the checker must report each breakage."""
    out, report, executed = site
    broken = tmp_path / "site"
    shutil.copytree(out, broken)
    name = report.chapters[0]
    page = (broken / f"{name}.html").read_text(encoding="utf-8")
    lost = re.sub(r'src="data:image/png;base64,[^"]+"', 'src="lost-figure.png"', page, count=1)
    assert lost != page
    (broken / "lost.html").write_text(lost, encoding="utf-8")
    cdn = page.replace(
        "</head>",
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script></head>',
        1,
    )
    (broken / "cdn.html").write_text(cdn, encoding="utf-8")
    figures = expected_figures(executed, f"{name}.ipynb")
    context, blocked = offline_context(browser)
    try:
        with serve(broken) as base:
            assert check_page(context, blocked, base + f"{name}.html", figures=figures) == []
            lost_problems = check_page(context, blocked, base + "lost.html", figures=figures)
            cdn_problems = check_page(context, blocked, base + "cdn.html", figures=figures)
    finally:
        context.close()
    assert any("figure(s) shown" in p for p in lost_problems), lost_problems
    assert any("not decoded" in p or "failed" in p for p in lost_problems), lost_problems
    assert any("left localhost" in p and "cdn.jsdelivr.net" in p for p in cdn_problems), (
        cdn_problems
    )
