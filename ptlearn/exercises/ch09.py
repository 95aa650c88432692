"""Exercise checkers for chapter 09: fine-tuning and parameter-efficient fine-tuning (LoRA, BitFit)."""

from __future__ import annotations

import torch

from .framework import (
    Mistake,
    Tensor,
    call,
    close,
    describe,
    diagnose,
    exercise,
    expect_shape,
    expect_tensor,
)

LORA_MISTAKES = {
    "not_module": "your class should build an nn.Module (subclass torch.nn.Module and call "
    "super().__init__() first).",
    "missing_params": "the layer needs two parameters named lora_A ([r, in_features]) and lora_B "
    "([out_features, r]), as in ptlearn.finetune.LoRALinear.",
    "shapes": "lora_A should be [r, in_features] = {a} and lora_B [out_features, r] = {b}; yours "
    "are {got_a} and {got_b}.",
    "base_trainable": "more than lora_A and lora_B would train ({names}): LoRA freezes the "
    "pretrained W and b, so call base.requires_grad_(False).",
    "not_trainable": "lora_A and lora_B must be trainable: wrap them in nn.Parameter.",
    "both_zero": "A and B both start at zero. The output is right, but training can never start: "
    "the gradient of B is proportional to A x and the gradient of A to B, so both stay zero "
    "forever. Start A random (ptlearn: Kaiming-uniform) and only B at zero.",
    "not_identity": "at initialisation your layer's output differs from the base layer's: start B "
    "at zero (A stays random), so that B A = 0 and the model starts as the pretrained one.",
    "no_scaling": "the update is not scaled: multiply B A x by alpha / r.",
    "inverted_scaling": "the update is scaled by r / alpha; LoRA scales it by alpha / r.",
    "alpha_only": "the update is scaled by alpha; divide by r too: alpha / r.",
    "over_r": "the update is scaled by 1 / r; multiply by alpha too: alpha / r.",
    "no_base": "the output is only the low-rank update: add the frozen layer's own output "
    "base(x) = W x + b.",
    "base_changed": "your forward pass changed the base layer's weight; leave W alone and add the "
    "update on the side (merging is a separate step, after training).",
    "no_grad": "no gradient reaches {name}: compute the update from lora_A and lora_B themselves "
    "(no .detach(), no torch.no_grad()).",
}

# (in_features, out_features, r, alpha): alpha != r, so a missing or inverted scale shows
LORA_CASES = [(12, 10, 4, 8.0), (16, 6, 2, 3.0)]


def lora_parts(layer, r: int, d_in: int, d_out: int):
    """The learner's ``lora_A``/``lora_B``, checked for presence, shape and trainability."""
    m = LORA_MISTAKES
    A, B = getattr(layer, "lora_A", None), getattr(layer, "lora_B", None)
    if not (isinstance(A, Tensor) and isinstance(B, Tensor)):
        raise Mistake(m["missing_params"])
    if tuple(A.shape) != (r, d_in) or tuple(B.shape) != (d_out, r):
        shapes = dict(a=[r, d_in], b=[d_out, r], got_a=list(A.shape), got_b=list(B.shape))
        raise Mistake(m["shapes"].format(**shapes))
    if not (A.requires_grad and B.requires_grad):
        raise Mistake(m["not_trainable"])
    others = [
        n for n, p in layer.named_parameters() if p.requires_grad and p is not A and p is not B
    ]
    if others:
        raise Mistake(m["base_trainable"].format(names=", ".join(others)))
    return A, B


@exercise("LoRA linear layer")
def check_lora_linear(cls) -> str:
    """Check ``cls(base: nn.Linear, r, alpha)``, a module computing
    ``base(x) + (alpha / r) * x A^T B^T`` with trainable ``lora_A [r, in]`` and ``lora_B [out, r]``
    and a frozen ``base``, against :class:`ptlearn.finetune.LoRALinear`.

    Recognises the mistakes in ``LORA_MISTAKES``: a trainable base, missing or misshapen A/B, an
    initial output that differs from the base, A and B both zero, a missing, inverted or partial
    alpha / r scale, a forgotten base output, and a forward pass that edits W.
    """
    return check_lora_layer(cls)


def check_lora_layer(cls) -> str:
    """The body of :func:`check_lora_linear` (raises :class:`Mistake`), shared with the build-it
    checker :func:`check_lora_attention`."""
    from torch import nn

    m, g = LORA_MISTAKES, torch.Generator().manual_seed(9)
    for d_in, d_out, r, alpha in LORA_CASES:
        torch.manual_seed(0)  # the learner's initialisation is reproducible
        base = nn.Linear(d_in, d_out)
        w0 = base.weight.detach().clone()
        inputs = f"base=nn.Linear({d_in}, {d_out}), r={r}, alpha={alpha}"
        layer = call(cls, base, r=r, alpha=alpha, inputs=inputs)
        if not isinstance(layer, nn.Module):
            raise Mistake(m["not_module"])
        A, B = lora_parts(layer.eval(), r, d_in, d_out)
        x = torch.randn(3, 5, d_in, generator=g)  # [B, T, in]
        y = base(x).detach()  # [B, T, out]  the frozen layer's own output
        out = expect_tensor(call(layer, x, inputs=describe(x=x)), "the output")
        expect_shape(out, y.shape, "the output", "A linear layer maps [B, T, in] to [B, T, out].")
        if not close(out, y):
            raise Mistake(m["no_base"] if close(out, torch.zeros_like(y)) else m["not_identity"])
        if not A.detach().any() and not B.detach().any():
            raise Mistake(m["both_zero"])
        with torch.no_grad():
            B.copy_(torch.randn(d_out, r, generator=g))  # as if trained: a non-zero update
        out = call(layer, x, inputs=describe(x=x))
        if not torch.equal(base.weight.detach(), w0):
            raise Mistake(m["base_changed"])
        delta = x @ A.detach().T @ B.detach().T  # [B, T, out]  B A x
        if not close(out, y + alpha / r * delta):
            variants = {
                m["no_scaling"]: y + delta,
                m["inverted_scaling"]: y + r / alpha * delta,
                m["alpha_only"]: y + alpha * delta,
                m["over_r"]: y + delta / r,
                m["no_base"]: alpha / r * delta,
            }
            raise Mistake(
                diagnose(out, variants) or "the output differs from W x + b + (alpha / r) B A x."
            )
        out.sum().backward()
        for name, p in (("lora_A", A), ("lora_B", B)):
            if p.grad is None or not p.grad.any():
                raise Mistake(m["no_grad"].format(name=name))
    return (
        "your layer starts equal to the frozen base, trains only r (in + out) parameters and "
        "adds (alpha / r) B A x."
    )


BITFIT_MISTAKES = {
    "nothing": "no parameter is trainable: BitFit trains every bias and the classifier head.",
    "everything": "every parameter is trainable: that is full fine-tuning. Freeze everything "
    "first (model.requires_grad_(False)), then switch on the biases and the head.",
    "head_frozen": "the classifier head is frozen ({names}): a new task's head starts random, so "
    "it must train.",
    "norm_weights": "you also train LayerNorm gains ({names}); they are weights, not biases. "
    "BitFit trains only the parameters named ...bias (and the head).",
    "norm_biases": "the LayerNorm biases are frozen ({names}): they are bias terms too, and "
    "BitFit trains every bias.",
    "weights": "some weight matrices train ({names}): only the bias vectors (and the head) should.",
    "missing": "these biases are frozen but should train: {names}.",
    "values_changed": "your function changed parameter values; it should only switch "
    "requires_grad on and off.",
}


def tiny_classifier():
    """A two-layer BERT classifier with the course's tiny test sizes (vocab 100, d_model 32)."""
    from ..models import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=32)
    return BertForSequenceClassification(config, n_classes=3)


def shown(names) -> str:
    """At most three parameter names, for a message."""
    names = sorted(names)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


@exercise("BitFit")
def check_bitfit(fn) -> str:
    """Check ``fn(model)``, which should leave trainable exactly the bias vectors and the
    ``classifier`` head of a :class:`ptlearn.BertForSequenceClassification` (returning the model
    or None), against :func:`ptlearn.finetune.apply_bitfit`.

    Recognises the mistakes in ``BITFIT_MISTAKES``: nothing or everything trainable, a frozen head,
    LayerNorm gains trained or LayerNorm biases forgotten, weight matrices trained, values changed.
    """
    import copy

    from torch import nn

    from ..finetune import apply_bitfit

    m, model = BITFIT_MISTAKES, tiny_classifier()
    reference = copy.deepcopy(model)
    expected = {n for n, p in apply_bitfit(reference).named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = call(fn, model, inputs="a 2-layer BertForSequenceClassification")
    model = result if isinstance(result, nn.Module) else model
    params = dict(model.named_parameters())
    if any(not torch.equal(params[n].detach(), before[n]) for n in before if n in params):
        raise Mistake(m["values_changed"])
    got = {n for n, p in params.items() if p.requires_grad}
    missing, extra = expected - got, got - expected
    if not got:
        raise Mistake(m["nothing"])
    if got == set(params):
        raise Mistake(m["everything"])
    checks = [
        (m["head_frozen"], {n for n in missing if n.startswith("classifier.")}),
        (m["norm_weights"], {n for n in extra if "norm" in n}),
        (m["norm_biases"], {n for n in missing if "norm" in n}),
        (m["weights"], extra),
        (m["missing"], missing),
    ]
    for message, names in checks:
        if names:
            raise Mistake(message.format(names=shown(names)))
    n_trainable = sum(params[n].numel() for n in got)
    n_bias = sum(n.endswith(".bias") for n in got)
    return (
        f"exactly the {n_bias} bias vectors and the head's weight train: {n_trainable:,} of "
        f"{sum(p.numel() for p in params.values()):,} parameters."
    )


# --- build it: a LoRA-wrapped attention projection, merged back into the weights ------------------

MERGE_MISTAKES = {
    "no_merge": "your class has no merge() method: add `def merge(self) -> nn.Linear` that returns "
    "a plain nn.Linear holding W + (alpha / r) B A and the base's bias.",
    "not_linear": "merge() should return a plain nn.Linear (got {got}): after merging, the model "
    "has its original architecture again.",
    "shape": "the merged weight has shape {got}, expected [out_features, in_features] = {want}: "
    "B A is [out, r] @ [r, in] = [out, in].",
    "no_scaling": "the merged weight is W + B A: scale the update by alpha / r, as in forward().",
    "inverted_scaling": "the merged weight uses r / alpha; LoRA merges W + (alpha / r) B A.",
    "transposed": "the merged weight adds (B A)^T: nn.Linear stores W as [out, in] and computes "
    "x W^T, so the update to add is B @ A ([out, r] @ [r, in]), not A^T @ B^T.",
    "no_base": "the merged weight is only the update (alpha / r) B A: add it to the frozen W.",
    "bias": "the merged layer's bias differs from the base layer's: LoRA leaves b unchanged, so "
    "copy it (or create the nn.Linear with bias and copy base.bias).",
    "weight": "the merged weight is not W + (alpha / r) B A.",
    "side_effect": "after merge() your LoRA layer itself computes something else: merging must "
    "not change it (e.g. you added B A to the base weight in place and forward() still adds "
    "the update on top: the update now counts twice).",
    "attention": "the attention layer with your merged projection gives different outputs than "
    "with your LoRA layer ({diff:.1e} apart): merged and unmerged must agree.",
}


def tiny_attention(d_model: int = 16, n_heads: int = 2):
    """A ptlearn MultiHeadAttention with fixed random weights, in eval mode."""
    from ..attention import MultiHeadAttention

    torch.manual_seed(3)
    return MultiHeadAttention(d_model, n_heads).eval()


@exercise("LoRA on an attention projection, merged")
def check_lora_attention(cls) -> str:
    """Check ``cls(base, r, alpha)`` wrapped around the stacked q/k/v projection of a ptlearn
    :class:`~ptlearn.attention.MultiHeadAttention` against :class:`ptlearn.finetune.LoRALinear`
    with copied weights, then its ``merge()`` (a plain ``nn.Linear`` with ``W + (alpha / r) B A``).

    First runs :func:`check_lora_layer` (the layer on its own: frozen base, A random, B zero,
    alpha / r, gradients). Then: the learner's A and B are copied into a ptlearn ``LoRALinear``
    (with B set to random values, as if trained) and both wrap ``qkv_proj`` of the same attention
    layer: outputs and gradients must agree, and only A and B may receive gradients. Finally
    ``merge()`` must return an ``nn.Linear`` whose weight and bias are the merged ones, that gives
    the attention layer the same outputs, and that leaves the LoRA layer itself unchanged.
    Recognises the mistakes in ``LORA_MISTAKES`` and ``MERGE_MISTAKES``.
    """
    import copy

    from torch import nn

    from ..finetune import LoRALinear

    check_lora_layer(cls)
    m, g = MERGE_MISTAKES, torch.Generator().manual_seed(11)
    d, r, alpha = 16, 4, 8.0
    attn = tiny_attention(d)
    base = attn.qkv_proj  # W_q, W_k, W_v stacked: [3d, d]
    W, b = base.weight.detach().clone(), base.bias.detach().clone()
    inputs = f"base=attention.qkv_proj (nn.Linear({d}, {3 * d})), r={r}, alpha={alpha}"
    torch.manual_seed(0)
    mine = call(cls, base, r=r, alpha=alpha, inputs=inputs)
    A, B = lora_parts(mine, r, d, 3 * d)
    with torch.no_grad():
        B.copy_(torch.randn(3 * d, r, generator=g))  # as if trained
    reference = LoRALinear(copy.deepcopy(base), r=r, alpha=alpha)
    with torch.no_grad():
        reference.lora_A.copy_(A.detach())
        reference.lora_B.copy_(B.detach())
    x = torch.randn(2, 5, d, generator=g)  # [B, T, C]
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])[:, None, None, :]  # padding
    ref_attn = copy.deepcopy(attn)
    ref_attn.qkv_proj = reference
    attn.qkv_proj = mine
    want = ref_attn(x, mask=mask)[0]
    got = expect_tensor(call(lambda: attn(x, mask=mask)[0], inputs=describe(x=x)), "the output")
    if not close(got, want):
        raise Mistake(
            "inside the attention layer, your LoRA projection gives other outputs than ptlearn's "
            f"LoRALinear with the same A and B ({(got - want).abs().max():.1e} apart)."
        )
    got.pow(2).sum().backward()
    want.pow(2).sum().backward()
    for name, p, q in (("lora_A", A, reference.lora_A), ("lora_B", B, reference.lora_B)):
        if p.grad is None or not close(p.grad, q.grad):
            raise Mistake(
                f"the gradient of {name} through the attention layer differs from ptlearn's."
            )
    if base.weight.grad is not None or (base.bias is not None and base.bias.grad is not None):
        raise Mistake(LORA_MISTAKES["base_trainable"].format(names="base.weight, base.bias"))
    merge = getattr(mine, "merge", None)
    if not callable(merge):
        raise Mistake(m["no_merge"])
    with torch.no_grad():
        before = mine(x).clone()
        merged = call(merge, inputs="no arguments")
        if not isinstance(merged, nn.Linear):
            raise Mistake(m["not_linear"].format(got=type(merged).__name__))
        Wm = merged.weight.detach()
        if tuple(Wm.shape) != tuple(W.shape):
            raise Mistake(m["shape"].format(got=list(Wm.shape), want=list(W.shape)))
        delta = B.detach() @ A.detach()  # [out, in]
        variants = {
            m["no_scaling"]: W + delta,
            m["inverted_scaling"]: W + r / alpha * delta,
            m["transposed"]: W + alpha / r * delta.T.reshape(W.shape),  # [in, out] misread
            m["no_base"]: alpha / r * delta,
        }
        if not close(Wm, W + alpha / r * delta):
            raise Mistake(diagnose(Wm, variants) or m["weight"])
        if merged.bias is None or not close(merged.bias.detach(), b):
            raise Mistake(m["bias"])
        if not close(mine(x), before):
            raise Mistake(m["side_effect"])
        unmerged_out = attn(x, mask=mask)[0]
        attn.qkv_proj = merged
        merged_out = attn(x, mask=mask)[0]
        if not close(merged_out, unmerged_out):
            raise Mistake(m["attention"].format(diff=(merged_out - unmerged_out).abs().max()))
    return (
        "your LoRA projection matches ptlearn's inside an attention layer (outputs and "
        "gradients, only A and B train), and merge() folds (alpha / r) B A into W exactly."
    )
