"""Error analysis for a text classifier: which examples does it get wrong, and what did it read?

Accuracy says how often a classifier is wrong; error analysis says *where*. Two views:

- :func:`plot_confusion_matrix`: a ``[K, K]`` table whose row ``i``, column ``j`` counts the
  examples of true class ``i`` predicted as class ``j``; the diagonal holds the correct ones, and
  an off-diagonal cell that stands out names the confusion to study (Business read as Sci/Tech ...);
- :func:`error_explorer`: a widget that browses the misclassified examples, each with the
  attention of ``[CLS]`` over its tokens: the row of the last layer's attention map that belongs to
  the query ``[CLS]``, averaged over heads. In BERT the classifier reads only the final ``[CLS]``
  vector, and that row says from which tokens' values it was assembled in the last layer.

A caveat to state with every such picture: attention weights are not an explanation. The values
they mix were computed from every token by the layers below, and different attention patterns can
give the same prediction (Jain & Wallace 2019, https://arxiv.org/abs/1902.10186; Wiegreffe &
Pinter 2019, https://arxiv.org/abs/1908.04626). Read them as "where the last layer looked".

:func:`classify_with_attention` runs a classifier over batches and collects, for every example,
what both views need: tokens, the ``[CLS]`` row, the label and the prediction.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import torch

from .figures import display_token, new_figure, token_fontsize
from .plots import figure_and_axes
from .widgets import FigureBox


def cls_attention(attentions, layer: int = -1, n_prefix: int = 0) -> torch.Tensor:
    """The ``[CLS]`` row of one layer's attention, averaged over heads: ``[B, Tk]``.

    ``attentions``: per-layer tuple of ``[B, H, Tq, Tk]``; query 0 is ``[CLS]``. For a prefix-tuned
    model pass ``n_prefix`` to drop the prefix columns (the row then sums to less than 1).
    """
    a = attentions[layer][:, :, 0, n_prefix:]  # [B, H, Tk]  what [CLS] attends to, per head
    return a.mean(dim=1)  # [B, Tk]


@torch.no_grad()
def classify_with_attention(model, batches, tokenizer, layer: int = -1, n_prefix: int = 0):
    """Run ``model`` on ``batches`` (dicts with ``input_ids``, ``attention_mask``, ``labels``) and
    return one dict per example: ``ids`` and ``tokens`` (padding dropped), ``weights`` (the
    ``[CLS]`` row over those tokens), ``label``, ``prediction`` and ``probs`` (the softmax over
    classes).

    The model runs in eval mode on its own device and is put back in its previous mode.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    examples = []
    for batch in batches:
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        out = model(**inputs, output_attentions=True)
        probs = torch.softmax(out.logits.float(), dim=-1).cpu()  # [B, K]
        weights = cls_attention(out.attentions, layer, n_prefix).float().cpu()  # [B, T]
        lengths = batch["attention_mask"].sum(1).tolist()
        for i, n in enumerate(lengths):
            ids = batch["input_ids"][i, :n].tolist()
            examples.append(
                dict(
                    ids=ids,
                    tokens=tokenizer.convert_ids_to_tokens(ids),
                    weights=weights[i, :n].numpy(),
                    label=int(batch["labels"][i]),
                    prediction=int(probs[i].argmax()),
                    probs=probs[i].numpy(),
                )
            )
    model.train(was_training)
    return examples


def confusion_matrix(labels, predictions, n_classes: int) -> np.ndarray:
    """``counts[i, j]`` = number of examples of true class ``i`` predicted as class ``j``."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def plot_confusion_matrix(labels, predictions, classes, ax=None, title="confusion matrix"):
    """The confusion matrix as an annotated heatmap (rows: true class, columns: predicted).

    Each cell shows its count and, below it, the share of its row (the recall of the diagonal
    cell). Returns the Figure.
    """
    counts = confusion_matrix(labels, predictions, len(classes))
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)  # each row sums to 1
    size = 1.0 + 0.9 * len(classes)
    fig, ax = figure_and_axes(ax, size + 1.0, size)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(len(classes)):
        for j in range(len(classes)):
            color = "white" if share[i, j] > 0.6 else "black"
            ax.text(
                j, i, f"{counts[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", color=color
            )
    ax.set_xticks(range(len(classes)), [str(c) for c in classes], rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    return fig


def highlighted_html(tokens, weights) -> str:
    """The tokens as HTML, each on a background whose opacity is its weight (max = fully opaque)."""
    top = max(float(np.max(weights)), 1e-9)
    spans = [
        f'<span style="background: rgba(255, 140, 0, {w / top:.2f}); padding: 1px 2px; '
        f'margin: 1px; border-radius: 3px">{html.escape(t)}</span>'
        for t, w in zip(tokens, weights)
    ]
    return '<div style="line-height: 1.9">' + " ".join(spans) + "</div>"


def mistake_options(examples, classes) -> dict:
    """Filter menu: "all mistakes" plus one entry per (true -> predicted) pair that occurs, each
    mapped to the indices of its examples."""
    wrong = [i for i, e in enumerate(examples) if e["prediction"] != e["label"]]
    options = {f"all mistakes ({len(wrong)})": wrong}
    pairs = sorted({(examples[i]["label"], examples[i]["prediction"]) for i in wrong})
    for t, p in pairs:
        chosen = [i for i in wrong if (examples[i]["label"], examples[i]["prediction"]) == (t, p)]
        options[f"{classes[t]} read as {classes[p]} ({len(chosen)})"] = chosen
    return options


NO_MISTAKES = "No misclassified examples to browse: every one of the {n} predictions is correct."


def _nothing_to_show(n: int, width: float) -> FigureBox:
    message = NO_MISTAKES.format(n=n)
    fig = new_figure(width, 1.2)
    fig.text(0.5, 0.5, message, ha="center", va="center", fontsize=11)
    box = FigureBox({}, fig, middle=[widgets.HTML(f"<b>{message}</b>")])
    box.current.update(index=None, tokens=[], weights=np.zeros(0, np.float32), label=None,
                       prediction=None, message=message)  # fmt: skip
    box.render(static_changed=True)
    return box


def error_explorer(examples, classes, width: float = 9.0):
    """Browse the misclassified examples with the ``[CLS]`` attention over their tokens.

    ``examples``: dicts with ``tokens``, ``weights`` (``[T]``, e.g. :func:`cls_attention` of the
    last layer), ``label``, ``prediction`` and ``probs``, as :func:`classify_with_attention`
    returns them; ``classes``: the class names. Controls: which confusion (all mistakes, or one
    true -> predicted pair) and which example. Shows the text with every token highlighted by its
    weight and a bar chart of the weights. ``box.current`` holds ``index`` (into ``examples``),
    ``tokens``, ``weights``, ``label`` and ``prediction``. With no mistakes at all it shows a
    message saying so (``box.current["message"]``, ``index`` None) instead of raising.
    """
    options = mistake_options(examples, classes)
    if not options[next(iter(options))]:  # nothing to browse: say so (a widget, not an error)
        return _nothing_to_show(len(examples), width)
    controls = {
        "confusion": widgets.Dropdown(options=list(options), description="show"),
        "example": widgets.IntSlider(value=0, min=0, max=0, description="example"),
    }
    text = widgets.HTML()
    fig = new_figure(width, 3.2)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.35, top=0.85)
    box = FigureBox(controls, fig, middle=[text])

    def choose_confusion(_=None):
        slider, was = controls["example"], controls["example"].value
        slider.value = 0  # a new confusion starts at its first example (fires show if it moved)
        slider.max = len(options[controls["confusion"].value]) - 1
        if was == 0:
            show()

    def show(_=None):
        chosen = options[controls["confusion"].value]
        index = chosen[min(controls["example"].value, len(chosen) - 1)]
        e = examples[index]
        tokens, weights = e["tokens"], np.asarray(e["weights"], dtype=np.float32)
        ax.clear()  # a new example has its own tokens: redraw the whole chart
        ax.bar(range(len(tokens)), weights, color="darkorange")
        ax.set_xticks(range(len(tokens)))
        ax.set_xticklabels(
            [display_token(t) for t in tokens], rotation=90, fontsize=token_fontsize(len(tokens))
        )
        ax.set_xlim(-0.5, len(tokens) - 0.5)
        ax.set_ylabel("[CLS] attention")
        true, pred = classes[e["label"]], classes[e["prediction"]]
        ax.set_title(f"true: {true}  |  predicted: {pred} (p = {e['probs'][e['prediction']]:.2f})")
        text.value = highlighted_html(tokens, weights)
        box.current.update(
            index=index,
            tokens=tokens,
            weights=weights,
            label=e["label"],
            prediction=e["prediction"],
        )
        box.render(static_changed=True)

    controls["confusion"].observe(choose_confusion, names="value")
    controls["example"].observe(show, names="value")
    choose_confusion()
    return box
