"""The exported attention page inside a notebook output: interactive where no kernel runs.

:func:`embed_attention` puts the page that :func:`~ptlearn.viz.export_html` would write (layer and
head selectors, token hover, heatmap; data and script inline, nothing from the network) into a
sandboxed ``<iframe srcdoc=...>``. An executed notebook carries it as an ordinary ``text/html``
output, so the course website, nbconvert's HTML and JupyterLab show a view that still reacts to the
reader's clicks with no Python running. The iframe keeps the page's script and styles apart from
the page around it (``sandbox="allow-scripts"``: no same-origin access, no forms, no pop-ups).

Every embedded view must stay under a size budget (:data:`BUDGET_KB`, 300 kB by default): a
website page carries one per chapter, and a 12-layer, 12-head, 128-token model would be ~10 MB.
Past the budget, :func:`embed_attention` raises an error that says how big the view would be and
what to cut (``layers=``, ``heads=``, fewer tokens, fewer ``decimals``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from .export import PAGE_PLACEHOLDER, attention_view_data, static_text, view_fragment
from .inputs import attention_maps

BUDGET_KB = 300  # per embedded view, the whole iframe element, in kB (1 kB = 1000 bytes)
ROW, PAD, HEADER = 18, 8, 150  # the page's token row height and padding (attention_view.js)


class EmbeddedAttentionView:
    """An attention view ready for a notebook output: the last expression of a cell shows it.

    ``html`` is the ``<iframe>`` element (what the output stores), ``page`` the self-contained
    page inside it, ``nbytes`` the element's size in UTF-8 bytes, ``shape`` ``(L, H, Tq, Tk)``.
    """

    def __init__(self, page: str, element: str, shape: tuple[int, int, int, int], title: str):
        self.page, self.html, self.shape, self.title = page, element, shape, title
        self.nbytes = len(element.encode("utf-8"))

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        n_layers, n_heads, t_q, t_k = self.shape
        return (
            f"<attention view {self.title!r}: {n_layers} layer(s) x {n_heads} head(s), "
            f"{t_q} x {t_k} tokens, {self.nbytes / 1000:.0f} kB; interactive where HTML outputs "
            f"run scripts (JupyterLab, the course website)>"
        )


def _pick(name: str, chosen, available: int) -> list[int]:
    if chosen is None:
        return list(range(available))
    picked = [chosen] if isinstance(chosen, int) else list(chosen)
    bad = [i for i in picked if not -available <= i < available]
    if not picked or bad:
        raise ValueError(f"{name}={chosen!r}: choose indices in 0..{available - 1} (got {bad}).")
    return [i % available for i in picked]


def embed_attention(
    attentions,
    tokens: Sequence[str],
    tokens_k: Sequence[str] | None = None,
    *,
    title: str = "attention",
    batch: int = 0,
    layers=None,
    heads=None,
    decimals: int = 3,
    budget_kb: float = BUDGET_KB,
) -> EmbeddedAttentionView:
    """The interactive attention page of ``attentions`` (a per-layer tuple of ``[B, H, Tq, Tk]``)
    for batch row ``batch``, as an object a notebook shows inline (in a sandboxed iframe).

    ``layers`` / ``heads`` (an index or a list of indices) keep only those layers and heads; the
    title then says which were kept, since the page numbers what it shows from 0. The element must
    stay under ``budget_kb`` kB (default :data:`BUDGET_KB`) or a ``ValueError`` says what to cut.
    """
    maps = attention_maps(attentions, batch)  # [L, H, Tq, Tk], validated
    keep_layers = _pick("layers", layers, maps.shape[0])
    keep_heads = _pick("heads", heads, maps.shape[1])
    maps = maps[keep_layers][:, keep_heads]
    notes = []
    if layers is not None:
        notes.append(f"layers {', '.join(map(str, keep_layers))}")
    if heads is not None:
        notes.append(f"heads {', '.join(map(str, keep_heads))}")
    full_title = f"{title} ({'; '.join(notes)} shown as 0, 1, ...)" if notes else str(title)
    data = attention_view_data(
        [m[None] for m in maps], tokens, tokens_k, decimals=decimals, title=full_title
    )
    page = static_text("attention_view.html").replace(PAGE_PLACEHOLDER, view_fragment(data))
    t_q, t_k = len(data["tokens"]), len(data["tokens_k"])
    cell = max(2, min(40, 420 // max(t_q, t_k)))  # as attention_view.js sizes its heatmap
    height = HEADER + max(2 * PAD + ROW * max(t_q, t_k), cell * t_q + 24)
    element = (
        f'<iframe class="ptlearn-attention-embed" sandbox="allow-scripts" '
        f'title="{html.escape(full_title, quote=True)}" '
        f'style="width:100%;height:{height}px;border:1px solid #ddd;border-radius:4px" '
        f'srcdoc="{html.escape(page, quote=True)}"></iframe>'
    )
    view = EmbeddedAttentionView(page, element, tuple(int(s) for s in maps.shape), full_title)
    if view.nbytes > budget_kb * 1000:
        n_layers, n_heads = maps.shape[:2]
        raise ValueError(
            f"This attention view would take {view.nbytes / 1000:.0f} kB, over its budget of "
            f"{budget_kb:g} kB ({n_layers} layers x {n_heads} heads x {t_q} x {t_k} tokens, "
            f"{decimals} decimals). Show less: pick layers=[...] and/or heads=[...], use a "
            f"shorter input (the weights grow with tokens squared) or decimals=2; raise "
            f"budget_kb= only if the page that embeds it can afford it."
        )
    return view
