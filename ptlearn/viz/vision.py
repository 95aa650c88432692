"""Widgets for images and rollout: what a ViT looks at, what MAE hides, how attention flows.

A ViT cuts an image into a grid of ``patch_size`` x ``patch_size`` patches, one token each, usually
after a [CLS] token. Row 0 of an attention map (the [CLS] query) reshaped to the grid shows which
patches the class token reads; :func:`attention_rollout` does the same through all the layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import torch

from ..objectives import random_patch_mask
from .figures import draw_token_bars, live_title, new_figure
from .inputs import attention_maps, check_tokens, select_map
from .plots import head_name
from .rollout import (
    HEAD_FUSIONS,
    check_patch_size,
    draw_overlay,
    image_array,
    patch_grid,
    rollout_from_maps,
)
from .widgets import FigureBox, layer_head_controls, observe_all

ROLLOUT = "rollout"


def image_list(images) -> list[np.ndarray]:
    """A ``[B, C, H, W]`` tensor or a sequence of images -> list of displayable arrays."""
    if isinstance(images, torch.Tensor | np.ndarray) and np.ndim(images) != 4:
        raise ValueError(
            f"images must be a [B, C, H, W] batch or a list of images, got shape {tuple(images.shape)}; "
            f"for one image pass [image]."
        )
    if len(images) == 0:
        raise ValueError("images is empty: pass at least one image.")
    return [image_array(im) for im in images]


def attention_source(attentions, n_images: int):
    """``index -> [L, H, T, T]`` maps for image ``index``, from one of three forms:

    a callable ``f(index) -> attentions`` (run lazily, cached), a per-layer tuple whose batch index
    is the image index, or a list with one per-layer tuple per image.
    """
    if callable(attentions):
        cache: dict = {}

        def maps_of(i: int) -> np.ndarray:
            if i not in cache:
                cache[i] = attention_maps(attentions(i))
            return cache[i]

        return maps_of
    if isinstance(attentions, Sequence) and attentions and np.ndim(attentions[0]) == 4:
        maps = [attention_maps(attentions, batch=i) for i in range(n_images)]
    else:
        if len(attentions) != n_images:
            raise ValueError(f"Got {len(attentions)} attention tuples for {n_images} images.")
        maps = [attention_maps(a, name=f"attentions[{i}]") for i, a in enumerate(attentions)]
    return maps.__getitem__


def vit_explorer(images, attentions, patch_size=None, has_cls=None, layer=-1, head="mean"):
    """Choose an image and a layer/head (or the rollout) and see where the [CLS] token looks.

    ``attentions``: a per-layer tuple with one batch row per image, a list of per-layer tuples (one
    per image), or a function ``index -> attentions``. ``box.current["overlay"]`` is the ``[g, g]``
    patch map shown.
    """
    images = image_list(images)
    maps_of = attention_source(attentions, len(images))
    n_layers, n_heads = maps_of(0).shape[:2]
    controls = {
        "image": widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
        "mode": widgets.ToggleButtons(options=["layer/head", ROLLOUT], value="layer/head"),
        **layer_head_controls(n_layers, n_heads, layer, head),
    }
    fig = new_figure(8, 4)
    ax_image, ax_overlay = fig.subplots(1, 2)
    grid = patch_grid(select_map(maps_of(0), layer, head), has_cls)
    check_patch_size(images[0], grid.shape[0], patch_size)
    base = ax_image.imshow(images[0], cmap="gray" if images[0].ndim == 2 else None)
    ax_image.set_axis_off()
    overlay = draw_overlay(ax_overlay, images[0], grid)
    below = ax_overlay.images[0]
    title = live_title(ax_overlay)
    box = FigureBox(controls, fig, [base, below, overlay, title])
    rollouts: dict[int, np.ndarray] = {}  # per image: computed once, then switching is instant

    def update(_=None):
        index, mode, layer, head = (controls[k].value for k in ("image", "mode", "layer", "head"))
        maps, image = maps_of(index), images[index]
        if mode == ROLLOUT and index not in rollouts:
            rollouts[index] = rollout_from_maps(maps)
        matrix = rollouts[index] if mode == ROLLOUT else select_map(maps, layer, head)
        grid = patch_grid(matrix, has_cls)
        for artist in (base, below):
            artist.set_data(image)
        overlay.set_data(grid)
        overlay.set_clim(float(grid.min()), max(float(grid.max()), float(grid.min()) + 1e-9))
        title.set_text("rollout" if mode == ROLLOUT else f"layer {layer}, {head_name(head)}")
        box.current.update(
            image=index, mode=mode, layer=layer, head=head, attention=matrix, overlay=grid
        )
        box.render()

    observe_all(controls, update)
    update()
    return box


def mae_keep_mask(n_patches: int, mask_ratio: float, seed: int = 0) -> np.ndarray:
    """Which patches a masked autoencoder keeps (True) for its encoder: ``ViTMAE``'s own rule,
    :func:`ptlearn.objectives.random_patch_mask`, with a generator seeded with ``seed``.

    ``n_keep = int(n_patches * (1 - mask_ratio))`` patches of a random permutation stay visible.
    """
    generator = torch.Generator().manual_seed(int(seed))
    _, hidden = random_patch_mask(1, n_patches, mask_ratio, generator)  # [1, N] True = hidden
    return ~hidden[0].numpy()


def patch_masking_view(image, patch_size, mask_ratio=0.75, seed=0):
    """Show which patches MAE hides at a chosen ratio: the encoder sees only the kept ones.

    ``box.current`` holds ``keep`` (bool per patch, row-major) and ``n_keep``.
    """
    image = image_array(image)
    height, width = image.shape[:2]
    if height % patch_size or width % patch_size:
        raise ValueError(f"patch_size={patch_size} does not divide the {height}x{width} image.")
    rows, cols = height // patch_size, width // patch_size
    controls = {
        "mask_ratio": widgets.FloatSlider(
            value=mask_ratio, min=0.0, max=0.95, step=0.05, description="mask ratio"
        ),
        "seed": widgets.IntSlider(value=seed, min=0, max=99, description="seed"),
    }
    fig = new_figure(8, 4)
    ax_image, ax_seen = fig.subplots(1, 2)
    for ax in (ax_image, ax_seen):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, extent=(0, width, height, 0))
        ax.set_xticks(np.arange(0, width + 1, patch_size), labels=[])
        ax.set_yticks(np.arange(0, height + 1, patch_size), labels=[])
        ax.grid(color="white", linewidth=0.8)
    ax_image.set_title("image and its patches")
    title = live_title(ax_seen)
    cover = ax_seen.imshow(
        np.zeros((rows, cols, 4)), extent=(0, width, height, 0), interpolation="nearest"
    )
    box = FigureBox(controls, fig, [cover, title])

    def update(_=None):
        keep = mae_keep_mask(rows * cols, controls["mask_ratio"].value, controls["seed"].value)
        rgba = np.zeros((rows * cols, 4))
        rgba[~keep] = (0.5, 0.5, 0.5, 1.0)  # hidden patches: solid grey
        cover.set_data(rgba.reshape(rows, cols, 4))
        title.set_text(f"encoder sees {keep.sum()} of {keep.size} patches")
        box.current.update(keep=keep, n_keep=int(keep.sum()))
        box.render()

    observe_all(controls, update)
    update()
    return box


def rollout_explorer(attentions, tokens=None, image=None, patch_size=None, has_cls=None, batch=0):
    """Attention rollout with its knobs: head fusion, the residual identity and the discard ratio.

    With ``image``: the [CLS] row over the patch grid. Without: the rollout row of a chosen query
    token over the tokens. ``box.current`` holds ``rollout`` (``[T, T]``) and ``shown``.
    """
    maps = attention_maps(attentions, batch)
    controls = {
        "head_fusion": widgets.Dropdown(
            options=list(HEAD_FUSIONS), value="mean", description="fusion"
        ),
        "add_residual": widgets.Checkbox(value=True, description="add identity (residual)"),
        "discard_ratio": widgets.FloatSlider(
            value=0.0, min=0.0, max=0.9, step=0.05, description="discard"
        ),
    }
    fig = new_figure(6 if image is not None else float(np.clip(maps.shape[-1] * 0.3, 6, 14)), 4)
    ax = fig.add_subplot()
    if image is None:
        fig.subplots_adjust(bottom=0.25)  # room for the rotated token labels
        tokens = check_tokens(tokens, maps.shape[-1])
        options = [(f"{i}: {t}", i) for i, t in enumerate(tokens)]
        controls["query"] = widgets.Dropdown(options=options, value=0, description="query")
    else:
        image = image_array(image)
        check_patch_size(image, patch_grid(maps[0, 0], has_cls).shape[0], patch_size)
    box = FigureBox(controls, fig)

    def update(_=None):
        settings = {k: controls[k].value for k in ("head_fusion", "add_residual", "discard_ratio")}
        rollout = rollout_from_maps(maps, **settings)
        ax.clear()
        if image is None:
            shown = rollout[controls["query"].value]
            draw_token_bars(ax, tokens, shown)
        else:
            shown = patch_grid(rollout, has_cls)
            draw_overlay(ax, image, shown)
        ax.set_title(
            f"rollout: {settings['head_fusion']} over heads, discard {settings['discard_ratio']:.2f}"
        )
        box.current.update(rollout=rollout, shown=shown, **settings)
        box.render(static_changed=True)

    observe_all(controls, update)
    update()
    return box
