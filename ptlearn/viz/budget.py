"""Where the parameters of BERT and ALBERT live, and how ALBERT's two tricks shrink them.

Lan et al., "ALBERT" (2019), https://arxiv.org/abs/1909.11942. Counts follow HF ``transformers``'
``BertModel`` / ``AlbertModel`` exactly (every Linear has a bias, every LayerNorm a weight and a
bias, the pooler is one H x H Linear). With vocabulary V, positions P, segment types S, hidden size
H, FFN size F and L layers:

    BERT embeddings      (V + P + S) * H             ALBERT: (V + P + S) * E  (factorised, E << H)
    ALBERT projection    E * H + H                   the Linear from E up to H
    attention per layer  4 * (H * H + H)             Q, K, V and output projections
    FFN per layer        H * F + F + F * H + H       up and down projections
    norms                2 * width per LayerNorm     one after embeddings, two per layer
    pooler               H * H + H

Cross-layer sharing stores one attention and/or one FFN for all L layers.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from .figures import new_figure
from .widgets import FigureBox, observe_all

SHARE_MODES = ("all", "attention", "ffn", "none")
COMPONENTS = ("embeddings", "embedding projection", "attention", "FFN", "norms", "pooler")


def parameter_breakdown(
    vocab_size=30000,
    d_embed=128,
    d_model=768,
    n_layers=12,
    d_ff=None,
    share="all",
    max_len=512,
    type_vocab_size=2,
    pooler=True,
) -> dict:
    """Parameters of BERT and of ALBERT by component: ``{"bert": {...}, "albert": {...}}``.

    ``d_model`` is H (BERT's embeddings use it too), ``d_embed`` is ALBERT's E, ``d_ff`` defaults to
    4H, ``share`` is ALBERT's cross-layer sharing: "all", "attention", "ffn" or "none".
    """
    if share not in SHARE_MODES:
        raise ValueError(f"share must be one of {SHARE_MODES}, got {share!r}.")
    H, E, L = d_model, d_embed, n_layers
    F = 4 * H if d_ff is None else d_ff
    rows = vocab_size + max_len + type_vocab_size  # token + position + segment embeddings
    attention = 4 * (H * H + H)  # q, k, v, output
    ffn = H * F + F + F * H + H  # up, down
    n_attention = 1 if share in ("all", "attention") else L
    n_ffn = 1 if share in ("all", "ffn") else L
    pool = H * H + H if pooler else 0
    bert = {
        "embeddings": rows * H,
        "embedding projection": 0,
        "attention": L * attention,
        "FFN": L * ffn,
        "norms": 2 * H + L * 2 * (2 * H),  # embedding norm + (attention, FFN) norm per layer
        "pooler": pool,
    }
    albert = {
        "embeddings": rows * E,
        "embedding projection": E * H + H,
        "attention": n_attention * attention,
        "FFN": n_ffn * ffn,
        "norms": 2 * E + (n_attention + n_ffn) * 2 * H,  # each norm is shared with its sublayer
        "pooler": pool,
    }
    return {"bert": bert, "albert": albert}


def draw_budget(ax, breakdown: dict) -> None:
    """Two stacked bars (BERT, ALBERT), one colour per component, totals on top."""
    bottom = np.zeros(2)
    for i, name in enumerate(COMPONENTS):
        heights = np.array([breakdown["bert"][name], breakdown["albert"][name]]) / 1e6
        ax.bar(["BERT", "ALBERT"], heights, bottom=bottom, label=name, color=f"C{i}")
        bottom += heights
    for x, total in enumerate(bottom):
        ax.text(x, total, f"{total:.1f}M", ha="center", va="bottom")
    ax.set(ylabel="parameters (millions)", ylim=(0, bottom.max() * 1.15))
    ax.legend(loc="upper right", fontsize=8)


def parameter_budget(vocab_size=30000, d_embed=128, d_model=768, n_layers=12, share="all"):
    """Sliders for V, E, H, L and ALBERT's sharing mode; stacked bars of BERT vs ALBERT parameters.

    ``box.current`` holds ``breakdown`` (see :func:`parameter_breakdown`) and ``totals``.
    """
    controls = {
        "vocab_size": widgets.IntSlider(
            value=vocab_size, min=1000, max=100000, step=1000, description="vocab V"
        ),
        "d_embed": widgets.IntSlider(value=d_embed, min=16, max=1024, step=16, description="E"),
        "d_model": widgets.IntSlider(value=d_model, min=64, max=2048, step=64, description="H"),
        "n_layers": widgets.IntSlider(value=n_layers, min=1, max=48, description="layers"),
        "share": widgets.Dropdown(options=list(SHARE_MODES), value=share, description="sharing"),
    }
    fig = new_figure(6, 4.5)
    ax = fig.add_subplot()
    box = FigureBox(controls, fig)

    def update(_=None):
        breakdown = parameter_breakdown(**{k: c.value for k, c in controls.items()})
        ax.clear()
        draw_budget(ax, breakdown)
        ax.set_title(f"ALBERT sharing: {controls['share'].value}")
        totals = {model: sum(parts.values()) for model, parts in breakdown.items()}
        box.current.update(breakdown=breakdown, totals=totals)
        box.render(static_changed=True)

    observe_all(controls, update)
    update()
    return box
