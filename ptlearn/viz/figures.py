"""Figure plumbing shared by every plot and widget: make, label, render and save a figure.

Figures are built with ``matplotlib.figure.Figure`` directly instead of ``pyplot``. Such a figure
belongs to nobody: it never opens a window, never leaks into pyplot's list of open figures, and a
notebook shows it exactly once (when a cell returns it) instead of twice. It also works under any
matplotlib backend, including the headless "Agg" used in tests and CI.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

ATTENTION_CMAP = "viridis"


class NotebookFigure(Figure):
    """A Figure that shows itself as a PNG in any notebook, even where pyplot (and with it the
    inline backend's display hook) was never imported."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        return buf.getvalue()


def new_figure(width: float, height: float, dpi: int = 72) -> Figure:
    """A pyplot-free figure of ``width`` x ``height`` inches."""
    return NotebookFigure(figsize=(width, height), dpi=dpi)


class FastRenderer:
    """Render a figure to PNG again and again, redrawing only the artists that change.

    Drawing text is what makes matplotlib slow (128 token labels per axis cost far more than a
    128 x 128 image). So the static part (axes, tick labels, token columns) is drawn once and kept
    as a pixel background; each :meth:`png` pastes the background back and draws just the
    ``dynamic`` artists on top ("blitting"). Call :meth:`refresh` after changing anything static.
    """

    def __init__(self, fig: Figure, dynamic=()):
        self.fig, self.dynamic = fig, list(dynamic)
        self.canvas = FigureCanvasAgg(fig)
        self.background = None

    def refresh(self) -> None:
        """Redraw and keep the static background (everything but the dynamic artists)."""
        shown = [a.get_visible() for a in self.dynamic]
        for artist in self.dynamic:
            artist.set_visible(False)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        for artist, visible in zip(self.dynamic, shown):
            artist.set_visible(visible)

    def png(self) -> bytes:
        """The current figure as PNG bytes."""
        if self.background is None:
            self.refresh()
        self.canvas.restore_region(self.background)
        for artist in self.dynamic:
            self.fig.draw_artist(artist)
        buf = io.BytesIO()
        rgb = np.ascontiguousarray(
            np.asarray(self.canvas.buffer_rgba())[..., :3]
        )  # no alpha: smaller
        Image.fromarray(rgb).save(buf, format="png", compress_level=1)  # fast, still lossless
        return buf.getvalue()


def save_figure(fig: Figure, path) -> Path:
    """Save ``fig`` as PNG or SVG, chosen by the suffix of ``path``; returns the path.

    PNG suits notebooks and screens, SVG (vector) suits slides and papers.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise ValueError(
            f"save_figure writes .png or .svg files, got {path.name!r}; change the suffix."
        )
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=150 if fmt == "png" else None, bbox_inches="tight")
    return atomic_write(path, buf.getvalue())


def atomic_write(path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place, so an
    interrupted save never leaves a half-written file."""
    from ..checkpoint import atomic_write_bytes  # the one home of atomic writes (umask modes)

    return atomic_write_bytes(path, data, fsync=False)


def live_title(ax):
    """A title that a widget changes without a full redraw: plain text above the axes (the axes'
    own title is re-positioned on every full draw, which blitting skips)."""
    return ax.text(0.5, 1.02, "", transform=ax.transAxes, ha="center", va="bottom", fontsize=12)


def display_token(token: str) -> str:
    """A token as a tick label: visible whitespace, and ``$`` escaped so matplotlib does not read
    it as the start of a math formula."""
    return token.replace("$", r"\$").replace(" ", "␣").replace("\n", "⏎") or "∅"


def token_fontsize(n: int) -> float:
    """Smaller labels for longer sequences, so 128 tokens still fit on an axis."""
    return float(np.clip(360 / max(n, 1), 3, 10))


def set_token_ticks(ax, tokens_q, tokens_k) -> None:
    """Label a heatmap's rows with the query tokens and its columns with the key tokens."""
    ax.set_yticks(range(len(tokens_q)))
    ax.set_yticklabels([display_token(t) for t in tokens_q], fontsize=token_fontsize(len(tokens_q)))
    ax.set_xticks(range(len(tokens_k)))
    ax.set_xticklabels(
        [display_token(t) for t in tokens_k], fontsize=token_fontsize(len(tokens_k)), rotation=90
    )
    ax.set_ylabel("query (attends from)")
    ax.set_xlabel("key (attends to)")


def draw_heatmap(ax, matrix: np.ndarray, tokens_q, tokens_k, colorbar: bool = False):
    """Draw a ``[Tq, Tk]`` attention map as an image labelled with tokens; returns the image.

    Each row is one query's attention weights (a probability distribution over the keys). A widget
    later changes the picture with ``image.set_data(...)`` instead of drawing a new one.
    """
    image = ax.imshow(matrix, cmap=ATTENTION_CMAP, aspect="auto", interpolation="nearest")
    image.set_clim(0.0, max(float(matrix.max()), 1e-6))
    set_token_ticks(ax, tokens_q, tokens_k)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="attention weight")
    return image


def update_heatmap(image, matrix: np.ndarray) -> None:
    """Show a new ``[Tq, Tk]`` map in an existing image (same shape), rescaling the colours."""
    image.set_data(matrix)
    image.set_clim(0.0, max(float(matrix.max()), 1e-6))


def draw_token_bars(ax, tokens, values: np.ndarray, color: str = "C0"):
    """One bar per token (e.g. one query's attention row); returns the bars for in-place updates."""
    bars = ax.bar(range(len(tokens)), values, color=color)
    ax.set_xticks(range(len(tokens)))
    ax.set_xticklabels(
        [display_token(t) for t in tokens], rotation=90, fontsize=token_fontsize(len(tokens))
    )
    ax.set_ylim(0.0, max(float(np.max(values)) * 1.1, 1e-6))
    return bars
