"""Interactive attention widgets (ipywidgets 7 and 8), each a plain function returning a widget box.

Every widget follows one pattern, so reading one teaches them all:

1. check the inputs and convert the attentions once to an array ``[L, H, Tq, Tk]``;
2. draw a matplotlib figure once and keep its artists (images, bars, lines);
3. on every control change, update those artists in place (``image.set_data``) and re-render the
   figure to a PNG shown by an ``Image`` widget: no new figure, no flicker, well under 200 ms.

The returned :class:`FigureBox` exposes ``box.controls`` (the control widgets by name) and
``box.current`` (the data currently shown, e.g. ``box.current["heatmap"]``), which tests and
notebook check cells read. Only plain matplotlib PNGs are shown, so nothing needs a CDN or a
JavaScript extension beyond ipywidgets itself, and a saved notebook keeps a static picture.
"""

from __future__ import annotations

import base64

import ipywidgets as widgets
import numpy as np
from IPython.display import display
from matplotlib.patches import Rectangle

from .figures import FastRenderer, draw_heatmap, live_title, new_figure, update_heatmap
from .inputs import MEAN, attention_maps, labels_for, resolve_head, resolve_layer, select_map
from .plots import ArcView, head_name

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class FigureBox(widgets.VBox):
    """A VBox of controls above a rendered matplotlib figure.

    When a notebook shows it, it makes two outputs: the live widget, and a PNG of the current
    figure as an output of its own, which VS Code (when its widget renderer fails), GitHub,
    nbviewer and other kernel-less viewers show; every re-render updates that picture too.
    """

    def __init__(self, controls: dict, figure, dynamic=(), middle=()):
        self.image = widgets.Image(format="png")
        row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([row, *middle, self.image])
        self.controls = controls
        self.figure = figure
        self.renderer = FastRenderer(figure, dynamic)
        self.current: dict = {}

    def render(self, static_changed: bool = False) -> None:
        """Re-render the updated figure into the image widget (redraw the static part too when
        labels, limits or layout changed)."""
        if static_changed:
            self.renderer.refresh()
        self.image.value = self.renderer.png()
        handle = getattr(self, "_static_handle", None)
        if handle is not None:  # the static picture follows the live view
            handle.update(self.static_bundle(), raw=True)

    def _repr_mimebundle_(self, **kwargs):
        text = repr(self)
        return {
            "text/plain": text if len(text) <= 110 else text[:110] + "…",
            WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.model_id},
        }

    def static_bundle(self) -> dict:
        """The current view as a plain PNG output of its own (see :meth:`_ipython_display_`)."""
        return {
            "image/png": base64.b64encode(self.image.value).decode("ascii"),
            "text/plain": f"<static picture of the widget above: {type(self).__name__}>",
        }

    def _ipython_display_(self, **kwargs):
        # Two outputs: the live widget, then its current picture as an ordinary PNG output.
        # Front ends that cannot render the widget (VS Code with ipywidgets 8.1.9, GitHub,
        # nbviewer, the course website) still show the view; render() keeps it current.
        # (ipywidgets 7 displays widgets only through this hook, so both versions come here.)
        display(self._repr_mimebundle_(), raw=True)
        self._static_handle = display(self.static_bundle(), raw=True, display_id=True)


def observe_all(controls: dict, callback) -> None:
    """Call ``callback`` whenever any control's value changes."""
    for control in controls.values():
        control.observe(callback, names="value")


def layer_head_controls(n_layers: int, n_heads: int, layer=0, head=0) -> dict:
    """A layer slider and a head menu (the heads plus their mean)."""
    heads = [("mean over heads", MEAN)] + [(f"head {h}", h) for h in range(n_heads)]
    return {
        "layer": widgets.IntSlider(
            value=resolve_layer(layer, n_layers), min=0, max=n_layers - 1, description="layer"
        ),
        "head": widgets.Dropdown(
            options=heads, value=resolve_head(head, n_heads), description="head"
        ),
    }


def attention_explorer(attentions, tokens, tokens_k=None, batch=0, layer=0, head=0):
    """Explore every head: a heatmap and a line view, with layer, head and query-token selectors.

    ``attentions``: per-layer tuple of ``[B, H, Tq, Tk]`` (``outputs.attentions``); ``tokens`` label
    the queries, ``tokens_k`` the keys of cross-attention. Choosing a query token highlights its row
    and keeps only its lines. ``box.current`` holds ``layer``, ``head``, ``query`` (-1 = all) and
    ``heatmap`` (the ``[Tq, Tk]`` map shown).
    """
    maps = attention_maps(attentions, batch)
    tokens_q, tokens_k = labels_for(maps, tokens, tokens_k)
    controls = layer_head_controls(*maps.shape[:2], layer, head)
    queries = [("all queries", -1)] + [(f"{i}: {t}", i) for i, t in enumerate(tokens_q)]
    controls["query"] = widgets.Dropdown(options=queries, value=-1, description="query")

    side = float(np.clip(len(tokens_k) * 0.09, 4, 7))
    fig = new_figure(2 * side + 1, side)
    ax_heat, ax_arcs = fig.subplots(1, 2)
    image = draw_heatmap(ax_heat, select_map(maps, layer, head), tokens_q, tokens_k)
    highlight = ax_heat.add_patch(
        Rectangle((-0.5, -0.5), len(tokens_k), 1, fill=False, edgecolor="red", linewidth=1.5)
    )
    arcs = ArcView(ax_arcs, tokens_q, tokens_k)
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.2, top=0.92, wspace=0.3)
    title = live_title(ax_heat)
    box = FigureBox(controls, fig, [image, highlight, title, arcs.lines, arcs.marker])

    def update(_=None):
        layer, head, query = (controls[k].value for k in ("layer", "head", "query"))
        matrix = select_map(maps, layer, head)
        update_heatmap(image, matrix)
        highlight.set_visible(query >= 0)
        highlight.set_y(query - 0.5)
        arcs.show(matrix, None if query < 0 else query)
        title.set_text(f"layer {layer}, {head_name(head)}")
        box.current.update(layer=layer, head=head, query=query, heatmap=matrix, arcs=arcs.weights)
        box.render()

    observe_all(controls, update)
    update()
    return box


def attention_replay(snapshots, tokens, tokens_k=None, batch=0, layer=0, head=0):
    """Replay how attention formed during training: a slider over snapshots of the same probe input.

    ``snapshots``: list of ``(step, attentions)`` pairs, e.g. ``AttentionRecorder(...).snapshots``.
    ``box.current`` holds ``step``, ``layer``, ``head`` and ``heatmap``.
    """
    if not snapshots:
        raise ValueError("No snapshots to replay: train with an AttentionRecorder callback first.")
    steps = [int(step) for step, _ in snapshots]
    maps = [attention_maps(a, batch, name=f"snapshots[{i}]") for i, (_, a) in enumerate(snapshots)]
    if any(m.shape != maps[0].shape for m in maps):
        raise ValueError(
            "All snapshots must have the same shape: record them on one fixed probe input."
        )
    tokens_q, tokens_k = labels_for(maps[0], tokens, tokens_k)
    controls = {
        "snapshot": widgets.IntSlider(value=0, min=0, max=len(maps) - 1, description="snapshot"),
        **layer_head_controls(*maps[0].shape[:2], layer, head),
    }
    side = float(np.clip(len(tokens_k) * 0.12, 4, 9))
    fig = new_figure(side + 1.5, side)
    ax = fig.add_subplot()
    image = draw_heatmap(ax, select_map(maps[0], layer, head), tokens_q, tokens_k, colorbar=True)
    title = live_title(ax)
    box = FigureBox(controls, fig, [image, image.colorbar.ax, title])

    def update(_=None):
        index, layer, head = (controls[k].value for k in ("snapshot", "layer", "head"))
        matrix = select_map(maps[index], layer, head)
        update_heatmap(image, matrix)
        title.set_text(f"step {steps[index]}: layer {layer}, {head_name(head)}")
        box.current.update(step=steps[index], layer=layer, head=head, heatmap=matrix)
        box.render()

    observe_all(controls, update)
    update()
    return box
