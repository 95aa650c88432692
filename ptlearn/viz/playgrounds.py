"""Playgrounds: type text, run the model, see what it predicts and where it looked.

``fill_mask_playground`` is for BERT/ALBERT (masked language models), ``generation_playground`` for
GPT (causal language models). The model calls live in :mod:`ptlearn.viz.sampling`.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np

from .figures import display_token, draw_token_bars, new_figure
from .inputs import select_map
from .plots import head_name
from .sampling import fill_mask_predictions, prompt_ids, sample_steps
from .widgets import FigureBox, layer_head_controls, observe_all

PROTOCOL = ("encode", "decode", "convert_ids_to_tokens")


def as_tokenizer(tokenizer):
    """A ptlearn tokenizer (``CharTokenizer``, ``HFTokenizer``, or anything with ``encode``,
    ``decode``, ``convert_ids_to_tokens`` and the ``*_id`` attributes) as it is; a HF
    ``tokenizers.Tokenizer`` or a fast ``transformers`` tokenizer wrapped in an
    :class:`~ptlearn.tokenization.HFTokenizer` (a copy: the original is left as it is).
    Anything else is a TypeError that says how to wrap it."""
    from tokenizers import Tokenizer

    from ..tokenization import HFTokenizer

    if isinstance(tokenizer, Tokenizer):
        return HFTokenizer(Tokenizer.from_str(tokenizer.to_str()))
    backend = getattr(tokenizer, "backend_tokenizer", None)  # transformers' fast tokenizers
    if isinstance(backend, Tokenizer):
        return HFTokenizer(Tokenizer.from_str(backend.to_str()))
    if all(callable(getattr(tokenizer, name, None)) for name in PROTOCOL) and hasattr(
        tokenizer, "eos_id"
    ):
        return tokenizer
    raise TypeError(
        f"The playgrounds need a ptlearn tokenizer, got {type(tokenizer).__name__}. Wrap a HF "
        f"tokenizer with ptlearn.HFTokenizer(tokenizers.Tokenizer.from_file('tokenizer.json')), "
        f"or pass a fast transformers tokenizer (AutoTokenizer.from_pretrained(..., "
        f"use_fast=True))."
    )


def predictions_html(result: dict) -> str:
    """One line per [MASK]: its top predictions with probabilities."""
    if not result["masks"]:
        return "<b>Put [MASK] somewhere in the text to see predictions.</b>"
    lines = [
        f"[MASK] at position {pos}: "
        + ", ".join(f"<b>{html.escape(tok)}</b> {p:.1%}" for tok, p in preds)
        for pos, preds in zip(result["masks"], result["predictions"])
    ]
    return "<br>".join(lines)


def fill_mask_playground(
    model, tokenizer, text="The cat sat on the [MASK].", top_k=5, layer=-1, head="mean"
):
    """Type a sentence with [MASK]; see the top-k guesses and the masked position's attention.

    ``box.current`` holds ``tokens``, ``masks``, ``predictions`` (per mask, ``(token, prob)`` best
    first), ``mask`` (the position shown) and ``attention_row`` (its attention over the tokens).
    """
    tokenizer = as_tokenizer(tokenizer)
    first = fill_mask_predictions(model, tokenizer, text, top_k)
    controls = {
        "text": widgets.Text(value=text, description="text", continuous_update=False),
        "mask": widgets.Dropdown(options=[], description="[MASK]"),
        **layer_head_controls(*first["attentions"].shape[:2], layer, head),
    }
    summary = widgets.HTML()
    fig = new_figure(11, 3.8)
    ax_pred, ax_attn = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    box = FigureBox(controls, fig, middle=[summary])
    state = {"result": first, "updating": False}

    def draw(_=None):
        if state["updating"]:  # run() is swapping the [MASK] menu; it draws once when done
            return
        result = state["result"]
        ax_pred.clear()
        ax_attn.clear()
        masks, k = result["masks"], controls["mask"].value or 0
        if not masks:
            box.current.update(mask=None, attention_row=None)
        else:
            tokens, probs = zip(*result["predictions"][k])
            ax_pred.barh(
                range(len(tokens))[::-1], probs, tick_label=[display_token(t) for t in tokens]
            )
            ax_pred.set(xlim=(0, 1), xlabel="probability", title=f"guesses for position {masks[k]}")
            row = select_map(result["attentions"], controls["layer"].value, controls["head"].value)[
                masks[k]
            ]
            draw_token_bars(ax_attn, result["tokens"], row, color="C1")
            ax_attn.set_title(
                f"attention from position {masks[k]}: layer {controls['layer'].value}, "
                f"{head_name(controls['head'].value)}"
            )
            box.current.update(mask=masks[k], attention_row=row)
        fig.subplots_adjust(left=0.12, right=0.98, bottom=0.3, wspace=0.3)
        box.current.update(**{k: result[k] for k in ("tokens", "masks", "predictions")})
        box.render(static_changed=True)

    def run(_=None):
        state["result"] = result = fill_mask_predictions(
            model, tokenizer, controls["text"].value, top_k
        )
        summary.value = predictions_html(result)
        options = [(f"#{i + 1} (position {p})", i) for i, p in enumerate(result["masks"])]
        state["updating"] = True
        try:
            controls["mask"].options = options
            # ipywidgets 8 keeps no selection (a blank menu) when options are set on a menu that had
            # none; 7 selects the first. Select the first [MASK] explicitly: the one draw() shows.
            controls["mask"].index = 0 if options else None
        finally:
            state["updating"] = False
        draw()

    controls["text"].observe(run, names="value")
    observe_all({k: controls[k] for k in ("mask", "layer", "head")}, draw)
    run()
    return box


def token_span(text: str, prob: float) -> str:
    """One generated token as an HTML span, red (unlikely) to green (likely), probability on hover."""
    return (
        f'<span title="p = {prob:.3f}" style="background:hsl({120 * prob:.0f},75%,80%);'
        f'border-radius:3px;padding:0 1px">{html.escape(text)}</span>'
    )


def candidates_html(steps, decode) -> str:
    """Table: each step's chosen token and the top candidates it was drawn from."""
    rows = "".join(
        f"<tr><td>{n}</td><td>{token_span(decode([s['id']]), s['prob'])}</td><td>"
        + ", ".join(f"{html.escape(repr(decode([i])))} {p:.1%}" for i, p in s["candidates"])
        + "</td></tr>"
        for n, s in enumerate(steps)
    )
    head = "<tr><th>step</th><th>chosen</th><th>top candidates</th></tr>"
    return f'<table style="font-size:12px">{head}{rows}</table>'


def generation_playground(
    model, tokenizer, prompt="", max_new_tokens=40, temperature=1.0, top_k=0, top_p=1.0, seed=0
):
    """Generate from a prompt with temperature, top-k and top-p; each new token is coloured by its
    probability and a table lists the candidates of every step. Press Generate to sample again.

    ``box.current`` holds ``text`` (the generated continuation), ``steps`` (see
    :func:`ptlearn.viz.sampling.sample_steps`) and ``html``.
    """
    tokenizer = as_tokenizer(tokenizer)
    # whole labels ("temperature", not "temperat..."), in ipywidgets 7 and 8
    wide = {"description_width": "initial"}
    controls = {
        "prompt": widgets.Text(value=prompt, description="prompt", style=wide),
        "temperature": widgets.FloatSlider(
            value=temperature, min=0.1, max=2.0, step=0.05, description="temperature", style=wide
        ),
        "top_k": widgets.IntSlider(
            value=top_k, min=0, max=100, description="top-k (0=off)", style=wide
        ),
        "top_p": widgets.FloatSlider(
            value=top_p, min=0.05, max=1.0, step=0.05, description="top-p", style=wide
        ),
        "length": widgets.IntSlider(
            value=max_new_tokens, min=1, max=200, description="length", style=wide
        ),
        "seed": widgets.IntSlider(value=seed, min=0, max=99, description="seed", style=wide),
        "generate": widgets.Button(description="Generate"),
    }
    text_view, table = widgets.HTML(), widgets.HTML()
    fig = new_figure(10, 2.8)
    ax = fig.add_subplot()
    box = FigureBox(controls, fig, middle=[text_view, table])
    eos_id = getattr(tokenizer, "eos_id", None)

    def generate(_=None):
        c = {k: w.value for k, w in controls.items() if k != "generate"}
        ids = prompt_ids(tokenizer, c["prompt"])
        steps = sample_steps(
            model,
            ids,
            c["length"],
            c["temperature"],
            c["top_k"],
            c["top_p"],
            c["seed"],
            eos_id=eos_id,
        )
        pieces = [tokenizer.decode([s["id"]]) for s in steps]
        spans = "".join(token_span(p, s["prob"]) for p, s in zip(pieces, steps))
        text_view.value = (
            f'<div style="white-space:pre-wrap;font-family:monospace">'
            f'<span style="color:#666">{html.escape(c["prompt"])}</span>{spans}</div>'
        )
        table.value = candidates_html(steps, tokenizer.decode)
        ax.clear()
        draw_token_bars(ax, pieces, np.array([s["prob"] for s in steps]), color="C2")
        ax.set(ylim=(0, 1), ylabel="p(chosen)", title="probability of each generated token")
        if all(len(display_token(p)) <= 2 for p in pieces):  # characters read best upright
            ax.tick_params(axis="x", labelrotation=0)
        # fit the rotated token labels, the y label and the title inside the figure: nothing clipped
        fig.tight_layout(pad=1.0)
        box.current.update(text="".join(pieces), steps=steps, html=text_view.value)
        box.render(static_changed=True)

    controls["generate"].on_click(generate)
    generate()
    return box
