"""Attention taken apart: one head step by step, and why scores are divided by sqrt(d_k).

scores  = Q K^T                  how well each query matches each key       [Tq, Tk]
scaled  = scores / sqrt(d_k)     keep the spread independent of the head size
masked  = scaled, -inf where a query may not look (causal: the future)
weights = softmax(masked)        each row is a probability distribution (sums to 1)
output  = weights V              each query's weighted average of the values [Tq, d_v]
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import torch

from .figures import display_token, live_title, new_figure, set_token_ticks, token_fontsize
from .inputs import check_tokens, to_numpy
from .widgets import FigureBox, observe_all

CAUSAL, BIDIRECTIONAL = "causal", "bidirectional"
STEPS_TEXT = (  # shown beside the panels
    "scores  = Q K^T\nscaled  = scores / sqrt(d_k)\nmasked  = -inf where not allowed\n"
    "weights = softmax(masked)\noutput  = weights V"
)


def attention_steps(q, k, v, causal: bool = False) -> dict:
    """Every intermediate of one attention head, as arrays: q ``[Tq, d_k]``, k ``[Tk, d_k]``,
    v ``[Tk, d_v]``. Returns ``scores, scaled, masked, weights, output, row_sums``."""
    q, k, v = (torch.as_tensor(to_numpy(x)) for x in (q, k, v))
    if (
        q.dim() != 2
        or k.dim() != 2
        or v.dim() != 2
        or q.size(1) != k.size(1)
        or k.size(0) != v.size(0)
    ):
        raise ValueError(
            f"Expected q [Tq, d_k], k [Tk, d_k], v [Tk, d_v]; got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}. For one head of a batch pass e.g. q[0, head]."
        )
    scores = q @ k.T  # [Tq, Tk]
    scaled = scores / math.sqrt(q.size(1))
    allowed = torch.ones_like(scores, dtype=torch.bool)
    if causal:
        allowed = allowed.tril(diagonal=k.size(0) - q.size(0))  # query i sees keys 0..i
    masked = scaled.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(masked, dim=-1)
    steps = dict(scores=scores, scaled=scaled, masked=masked, weights=weights, output=weights @ v)
    steps = {name: x.numpy() for name, x in steps.items()}
    return {**steps, "row_sums": steps["weights"].sum(axis=-1)}


def random_qkv(tokens: list[str], d_k: int = 8, seed: int = 0):
    """Toy q, k, v for a sentence: one random embedding per distinct word, random projections."""
    g = torch.Generator().manual_seed(seed)
    vocab = {w: i for i, w in enumerate(sorted(set(tokens)))}
    embed = torch.randn(len(vocab), 16, generator=g)  # same word -> same vector
    x = embed[[vocab[t] for t in tokens]]  # [T, 16]
    w_q, w_k, w_v = (torch.randn(16, d_k, generator=g) / 4 for _ in range(3))
    return x @ w_q, x @ w_k, x @ w_v


def draw_step(ax, matrix, title, tokens_q, tokens_k, annotate: bool) -> None:
    shown = np.where(np.isinf(matrix), np.nan, matrix)  # masked cells are drawn blank
    ax.imshow(shown, cmap="viridis", aspect="auto")
    ax.set_title(title, fontsize=10)
    if tokens_k is None:
        ax.set_yticks(range(len(tokens_q)), [display_token(t) for t in tokens_q])
        ax.set_xlabel("value dimension")
    else:
        set_token_ticks(ax, tokens_q, tokens_k)
    if annotate:
        finite = matrix[np.isfinite(matrix)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        for (i, j), value in np.ndenumerate(matrix):
            if not np.isfinite(value):
                ax.text(j, i, "-inf", ha="center", va="center", fontsize=7, color="gray")
                continue
            color = "black" if (value - lo) > 0.6 * (hi - lo) else "white"  # readable on viridis
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)


def head_step_by_step(
    q=None, k=None, v=None, tokens=None, causal=False, text="the cat sat on the mat", d_k=8, seed=0
):
    """Panels for each step of one head: QK^T, the scaling, the mask, the softmax (with each row's
    sum, always 1) and the weighted sum of V, with a causal/bidirectional toggle.

    Pass your own ``q, k, v`` (``[T, d_k]``, e.g. one head of a model), or leave them out and type a
    sentence: each word gets a random embedding and random projections. ``box.current`` holds the
    arrays of :func:`attention_steps`.
    """
    own_qkv = q is not None
    controls = {
        "mode": widgets.ToggleButtons(
            options=[BIDIRECTIONAL, CAUSAL], value=CAUSAL if causal else BIDIRECTIONAL
        )
    }
    if not own_qkv:
        controls["text"] = widgets.Text(value=text, description="sentence", continuous_update=False)
    fig = new_figure(12, 7)
    axes = fig.subplots(2, 3).ravel()
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.12, top=0.95, hspace=0.5, wspace=0.45)
    box = FigureBox(controls, fig)

    def update(_=None):
        words = tokens if own_qkv else controls["text"].value.split() or ["(empty)"]
        qkv = (q, k, v) if own_qkv else random_qkv(words, d_k, seed)
        steps = attention_steps(*qkv, causal=controls["mode"].value == CAUSAL)
        t_q, t_k = steps["scores"].shape
        tokens_q = check_tokens(words, t_q)
        tokens_k = tokens_q if t_q == t_k else [str(j) for j in range(t_k)]
        annotate = max(t_q, t_k) <= 10
        for ax in axes:
            ax.clear()
        titles = [
            "1. scores = Q K^T",
            r"2. scaled: $\div\sqrt{d_k}$",
            f"3. masked ({controls['mode'].value})",
            "4. softmax: weights",
        ]
        for ax, name, title in zip(axes, ("scores", "scaled", "masked", "weights"), titles):
            draw_step(ax, steps[name], title, tokens_q, tokens_k, annotate)
        for i, total in enumerate(steps["row_sums"]):
            axes[3].text(
                t_k - 0.4, i, f"sum={total:.2f}", va="center", fontsize=token_fontsize(t_q)
            )
        draw_step(axes[4], steps["output"], "5. output = weights V", tokens_q, None, annotate)
        axes[5].set_axis_off()
        axes[5].text(0, 0.5, STEPS_TEXT, family="monospace", fontsize=10, va="center")
        box.current.update(steps, causal=controls["mode"].value == CAUSAL, tokens=tokens_q)
        box.render(static_changed=True)

    observe_all(controls, update)
    update()
    return box


def softmax_temperature_demo(d_k=64, n_keys=8, seed=0):
    """Why divide by sqrt(d_k): dot products of random d_k-dim vectors have standard deviation
    sqrt(d_k), so without scaling the softmax of a big head saturates to one key (a one-hot with
    vanishing gradients); dividing by sqrt(d_k) keeps it smooth at every size.

    ``box.current`` holds ``scores``, ``weights``, ``score_std`` and ``max_weight``.
    """
    g = torch.Generator().manual_seed(seed)
    q_all, k_all = torch.randn(1024, generator=g), torch.randn(n_keys, 1024, generator=g)
    sizes = [2**i for i in range(11)]
    controls = {
        "d_k": widgets.Dropdown(
            options=sizes, value=min(sizes, key=lambda s: abs(s - d_k)), description="d_k"
        ),
        "scale": widgets.ToggleButtons(
            options=["divide by sqrt(d_k)", "raw scores"], value="raw scores"
        ),
    }
    fig = new_figure(7, 3.5)
    ax = fig.add_subplot()
    bars = ax.bar(range(n_keys), np.zeros(n_keys))
    ax.set(ylim=(0, 1), xlabel="key", ylabel="softmax weight", xticks=range(n_keys))
    fig.subplots_adjust(bottom=0.15)
    title = live_title(ax)
    box = FigureBox(controls, fig, [*bars, title])

    def update(_=None):
        size = controls["d_k"].value
        scores = (k_all[:, :size] @ q_all[:size]).numpy()  # [n_keys]  std ~ sqrt(d_k)
        if controls["scale"].value.startswith("divide"):
            scores = scores / math.sqrt(size)
        weights = torch.softmax(torch.as_tensor(scores), dim=0).numpy()
        for bar, w in zip(bars, weights):
            bar.set_height(w)
        title.set_text(
            f"d_k={size}: score std {scores.std():.1f}, largest weight {weights.max():.2f}"
        )
        box.current.update(
            scores=scores,
            weights=weights,
            score_std=float(scores.std()),
            max_weight=float(weights.max()),
        )
        box.render()

    observe_all(controls, update)
    update()
    return box
