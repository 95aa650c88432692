"""Attention rollout: how much each input token flows into each output position, across all layers.

Abnar & Zuidema, "Quantifying Attention Flow in Transformers" (2020), https://arxiv.org/abs/2005.00928.
One layer's attention map says where a layer looks, but layer 5 looks at layer 4's outputs, which are
already mixtures of tokens. Rollout follows the mixing through the stack:

    A_l      = fuse_heads(attention_l)               mean (or max, min) over the heads  [T, T]
    A_l      = renormalise_rows(A_l + I)             the residual connection keeps each token itself
    rollout  = A_L @ ... @ A_2 @ A_1                 row i: how much input token j reaches position i

For a ViT, row 0 (the [CLS] token that feeds the classifier) reshaped to the patch grid is a map of
the image regions the prediction draws on. ``discard_ratio`` zeroes the weakest weights of each layer
first (a common trick from https://github.com/jacobgil/vit-explain that sharpens the map).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .figures import draw_token_bars
from .inputs import attention_maps, check_tokens
from .plots import figure_and_axes

HEAD_FUSIONS = {"mean": np.mean, "max": np.max, "min": np.min}


def attention_rollout(
    attentions, head_fusion="mean", add_residual=True, discard_ratio=0.0, batch=0
) -> np.ndarray:
    """Roll attention out through every layer; returns the ``[T, T]`` rollout matrix (rows sum to 1).

    ``attentions``: per-layer tuple of ``[B, H, T, T]`` self-attention maps, first layer first.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {sorted(HEAD_FUSIONS)}, got {head_fusion!r}.")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must lie in [0, 1), got {discard_ratio}.")
    return rollout_from_maps(
        attention_maps(attentions, batch), head_fusion, add_residual, discard_ratio
    )


def rollout_from_maps(maps: np.ndarray, head_fusion="mean", add_residual=True, discard_ratio=0.0):
    """:func:`attention_rollout` on an array ``[L, H, T, T]`` of one sequence's maps."""
    T = maps.shape[-1]
    if maps.shape[-2] != T:
        raise ValueError(
            f"Rollout multiplies self-attention maps [T, T]; got [{maps.shape[-2]}, {T}] (cross-attention?)."
        )
    rollout = np.eye(T)
    for layer_maps in maps:
        a = HEAD_FUSIONS[head_fusion](layer_maps, axis=0).astype(np.float64)  # [T, T]
        a = discard_lowest(a, discard_ratio)
        if add_residual:
            a = a + np.eye(T)  # residual: x + attention(x) keeps half of each token itself
        a = a / np.maximum(a.sum(axis=-1, keepdims=True), 1e-12)  # rows sum to 1 again
        rollout = a @ rollout  # [T, T]  compose with the layers below
    return rollout


def discard_lowest(a: np.ndarray, ratio: float) -> np.ndarray:
    """Zero the ``int(ratio * a.size)`` smallest entries of ``a`` (a copy)."""
    n = int(ratio * a.size)
    if n == 0:
        return a
    a = a.copy()
    a.reshape(-1)[np.argsort(a, axis=None, kind="stable")[:n]] = 0.0
    return a


def grid_side(n_tokens: int, has_cls=None) -> tuple[int, bool]:
    """Side of the square patch grid and whether token 0 is a class token.

    ``has_cls=None`` decides from the count: ``1 + g*g`` tokens have a [CLS], ``g*g`` do not.
    """
    for cls in (True, False) if has_cls is None else (bool(has_cls),):
        side = math.isqrt(max(n_tokens - cls, 0))
        if side > 0 and side * side == n_tokens - cls:
            return side, cls
    raise ValueError(
        f"Cannot arrange {n_tokens} tokens as a square grid of patches"
        + ("" if has_cls is None else f" with has_cls={has_cls}")
        + ": expected g*g patches, optionally plus one [CLS] token first."
    )


def patch_grid(matrix: np.ndarray, has_cls=None, query: int = 0) -> np.ndarray:
    """A ``[T, T]`` attention or rollout matrix -> ``[g, g]`` weights per image patch.

    With a [CLS] token: row ``query`` (0 = [CLS]) over the patch keys. Without one: the average over
    all query rows, i.e. how much each patch is attended to overall.
    """
    side, cls = grid_side(matrix.shape[-1], has_cls)
    row = matrix[query, 1:] if cls else matrix.mean(axis=0)
    return np.asarray(row).reshape(side, side)


def image_array(image) -> np.ndarray:
    """An image as ``[H_img, W_img]`` or ``[H_img, W_img, 3]`` floats in [0, 1] for ``imshow``.

    Accepts a ``[C, H_img, W_img]`` tensor (PyTorch layout, normalised or not) or an array in
    either layout; values outside [0, 1] are min-max scaled for display.
    """
    x = (
        image.detach().cpu().float().numpy()
        if isinstance(image, torch.Tensor)
        else np.asarray(image, dtype=np.float32)
    )
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.moveaxis(x, 0, -1)  # [C, H, W] -> [H, W, C]
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (2, 3):
        raise ValueError(f"Expected an image [H, W], [H, W, C] or [C, H, W], got shape {x.shape}.")
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if (lo < 0 or hi > 1) and hi > lo else x


def check_patch_size(image: np.ndarray, side: int, patch_size) -> None:
    if patch_size is not None and image.shape[0] != side * patch_size:
        raise ValueError(
            f"The image is {image.shape[0]} pixels high but {side} patches of {patch_size} pixels "
            f"make {side * patch_size}: pass the image the model saw and its patch_size."
        )


def draw_overlay(ax, image: np.ndarray, grid: np.ndarray, alpha: float = 0.6):
    """The image with a ``[g, g]`` heat map stretched over it; returns the overlay image artist."""
    height, width = image.shape[:2]
    extent = (0, width, height, 0)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, extent=extent)
    overlay = ax.imshow(grid, cmap="inferno", alpha=alpha, extent=extent, interpolation="nearest")
    overlay.set_clim(float(grid.min()), max(float(grid.max()), float(grid.min()) + 1e-9))
    ax.set_xticks([])
    ax.set_yticks([])
    return overlay


def plot_rollout(
    attentions,
    image=None,
    tokens=None,
    patch_size=None,
    head_fusion="mean",
    add_residual=True,
    discard_ratio=0.0,
    query=0,
    has_cls=None,
    batch=0,
    ax=None,
):
    """Plot the attention rollout: over the ``image`` for a ViT, else over ``tokens`` for text.

    Image: row ``query`` (the [CLS] token) of the rollout, one value per patch, laid over the image
    (any square number of patches, with or without a [CLS] token first). Text: the bar of each token
    in row ``query`` (0 = [CLS] for BERT). Returns the Figure.
    """
    rollout = attention_rollout(attentions, head_fusion, add_residual, discard_ratio, batch)
    title = f"rollout ({head_fusion} over heads{', + identity' if add_residual else ''})"
    if image is None:
        tokens = check_tokens(tokens, rollout.shape[0])
        if ax is None:
            _, ax = figure_and_axes(None, float(np.clip(len(tokens) * 0.35, 5, 14)), 3.5)
            ax.figure.subplots_adjust(bottom=0.3)  # room for the rotated token labels
        draw_token_bars(ax, tokens, rollout[query])
        ax.set_title(f"{title}: what flows into {tokens[query]!r}")
        return ax.figure
    image = image_array(image)
    grid = patch_grid(rollout, has_cls, query)
    check_patch_size(image, grid.shape[0], patch_size)
    fig, ax = figure_and_axes(ax, 5, 5)
    overlay = draw_overlay(ax, image, grid)
    ax.figure.colorbar(overlay, ax=ax, fraction=0.046, pad=0.02)
    ax.set_title(title)
    return fig
