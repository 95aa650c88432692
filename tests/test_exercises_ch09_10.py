"""Checkers of chapters 09 (LoRA, BitFit) and 10 (distillation loss, int8 quantization): the
reference solutions pass, and each typical mistake gets the message that names it."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ptlearn.exercises.ch09 import BITFIT_MISTAKES, LORA_MISTAKES, check_bitfit, check_lora_linear
from ptlearn.exercises.ch10 import (
    DISTILLATION_MISTAKES,
    QUANTIZE_MISTAKES,
    check_distillation_loss,
    check_quantize_int8,
)
from ptlearn.finetune import LoRALinear, apply_bitfit

# --- LoRA -----------------------------------------------------------------------------------


class LoRA(nn.Module):
    """A correct LoRA layer, with switches for the mistakes the checker should name."""

    def __init__(self, base, r, alpha, scale="alpha/r", init_b="zeros", init_a="kaiming",
                 freeze=True, add_base=True, merge_in_forward=False):  # fmt: skip
        super().__init__()
        self.base = base.requires_grad_(not freeze)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        if init_a == "kaiming":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        else:
            nn.init.zeros_(self.lora_A)
        if init_b == "random":
            nn.init.normal_(self.lora_B)
        self.scaling = {"alpha/r": alpha / r, "1": 1.0, "r/alpha": r / alpha}[scale]
        self.add_base, self.merge_in_forward = add_base, merge_in_forward

    def forward(self, x):
        update = self.scaling * (x @ self.lora_A.T @ self.lora_B.T)
        if self.merge_in_forward:  # W <- W + s B A on every call: the base drifts
            with torch.no_grad():
                self.base.weight += self.scaling * self.lora_B @ self.lora_A
        return self.base(x) + update if self.add_base else update


def test_lora_reference_and_ptlearn_pass():
    assert check_lora_linear(LoRA).passed
    assert check_lora_linear(LoRALinear).passed


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(scale="1"), "no_scaling"),
        (dict(scale="r/alpha"), "inverted_scaling"),
        (dict(init_b="random"), "not_identity"),
        (dict(init_a="zeros"), "both_zero"),
        (dict(freeze=False), "base_trainable"),
        (dict(add_base=False), "no_base"),
        (dict(merge_in_forward=True), "base_changed"),
    ],
)
def test_lora_mistakes_are_named(kwargs, key):
    def make(base, r, alpha):
        return LoRA(base, r, alpha, **kwargs)

    result = check_lora_linear(make)
    assert not result.passed
    assert result.message.split("(")[0] == LORA_MISTAKES[key].split("(")[0]


def test_lora_not_implemented_and_wrong_shapes():
    def todo(base, r, alpha):
        raise NotImplementedError

    assert "not implemented yet" in check_lora_linear(todo).message

    class Transposed(LoRA):
        def __init__(self, base, r, alpha):
            super().__init__(base, r, alpha)
            self.lora_A = nn.Parameter(torch.randn(base.in_features, r))

    assert "lora_A should be [r, in_features]" in check_lora_linear(Transposed).message


# --- BitFit ---------------------------------------------------------------------------------


def bitfit_variant(kind):
    def fn(model):
        model.requires_grad_(False)
        for name, p in model.named_parameters():
            is_bias = name.endswith(".bias")
            if kind == "no_norm_bias":
                is_bias = is_bias and "norm" not in name
            if kind == "norm_weights":
                is_bias = is_bias or "norm" in name
            if kind == "all_weights":
                is_bias = True
            p.requires_grad_(is_bias or (name.startswith("classifier.") and kind != "no_head"))
        if kind == "nothing":
            model.requires_grad_(False)

    return fn


def test_bitfit_reference_and_ptlearn_pass():
    assert check_bitfit(bitfit_variant("right")).passed
    assert check_bitfit(apply_bitfit).passed


@pytest.mark.parametrize(
    "kind, key",
    [
        ("no_head", "head_frozen"),
        ("no_norm_bias", "norm_biases"),
        ("norm_weights", "norm_weights"),
        ("all_weights", "everything"),
        ("nothing", "nothing"),
    ],
)
def test_bitfit_mistakes_are_named(kind, key):
    result = check_bitfit(bitfit_variant(kind))
    assert not result.passed
    assert result.message.split("(")[0] == BITFIT_MISTAKES[key].split("(")[0]


def test_bitfit_changed_values():
    def fn(model):
        apply_bitfit(model)
        with torch.no_grad():
            model.classifier.bias.add_(1.0)

    assert check_bitfit(fn).message == BITFIT_MISTAKES["values_changed"]


# --- distillation loss ----------------------------------------------------------------------


def kd(s, t, y, T, alpha, kl="forward", power=2, soften="both", reduction="batchmean",
       swap=False, detach=True):  # fmt: skip
    """A distillation loss written the usual way, with switches for the usual mistakes."""
    t = t.detach() if detach else t
    s_T = 1.0 if soften in ("teacher", "none") else T
    t_T = 1.0 if soften in ("student", "none") else T
    log_q, p = F.log_softmax(s / s_T, -1), F.softmax(t / t_T, -1)
    if kl == "forward":
        soft = F.kl_div(log_q, p, reduction=reduction)
    elif kl == "reverse":
        soft = F.kl_div(torch.log(p), log_q.exp(), reduction=reduction)
    else:  # probabilities where log-probabilities belong
        soft = F.kl_div(log_q.exp(), p, reduction=reduction)
    a = 1 - alpha if swap else alpha
    return a * T**power * soft + (1 - a) * F.cross_entropy(s, y)


def test_distillation_reference_passes():
    assert check_distillation_loss(kd).passed


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(power=0), "no_t2"),
        (dict(power=1), "t_once"),
        (dict(kl="reverse"), "reverse_kl"),
        (dict(kl="probs"), "probs_input"),
        (dict(soften="teacher"), "student_not_softened"),
        (dict(soften="student"), "teacher_not_softened"),
        (dict(soften="none"), "no_temperature"),
        (dict(reduction="mean"), "mean_reduction"),
        (dict(swap=True), "alpha_swapped"),
        (dict(detach=False), "teacher_grad"),
    ],
)
def test_distillation_mistakes_are_named(kwargs, key):
    result = check_distillation_loss(lambda s, t, y, T, alpha: kd(s, t, y, T, alpha, **kwargs))
    assert not result.passed
    assert result.message == DISTILLATION_MISTAKES[key]


def test_distillation_scalar_and_detached_student():
    def per_example(s, t, y, T, alpha):
        return F.cross_entropy(s, y, reduction="none")

    assert check_distillation_loss(per_example).message == DISTILLATION_MISTAKES["not_scalar"]

    def detached(s, t, y, T, alpha):
        return kd(s.detach(), t, y, T, alpha)

    assert check_distillation_loss(detached).message == DISTILLATION_MISTAKES["student_grad"]


# --- int8 quantization ----------------------------------------------------------------------


def quantize(w, per="row", levels=127, rounding=True, dtype=torch.int8, clamp=True):
    """Symmetric int8 quantization, with switches for the usual mistakes."""
    dims = {"row": 1, "col": 0, "tensor": (0, 1)}[per]
    amax = w.abs().amax(dim=dims)
    scale = amax.clamp(min=1e-12) / levels if clamp else amax / levels
    shaped = scale[:, None] if per == "row" else scale
    x = w / shaped
    x = torch.round(x) if rounding else torch.trunc(x)
    return x.to(dtype), scale


def test_quantize_reference_passes():
    assert check_quantize_int8(quantize).passed


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(per="tensor"), "per_tensor"),
        (dict(per="col"), "per_column"),
        (dict(rounding=False), "truncated"),
        (dict(dtype=torch.float32), "dtype"),
        (dict(clamp=False), "not_finite"),
    ],
)
def test_quantize_mistakes_are_named(kwargs, key):
    result = check_quantize_int8(lambda w: quantize(w, **kwargs))
    assert not result.passed
    assert result.message == QUANTIZE_MISTAKES[key].format(dtype=torch.float32)


def test_quantize_wrong_scale_names_the_ratio():
    result = check_quantize_int8(lambda w: (quantize(w)[0], quantize(w)[1] * 2))
    assert "2 x max|w| / 127" in result.message


# --- build it: LoRA on an attention projection, merged ---------------------------------------


class MergeableLoRA(LoRA):
    """The LoRA layer above plus merge(), with switches for the typical merge mistakes."""

    def __init__(self, base, r, alpha, merge_mistake=None, **kwargs):
        super().__init__(base, r, alpha, **kwargs)
        self.merge_mistake = merge_mistake

    @torch.no_grad()
    def merge(self):
        W, b, s = self.base.weight, self.base.bias, self.scaling
        delta = self.lora_B @ self.lora_A  # [out, in]
        new = {
            None: lambda: W + s * delta,
            "no_scaling": lambda: W + delta,
            "inverted_scaling": lambda: W + (1 / s) * delta,
            "transposed": lambda: W + s * (self.lora_A.T @ self.lora_B.T).reshape(W.shape),
            "no_base": lambda: s * delta,
        }.get(self.merge_mistake, lambda: W + s * delta)()
        if self.merge_mistake == "side_effect":  # in place, while forward() still adds B A x
            W += s * delta
            return self.base
        if self.merge_mistake == "not_linear":
            return new
        merged = nn.Linear(W.shape[1], W.shape[0], bias=self.merge_mistake != "bias")
        merged.weight.copy_(new)
        if self.merge_mistake != "bias":
            merged.bias.copy_(b)
        return merged


def test_lora_attention_reference_and_ptlearn_pass():
    from ptlearn.exercises.ch09 import check_lora_attention

    assert check_lora_attention(MergeableLoRA).passed
    assert check_lora_attention(LoRALinear).passed


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(merge_mistake="no_scaling"), "no_scaling"),
        (dict(merge_mistake="inverted_scaling"), "inverted_scaling"),
        (dict(merge_mistake="transposed"), "transposed"),
        (dict(merge_mistake="no_base"), "no_base"),
        (dict(merge_mistake="bias"), "bias"),
        (dict(merge_mistake="side_effect"), "side_effect"),
        (dict(merge_mistake="not_linear"), "not_linear"),
    ],
)
def test_lora_merge_mistakes_are_named(kwargs, key):
    from ptlearn.exercises.ch09 import MERGE_MISTAKES, check_lora_attention

    def make(base, r, alpha):
        return MergeableLoRA(base, r, alpha, **kwargs)

    result = check_lora_attention(make)
    assert not result.passed
    assert (
        result.message.split("{")[0].split("(")[0]
        == MERGE_MISTAKES[key].split("{")[0].split("(")[0]
    )


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(scale="1"), "no_scaling"),
        (dict(scale="r/alpha"), "inverted_scaling"),
        (dict(init_b="random"), "not_identity"),
        (dict(freeze=False), "base_trainable"),
    ],
)
def test_lora_attention_names_layer_mistakes(kwargs, key):
    from ptlearn.exercises.ch09 import check_lora_attention

    def make(base, r, alpha):
        return MergeableLoRA(base, r, alpha, **kwargs)

    result = check_lora_attention(make)
    assert not result.passed
    assert result.message.split("(")[0] == LORA_MISTAKES[key].split("(")[0]


def test_lora_attention_without_merge():
    from ptlearn.exercises.ch09 import MERGE_MISTAKES, check_lora_attention

    result = check_lora_attention(LoRA)
    assert not result.passed and result.message == MERGE_MISTAKES["no_merge"]


def test_apply_and_merge_with_a_learner_layer():
    from ptlearn.exercises.ch09 import tiny_classifier
    from ptlearn.finetune import apply_lora, merge_lora

    model = apply_lora(tiny_classifier(), r=2, alpha=4, layer=MergeableLoRA)
    assert (
        sum(isinstance(m, MergeableLoRA) for m in model.modules()) == 2
    )  # one stacked qkv_proj x 2 layers
    for m in model.modules():
        if isinstance(m, MergeableLoRA):
            nn.init.normal_(m.lora_B)
    x = torch.randint(0, 100, (2, 7))
    before = model.eval()(x).logits
    merged = merge_lora(model, layer=MergeableLoRA)
    assert not any(isinstance(m, MergeableLoRA) for m in merged.modules())
    torch.testing.assert_close(merged(x).logits, before, rtol=1e-4, atol=1e-5)
