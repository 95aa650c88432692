"""The course's architecture diagrams, drawn as SVG by code (no plotting library, no fonts embedded).

One figure per model chapter: the encoder-decoder Transformer with its three attentions (02), the
GPT decoder stack with its KV cache (04), BERT's inputs and heads (05), ALBERT's factorisation
and sharing (06), ViT and MAE (07), where LoRA, adapters and prefixes sit (09), and
teacher-student distillation (10). The output is deterministic (the same bytes on every run), so
a test can regenerate the files and compare them. The notebooks carry a copy of each file inside a
markdown cell, as a ``data:`` URI (:func:`figure_cell`): it needs no file next to the notebook
(Colab has none) and no network. A cell *attachment* would not do: JupyterLab refuses to show SVG
attachments (jupyterlab/jupyterlab#10464) but shows SVG data URIs.

Regenerate with ``python -m ptlearn.viz.diagrams [folder]`` (default: ``docs/figures``).

Why this module is longer than 350 lines: it draws seven figures, one short function each, on a
small SVG vocabulary (box, arrow, label) at the top; the figures are data more than logic.
"""

from __future__ import annotations

import base64
import re
import sys
from html import escape
from pathlib import Path

# one colour per kind of part, the same in every figure: (fill, stroke)
COLORS = {
    "data": ("#f3f4f6", "#6b7280"),  # token ids, images, text, outputs
    "embed": ("#dbeafe", "#2563eb"),  # embeddings, positions, patch projections
    "attn": ("#fef3c7", "#d97706"),  # attention
    "ffn": ("#dcfce7", "#16a34a"),  # feed-forward
    "norm": ("#ede9fe", "#7c3aed"),  # LayerNorm (with the residual add)
    "head": ("#fee2e2", "#dc2626"),  # output heads, losses
    "cache": ("#fce7f3", "#db2777"),  # KV cache, mask tokens
    "frozen": ("#e5e7eb", "#4b5563"),  # frozen pretrained weights
    "train": ("#ffedd5", "#ea580c"),  # the few trainable weights of PEFT
    "other": ("#f9fafb", "#9ca3af"),  # the model compared with (BERT next to ALBERT)
}
LEGEND = {"data": "input / output", "embed": "embedding", "attn": "attention",
          "ffn": "feed-forward", "norm": "LayerNorm", "head": "head / loss",
          "cache": "cache / learned token", "frozen": "frozen", "train": "trained",
          "other": "BERT, for comparison"}  # fmt: skip
INK, GREY = "#111827", "#4b5563"
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"


class Drawing:
    """A small SVG canvas: boxes, arrows, text and dashed frames, written in call order."""

    def __init__(self, width: int, height: int, title: str):
        self.width, self.height, self.title = width, height, title
        self.items: list[str] = []
        self.text(width / 2, 26, title, size=15, bold=True)

    def box(self, x, y, w, h, label: str, kind: str = "data", size: int = 13, sub: str = ""):
        """A rounded box with a centred label (``\\n`` breaks lines; ``sub`` is a smaller grey
        line under it). Returns ``(x, y, w, h)``."""
        fill, stroke = COLORS[kind]
        self.items.append(
            f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="6" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
        )
        rows = [(line, size, INK) for line in label.split("\n")] if label else []
        rows += [(sub, size - 2, GREY)] if sub else []
        height = sum(s for _, s, _ in rows) + 4 * (len(rows) - 1)
        baseline = y + (h - height) / 2
        for line, s, color in rows:
            baseline += s
            self.text(x + w / 2, baseline - 2, line, size=s, color=color)
            baseline += 4
        return (x, y, w, h)

    def frame(self, x, y, w, h, label: str = "", anchor: str = "start"):
        """A dashed frame around a group; its label sits in the top-left (or top-right) corner."""
        self.items.append(
            f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="10" fill="none" '
            f'stroke="#9ca3af" stroke-width="1.2" stroke-dasharray="6 4"/>'
        )
        if label:
            tx = x + 10 if anchor == "start" else x + w - 10
            self.text(tx, y + 17, label, size=12, color=GREY, anchor=anchor, italic=True)

    def text(self, x, y, s: str, size=13, color=INK, anchor="middle", bold=False, italic=False):
        style = (' font-weight="bold"' if bold else "") + (' font-style="italic"' if italic else "")
        self.items.append(
            f'<text x="{x:g}" y="{y:g}" font-size="{size}" fill="{color}" '
            f'text-anchor="{anchor}"{style}>{escape(s)}</text>'
        )

    def arrow(self, *points, color: str = "#374151", dashed: bool = False):
        """A line through ``points`` with an arrowhead at the last one."""
        path = " ".join(f"{x:g},{y:g}" for x, y in points)
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.items.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6"{dash} '
            f'marker-end="url(#{marker_id(color)})"/>'
        )

    def legend(self, y: int, kinds: list[str], x: int = 30, gap: int = 128):
        """A row of coloured squares naming the kinds of parts in the figure."""
        for i, kind in enumerate(kinds):
            fill, stroke = COLORS[kind]
            self.items.append(
                f'<rect x="{x + i * gap}" y="{y}" width="12" height="12" rx="2" fill="{fill}" '
                f'stroke="{stroke}"/>'
            )
            self.text(x + i * gap + 17, y + 11, LEGEND[kind], size=11, color=GREY, anchor="start")

    def svg(self) -> str:
        colors = sorted({"#374151", *(stroke for _, stroke in COLORS.values())})
        markers = "".join(
            f'<marker id="{marker_id(c)}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            f'fill="{c}"/></marker>'
            for c in colors
        )
        body = "\n".join(self.items)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
            f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
            f'font-family="{FONT}" role="img" aria-label="{escape(self.title)}">\n'
            f"<title>{escape(self.title)}</title>\n<defs>{markers}</defs>\n"
            f'<rect width="{self.width}" height="{self.height}" fill="white"/>\n{body}\n</svg>\n'
        )


def marker_id(color: str) -> str:
    return "arrow-" + color.lstrip("#")


def top(b):
    return (b[0] + b[2] / 2, b[1])


def bottom(b):
    return (b[0] + b[2] / 2, b[1] + b[3])


def left(b):
    return (b[0], b[1] + b[3] / 2)


def right(b):
    return (b[0] + b[2], b[1] + b[3] / 2)


def frame_around(d: Drawing, boxes, label: str, pad: float = 12, anchor: str = "start"):
    """A dashed frame around ``boxes`` with room for its label above them."""
    x0 = min(b[0] for b in boxes) - pad
    y0 = min(b[1] for b in boxes) - pad - 16
    x1 = max(b[0] + b[2] for b in boxes) + pad
    y1 = max(b[1] + b[3] for b in boxes) + pad
    d.frame(x0, y0, x1 - x0, y1 - y0, label, anchor)


def column(d: Drawing, cx: float, w: float, y_bottom: float, parts, gap: float = 14) -> list:
    """Boxes stacked from ``y_bottom`` upwards (data flows up), each ``(label, kind, height[,
    sub])``, joined by arrows; a part of kind ``"gap"`` only adds space (room for a frame's
    label). Returns the boxes, bottom first."""
    boxes, y = [], y_bottom
    for label, kind, h, *sub in parts:
        if kind == "gap":
            y -= h
            continue
        y -= h
        boxes.append(d.box(cx - w / 2, y, w, h, label, kind, sub=sub[0] if sub else "",
                           size=12 if h < 30 else 13))  # fmt: skip
        y -= gap
    for below, above in zip(boxes, boxes[1:]):
        d.arrow(top(below), bottom(above))
    return boxes


# --- 02: the encoder-decoder Transformer ----------------------------------------------------------


def encoder_decoder() -> str:
    d = Drawing(780, 610, "The encoder-decoder Transformer: three kinds of attention")
    enc = column(d, 190, 230, 565, [
        ("source tokens", "data", 32),
        ("embedding + positions", "embed", 34),
        ("", "gap", 6),
        ("① self-attention", "attn", 50, "every source token sees every other"),
        ("add & LayerNorm", "norm", 24),
        ("feed-forward", "ffn", 38),
        ("add & LayerNorm", "norm", 24),
        ("", "gap", 24),
        ("encoder output", "data", 44, "the keys and values of ③"),
    ])  # fmt: skip
    frame_around(d, enc[2:6], "encoder block × N")
    dec = column(d, 570, 270, 565, [
        ("target so far (shifted right)", "data", 32),
        ("embedding + positions", "embed", 34),
        ("", "gap", 6),
        ("② masked self-attention", "attn", 50, "a token sees only the tokens before it"),
        ("add & LayerNorm", "norm", 24),
        ("③ cross-attention", "attn", 50, "queries: decoder; keys, values: encoder"),
        ("add & LayerNorm", "norm", 24),
        ("feed-forward", "ffn", 38),
        ("add & LayerNorm", "norm", 24),
        ("", "gap", 24),
        ("linear + softmax", "head", 30),
        ("next-token probabilities", "data", 30),
    ])  # fmt: skip
    frame_around(d, dec[2:8], "decoder block × N", anchor="end")
    out = enc[-1]
    d.arrow(right(out), (380, right(out)[1]), (380, left(dec[4])[1]), left(dec[4]),
            color=COLORS["attn"][1])  # fmt: skip
    d.text(388, (right(out)[1] + left(dec[4])[1]) / 2, "K, V", size=12,
           color=COLORS["attn"][1], anchor="start", italic=True)  # fmt: skip
    d.legend(586, ["data", "embed", "attn", "ffn", "norm", "head"], gap=125)
    return d.svg()


# --- 04: GPT and its KV cache ----------------------------------------------------------------------


def gpt_kv_cache() -> str:
    d = Drawing(840, 520, "GPT: a stack of pre-norm decoder blocks, and the KV cache")
    g = column(d, 250, 250, 475, [
        ("token ids (the text so far)", "data", 32),
        ("token + position embedding", "embed", 34),
        ("", "gap", 6),
        ("LayerNorm", "norm", 24),
        ("masked self-attention", "attn", 48, "+ residual: x = x + attn(LN(x))"),
        ("LayerNorm", "norm", 24),
        ("feed-forward", "ffn", 44, "+ residual: x = x + ffn(LN(x))"),
        ("", "gap", 24),
        ("final LayerNorm", "norm", 24),
        ("LM head (tied)", "head", 32),
        ("next-token logits", "data", 30),
    ])  # fmt: skip
    frame_around(d, g[2:6], "decoder block × N (pre-norm)")
    # the tied head: the same matrix as the token embedding
    d.arrow(left(g[7]), (100, left(g[7])[1]), (100, left(g[1])[1]), left(g[1]),
            color=COLORS["embed"][1], dashed=True)  # fmt: skip
    d.text(94, (left(g[7])[1] + left(g[1])[1]) / 2, "same matrix", size=11,
           color=COLORS["embed"][1], anchor="end", italic=True)  # fmt: skip
    # the cache of one attention layer, growing by one column per generated token
    attn = g[3]
    cache = d.box(480, attn[1] - 60, 330, 170, "", "cache")
    cx = cache[0] + cache[2] / 2
    d.text(cx, cache[1] + 22, "KV cache of this layer", size=13, bold=True)
    for row, name in enumerate(("keys", "values")):
        y = cache[1] + 40 + row * 44
        d.text(cache[0] + 15, y + 20, name, size=12, anchor="start")
        for i in range(6):
            new = i == 5
            fill, stroke = COLORS["head" if new else "attn"]
            d.items.append(
                f'<rect x="{cache[0] + 75 + i * 38:g}" y="{y:g}" width="32" height="30" rx="4" '
                f'fill="{fill}" stroke="{stroke}"/>'
            )
            d.text(cache[0] + 91 + i * 38, y + 20, f"t{i + 1}", size=11)
    d.text(cx, cache[1] + 150, "t1-t5: stored at earlier steps; t6: the new token's", size=11,
           color=GREY)  # fmt: skip
    d.arrow((right(attn)[0], right(attn)[1] + 8), (cache[0], right(attn)[1] + 8),
            color=COLORS["cache"][1])  # fmt: skip
    d.arrow((cache[0], right(attn)[1] - 12), (right(attn)[0], right(attn)[1] - 12),
            color=COLORS["cache"][1])  # fmt: skip
    mid = (right(attn)[0] + cache[0]) / 2
    d.text(mid, right(attn)[1] + 26, "append k, v", size=11, color=COLORS["cache"][1], italic=True)
    d.text(mid, right(attn)[1] - 18, "read all", size=11, color=COLORS["cache"][1], italic=True)
    for i, line in enumerate([
        "generating with the cache: each step feeds only the newest",
        "token; its query attends to every cached key, so a step",
        "costs O(T) instead of recomputing the whole prefix, O(T²)",
    ]):  # fmt: skip
        d.text(cx, cache[1] + 200 + 18 * i, line, size=12)
    d.legend(496, ["data", "embed", "attn", "ffn", "norm", "head", "cache"], gap=112)
    return d.svg()


# --- 05: BERT's inputs and its two heads -----------------------------------------------------------


def bert_inputs_heads() -> str:
    d = Drawing(820, 600, "BERT: three embeddings in, an encoder, two pretraining heads")
    tokens = ["[CLS]", "the", "[MASK]", "was", "good", "[SEP]", "it", "[SEP]"]
    segments = ["A"] * 6 + ["B"] * 2
    x0, step, w = 120, 84, 74
    d.text(x0 - 12, 566 - 8, "input", size=12, anchor="end", color=GREY)
    for i, (tok, seg) in enumerate(zip(tokens, segments)):
        x = x0 + i * step
        d.box(x, 540, w, 30, tok, "data", size=12)
        for r, text in enumerate([f"E[{tok}]", f"E_{seg}", f"E_{i}"]):  # token, segment, position
            d.box(x, 488 - r * 40, w, 30, text, "embed", size=11)
        d.arrow((x + w / 2, 408), (x + w / 2, 352))
    for r, name in enumerate(["token", "segment", "position"]):
        d.text(x0 - 12, 508 - r * 40, name, size=12, anchor="end", color=GREY)
    width = 8 * step - (step - w)
    ln = d.box(x0, 320, width, 30, "token + segment + position, then LayerNorm and dropout", "norm",
               size=12)  # fmt: skip
    enc = d.box(x0, 200, width, 84, "", "attn")
    d.text(x0 + width / 2, 232, "encoder block × L (post-norm): self-attention without a mask,",
           size=13)  # fmt: skip
    d.text(x0 + width / 2, 254, "every token sees both sides; then the feed-forward network",
           size=13)  # fmt: skip
    d.arrow(top(ln), bottom(enc))
    # heads: NSP on [CLS], MLM on the masked position
    cls_x, mask_x = x0 + w / 2, x0 + 2 * step + w / 2
    pool = d.box(cls_x - 55, 130, 110, 32, "pooler (tanh)", "head", size=12)
    nsp = d.box(cls_x - 70, 60, 140, 40, "NSP head", "head", sub="IsNext / NotNext")
    d.arrow((cls_x, 200), bottom(pool))
    d.arrow(top(pool), bottom(nsp))
    mlm = d.box(mask_x - 20, 118, 260, 44, "MLM head: dense, GELU, LayerNorm", "head", size=12,
                sub="then scores with the token table (tied)")  # fmt: skip
    out = d.box(mask_x - 20, 60, 260, 36, "p(token = 'not' | context)", "data", size=12)
    d.arrow((mask_x, 200), (mask_x, 162))
    d.arrow(top(mlm), bottom(out))
    d.arrow(right(mlm), (790, right(mlm)[1]), (790, 503), (x0 + 7 * step + w, 503),
            color=COLORS["embed"][1], dashed=True)  # fmt: skip
    d.text(784, 300, "same matrix", size=11, color=COLORS["embed"][1], anchor="end", italic=True)
    d.legend(580, ["data", "embed", "attn", "norm", "head"], gap=140, x=60)
    return d.svg()


# --- 06: ALBERT's factorized embedding and cross-layer sharing --------------------------------------


def albert_factorization_sharing() -> str:
    d = Drawing(820, 520, "ALBERT: a factorized embedding and one layer shared by all")
    d.text(200, 60, "1. factorized embedding", size=14, bold=True)
    d.box(40, 84, 320, 50, "BERT: one V × H table", "other",
          sub="30,000 × 768 = 23.0M parameters")  # fmt: skip
    ids = d.box(120, 420, 160, 30, "token id", "data", size=12)
    table = d.box(80, 330, 240, 50, "V × E table (E = 128)", "embed",
                  sub="30,000 × 128 = 3.84M")  # fmt: skip
    proj = d.box(110, 250, 180, 46, "projection E → H", "embed", sub="128 × 768 + 768 = 0.1M")
    vec = d.box(100, 180, 200, 32, "vector of width H = 768", "data", size=12)
    d.arrow(top(ids), bottom(table))
    d.arrow(top(table), bottom(proj))
    d.arrow(top(proj), bottom(vec))
    d.text(200, 158, "ALBERT instead:", size=12, color=GREY, italic=True)
    d.text(200, 475, "(positions and segments are added at width E too)", size=11, color=GREY)
    # sharing
    d.text(610, 60, "2. cross-layer parameter sharing", size=14, bold=True)
    d.text(500, 86, "BERT: L different layers", size=12, color=GREY)
    d.text(705, 86, "ALBERT: one layer, L times", size=12, color=GREY)
    for i in range(4):
        y = 400 - i * 72
        d.box(430, y, 140, 44, f"layer {i + 1}: θ{i + 1}", "other", size=12)
        d.box(640, y, 140, 44, "layer θ", "attn", size=12)
        if i:
            d.arrow((500, y + 44 + 28), (500, y + 44))
            d.arrow((710, y + 44 + 28), (710, y + 44))
    d.text(500, 470, "4 × 7.1M weights (BERT-base: 12)", size=11, color=GREY)
    d.text(710, 470, "7.1M weights, used 4 (or 12) times", size=11, color=GREY)
    d.text(610, 496, "same compute per token: sharing saves parameters, not time", size=12)
    d.legend(500, ["data", "embed", "attn", "other"], gap=100, x=20)
    return d.svg()


# --- 07: ViT and MAE --------------------------------------------------------------------------------


def patch_grid(d: Drawing, x, y, size, n, hidden=()):
    """An image cut into n x n patches; the ``hidden`` ones grey (masked)."""
    cell = size / n
    for r in range(n):
        for c in range(n):
            i = r * n + c
            kind = "data" if i in hidden else "embed"
            fill, stroke = COLORS[kind]
            d.items.append(
                f'<rect x="{x + c * cell:g}" y="{y + r * cell:g}" width="{cell - 2:g}" '
                f'height="{cell - 2:g}" fill="{fill}" stroke="{stroke}"/>'
            )


def vit_mae() -> str:
    d = Drawing(840, 640, "ViT classifies patches through [CLS]; MAE reconstructs masked patches")
    d.text(40, 62, "ViT", size=14, bold=True, anchor="start")
    patch_grid(d, 40, 90, 96, 4)
    d.text(88, 204, "image → 16 patches", size=11, color=GREY)
    d.arrow((146, 138), (186, 138))
    seq_x = 196
    d.box(seq_x, 120, 50, 36, "[CLS]", "cache", size=11)
    for i in range(6):
        label = "…" if i == 4 else f"p{i + 1 if i < 4 else 16}"
        d.box(seq_x + 58 + i * 46, 120, 40, 36, label, "embed", size=11)
    d.text(seq_x + 180, 182, "linear patch embedding + [CLS] + learned positions", size=11,
           color=GREY)  # fmt: skip
    enc = d.box(560, 104, 150, 68, "encoder × L", "attn", sub="pre-norm blocks")
    d.arrow((seq_x + 58 + 5 * 46 + 40, 138), left(enc))
    cls = d.box(730, 112, 90, 52, "[CLS] out\n→ classifier", "head", size=11)
    d.arrow(right(enc), left(cls))
    # MAE
    d.text(40, 262, "MAE", size=14, bold=True, anchor="start")
    hidden = (1, 2, 4, 6, 7, 8, 9, 11, 13, 14, 15, 0)
    patch_grid(d, 40, 290, 96, 4, hidden=hidden)
    d.text(88, 404, "mask 75% at random", size=11, color=GREY)
    d.arrow((146, 338), (186, 338))
    for i, name in enumerate(["p4", "p6", "p11", "p13"]):
        d.box(196 + i * 46, 320, 40, 36, name, "embed", size=11)
    d.text(288, 382, "visible patches only", size=11, color=GREY)
    menc = d.box(390, 304, 130, 68, "encoder", "attn", sub="sees 25%")
    d.arrow((380, 338), left(menc))
    # decoder input: encoded visible + mask tokens, unshuffled
    y = 320
    for i in range(8):
        kind = "attn" if i in (3, 5) else "cache"
        d.box(560 + i * 30, y, 26, 36, "", kind)
    d.text(680, 382, "+ mask tokens, back in image order", size=11, color=GREY)
    d.arrow(right(menc), (556, 338))
    dec = d.box(590, 430, 180, 56, "small decoder", "ffn", sub="predicts every patch's pixels")
    d.arrow((680, 360), top(dec))
    loss = d.box(590, 530, 180, 50, "loss on the masked\npatches only", "head", size=12)
    d.arrow(bottom(dec), top(loss))
    d.text(300, 470, "after pretraining the decoder is dropped; the encoder is", size=12)
    d.text(300, 490, "fine-tuned as a ViT on all patches (+ a classifier)", size=12)
    d.legend(612, ["data", "embed", "attn", "ffn", "head", "cache"], gap=125)
    return d.svg()


# --- 09: where LoRA, adapters and prefixes go --------------------------------------------------------


def peft_placement() -> str:
    d = Drawing(840, 500, "Parameter-efficient fine-tuning: where LoRA, adapters and prefixes sit")
    blk = column(d, 330, 240, 460, [
        ("hidden states in", "data", 30),
        ("attention: W_q  W_k  W_v  W_o", "frozen", 50, "pretrained, frozen"),
        ("adapter (after attention)", "train", 40, "down → GELU → up, + its own skip"),
        ("add & LayerNorm", "frozen", 24),
        ("feed-forward", "frozen", 44, "pretrained, frozen"),
        ("adapter (after the FFN)", "train", 40, "down → GELU → up, + its own skip"),
        ("add & LayerNorm", "frozen", 24),
        ("", "gap", 22),
        ("classifier head", "train", 32),
    ])  # fmt: skip
    frame_around(d, blk[1:7], "one BERT block (× L, post-norm)")
    attn = blk[1]
    lora = d.box(30, attn[1] - 40, 150, 130, "", "train")
    d.text(105, lora[1] + 22, "LoRA on W_q, W_v", size=13, bold=True)
    d.text(105, lora[1] + 48, "W x + (α/r) · B A x", size=12)
    d.text(105, lora[1] + 70, "A: r × d,  B: d × r", size=11, color=GREY)
    d.text(105, lora[1] + 90, "r = 4-8; merge after", size=11, color=GREY)
    d.text(105, lora[1] + 108, "training: W + (α/r)BA", size=11, color=GREY)
    d.arrow(right(lora), left(attn), color=COLORS["train"][1])
    prefix = d.box(600, attn[1] - 40, 210, 130, "", "train")
    d.text(705, prefix[1] + 22, "prefix tuning", size=13, bold=True)
    for i in range(4):
        d.box(620 + i * 30, prefix[1] + 38, 24, 26, "", "train")
        d.box(620 + i * 30 + 120, prefix[1] + 38, 24, 26, "", "attn") if i < 2 else None
    d.text(705, prefix[1] + 86, "trained vectors prepended to", size=11, color=GREY)
    d.text(705, prefix[1] + 102, "every layer's keys and values", size=11, color=GREY)
    d.arrow(left(prefix), right(attn), color=COLORS["train"][1])
    d.text(705, 90, "BitFit: train only the biases", size=12)
    d.text(705, 108, "of the frozen layers", size=12)
    d.text(705, 150, "each method trains a few percent", size=12, color=GREY)
    d.text(705, 168, "of the weights or less (+ the head);", size=12, color=GREY)
    d.text(705, 186, "the pretrained ones stay frozen", size=12, color=GREY)
    d.legend(480, ["data", "frozen", "train", "attn"], gap=130, x=40)
    return d.svg()


# --- 10: distillation -------------------------------------------------------------------------------


def distillation() -> str:
    d = Drawing(820, 470, "Knowledge distillation: a small student learns from a large teacher")
    text = d.box(330, 400, 160, 34, "input text", "data")
    teacher = d.box(90, 250, 220, 70, "teacher (large, frozen)", "frozen",
                    sub="the fine-tuned model")  # fmt: skip
    student = d.box(510, 250, 220, 70, "student (small, trained)", "train",
                    sub="fewer layers, narrower")  # fmt: skip
    d.arrow(top(text), (410, 360), (200, 360), bottom(teacher))
    d.arrow(top(text), (410, 360), (620, 360), bottom(student))
    t_soft = d.box(100, 150, 200, 44, "softmax(z_t / T)", "data", sub="soft targets")
    s_soft = d.box(520, 150, 200, 44, "softmax(z_s / T)", "data")
    d.arrow(top(teacher), bottom(t_soft))
    d.arrow(top(student), bottom(s_soft))
    kd = d.box(300, 64, 220, 48, "KL(teacher ‖ student) · T²", "head", size=12)
    d.arrow(top(t_soft), (200, 88), left(kd))
    d.arrow(top(s_soft), (620, 88), right(kd))
    ce = d.box(600, 64 - 20, 200, 36, "CE(student, labels)", "head", size=12)
    d.arrow(right(student), (770, right(student)[1]), (770, bottom(ce)[1]))
    d.text(410, 140, "loss = α · KL + (1 − α) · CE", size=13, bold=True)
    d.text(410, 160, "(optionally + matching hidden states)", size=11, color=GREY)
    d.arrow((310, 300), (510, 300), color=COLORS["head"][1], dashed=True)
    d.text(410, 292, "hidden-state loss (MSE, via a projection)", size=11,
           color=COLORS["head"][1], italic=True)  # fmt: skip
    d.legend(448, ["data", "frozen", "train", "head"], gap=140, x=120)
    return d.svg()


# --- the catalogue, writing, embedding ---------------------------------------------------------------

DIAGRAMS = {
    "02_encoder_decoder.svg": (encoder_decoder, "02_transformer.ipynb",
                               "The encoder-decoder Transformer with its three attentions"),
    "04_gpt_kv_cache.svg": (gpt_kv_cache, "04_gpt.ipynb",
                            "GPT's pre-norm decoder stack, tied head and KV cache"),
    "05_bert_inputs_heads.svg": (bert_inputs_heads, "05_bert.ipynb",
                                 "BERT's token, segment and position embeddings and its heads"),
    "06_albert.svg": (albert_factorization_sharing, "06_albert.ipynb",
                      "ALBERT's factorized embedding and cross-layer sharing"),
    "07_vit_mae.svg": (vit_mae, "07_vit.ipynb", "ViT from patches to the class token, and MAE"),
    "09_peft.svg": (peft_placement, "09_finetuning.ipynb",
                    "Where LoRA, adapters, prefixes and BitFit sit in a block"),
    "10_distillation.svg": (distillation, "10_distillation.ipynb",
                            "Teacher-student distillation with soft targets"),
}  # fmt: skip


def write_all(folder: str | Path = "docs/figures") -> list[Path]:
    """Write every diagram into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (draw, _, _) in DIAGRAMS.items():
        path = folder / name
        path.write_text(draw(), encoding="utf-8")
        paths.append(path)
    return paths


def figure_cell(name: str, caption: str) -> dict:
    """A markdown cell that shows diagram ``name`` as an inline ``data:`` URI, with ``caption``
    under it. The cell id is ``diagram-NN`` (NN = the chapter), so a script can refresh it."""
    draw, _, alt = DIAGRAMS[name]
    if "[" in alt or "]" in alt:
        raise ValueError(f"alt text {alt!r}: no brackets, they would end the markdown image early")
    data = base64.b64encode(draw().encode("utf-8")).decode("ascii")
    return {
        "cell_type": "markdown",
        "id": "diagram-" + name.split("_")[0],
        "metadata": {"tags": ["diagram"]},
        "source": [f"![{alt}](data:image/svg+xml;base64,{data})\n", "\n", caption.strip()],
    }


FIGURE = re.compile(r"!\[([^\]]*)\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)")


def embedded_figures(cell: dict) -> list[tuple[str, bytes]]:
    """The ``(alt text, SVG bytes)`` of every figure a markdown cell shows inline."""
    return [(alt, base64.b64decode(data)) for alt, data in FIGURE.findall("".join(cell["source"]))]


def main(argv: list[str]) -> None:
    for path in write_all(argv[0] if argv else "docs/figures"):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main(sys.argv[1:])
