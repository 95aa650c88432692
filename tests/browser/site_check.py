"""Check pages of the course website in a real browser with the network cut.

Used by ``tests/test_site.py``. :func:`serve` serves a folder on 127.0.0.1 from a thread;
:func:`check_page` opens one page in a browser context from :func:`lab.offline_context` (every
request that is not for localhost is aborted and recorded) and returns the problems it finds:
requests that left localhost or failed, images not decoded or of zero size, fewer figures than
expected, math that MathJax did not typeset, script errors, embedded attention views without
their heatmap. An empty list means the page is whole.
"""

from __future__ import annotations

import functools
import http.server
import threading
from contextlib import contextmanager
from pathlib import Path

from lab import free_port, is_local

WAIT_MS = 120_000

# every <img>: decoded (decode() resolves) and of non-zero natural size
IMAGES = """async () => {
    const imgs = [...document.images];
    const results = await Promise.all(imgs.map(async (img) => {
        let decoded = true;
        try { await img.decode(); } catch (e) { decoded = false; }
        return {src: img.currentSrc.slice(0, 80), decoded, w: img.naturalWidth, h: img.naturalHeight,
                figure: !!img.closest('.jp-OutputArea-output')};
    }));
    return results;
}"""

# TeX MathJax was given (script elements it made), what it rendered, and its errors
MATH = """() => ({
    sources: document.querySelectorAll('script[type^="math/tex"]').length,
    rendered: [...document.querySelectorAll('.MathJax, .MathJax_Display')]
        .filter(e => e.getBoundingClientRect().width > 0).length,
    errors: document.querySelectorAll('.MathJax_Error, .MathJax merror, [class*="merror"]').length,
    leftover: [...document.querySelectorAll('.jp-RenderedMarkdown p, .jp-RenderedMarkdown li, main.ptlearn-page p')]
        .filter(e => /\\$\\$|\\\\frac|\\\\sqrt|\\\\mathrm/.test(e.innerText)).length,
})"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@contextmanager
def serve(folder: Path):
    """Serve ``folder`` on http://127.0.0.1:PORT/ from a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def check_page(
    context,
    blocked: list[str],
    url: str,
    *,
    figures: int = 0,
    math: bool = False,
    min_images: int = 0,
) -> list[str]:
    """Open ``url`` in ``context`` and return what is wrong with the page (empty: nothing).

    ``figures``: how many figure images (in notebook outputs) the page must show, all decoded;
    ``math``: whether the page has TeX that MathJax must have typeset without errors;
    ``min_images``: how many decoded images of any kind (screenshots, plots) the page must show.
    """
    problems: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    start = len(blocked)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "requestfailed",
        lambda r: (
            failed.append(f"{r.url} ({r.failure})")
            if is_local(r.url) and r.url.startswith("http")
            else None
        ),
    )
    page.on(
        "response", lambda r: failed.append(f"{r.url} ({r.status})") if r.status >= 400 else None
    )
    try:
        page.goto(url, wait_until="load", timeout=WAIT_MS)
        if page.evaluate("() => !!document.querySelector('script[src*=\"MathJax.js\"]')"):
            try:
                page.wait_for_function(
                    "() => document.documentElement.getAttribute('data-mathjax') === 'done'",
                    timeout=WAIT_MS,
                    polling=200,
                )
            except Exception:  # noqa: BLE001 - reported as a problem below
                problems.append("MathJax never finished typesetting")
        elif math:
            problems.append("the page has math but does not load the site's MathJax")
        images = page.evaluate(IMAGES)
        bad = [i for i in images if not i["decoded"] or not i["w"] or not i["h"]]
        if bad:
            problems.append(f"{len(bad)} image(s) not decoded or of zero size: {bad[:3]}")
        good = [i for i in images if i["decoded"] and i["w"] and i["h"]]
        if len(good) < min_images:
            problems.append(f"{len(good)} image(s) shown, at least {min_images} expected")
        shown = sum(1 for i in images if i["figure"] and i["decoded"] and i["w"] and i["h"])
        if shown < figures:
            problems.append(f"{shown} figure(s) shown, the executed notebook has {figures}")
        if math:
            m = page.evaluate(MATH)
            if m["sources"] == 0 or m["rendered"] < m["sources"]:
                problems.append(f"math not rendered: {m['rendered']} of {m['sources']} formulas")
            if m["errors"]:
                problems.append(f"{m['errors']} MathJax error(s)")
            if m["leftover"]:
                problems.append(f"{m['leftover']} paragraph(s) still show raw TeX")
        n_views = page.locator("iframe.ptlearn-attention-embed").count()
        for i in range(n_views):
            canvas = (
                page.frame_locator("iframe.ptlearn-attention-embed")
                .nth(i)
                .locator("canvas.ptlearn-heatmap")
            )
            try:
                canvas.wait_for(timeout=WAIT_MS)
            except Exception:  # noqa: BLE001
                problems.append(f"embedded attention view {i} has no heatmap")
    finally:
        page.close()
    left = blocked[start:]
    if left:
        problems.append(f"{len(left)} request(s) left localhost: {left[:3]}")
    if failed:
        problems.append(f"{len(failed)} request(s) failed: {failed[:3]}")
    if errors:
        problems.append(f"script errors: {errors[:3]}")
    return problems
