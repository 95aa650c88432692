"""An attention view as one self-contained HTML page: offline, no kernel, no CDN.

The bertviz way, factored: the attentions are serialised to a JSON-able dict
(:func:`attention_view_data`), the page's script lives in package data
(``ptlearn/viz/static/attention_view.js``) behind one placeholder, each render gets a unique element
id, and the same fragment serves a saved file (:func:`export_html`) and a notebook output
(:func:`attention_view`). Unlike bertviz's views, nothing is loaded from the network, so the page
opens from disk, in VS Code, on GitHub Pages or in an air-gapped classroom.
"""

from __future__ import annotations

import json
import uuid
from importlib.resources import files

import numpy as np
from IPython.display import HTML, display

from ..checkpoint import atomic_write_bytes
from .inputs import attention_maps, labels_for

PAGE_PLACEHOLDER = "<!-- ptlearn:view -->"
SCRIPT_PLACEHOLDER = "PTLEARN_PARAMS"


def static_text(name: str) -> str:
    """A file shipped in ``ptlearn/viz/static/``."""
    return files("ptlearn.viz").joinpath("static", name).read_text(encoding="utf-8")


def attention_view_data(attentions, tokens, tokens_k=None, batch=0, decimals=3, title="attention"):
    """The JSON-able dict the page draws: ``title``, ``tokens``, ``tokens_k``, ``n_layers``,
    ``n_heads`` and ``attention`` (nested lists ``[layer][head][query][key]`` rounded to
    ``decimals`` places, which keeps a 12-layer, 12-head, 128-token file around 10 MB)."""
    maps = attention_maps(attentions, batch)  # [L, H, Tq, Tk]
    tokens_q, tokens_k = labels_for(maps, tokens, tokens_k)
    weights = np.round(np.nan_to_num(maps.astype(np.float64)), decimals)
    return {
        "title": str(title),
        "tokens": tokens_q,
        "tokens_k": tokens_k,
        "n_layers": int(maps.shape[0]),
        "n_heads": int(maps.shape[1]),
        "attention": weights.tolist(),
    }


def view_fragment(data: dict) -> str:
    """A ``<div>`` with a unique id plus the inline script that fills it from ``data``."""
    root_id = f"ptlearn-attention-{uuid.uuid4().hex}"
    params = json.dumps({"root_id": root_id, "data": data}, separators=(",", ":"))
    # inside <script>, "</script>" in a token would end the script: escape <, > and & in the JSON
    params = params.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    script = static_text("attention_view.js").replace(SCRIPT_PLACEHOLDER, params)
    return (
        f'<div id="{root_id}" class="ptlearn-attention-view"></div>\n<script>\n{script}\n</script>'
    )


def export_html(attentions, tokens, path, tokens_k=None, title="attention", batch=0, decimals=3):
    """Write the interactive attention view (layer and head selectors, token hover, heatmap) as one
    self-contained HTML file; returns its path. Open it in any browser, no Python needed."""
    data = attention_view_data(attentions, tokens, tokens_k, batch, decimals, title)
    page = static_text("attention_view.html").replace(PAGE_PLACEHOLDER, view_fragment(data))
    return atomic_write_bytes(path, page.encode("utf-8"), fsync=False)


def attention_view(
    attentions, tokens, tokens_k=None, title="attention", batch=0, html_action="view"
):
    """The same view inside a notebook output (``html_action="view"``) or as an IPython ``HTML``
    object (``"return"``; its ``.data`` is the HTML). Needs a frontend that runs output scripts
    (JupyterLab, classic Notebook, VS Code); GitHub shows the static plots instead."""
    data = attention_view_data(attentions, tokens, tokens_k, batch, title=title)
    view = HTML(view_fragment(data))
    if html_action == "return":
        return view
    if html_action != "view":
        raise ValueError(f"html_action must be 'view' or 'return', got {html_action!r}.")
    display(view)
    return None
