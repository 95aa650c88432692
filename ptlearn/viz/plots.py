"""Static attention, training and position plots: one function, one returned matplotlib Figure.

Static figures show everywhere a notebook is rendered (GitHub, nbviewer, a PDF export), need no
kernel and no JavaScript, and save to PNG/SVG with :func:`ptlearn.viz.save_figure`.

Reading an attention map: row ``i`` is query token ``i``; the colour in column ``j`` is how much of
its output comes from token ``j``'s value vector. Every row sums to 1.
"""

from __future__ import annotations

import numbers

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba

from .figures import display_token, draw_heatmap, new_figure, token_fontsize
from .inputs import (
    MEAN,
    attention_maps,
    labels_for,
    resolve_head,
    resolve_layer,
    select_map,
    to_numpy,
)

ARC_MIN_WEIGHT = 0.01  # fainter lines are invisible anyway; skipping them keeps redraws fast
ARC_MAX_LINES = 1500  # at most the strongest 1,500 lines: more is a hairball and slow to draw


def figure_and_axes(ax, width: float, height: float):
    """Draw into the caller's ``ax`` when given, else into a fresh figure."""
    if ax is not None:
        return ax.figure, ax
    fig = new_figure(width, height)
    return fig, fig.add_subplot()


def head_name(head) -> str:
    return "mean over heads" if head == MEAN else f"head {head}"


def plot_attention(
    attentions, tokens, layer=0, head=0, ax=None, tokens_k=None, batch=0, colorbar=True
):
    """Heatmap of one head's attention (``head="mean"`` averages the layer's heads).

    ``attentions``: per-layer tuple of ``[B, H, Tq, Tk]`` (``outputs.attentions``); ``tokens`` label
    the queries; for cross-attention pass the source tokens as ``tokens_k``. Returns the Figure.
    """
    maps = attention_maps(attentions, batch)
    tokens_q, tokens_k = labels_for(maps, tokens, tokens_k)
    size = float(np.clip(len(tokens_k) * 0.3, 4, 10))
    fig, ax = figure_and_axes(ax, size + 1.5, size)
    draw_heatmap(ax, select_map(maps, layer, head), tokens_q, tokens_k, colorbar=colorbar)
    ax.set_title(
        f"layer {resolve_layer(layer, len(maps))}, {head_name(resolve_head(head, maps.shape[1]))}"
    )
    return fig


def plot_attention_grid(attentions, tokens=None, tokens_k=None, batch=0, cell=1.3):
    """Small multiples: one heatmap per (layer, head); rows are layers, columns are heads.

    Shows at a glance which heads attend to the previous token, to [CLS]/[SEP], to themselves or
    broadly. Token labels are left out (too small); use :func:`plot_attention` to read one head.
    """
    maps = attention_maps(attentions, batch)
    labels_for(maps, tokens, tokens_k)  # checks the lengths even though cells are unlabelled
    n_layers, n_heads = maps.shape[:2]
    fig = new_figure(cell * n_heads + 0.6, cell * n_layers + 0.6)
    axes = fig.subplots(n_layers, n_heads, squeeze=False)
    for layer in range(n_layers):
        for head in range(n_heads):
            ax = axes[layer, head]
            m = maps[layer, head]
            ax.imshow(
                m, cmap="viridis", aspect="auto", interpolation="nearest", vmin=0, vmax=m.max()
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=8)
            if head == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=8)
    fig.suptitle("attention per layer (rows) and head (columns); in each cell: query x key")
    return fig


class ArcView:
    """Token-to-token lines: queries on the left, keys on the right, line opacity = weight.

    Built once with every possible line; :meth:`show` only changes which lines are drawn and their
    opacity, so a widget can redraw it in place.
    """

    def __init__(self, ax, tokens_q, tokens_k, color="C0"):
        y_q, y_k = column_positions(len(tokens_q)), column_positions(len(tokens_k))
        start = np.stack([np.zeros_like(y_q), y_q], axis=1)[:, None, :]  # [Tq, 1, 2]
        end = np.stack([np.ones_like(y_k), y_k], axis=1)[None, :, :]  # [1, Tk, 2]
        start, end = np.broadcast_arrays(start, end)  # [Tq, Tk, 2] each
        self.segments = np.stack([start, end], axis=2).reshape(-1, 2, 2)  # [Tq*Tk, 2, 2]
        self.rgba = np.tile(to_rgba(color), (len(self.segments), 1))  # [Tq*Tk, 4]
        self.lines = LineCollection([], linewidths=1.5)
        ax.add_collection(self.lines)
        self.left = column_labels(ax, tokens_q, y_q, x=-0.02, ha="right")
        self.right = column_labels(ax, tokens_k, y_k, x=1.02, ha="left")
        self.y_q = y_q
        (self.marker,) = ax.plot([0.0], [y_q[0]], "o", color="red", visible=False)
        ax.set_xlim(-0.45, 1.45)
        ax.set_ylim(-0.03, 1.03)
        ax.axis("off")
        self.weights = np.zeros((len(tokens_q), len(tokens_k)))

    def show(self, matrix: np.ndarray, query: int | None = None) -> None:
        """Draw ``matrix`` ``[Tq, Tk]``; with ``query`` only that query's lines (and a red dot)."""
        weights = np.clip(matrix, 0.0, 1.0)
        if query is not None:
            weights = np.where(np.arange(len(weights))[:, None] == query, weights, 0.0)
        self.weights = weights
        alpha = weights.reshape(-1)
        visible = alpha >= ARC_MIN_WEIGHT
        if visible.sum() > ARC_MAX_LINES:
            visible &= alpha >= np.partition(alpha, -ARC_MAX_LINES)[-ARC_MAX_LINES]
        self.rgba[:, 3] = alpha
        self.lines.set_segments(self.segments[visible])
        self.lines.set_color(self.rgba[visible])
        self.marker.set_visible(query is not None)
        self.marker.set_ydata([self.y_q[query or 0]])


def column_positions(n: int) -> np.ndarray:
    """``n`` heights spread from 1 (top) to 0 (bottom)."""
    return np.linspace(1.0, 0.0, n) if n > 1 else np.array([0.5])


def column_labels(ax, tokens, ys, x: float, ha: str) -> list:
    size = token_fontsize(len(tokens))
    return [
        ax.text(x, y, display_token(t), ha=ha, va="center", fontsize=size)
        for t, y in zip(tokens, ys)
    ]


def plot_attention_arcs(
    attentions, tokens, layer=0, head=0, tokens_k=None, query=None, ax=None, batch=0
):
    """Line view of one head: a line from each query (left) to each key (right), as opaque as its
    weight (lines under 1% are skipped, and at most the 1,500 strongest drawn). ``query=i`` shows
    only token ``i``'s lines."""
    maps = attention_maps(attentions, batch)
    tokens_q, tokens_k = labels_for(maps, tokens, tokens_k)
    fig, ax = figure_and_axes(ax, 5, float(np.clip(max(maps.shape[-2:]) * 0.22, 3, 12)))
    view = ArcView(ax, tokens_q, tokens_k)
    view.show(select_map(maps, layer, head), query)
    ax.set_title(
        f"layer {resolve_layer(layer, len(maps))}, {head_name(resolve_head(head, maps.shape[1]))}"
    )
    return fig


def history_records(history) -> list[dict]:
    """The list of ``{"step", "split", "loss", ...}`` dicts of a Trainer ``History`` (or the list)."""
    records = list(getattr(history, "records", history))
    if not records:
        raise ValueError("The history has no records yet: train first (trainer.fit(...)).")
    for r in records:
        if not isinstance(r, dict) or "step" not in r or "split" not in r:
            raise ValueError(
                f"Each history record must be a dict with 'step' and 'split', got {r!r}."
            )
    return records


def series(records, key: str, split: str) -> tuple[list, list]:
    """Steps and values of ``key`` in the records of one split."""
    rows = [r for r in records if r["split"] == split and isinstance(r.get(key), numbers.Real)]
    return [r["step"] for r in rows], [r[key] for r in rows]


def eval_metric_names(records) -> list[str]:
    """Numeric keys of the eval records besides the loss (accuracy, perplexity, ...)."""
    names = {
        k
        for r in records
        if r["split"] == "eval"
        for k, v in r.items()
        if isinstance(v, numbers.Real)
    }
    return sorted(names - {"step", "loss"})


def plot_history(history, metrics=None):
    """Training curves from ``trainer.history``: train and eval loss against the step, and, in a
    second panel, the eval metrics (all numeric ones unless ``metrics=[...]`` names them)."""
    records = history_records(history)
    metrics = eval_metric_names(records) if metrics is None else list(metrics)
    fig = new_figure(10 if metrics else 6, 4)
    axes = fig.subplots(1, 2 if metrics else 1, squeeze=False)[0]
    for split, style in (("train", "-"), ("eval", "o-")):
        steps, values = series(records, "loss", split)
        if steps:
            axes[0].plot(steps, values, style, label=f"{split} loss")
    axes[0].set(xlabel="step", ylabel="loss", title="loss")
    axes[0].legend()
    for name in metrics:
        axes[1].plot(*series(records, name, "eval"), "o-", label=name)
    if metrics:
        axes[1].set(xlabel="step", ylabel="value", title="eval metrics")
        axes[1].legend()
    fig.tight_layout()
    return fig


def position_matrix(pos) -> np.ndarray:
    """``[T, C]`` position vectors from a tensor/array (leading size-1 dims dropped) or a module
    with a ``.weight`` (e.g. ``nn.Embedding``)."""
    matrix = to_numpy(getattr(pos, "weight", pos))
    while matrix.ndim > 2 and matrix.shape[0] == 1:
        matrix = matrix[0]
    if matrix.ndim != 2:
        raise ValueError(f"Expected position vectors [T, C], got shape {matrix.shape}.")
    return matrix


def plot_positional_encoding(pe, ax=None, title="positional encoding"):
    """Heatmap of position vectors ``[T, C]``: one row per position, one column per dimension.

    For the sinusoidal encoding the left columns oscillate fast and the right ones slowly: each
    pair of dimensions is a clock with its own frequency.
    """
    matrix = position_matrix(pe)
    fig, ax = figure_and_axes(ax, 8, 5)
    limit = float(np.abs(matrix).max()) or 1.0
    image = ax.imshow(matrix, cmap="RdBu_r", aspect="auto", vmin=-limit, vmax=limit)
    ax.figure.colorbar(image, ax=ax, label="value")
    ax.set(xlabel="embedding dimension", ylabel="position", title=title)
    return fig


def cosine_similarity_matrix(matrix: np.ndarray) -> np.ndarray:
    """``[T, T]`` cosine similarity of every pair of rows."""
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def plot_position_similarity(pos_emb, ax=None, title="cosine similarity of position vectors"):
    """Cosine similarity of every pair of position vectors ``[T, C]``: a bright band along the
    diagonal means nearby positions get similar vectors (the model can tell near from far)."""
    similarity = cosine_similarity_matrix(position_matrix(pos_emb))
    fig, ax = figure_and_axes(ax, 6, 5)
    image = ax.imshow(similarity, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.figure.colorbar(image, ax=ax, label="cosine similarity")
    ax.set(xlabel="position", ylabel="position", title=title)
    return fig
