"""Open ptlearn (or HF) attentions in bertviz's head view and model view.

bertviz (Vig 2019, https://github.com/jessevig/bertviz) draws attention beautifully but wants batch
size 1: a list with one ``[1, H, Tq, Tk]`` tensor per layer. These helpers pick one sequence of a
batch, check the tokens, and pass everything on. Its views load require.js, d3 and jQuery from a
CDN, so they stay blank offline; :func:`ptlearn.viz.export_html` and
:func:`ptlearn.viz.attention_explorer` need no network. bertviz's neuron view only works with its
own patched models, so it is not offered here.
"""

from __future__ import annotations

import torch

from .inputs import attention_maps, check_tokens

INSTALL_HINT = (
    "bertviz is not installed: pip install bertviz (it is part of ptlearn-course[dev]). "
    "Without it, ptlearn.viz.attention_explorer and ptlearn.viz.export_html show attention offline."
)


def load_bertviz():
    """Import bertviz only when a view is asked for (``import ptlearn.viz`` never imports it)."""
    try:
        import bertviz
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return bertviz


def batch_of_one(attentions, batch: int, name: str) -> list[torch.Tensor]:
    """Row ``batch`` of each layer as a ``[1, H, Tq, Tk]`` float CPU tensor (what bertviz wants)."""
    maps = attention_maps(attentions, batch, name)  # [L, H, Tq, Tk]
    return [torch.from_numpy(layer).unsqueeze(0) for layer in maps]


def check_axes(layers: list[torch.Tensor], tokens_q, tokens_k, names=("tokens", "tokens")) -> None:
    """One token per query position and one per key position (``names`` say which argument)."""
    t_q, t_k = layers[0].shape[-2:]
    check_tokens(tokens_q, t_q, "query", name=names[0])
    check_tokens(tokens_k, t_k, "key", name=names[1])


def bertviz_arguments(
    attentions=None,
    tokens=None,
    sentence_b_start=None,
    batch=0,
    encoder_attention=None,
    decoder_attention=None,
    cross_attention=None,
    encoder_tokens=None,
    decoder_tokens=None,
) -> dict:
    """The keyword arguments of bertviz's ``head_view`` / ``model_view`` for one sequence."""
    if attentions is not None:
        layers = batch_of_one(attentions, batch, "attentions")
        check_axes(layers, tokens, tokens)
        tokens = [str(t) for t in tokens]
        if sentence_b_start is not None and not 0 < sentence_b_start < len(tokens):
            raise ValueError(
                f"sentence_b_start={sentence_b_start} must be inside (0, {len(tokens)})."
            )
        return {"attention": layers, "tokens": tokens, "sentence_b_start": sentence_b_start}
    enc, dec = ("encoder_tokens", encoder_tokens), ("decoder_tokens", decoder_tokens)
    parts = {
        "encoder_attention": (encoder_attention, enc, enc),
        "decoder_attention": (decoder_attention, dec, dec),
        "cross_attention": (cross_attention, dec, enc),  # decoder queries, encoder keys
    }
    args = {}
    for name, (maps, (name_q, tokens_q), (name_k, tokens_k)) in parts.items():
        if maps is not None:
            args[name] = batch_of_one(maps, batch, name)
            check_axes(args[name], tokens_q, tokens_k, (name_q, name_k))
    if not args:
        raise ValueError(
            "Pass attentions= (with tokens=) for a single stack, or encoder_attention=, "
            "decoder_attention= and/or cross_attention= (with encoder_tokens=, decoder_tokens=)."
        )
    args["encoder_tokens"] = None if encoder_tokens is None else [str(t) for t in encoder_tokens]
    args["decoder_tokens"] = None if decoder_tokens is None else [str(t) for t in decoder_tokens]
    return args


SCRIPT_TAG = '<script type="text/javascript">'


def safe_html(view):
    """bertviz's ``html_action="return"`` page with its inline script made inert to hostile
    tokens: bertviz writes the tokens as JSON straight into a ``<script>``, where a token
    ``</script><script>...`` would end it and run its own code in the saved page. Inside the
    script, ``</`` becomes ``<\\/`` and ``<!--`` becomes ``<\\!--`` (the same characters for
    JavaScript, but no longer a closing tag or comment opener for the HTML parser)."""
    from IPython.display import HTML

    page = view.data
    cut = page.rfind(SCRIPT_TAG)
    end = page.rfind("</script>")
    if cut < 0 or end < cut:
        raise RuntimeError("Unexpected bertviz output: no inline script found to escape.")
    body = page[cut + len(SCRIPT_TAG) : end]
    body = body.replace("</", "<\\/").replace("<!--", "<\\!--")
    return HTML(page[: cut + len(SCRIPT_TAG)] + body + page[end:])


def check_action(html_action: str) -> None:
    if html_action not in ("view", "return"):
        raise ValueError(f"html_action must be 'view' or 'return', got {html_action!r}.")


def head_view(
    attentions=None,
    tokens=None,
    sentence_b_start=None,
    batch=0,
    html_action="view",
    encoder_attention=None,
    decoder_attention=None,
    cross_attention=None,
    encoder_tokens=None,
    decoder_tokens=None,
    **kwargs,
):
    """bertviz's head view (lines between tokens, one colour per head) for one sequence.

    Self-attention: ``head_view(outputs.attentions, tokens)``, with ``sentence_b_start`` for a
    sentence pair. Encoder-decoder: ``encoder_attention=``, ``decoder_attention=``,
    ``cross_attention=`` with ``encoder_tokens=`` and ``decoder_tokens=``. ``html_action="return"``
    returns an IPython ``HTML`` object (its ``.data`` can be saved: tokens are escaped for the
    script they land in, see :func:`safe_html`); other keyword arguments
    (``layer``, ``heads``, ``include_layers``, ...) go to bertviz.
    """
    check_action(html_action)
    args = bertviz_arguments(
        attentions,
        tokens,
        sentence_b_start,
        batch,
        encoder_attention,
        decoder_attention,
        cross_attention,
        encoder_tokens,
        decoder_tokens,
    )
    view = load_bertviz().head_view(**args, html_action=html_action, **kwargs)
    return safe_html(view) if html_action == "return" else view


def model_view(
    attentions=None,
    tokens=None,
    sentence_b_start=None,
    batch=0,
    html_action="view",
    encoder_attention=None,
    decoder_attention=None,
    cross_attention=None,
    encoder_tokens=None,
    decoder_tokens=None,
    **kwargs,
):
    """bertviz's model view (a thumbnail of every layer x head) for one sequence; arguments as in
    :func:`head_view` (bertviz extras: ``display_mode``, ``include_layers``, ``include_heads``)."""
    check_action(html_action)
    args = bertviz_arguments(
        attentions,
        tokens,
        sentence_b_start,
        batch,
        encoder_attention,
        decoder_attention,
        cross_attention,
        encoder_tokens,
        decoder_tokens,
    )
    view = load_bertviz().model_view(**args, html_action=html_action, **kwargs)
    return safe_html(view) if html_action == "return" else view
