"""Exercise checkers for chapter 10: distillation and int8 quantization."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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

DISTILLATION_MISTAKES = {
    "not_scalar": "return one number (a 0-d tensor): the loss averaged over the batch.",
    "no_t2": "the soft-target term is not multiplied by T^2. Without it, raising T shrinks the soft "
    "term's gradients like 1/T^2 and silently hands the weight to the hard-label term (Hinton et "
    "al. 2015, section 2).",
    "t_once": "the soft-target term is multiplied by T; the factor is T^2 (its gradients shrink "
    "like 1/T^2).",
    "reverse_kl": "the KL divergence runs the wrong way, KL(student || teacher). Distillation uses "
    "KL(p_teacher || q_student) = sum p (log p - log q): F.kl_div(log_q, log_p, log_target=True), "
    "student first (as log-probabilities), teacher second.",
    "probs_input": "F.kl_div got the student's probabilities; its first argument must be "
    "log-probabilities (F.log_softmax), otherwise the result is not a KL divergence.",
    "student_not_softened": "only the teacher is softened: divide the student's logits by T too.",
    "teacher_not_softened": "only the student is softened: divide the teacher's logits by T too.",
    "no_temperature": "neither set of logits is divided by T: soften both, softmax(z / T).",
    "mean_reduction": "the KL is averaged over the classes as well as the examples "
    "(reduction='mean'): sum over classes and average over examples, reduction='batchmean'.",
    "alpha_swapped": "alpha weights the wrong term: alpha * soft + (1 - alpha) * hard.",
    "hard_softened": "the hard-label cross-entropy uses softened logits (z / T); it takes the raw "
    "logits.",
    "t2_everywhere": "T^2 multiplies the whole loss; it belongs to the soft-target term only.",
    "teacher_grad": "gradient flows into the teacher's logits: the teacher is fixed, so detach "
    "them (teacher_logits.detach()) or compute them under torch.no_grad().",
    "student_grad": "no gradient reaches the student's logits: do not .detach() them or call "
    ".item() inside the loss.",
}

# (B, K, T, alpha): T > 1 so that a missing T^2 shows; alpha != 0.5 so that swapping shows
DISTILLATION_CASES = [(4, 3, 2.0, 0.5), (6, 5, 3.0, 0.7), (5, 2, 4.0, 0.2)]


def kd_loss(s, t, y, T, alpha, s_T=None, t_T=None, power=2, reverse=False, probs=False,
            per_class=False, swap=False, hard_T=1.0, outer=1.0) -> Tensor:  # fmt: skip
    """The distillation loss with knobs that reproduce the usual mistakes."""
    log_q = F.log_softmax(s / (T if s_T is None else s_T), dim=-1)  # [B, K]  student
    log_p = F.log_softmax(t / (T if t_T is None else t_T), dim=-1)  # [B, K]  teacher
    if reverse:
        kl = (log_q.exp() * (log_q - log_p)).sum(-1)  # KL(q || p)
    elif probs:
        kl = (log_p.exp() * (log_p - log_q.exp())).sum(-1)  # F.kl_div(q, p): q not logged
    else:
        kl = (log_p.exp() * (log_p - log_q)).sum(-1)  # KL(p || q)  [B]
    soft = T**power * kl.mean() / (s.size(-1) if per_class else 1)
    hard = F.cross_entropy(s / hard_T, y)
    a = 1 - alpha if swap else alpha
    return outer * (a * soft + (1 - a) * hard)


@exercise("distillation loss")
def check_distillation_loss(fn) -> str:
    """Check ``fn(student_logits, teacher_logits, labels, temperature, alpha) -> loss`` against
    :func:`ptlearn.distill.distillation_loss`:
    ``alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, labels)``.

    Recognises the mistakes in ``DISTILLATION_MISTAKES``: T^2 missing (or T), KL reversed, F.kl_div
    fed probabilities, one side or neither softened, KL averaged over classes, alpha swapped, a
    softened hard term, T^2 on everything, gradients into the teacher or none into the student.
    """
    from ..distill import distillation_loss

    m, g = DISTILLATION_MISTAKES, torch.Generator().manual_seed(10)
    for B, K, T, alpha in DISTILLATION_CASES:
        s = (2 * torch.randn(B, K, generator=g)).requires_grad_()  # [B, K]  student logits
        t = (3 * torch.randn(B, K, generator=g)).requires_grad_()  # [B, K]  teacher logits
        y = torch.randint(K, (B,), generator=g)  # [B]
        inputs = describe(student_logits=s, teacher_logits=t, labels=y) + f", T={T}, alpha={alpha}"
        got = expect_tensor(call(fn, s, t, y, T, alpha, inputs=inputs), "the loss")
        if got.numel() != 1:
            raise Mistake(m["not_scalar"])
        ref = distillation_loss(s, t, y, T, alpha)
        if not close(got.reshape(()), ref):
            a = (s.detach(), t.detach(), y, T, alpha)
            variants = {
                m["no_t2"]: kd_loss(*a, power=0),
                m["t_once"]: kd_loss(*a, power=1),
                m["reverse_kl"]: kd_loss(*a, reverse=True),
                m["probs_input"]: kd_loss(*a, probs=True),
                m["student_not_softened"]: kd_loss(*a, s_T=1.0),
                m["teacher_not_softened"]: kd_loss(*a, t_T=1.0),
                m["no_temperature"]: kd_loss(*a, s_T=1.0, t_T=1.0),
                m["mean_reduction"]: kd_loss(*a, per_class=True),
                m["alpha_swapped"]: kd_loss(*a, swap=True),
                m["hard_softened"]: kd_loss(*a, hard_T=T),
                m["t2_everywhere"]: kd_loss(*a, power=0, outer=T**2),
            }
            raise Mistake(
                diagnose(got.reshape(()).detach(), variants)
                or f"the loss is {got.item():.4f}, expected {ref.item():.4f} = alpha T^2 "
                "KL(p_T || q_T) + (1 - alpha) CE."
            )
        if not got.requires_grad:
            raise Mistake(m["student_grad"])
        got.sum().backward()
        if t.grad is not None and t.grad.any():
            raise Mistake(m["teacher_grad"])
        if s.grad is None or not s.grad.any():
            raise Mistake(m["student_grad"])
    return (
        "alpha T^2 KL(teacher || student) + (1 - alpha) CE, right for three temperatures, and "
        "the teacher receives no gradient."
    )


QUANTIZE_MISTAKES = {
    "not_pair": "return two things: the int8 matrix q and the per-row scales s, with "
    "w ≈ s[:, None] * q.",
    "dtype": "q has dtype {dtype}; store it as torch.int8 (1 byte a weight, 4x smaller than "
    "float32): .to(torch.int8) after rounding.",
    "range": "q holds values outside [-127, 127] (from {lo} to {hi}): the scale must be "
    "max|w| / 127, so that the largest weight of a row maps to ±127.",
    "per_tensor": "one scale for the whole matrix: a row of small weights then uses only a few of "
    "the 255 levels. Give every output row its own scale, w.abs().amax(dim=1) / 127.",
    "per_column": "the scales run along the columns (one per input feature); ptlearn's Int8Linear "
    "uses one per output row: w.abs().amax(dim=1) / 127.",
    "scale_shape": "the scales should be one per output row, shape [{rows}], got {shape}.",
    "not_finite": "an all-zero row gets the scale 0 (or NaN), and w / 0 is NaN: keep the scale "
    "away from zero, e.g. scale.clamp(min=1e-12).",
    "truncated": "values are truncated toward zero (error up to one whole step s) instead of "
    "rounded (error at most s/2): call torch.round before .to(torch.int8).",
    "wrong_scale": "your scales are {ratio:.3g} x max|w| / 127. The symmetric int8 range is "
    "[-127, 127], so each row's scale is max|w_row| / 127: its largest weight becomes ±127.",
}


@exercise("int8 quantization")
def check_quantize_int8(fn) -> str:
    """Check ``fn(w [out, in]) -> (q, scale)``: symmetric per-row int8 quantization as in
    :class:`ptlearn.distill.Int8Linear`, ``scale = max|w_row| / 127``, ``q = round(w / scale)``
    in int8, so that ``|scale[:, None] * q - w| <= scale / 2``.

    Recognises the mistakes in ``QUANTIZE_MISTAKES``: a float q, values outside [-127, 127], one
    scale per tensor or per column, NaN on a zero row, truncation instead of rounding, and a scale
    other than max|w| / 127.
    """
    m, g = QUANTIZE_MISTAKES, torch.Generator().manual_seed(11)
    magnitudes = torch.tensor([1e-3, 1e-2, 0.1, 1.0, 10.0, 0.0])  # rows of very different sizes
    for rows, cols in [(6, 10), (6, 4)]:
        w = torch.randn(rows, cols, generator=g) * magnitudes[:, None]  # [out, in]; row 5 is zero
        result = call(fn, w.clone(), inputs=f"w {[rows, cols]} (its last row is all zeros)")
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise Mistake(m["not_pair"])
        q = expect_tensor(result[0], "q", finite=False)
        scale = torch.as_tensor(result[1], dtype=torch.float32)
        expect_shape(q, (rows, cols), "q", "q has the shape of w.")
        if q.dtype != torch.int8:
            raise Mistake(m["dtype"].format(dtype=q.dtype))
        if scale.numel() == 1:
            raise Mistake(m["per_tensor"])
        if scale.numel() == cols and cols != rows:
            raise Mistake(m["per_column"])
        if scale.numel() != rows:
            raise Mistake(m["scale_shape"].format(rows=rows, shape=list(scale.shape)))
        scale = scale.reshape(rows, 1)  # [out, 1]
        if not (torch.isfinite(scale).all() and (scale > 0).all()):
            raise Mistake(m["not_finite"])
        qf = q.float()
        if qf.min() < -127 or qf.max() > 127:
            raise Mistake(m["range"].format(lo=int(qf.min()), hi=int(qf.max())))
        ref = w.abs().amax(dim=1, keepdim=True) / 127  # [out, 1]
        if not close(scale[:-1], ref[:-1]):  # the zero row may use any positive scale
            ratio = (scale[:-1] / ref[:-1]).median().item()
            raise Mistake(m["wrong_scale"].format(ratio=ratio))
        err = (scale * qf - w).abs()  # [out, in]  at most half a step when rounded
        if (err > scale / 2 * (1 + 1e-3)).any():
            if (err <= scale * (1 + 1e-3)).all():
                raise Mistake(m["truncated"])
            raise Mistake("scale[:, None] * q does not give w back within half a step scale / 2.")
    return "per-row scales max|w| / 127 and rounded int8 values: every weight within half a step."
