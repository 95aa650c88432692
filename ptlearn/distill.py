"""Knowledge distillation and compression: a small student learns from a large teacher.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015),
https://arxiv.org/abs/1503.02531.

A teacher's output distribution says more than its argmax: "this review is negative, but it looks
a bit like a positive one" is information a one-hot label throws away ("dark knowledge"). The
student is trained to match the teacher's probabilities, softened by a temperature T:

    p_T = softmax(z_teacher / T),   q_T = softmax(z_student / T)
    loss = alpha * T^2 * KL(p_T || q_T)  +  (1 - alpha) * CE(z_student, y)

A higher T flattens both distributions, so the small probabilities of the wrong classes (where the
dark knowledge lives) carry weight in the loss. TinyBERT (Jiao et al. 2019,
https://arxiv.org/abs/1909.10351) also matches intermediate hidden states; see
:func:`hidden_state_loss`. After distillation, post-training dynamic int8 quantization
(:func:`quantize_dynamic_int8`) shrinks the linear layers about 4x.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import statistics
import tempfile
import time
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .data.batching import DictDataset, encode_texts, sorted_by_length
from .finetune import freeze, replace_modules
from .outputs import ModelOutput

Tensor = torch.Tensor


# --- the losses -----------------------------------------------------------------------------------


def soft_target_loss(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0, labels=None
) -> Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over examples.

    Logits are ``[B, K]`` or ``[B, T, K]`` (every position is one example). Positions whose label
    is -100 (ignored by the cross-entropy) are left out here too.

    Why T^2: the gradient of ``KL(p_T || q_T)`` with respect to a student logit z_i is
    ``(q_i - p_i) / T``. For a large T, ``q_i - p_i ~ (z_i - v_i) / (K T)`` (v = teacher logits,
    both zero-mean), so the gradient shrinks like ``1 / T^2``. Multiplying by T^2 keeps the soft
    term's gradients the same size whatever T is, so changing T does not silently re-weight it
    against the hard-label term (Hinton et al. 2015, section 2).
    """
    # in float32 even under autocast: a KL of two near-equal bf16 distributions can come out < 0
    log_q = F.log_softmax(student_logits.float().flatten(0, -2) / temperature, dim=-1)  # [N, K]
    log_p = F.log_softmax(teacher_logits.detach().float().flatten(0, -2) / temperature, dim=-1)
    kl = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1)  # [N]  KL(p || q)
    if labels is not None:
        kl = kl[labels.flatten() != -100]
    return temperature**2 * kl.mean()


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None,
    temperature: float = 2.0,
    alpha: float = 0.5,
) -> Tensor:
    """``alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE(student, labels)`` (Hinton et al. 2015).

    ``alpha = 0`` is plain supervised training; ``alpha = 1`` ignores the labels. Without labels
    (an unlabelled transfer set) the soft-target term alone is returned. KL uses "batchmean":
    summed over classes, averaged over examples, which is the true KL divergence per example.
    """
    soft = soft_target_loss(student_logits, teacher_logits, temperature, labels)
    if labels is None:
        return soft
    hard = F.cross_entropy(student_logits.flatten(0, -2), labels.flatten(), ignore_index=-100)
    return alpha * soft + (1 - alpha) * hard


def hidden_state_loss(
    student_hidden: Tensor, teacher_hidden: Tensor, projection: nn.Module | None = None
) -> Tensor:
    """``MSE(h_student W, h_teacher)`` (TinyBERT, Jiao et al. 2019, eq. 7): the student's hidden
    states ``[B, T, C_s]`` should carry the teacher's ``[B, T, C_t]``. When the widths differ, a
    learned ``projection`` (``nn.Linear(C_s, C_t)``) maps the student's up to the teacher's."""
    if projection is not None:
        student_hidden = projection(student_hidden)
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"Student hidden states {tuple(student_hidden.shape)} and teacher hidden states "
            f"{tuple(teacher_hidden.shape)} differ: pass a projection to the teacher's width."
        )
    return F.mse_loss(student_hidden.float(), teacher_hidden.detach().float())


def uniform_layer_map(n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """TinyBERT's mapping m -> g(m) = m * N / M: student layer m learns from teacher layer
    m * N / M (indices into ``hidden_states``, where 0 = the embeddings)."""
    return [(m, round(m * n_teacher / n_student)) for m in range(n_student + 1)]


def model_width(model: nn.Module) -> int:
    """d_model of a ptlearn model (``.config.d_model`` or ``.d_model``)."""
    width = getattr(getattr(model, "config", None), "d_model", None) or getattr(
        model, "d_model", None
    )
    if width is None:
        raise ValueError(
            f"Cannot tell the width of {type(model).__name__}: give it .config.d_model."
        )
    return width


# --- a model the Trainer can train ----------------------------------------------------------------


def every_other_layer(encoder: nn.Module) -> nn.Module:
    """DistilBERT's student (Sanh et al. 2019, https://arxiv.org/abs/1910.01108, section 3): the
    same architecture with half the layers, initialised from the (pretrained) encoder by taking
    its embeddings and one layer out of two (0, 2, 4, ... of ``encoder.encoder.layers``).

    Width and head count stay, so every kept matrix fits as it is; the student starts as a
    shallower copy of what the teacher knew before fine-tuning, not from random layers.
    """
    c = encoder.config
    student = type(encoder)(dataclasses.replace(c, n_layers=(c.n_layers + 1) // 2))
    weights = {}
    for name, value in encoder.state_dict().items():
        if name.startswith("encoder.layers."):
            index, rest = name.removeprefix("encoder.layers.").split(".", 1)
            if int(index) % 2:
                continue  # every second layer is left out
            name = f"encoder.layers.{int(index) // 2}.{rest}"
        weights[name] = value
    student.load_state_dict(weights)  # strict: every student weight comes from the encoder
    return student


class TransferSplit(NamedTuple):
    """What :func:`labelled_and_transfer` returns."""

    labelled: DictDataset  # input_ids and labels, sorted by length
    transfer: DictDataset  # input_ids only: the labelled rows' text and the text-only rows
    labelled_rows: list[int]  # the rows of ``texts`` that kept their labels (for a text baseline)


def labelled_and_transfer(
    texts: list[str],
    labels: list[int],
    n_labeled: int,
    n_transfer: int,
    tokenizer,
    max_len: int,
    seed: int = 0,
) -> TransferSplit:
    """Split training rows as distillation with few labels uses them: shuffle them (``seed``), keep
    the labels of the first ``n_labeled`` and only the text of the next ``n_transfer``.

    Both datasets hold ``[CLS] text [SEP]`` ids cut at ``max_len``, sorted by length
    (:func:`ptlearn.data.sorted_by_length`). The transfer set (Hinton et al.'s, which the teacher
    labels) has the labelled rows' text too, and no label at all.
    """
    if len(texts) != len(labels):
        raise ValueError(f"labelled_and_transfer: {len(texts)} texts but {len(labels)} labels.")
    if n_labeled < 1 or n_transfer < 0 or n_labeled + n_transfer > len(texts):
        raise ValueError(
            f"labelled_and_transfer: {n_labeled} labelled + {n_transfer} text-only rows do not fit "
            f"in the {len(texts)} rows given (need n_labeled >= 1, n_transfer >= 0)."
        )
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
    labelled_rows, text_rows = order[:n_labeled], order[n_labeled : n_labeled + n_transfer]
    labelled_ids = encode_texts(tokenizer, [texts[i] for i in labelled_rows], max_len)
    text_ids = encode_texts(tokenizer, [texts[i] for i in text_rows], max_len)
    labelled = sorted_by_length(input_ids=labelled_ids, labels=[labels[i] for i in labelled_rows])
    return TransferSplit(
        labelled, sorted_by_length(input_ids=labelled_ids + text_ids), labelled_rows
    )


def pseudo_labelled(batch_fn, teacher: nn.Module):
    """A Trainer batch function: ``batch_fn``'s batches with ``labels`` set to the teacher's argmax.

    Pseudo-labelling (self-training): the teacher's *hard* labels on unlabelled text. It is the
    sceptic's baseline for distillation on a transfer set: the same batches (same generator, same
    draws), with the teacher's answer instead of its probabilities. Where the two students end
    level, the gain came from the teacher labelling more text, not from its soft targets.
    """
    teacher.eval()
    device = next(teacher.parameters()).device

    @torch.no_grad()
    def labelled(generator):
        batch = batch_fn(generator)
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        batch["labels"] = teacher(**inputs).logits.argmax(-1).cpu()  # [B]
        return batch

    return labelled


class DistillationModel(nn.Module):
    """Student + frozen teacher behind the ptlearn model call: ``model(**batch).loss`` is the
    distillation loss, so :class:`ptlearn.training.Trainer` trains the student unchanged.

    ``forward`` runs the teacher in eval mode under ``no_grad`` and returns the student's
    ``logits`` (and attentions), the combined ``loss``

        alpha * T^2 KL(p_T || q_T) + (1 - alpha) CE + hidden_weight * mean_m MSE(h_s[m] W, h_t[g(m)])

    and its parts in ``extra`` (``soft_loss``, ``hard_loss``, ``hidden_loss``) for logging. The
    trainable parameters are the student's (and the projection W when the widths differ).
    ``layer_map`` lists ``(student_index, teacher_index)`` pairs into ``hidden_states``; default:
    :func:`uniform_layer_map`.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        temperature: float = 2.0,
        alpha: float = 0.5,
        hidden_weight: float = 0.0,
        layer_map: list[tuple[int, int]] | None = None,
    ):
        super().__init__()
        self.student, self.teacher = student, freeze(teacher).eval()
        self.temperature, self.alpha = temperature, alpha
        self.hidden_weight, self.layer_map = hidden_weight, layer_map
        self.projection = None
        if hidden_weight > 0 and model_width(student) != model_width(teacher):
            self.projection = nn.Linear(model_width(student), model_width(teacher))

    def train(self, mode: bool = True):
        """Switch the student (and projection) to train/eval mode; the teacher always stays in eval."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, labels=None, output_attentions=False, **inputs) -> ModelOutput:
        """``inputs``: the model call's keywords (input_ids, attention_mask, ...); ``labels``: [B]."""
        want_hidden = self.hidden_weight > 0
        s = self.student(
            **inputs, output_attentions=output_attentions, output_hidden_states=want_hidden
        )
        with torch.no_grad():
            t = self.teacher(**inputs, output_hidden_states=want_hidden)
        T = self.temperature
        parts = {"soft_loss": soft_target_loss(s.logits, t.logits, T, labels)}
        loss = parts["soft_loss"]
        if labels is not None:
            parts["hard_loss"] = F.cross_entropy(
                s.logits.flatten(0, -2), labels.flatten(), ignore_index=-100
            )
            loss = self.alpha * parts["soft_loss"] + (1 - self.alpha) * parts["hard_loss"]
        if want_hidden:
            parts["hidden_loss"] = self.hidden_loss(s.hidden_states, t.hidden_states)
            loss = loss + self.hidden_weight * parts["hidden_loss"]
        return ModelOutput(
            loss=loss,
            logits=s.logits,
            attentions=s.attentions,
            hidden_states=s.hidden_states,
            extra={k: v.detach() for k, v in parts.items()},
        )

    def hidden_loss(self, student_hidden, teacher_hidden) -> Tensor:
        """Mean over mapped layer pairs of :func:`hidden_state_loss`."""
        pairs = self.layer_map or uniform_layer_map(
            len(student_hidden) - 1, len(teacher_hidden) - 1
        )
        losses = [
            hidden_state_loss(student_hidden[m], teacher_hidden[n], self.projection)
            for m, n in pairs
        ]
        return torch.stack(losses).mean()


# --- compression: int8 quantization, size, latency ------------------------------------------------


class Int8Linear(nn.Module):
    """Dynamic int8 quantization of one ``nn.Linear``, written out with per-row scales.

    PyTorch's default dynamic recipe (``torch.ao.quantization.quantize_dynamic`` with
    ``default_dynamic_qconfig``, which :func:`quantize_dynamic_int8` uses) is coarser: one symmetric
    scale per weight matrix, and activations as unsigned 8-bit integers with a zero point, one
    scale per tensor. The size is the same (one byte per weight); the rounding differs.

    Symmetric quantization maps a float x to an 8-bit integer ``q = round(x / s)`` in [-127, 127]
    with scale ``s = max|x| / 127``, and back with ``x ~ s q`` (error at most s / 2).

    - weights: quantized once, one scale per output row: ``W ~ s_w[:, None] * Q_w`` (int8, 4x
      smaller than float32);
    - activations: quantized at run time ("dynamic"), one scale per input row ``s_x``;
    - ``y = s_x s_w (Q_x Q_w^T) + b``: the matrix product is over integers (the int8 kernels
      accumulate in int32; here it runs in float32, which holds these integer sums exactly while
      they stay below 2^24).
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach()  # [out, in]
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127  # [out]
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).to(torch.int8))
        self.register_buffer("weight_scale", scale)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        x_scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / 127  # [..., 1]
        x_int = torch.round(x / x_scale)  # [..., in]  integers in [-127, 127]
        y = (x_int @ self.weight_int8.T.float()) * x_scale * self.weight_scale  # [..., out]
        return y if self.bias is None else y + self.bias


def quantize_linear_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by :class:`Int8Linear` (ptlearn's own,
    readable implementation; :func:`quantize_dynamic_int8` uses PyTorch's fast kernels)."""
    model = copy.deepcopy(model).eval()
    replace_modules(model, lambda name, m: isinstance(m, nn.Linear), Int8Linear)
    return model


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (on the CPU) with every ``nn.Linear`` quantized to int8 weights and
    dynamically quantized activations, run by PyTorch's int8 CPU kernels (fbgemm / onednn).

    The default ``qconfig`` (``default_dynamic_qconfig``): weights symmetric qint8 with one scale per
    tensor; activations quint8 (0-255, with a zero point), one scale per tensor computed at run
    time (the x86 kernels use 7 bits, ``reduce_range``).

    Uses ``torch.ao.quantization.quantize_dynamic``. PyTorch has deprecated ``torch.ao.quantization``
    in favour of the separate ``torchao`` package (``torchao.quantization.quantize_(model,
    Int8DynamicActivationInt8WeightConfig())``) but still ships it (torch 2.13), so we silence its
    deprecation warning; where it is gone, this falls back to :func:`quantize_linear_int8`, the
    same arithmetic in plain PyTorch (same size on disk, no speed-up).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError:
            return quantize_linear_int8(model)
        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)


def model_size_bytes(model: nn.Module) -> int:
    """Size of ``model.state_dict()`` saved with ``torch.save``: the size on disk."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.pt")
        torch.save(model.state_dict(), path)
        return os.path.getsize(path)


@torch.no_grad()
def latency_ms(model: nn.Module, batch: dict, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``model(**batch)`` in milliseconds (eval mode, no gradients), after
    ``warmup`` untimed calls. The median resists the odd slow run caused by other processes."""
    was_training = model.training
    model.eval()
    cuda = any(torch.is_tensor(v) and v.is_cuda for v in batch.values())
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        model(**batch)
        if cuda:
            torch.cuda.synchronize()  # GPU calls return before the work is done
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - start))
    model.train(was_training)
    return statistics.median(times)
