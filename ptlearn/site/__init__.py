"""The course as a static website, built offline from the executed notebooks: ``ptlearn site``.

One page per chapter with every output the notebook produced when it ran (figures, tables, printed
numbers, each widget's static image, the interactive attention views of
:func:`ptlearn.viz.embed_attention`), launch buttons (Colab, Binder, download) on each chapter
page, the README's course table as the landing page, a page per widget (``docs/widgets.md`` and
its screenshots), the benchmark results and the troubleshooting table.

Why a small builder on nbconvert rather than Jupyter Book, mkdocs or Quarto: the one property that
matters here is that the build never fetches anything and the pages never ask for anything outside
the site. nbconvert is already installed with JupyterLab, converts an executed notebook with no
kernel, and its only network references (require.js, the widget manager, mermaid, MathJax on a
CDN) are template blocks that ``templates/ptlearn_chapter`` empties. Math is typeset by MathJax
2.7 from the ``jupyter-server-mathjax`` package (the same MathJax nbconvert's templates are written
for), copied into the site. Nothing else is needed: no theme to download, no node, no Sphinx.

Notebooks are executed once: ``ptlearn site`` reuses the executed copies in ``--executed DIR``
(CI's ``tests/test_notebooks.py`` writes them to ``build/executed/``) and executes only the
chapters missing there, with :func:`ptlearn.execute.execute_notebook`.

Why this module is longer than 350 lines: the site is one build (prepare each executed notebook,
render it, write the pages around it, copy the assets); splitting the steps over modules would
only add imports between functions that are used once each.
"""

from __future__ import annotations

import hashlib
import html
import inspect
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

DEFAULT_REPO = "ptlearn-course/ptlearn-course"  # GitHub owner/name for Colab, Binder and links
DEFAULT_BRANCH = "main"
# the kernel must draw figures into the notebook: a headless MPLBACKEND (Agg) would drop them
KERNEL_ENV = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# the parts of MathJax 2.7 the pages use: the combined TeX-AMS-MML_HTMLorMML-full configuration
# (TeX in, HTML-CSS out in Chromium; the only one jupyter-server-mathjax ships) with the STIX fonts
MATHJAX_PARTS = [
    "MathJax.js",
    "config/TeX-AMS-MML_HTMLorMML-full.js",
    "LICENSE",
    "extensions",
    "jax/input/TeX",
    "jax/element",
    "jax/output/HTML-CSS",
    "fonts/HTML-CSS/STIX-Web",
    "localization/en",
]
MATHJAX_CONFIG = r"""<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  TeX: {equationNumbers: {autoNumber: "none"}},
  tex2jax: {inlineMath: [["$", "$"], ["\\(", "\\)"]], displayMath: [["$$", "$$"], ["\\[", "\\]"]],
            processEscapes: true, processEnvironments: true},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               linebreaks: {automatic: true}},
  "fast-preview": {disabled: true},
  messageStyle: "none", showMathMenu: false, menuSettings: {zoom: "None", CHTMLpreview: false}
});
MathJax.Hub.Register.StartupHook("End", function () {
  document.documentElement.setAttribute("data-mathjax", "done");
});
</script>
<script src="static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"></script>"""
# README sections that become pages of their own (the rest of the README stays on GitHub)
MARKDOWN_PAGES = {
    "docs/widgets.md": "widgets.html",
    "benchmarks/RESULTS.md": "benchmarks.html",
    "benchmarks/results/objectives_study.md": "objectives-study.html",
    "benchmarks/PARITY.md": "parity.html",
}
# an output that loads a script or style from elsewhere (bertviz: require.js, d3, jQuery) is left out
EXTERNAL_IN_HTML = re.compile(r"""<(script|link)\b[^>]*\b(src|href)=["']?(https?:)?//""", re.I)
EXTERNAL_IN_JS = re.compile(r"""["'](https?:)?//[^"'\s]+["']""")
CDN_NOTE = (
    "(This view loads its scripts from a CDN, so the website leaves it out: run the notebook to "
    "see it. The chapter's interactive attention view needs no network.)"
)
IMAGE_SUFFIXES = {".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp"}


class SiteError(ValueError):
    """The site cannot be built as asked: the message says why and what to do."""


@dataclass
class Chapter:
    name: str  # file stem, e.g. "01_attention"
    number: str  # "01"
    title: str  # "Attention", from the notebook's first heading
    source: Path

    @property
    def page(self) -> str:
        return f"{self.name}.html"


@dataclass
class SiteReport:
    out_dir: Path
    pages: list[str] = field(default_factory=list)
    chapters: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)  # chapters this build executed itself
    attention_views: dict[str, list[int]] = field(default_factory=dict)  # page -> sizes (bytes)
    seconds: float = 0.0
    bytes: int = 0

    def summary(self) -> str:
        views = sum(len(v) for v in self.attention_views.values())
        return (
            f"{len(self.pages)} pages ({len(self.chapters)} chapters, {views} interactive attention "
            f"views) in {self.out_dir}: {self.bytes / 1e6:.1f} MB, built in {self.seconds:.0f} s"
            + (f"; executed {', '.join(self.executed)}" if self.executed else "")
        )


# --- finding things ----------------------------------------------------------------------------


def find_root(root: str | os.PathLike | None = None) -> Path:
    """The source checkout the site is built from (README.md and notebooks/ at its top)."""
    candidates = [Path(root)] if root else [Path.cwd(), Path(__file__).resolve().parents[2]]
    for candidate in candidates:
        if (candidate / "README.md").is_file() and (candidate / "notebooks").is_dir():
            return candidate.resolve()
    raise SiteError(
        f"No ptlearn source checkout found (looked in {', '.join(map(str, candidates))}): the site "
        f"is built from a clone of the repository (README.md, notebooks/, docs/). Run the command "
        f"at the clone's top or pass --root."
    )


def find_chapters(root: Path, only: list[str] | None = None) -> list[Chapter]:
    """The course notebooks ``notebooks/NN_*.ipynb`` (all, or those whose number is in ``only``)."""
    chapters = []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        number = path.name[:2]
        if only and number not in only and path.stem not in only:
            continue
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        heading = next(
            (
                line
                for c in cells
                if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines()
                if line.startswith("# ")
            ),
            f"# {path.stem}",
        )
        title = re.sub(r"^#\s*(Chapter\s*\d+\s*[—:-]\s*)?", "", heading).strip()
        chapters.append(Chapter(path.stem, number, title, path))
    if only and not chapters:
        raise SiteError(f"No chapter matches {only}: use numbers such as 01 03 or names.")
    return chapters


def mathjax_dir() -> Path:
    """MathJax 2.7 as shipped by the ``jupyter-server-mathjax`` package."""
    try:
        import jupyter_server_mathjax
    except ImportError as err:
        raise SiteError(
            "The site needs MathJax from the jupyter-server-mathjax package: "
            'pip install -e ".[dev]" (or pip install jupyter-server-mathjax).'
        ) from err
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def notebook_css() -> str:
    """nbconvert's JupyterLab stylesheet and light theme (all their images are data: URIs)."""
    from jupyter_core.paths import jupyter_path

    for base in jupyter_path("nbconvert", "templates"):
        static = Path(base) / "lab" / "static"
        if (static / "index.css").is_file():
            return "\n".join(
                (static / name).read_text(encoding="utf-8")
                for name in ("index.css", "theme-light.css")
            )
    raise SiteError("nbconvert's lab template was not found: pip install nbconvert.")


# --- executing ---------------------------------------------------------------------------------


def execute_chapters(chapters: list[Chapter], executed_dir: Path, timeout: int, log) -> None:
    """Run each chapter once into ``executed_dir`` (and its report.json); stop at a failure."""
    from ptlearn.execute import execute_notebook, update_report

    for chapter in chapters:
        log(f"executing {chapter.source.name} ...")
        dst = executed_dir / chapter.source.name
        report = execute_notebook(chapter.source, dst, timeout=timeout, env=KERNEL_ENV)
        update_report(executed_dir / "report.json", report)
        log(report.line())
        if not report.ok:
            raise SiteError(
                f"{chapter.source.name} failed at cell {report.failed_cell}; its executed copy is "
                f"{dst}. The site is built from notebooks that run.\n{report.error}"
            )


# --- preparing an executed notebook --------------------------------------------------------------


def prepare_notebook(nb, name: str) -> tuple[int, list[int]]:
    """Make an executed notebook ready for a static page, in place; returns (figures, view sizes).

    Widgets keep their static PNG (their live view needs a kernel and a widget manager from a
    CDN); a widget without one gets a line of text. Raises :class:`SiteError` for a notebook that
    did not run to the end or lost figures (e.g. executed with ``MPLBACKEND=Agg``).
    """
    nb.metadata.pop("widgets", None)
    figures, views, problems = 0, [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        images = 0
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(
                    f"cell {index} raised {output.get('ename')}: {output.get('evalue')}"
                )
            data = output.get("data")
            if not data:
                continue
            if EXTERNAL_IN_HTML.search(_text(data.get("text/html", ""))) or EXTERNAL_IN_JS.search(
                _text(data.get("application/javascript", ""))
            ):  # e.g. bertviz's views: require.js and d3 from a CDN, blank offline
                for kind in ("text/html", "application/javascript"):
                    data.pop(kind, None)
                data["text/plain"] = CDN_NOTE
            if WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                if not any(k.startswith("image/") for k in data):
                    data["text/plain"] = "(an interactive widget: run the notebook to use it)"
            if any(k.startswith("image/") for k in data):
                images += 1
            page = _text(data.get("text/html", ""))
            if "ptlearn-attention-embed" in page:
                views.append(len(page.encode("utf-8")))
        source = cell.source
        shows = re.search(r"^plt\.show\(\)", source, re.M)  # at top level: it always ran
        if shows and not images and cell.get("execution_count") is not None:
            problems.append(
                f"cell {index} calls plt.show() but has no figure (was the kernel run with a "
                f"headless MPLBACKEND such as Agg? ptlearn.site sets {KERNEL_ENV})"
            )
        if cell.get("execution_count") is None and source.strip():
            problems.append(f"cell {index} was never executed")
        figures += images
    if problems:
        raise SiteError(
            f"{name}: the executed copy is not fit for the site:\n  " + "\n  ".join(problems[:8])
        )
    return figures, views


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


# --- links and images ----------------------------------------------------------------------------


class Linker:
    """Rewrites the links and images of a rendered page for the site (all pages sit at its top)."""

    def __init__(self, root: Path, out: Path, chapters: list[Chapter], repo: str, branch: str):
        self.root, self.out, self.repo, self.branch = root, out, repo, branch
        self.pages = {f"notebooks/{c.source.name}": c.page for c in chapters}  # built chapters
        self.pages["README.md"] = "index.html"
        self.pages.update(
            {rel: name for rel, name in MARKDOWN_PAGES.items() if (root / rel).is_file()}
        )
        self.copied: dict[str, str] = {}

    def github(self, rel: str) -> str:
        kind = "tree" if (self.root / rel).is_dir() else "blob"
        return f"https://github.com/{self.repo}/{kind}/{self.branch}/{rel}"

    def image(self, rel: str) -> str | None:
        """Copy a repository image into images/ once; its site path (None if it does not exist)."""
        if rel not in self.copied:
            source = self.root / rel
            if not source.is_file():
                return None
            name = rel.replace("/", "-")
            (self.out / "images").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, self.out / "images" / name)
            self.copied[rel] = f"images/{name}"
        return self.copied[rel]

    def resolve(self, url: str, base: str) -> str:
        """A link found in file ``base`` (repository-relative) -> where it points on the site."""
        if re.match(r"^([a-z][a-z0-9+.-]*:|#|//)", url, re.I):
            return url
        path, _, anchor = url.partition("#")
        rel = os.path.normpath(os.path.join(os.path.dirname(base), path)).replace(os.sep, "/")
        if rel.startswith("../"):
            return url
        suffix = f"#{anchor}" if anchor else ""
        if rel in self.pages:
            return self.pages[rel] + suffix
        if Path(rel).suffix.lower() in IMAGE_SUFFIXES:
            copied = self.image(rel)
            if copied:
                return copied
        return self.github(rel) + suffix

    def rewrite(self, page: str, base: str) -> str:
        """Rewrite ``<a href>`` and ``<img src>`` in ``page``; an image from another site becomes a
        text badge (its alt text), so that no page ever asks the network for anything."""

        def img(match: re.Match) -> str:
            tag = match.group(0)
            src = re.search(r'\ssrc="([^"]*)"', tag)
            if not src or src.group(1).startswith("data:"):
                return tag
            url = src.group(1)
            if re.match(r"^(https?:)?//", url):
                alt = re.search(r'\salt="([^"]*)"', tag)
                return f'<span class="ptlearn-badge">{alt.group(1) if alt else "image"}</span>'
            return tag.replace(src.group(0), f' src="{self.resolve(html.unescape(url), base)}"')

        def href(match: re.Match) -> str:
            if "data-site" in match.group(1):  # the site's own navigation: already right
                return match.group(0)
            url = html.unescape(match.group(2))
            return f'{match.group(1)}"{html.escape(self.resolve(url, base), quote=True)}"'

        page = re.sub(r"<img\b[^>]*>", img, page)
        return re.sub(r'(<a\b[^>]*?\shref=)"([^"]*)"', href, page)


# --- page chrome -------------------------------------------------------------------------------


class Chrome:
    """Head, header (navigation, launch buttons) and footer shared by every page."""

    def __init__(self, chapters: list[Chapter], repo: str, branch: str, css_version: str):
        self.chapters, self.repo, self.branch, self.version = chapters, repo, branch, css_version

    def head(self) -> str:
        return (
            f'<link rel="stylesheet" href="static/notebook.css?v={self.version}">\n'
            f'<link rel="stylesheet" href="static/site.css?v={self.version}">\n{MATHJAX_CONFIG}'
        )

    def header(self, current: str, chapter: Chapter | None = None) -> str:
        def link(href: str, text: str, title: str = "") -> str:
            cls = ' class="ptlearn-current"' if href == current else ""
            tip = f' title="{html.escape(title)}"' if title else ""
            return f'<a data-site href="{href}"{cls}{tip}>{html.escape(text)}</a>'

        chapters = " ".join(link(c.page, c.number, f"{c.number} {c.title}") for c in self.chapters)
        bar = (
            '<nav class="ptlearn-topbar">'
            f'<span class="ptlearn-brand">{link("index.html", "ptlearn course")}</span>'
            f'<span class="ptlearn-chapters">Chapters: {chapters}</span>'
            f"{link('widgets.html', 'Widgets')} {link('benchmarks.html', 'Benchmarks')} "
            f"{link('troubleshooting.html', 'Troubleshooting')} "
            f'<a data-site href="https://github.com/{self.repo}">GitHub</a></nav>'
        )
        if chapter is None:
            return bar
        return bar + self.launch_buttons(chapter)

    def launch_buttons(self, chapter: Chapter) -> str:
        nb = f"notebooks/{chapter.source.name}"
        colab = f"https://colab.research.google.com/github/{self.repo}/blob/{self.branch}/{nb}"
        binder = f"https://mybinder.org/v2/gh/{self.repo}/{self.branch}?urlpath=lab/tree/{nb}"
        i = self.chapters.index(chapter)
        prev = self.chapters[i - 1] if i > 0 else None
        nxt = self.chapters[i + 1] if i + 1 < len(self.chapters) else None
        prevnext = "".join(
            f'<a data-site href="{c.page}" class="ptlearn-{kind}">{arrow}</a>'
            for c, kind, arrow in (
                (prev, "prev", f"← {prev.number} {prev.title}" if prev else ""),
                (nxt, "next", f"{nxt.number} {nxt.title} →" if nxt else ""),
            )
            if c is not None
        )
        return (
            '<div class="ptlearn-launch">'
            f'<a data-site class="ptlearn-button ptlearn-colab" href="{colab}">Open in Colab</a>'
            f'<a data-site class="ptlearn-button ptlearn-binder" href="{binder}">Launch on Binder</a>'
            f'<a data-site class="ptlearn-button ptlearn-download" href="{nb}" download>'
            f"Download notebook</a>"
            f'<span class="ptlearn-prevnext">{prevnext}</span></div>'
        )

    def footer(self, note: str = "") -> str:
        return (
            '<footer class="ptlearn-footer">Built by <code>ptlearn site</code> from the executed '
            f"notebooks{note}: no script, font or image on these pages comes from outside the "
            "site. Math by MathJax 2.7 (bundled).</footer>"
        )


# --- the build -----------------------------------------------------------------------------------


def markdown_html(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return markdown2html_mistune(text)


def readme_sections(text: str) -> dict[str, str]:
    """The README split at its ``## `` headings: {"": preamble, "The course": ..., ...}."""
    sections, name, lines = {}, "", []
    for line in text.splitlines():
        if line.startswith("## "):
            sections[name] = "\n".join(lines)
            name, lines = line[3:].strip(), []
        lines.append(line)
    sections[name] = "\n".join(lines)
    return sections


def widget_rows(text: str) -> list[dict]:
    """The table of docs/widgets.md: one dict (name, shows, image) per widget."""
    rows = []
    pattern = r"^\|\s*`viz\.(\w+)`\s*\|\s*(.*?)\s*\|\s*\[!\[[^\]]*\]\(([^)]+)\)\]"
    for match in re.finditer(pattern, text, re.M):
        rows.append({"name": match.group(1), "shows": match.group(2), "image": match.group(3)})
    return rows


def build_site(
    out_dir: str | os.PathLike = "site",
    *,
    root: str | os.PathLike | None = None,
    executed: str | os.PathLike | None = None,
    chapters: list[str] | None = None,
    execute_missing: bool = True,
    timeout: int = 1200,
    repo: str | None = None,
    branch: str = DEFAULT_BRANCH,
    log=print,
) -> SiteReport:
    """Build the website into ``out_dir`` (replaced) and return what was built.

    ``executed``: a folder of executed notebooks to reuse (default ``build/executed`` under the
    checkout); chapters missing there are executed into it first, unless ``execute_missing`` is
    False (then they are an error). ``chapters``: numbers or names to build (default all).
    """
    import nbformat
    from jinja2 import Template
    from nbconvert import HTMLExporter

    start = time.perf_counter()
    root = find_root(root)
    repo = repo or os.environ.get("PTLEARN_SITE_REPO") or DEFAULT_REPO
    course = find_chapters(root, chapters)
    executed_dir = Path(executed) if executed else root / "build" / "executed"
    out = Path(out_dir).resolve()
    if out == root or out in root.parents or out == executed_dir.resolve():
        raise SiteError(f"{out} would overwrite the checkout or the executed notebooks.")
    report = SiteReport(out)

    missing = [c for c in course if not (executed_dir / c.source.name).is_file()]
    if missing and not execute_missing:
        raise SiteError(
            f"No executed copy of {', '.join(c.source.name for c in missing)} in {executed_dir}: "
            f"run the notebook tests first (pytest tests/test_notebooks.py) or let ptlearn site "
            f"execute them (leave out --no-execute)."
        )
    if missing:
        execute_chapters(missing, executed_dir, timeout, log)
        report.executed = [c.name for c in missing]

    staging = out.with_name(out.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "static").mkdir(parents=True)
    (staging / "notebooks").mkdir()
    css = notebook_css()
    own_css = files("ptlearn.site").joinpath("static", "site.css").read_text(encoding="utf-8")
    (staging / "static" / "notebook.css").write_text(css, encoding="utf-8")
    (staging / "static" / "site.css").write_text(own_css, encoding="utf-8")
    copy_mathjax(staging / "static" / "mathjax")
    version = hashlib.sha1((css + own_css).encode("utf-8")).hexdigest()[:8]
    chrome = Chrome(course, repo, branch, version)
    linker = Linker(root, staging, course, repo, branch)
    page_template = Template(
        files("ptlearn.site").joinpath("templates", "page.html").read_text(encoding="utf-8")
    )

    def write_page(name: str, title: str, body: str, base: str, current: str = "") -> None:
        page = page_template.render(
            title=html.escape(title),
            head=chrome.head(),
            header=chrome.header(current or name),
            body=linker.rewrite(body, base),
            footer=chrome.footer(),
        )
        (staging / name).write_text(page, encoding="utf-8")
        report.pages.append(name)

    # chapters
    exporter = HTMLExporter(
        template_name="ptlearn_chapter",
        extra_template_basedirs=[str(Path(str(files("ptlearn.site").joinpath("templates"))))],
    )
    for chapter in course:
        nb = nbformat.read(executed_dir / chapter.source.name, as_version=4)
        _, views = prepare_notebook(nb, chapter.source.name)
        nb.metadata["title"] = f"{chapter.number} {chapter.title} · ptlearn course"
        resources = {
            "ptlearn": {
                "head": chrome.head(),
                "header": chrome.header(chapter.page, chapter),
                "footer": chrome.footer(),
            }
        }
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        body = linker.rewrite(body, f"notebooks/{chapter.source.name}")
        (staging / chapter.page).write_text(body, encoding="utf-8")
        shutil.copyfile(chapter.source, staging / "notebooks" / chapter.source.name)
        report.pages.append(chapter.page)
        report.chapters.append(chapter.name)
        if views:
            report.attention_views[chapter.page] = views

    # the landing page: the README's introduction and course table
    readme = (root / "README.md").read_text(encoding="utf-8")
    sections = readme_sections(readme)
    preamble = sections.get("", "")
    intro = preamble.split("\n---\n")[-1] if "\n---\n" in preamble else preamble
    title_line = next((ln for ln in preamble.splitlines() if ln.startswith("# ")), "# ptlearn")
    landing = "\n\n".join([title_line, intro.strip(), sections.get("The course", "")])
    landing += (
        '\n\n## Run it yourself\n\n`pip install -e ".[dev]" && jupyter lab notebooks/` in a clone '
        f"of [the repository](https://github.com/{repo}), or open a chapter on Colab or Binder "
        "with the buttons at the top of its page."
    )
    write_page("index.html", "The course", markdown_html(landing), "README.md")
    trouble = sections.get("Troubleshooting", "## Troubleshooting\n\n(none in the README)")
    write_page("troubleshooting.html", "Troubleshooting", markdown_html(trouble), "README.md")

    # widgets: an index and one page each
    widgets_md = (root / "docs" / "widgets.md").read_text(encoding="utf-8")
    rows = widget_rows(widgets_md)
    intro = widgets_md.split("\n|", 1)[0]
    items = "\n".join(
        f"| [`{r['name']}`](widget-{r['name']}.html) | {r['shows']} | "
        f"[![{r['name']}]({r['image']})](widget-{r['name']}.html) |"
        for r in rows
    )
    table = f"| widget | shows | screenshot |\n| --- | --- | --- |\n{items}"
    look_inside = sections.get("Looking inside attention", "")
    write_page(
        "widgets.html",
        "Widgets",
        markdown_html(f"{intro}\n\n{table}\n\n{look_inside}"),
        "docs/widgets.md",
    )
    for row in rows:
        write_page(
            f"widget-{row['name']}.html",
            f"viz.{row['name']}",
            widget_page(row, course),
            "docs/widgets.md",
            current="widgets.html",
        )

    # benchmark results and the pages they link to
    for rel, name in MARKDOWN_PAGES.items():
        if rel == "docs/widgets.md" or not (root / rel).is_file():
            continue
        text = (root / rel).read_text(encoding="utf-8")
        title = next((ln[2:] for ln in text.splitlines() if ln.startswith("# ")), name)
        write_page(name, title, markdown_html(text), rel, current="benchmarks.html")

    (staging / ".nojekyll").write_text("")  # GitHub Pages: serve the files as they are
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    report.seconds = round(time.perf_counter() - start, 1)
    report.bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    (out / "build.json").write_text(
        json.dumps(
            {
                "pages": report.pages,
                "chapters": report.chapters,
                "attention_views": report.attention_views,
                "executed": report.executed,
                "seconds": report.seconds,
                "bytes": report.bytes,
            },
            indent=1,
        )
        + "\n"
    )
    log(report.summary())
    return report


def copy_mathjax(target: Path) -> None:
    source = mathjax_dir()
    for part in MATHJAX_PARTS:
        src = source / part
        if src.is_dir():
            shutil.copytree(src, target / part, ignore=shutil.ignore_patterns("a11y"))
        elif src.is_file():
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target / part)
        else:
            raise SiteError(f"MathJax from jupyter-server-mathjax lacks {part} (in {source}).")


def widget_page(row: dict, course: list[Chapter]) -> str:
    """One widget: what the screenshot shows, the screenshot, its docstring, where it is used."""
    from ptlearn import viz

    name = row["name"]
    obj = getattr(viz, name, None)
    doc = inspect.getdoc(obj) if obj is not None else None
    signature = ""
    if obj is not None:
        try:
            signature = f"{name}{inspect.signature(obj)}"
        except (TypeError, ValueError):
            signature = name
    used = [
        c
        for c in course
        if re.search(rf"\b{name}\b", c.source.read_text(encoding="utf-8")) is not None
    ]
    parts = [
        f"<h1><code>ptlearn.viz.{html.escape(name)}</code></h1>",
        markdown_html(f"Screenshot: {row['shows']}"),
        f'<p><img src="{html.escape(row["image"])}" alt="{html.escape(name)}"></p>',
        "<p>Taken in Chromium from JupyterLab with the network blocked "
        "(<code>python scripts/screenshots.py</code>). Its live controls need a Python kernel: "
        "open a chapter below on Colab or Binder.</p>",
    ]
    if signature:
        parts.append(f"<pre class='ptlearn-doc'>{html.escape(signature)}</pre>")
    if doc:
        parts.append(f"<pre class='ptlearn-doc'>{html.escape(doc)}</pre>")
    if used:
        links = ", ".join(
            f'<a data-site href="{c.page}">{c.number} {html.escape(c.title)}</a>' for c in used
        )
        parts.append(f"<p>Used in: {links}.</p>")
    return "\n".join(parts)


# --- the command line ----------------------------------------------------------------------------


def add_parser(sub) -> None:
    """Add ``ptlearn site`` to the ``ptlearn`` command's subparsers."""
    site = sub.add_parser(
        "site",
        help="build the course website (executes the notebooks unless --executed has them)",
    )
    site.add_argument("out_dir", nargs="?", default="site", help="output folder (default: site/)")
    site.add_argument(
        "--executed",
        help="reuse the executed notebooks in this folder (default: build/executed; chapters "
        "missing there are executed into it)",
    )
    site.add_argument("--no-execute", action="store_true", help="fail instead of executing")
    site.add_argument("--chapters", nargs="+", help="only these chapters, e.g. 01 03")
    site.add_argument("--timeout", type=int, default=1200, help="seconds per cell when executing")
    site.add_argument("--root", help="the source checkout (default: here, else the package's)")
    site.add_argument("--repo", help=f"GitHub owner/name for the launch links ({DEFAULT_REPO})")
    site.add_argument("--branch", default=DEFAULT_BRANCH)
    site.set_defaults(func=cmd_site)


def cmd_site(args, argv=None) -> int:
    import sys

    build_site(
        args.out_dir,
        root=args.root,
        executed=args.executed,
        chapters=args.chapters,
        execute_missing=not args.no_execute,
        timeout=args.timeout,
        repo=args.repo,
        branch=args.branch,
        log=lambda message: print(f"ptlearn site: {message}", file=sys.stderr, flush=True),
    )
    return 0
