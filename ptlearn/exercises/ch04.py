"""Exercise checkers for chapter 04: GPT (the next-token loss, top-k filtering, greedy decoding)."""

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

CAUSAL_LM_MISTAKES = {
    "not_scalar": "the loss has shape {shape}; it should be one number (a 0-d tensor): the mean "
    "over every predicted position of every sequence.",
    "no_shift": "there is no shift: the logits at position t are scored against token t itself, "
    "which the model already sees, so the task becomes copying. Score logits[:, :-1] against "
    "labels[:, 1:]: position t predicts token t + 1.",
    "wrong_direction": "the shift goes the wrong way: logits[:, 1:] are scored against "
    "labels[:, :-1], so each position predicts the token before it. Use logits[:, :-1] with "
    "labels[:, 1:].",
    "sum": "the loss is a sum over positions; take the mean (reduction='mean'), so it does not "
    "grow with the batch size or the sequence length.",
    "probs": "cross-entropy was applied to probabilities: F.cross_entropy takes raw logits and "
    "applies log_softmax itself, so do not softmax first.",
    "ignored_in_mean": "positions labelled -100 are left out of the sum but still counted in "
    "the mean: divide by the number of real labels (F.cross_entropy(..., ignore_index=-100) "
    "does this).",
    "ignored_counted": "positions labelled -100 (padding) count in your loss: skip them with "
    "F.cross_entropy(..., ignore_index=-100).",
}


def lm_loss_variant(logits, labels, shift=(-1, 1), reduction="mean", ignore=True, probs=False):
    """The next-token loss with knobs that reproduce the usual mistakes."""
    end, start = shift
    scores = logits[:, :end] if end else logits
    targets = labels[:, start:]
    if probs:
        scores = scores.softmax(-1)
    flat_scores, flat_targets = scores.flatten(0, 1), targets.flatten()
    if not ignore:  # a -100 label is scored as if it were token 0
        return F.cross_entropy(flat_scores, flat_targets.clamp(min=0), reduction=reduction)
    return F.cross_entropy(flat_scores, flat_targets, ignore_index=-100, reduction=reduction)


@exercise("causal LM loss")
def check_causal_lm_loss(fn) -> str:
    """Check ``fn(logits [B, T, V], labels [B, T]) -> loss`` (a scalar) against
    :func:`ptlearn.objectives.causal_lm_shift`: the logits at position t are scored against
    ``labels[:, t + 1]``, positions labelled -100 are ignored, and the loss is the mean over the
    counted positions. Recognises the mistakes in ``CAUSAL_LM_MISTAKES``.
    """
    from ..objectives import causal_lm_shift

    m, g = CAUSAL_LM_MISTAKES, torch.Generator().manual_seed(4)
    for B, T, V, padded in [(2, 6, 11, False), (3, 9, 7, False), (4, 8, 13, True)]:
        logits = torch.randn(B, T, V, generator=g) * 2
        labels = torch.randint(V, (B, T), generator=g)
        if padded:  # right padding, labelled -100 as the data collator does
            labels[:, T - 3 :] = -100
        inputs = describe(logits=logits, labels=labels) + (" (-100 = padding)" if padded else "")
        got = call(fn, logits.clone(), labels.clone(), inputs=inputs)
        got = expect_tensor(torch.as_tensor(got, dtype=torch.float32), "the loss")
        if got.numel() != 1:
            raise Mistake(m["not_scalar"].format(shape=list(got.shape)))
        got = got.reshape(())
        ref = causal_lm_shift(logits, labels)
        if close(got, ref):
            continue
        counted = labels[:, 1:] != -100
        variants = {
            m["no_shift"]: lm_loss_variant(logits, labels, shift=(None, 0)),
            m["wrong_direction"]: lm_loss_variant(logits[:, 1:], labels[:, :-1], shift=(None, 0)),
            m["sum"]: lm_loss_variant(logits, labels, reduction="sum"),
            m["probs"]: lm_loss_variant(logits, labels, probs=True),
            m["ignored_in_mean"]: ref * counted.sum() / counted.numel(),
            m["ignored_counted"]: lm_loss_variant(logits, labels, ignore=False),
        }
        raise Mistake(
            diagnose(got, variants)
            or f"your loss is {got.item():.4f}, expected {ref.item():.4f} (the mean cross-entropy "
            "of logits[:, :-1] against labels[:, 1:])."
        )
    return "position t is scored against token t + 1, padding is ignored, and the loss is a mean."


TOP_K_MISTAKES = {
    "probs": "you returned probabilities; return logits, with -inf for the dropped tokens (the "
    "softmax comes after the filter).",
    "zero_fill": "the dropped tokens got the logit 0, not -inf. After the softmax exp(0) > 0, so "
    "they can still be sampled; fill them with float('-inf').",
    "smallest": "you kept the k lowest logits; keep the k highest (torch.topk returns the largest "
    "values by default).",
    "count": "row {row} keeps {n} tokens, expected k={k} (kept = logits that are not -inf). The "
    "k-th largest value is torch.topk(logits, k).values[:, -1:], a threshold per row.",
    "whole_batch": "the k highest logits were taken over the whole batch, not per row: each row is "
    "its own next-token distribution; use torch.topk(logits, k, dim=-1).",
    "changed_kept": "the kept logits changed value; leave them as they are and only set the "
    "others to -inf.",
}


@exercise("top-k filtering")
def check_top_k(fn) -> str:
    """Check ``fn(logits [B, V], k) -> [B, V]`` against :func:`ptlearn.models.gpt.filter_logits`
    with ``top_k=k``: the k highest logits of each row keep their values, the others become
    -inf (a large negative number such as -1e9 is accepted). Recognises the mistakes in
    ``TOP_K_MISTAKES``.
    """
    from ..models.gpt import filter_logits

    m, g = TOP_K_MISTAKES, torch.Generator().manual_seed(5)
    for B, V, k in [(2, 10, 3), (4, 50, 1), (3, 7, 7), (1, 20, 5)]:
        logits = torch.randn(B, V, generator=g) + torch.randn(B, 1, generator=g) * 3
        got = call(fn, logits, k, inputs=f"logits {[B, V]}, k={k}")
        got = expect_tensor(got, "the filtered logits", finite=False)
        expect_shape(got, (B, V), "the filtered logits", "Keep the shape [B, vocab].")
        ref = filter_logits(logits, top_k=k)  # [B, V]
        kept, ref_kept = got > -1e4, torch.isfinite(ref)
        if torch.equal(kept, ref_kept) and close(got[kept], logits[kept]):
            continue
        if kept.all() and close(got.sum(-1), torch.ones(B)) and (got >= 0).all():
            raise Mistake(m["probs"])
        if kept.all() and (got[~ref_kept] == 0).all() and close(got[ref_kept], logits[ref_kept]):
            raise Mistake(m["zero_fill"])
        if torch.equal(kept, torch.isfinite(filter_logits(-logits, top_k=k))):
            raise Mistake(m["smallest"])
        whole = torch.zeros(B * V, dtype=torch.bool)
        whole[logits.flatten().topk(min(k, B * V)).indices] = True
        if B > 1 and torch.equal(kept, whole.view(B, V)):
            raise Mistake(m["whole_batch"])
        counts = kept.sum(-1)  # [B]
        if (counts != k).any():
            row = int((counts != k).nonzero()[0])
            raise Mistake(m["count"].format(row=row, n=int(counts[row]), k=k))
        if not torch.equal(kept, ref_kept):
            raise Mistake("the kept tokens are not the k highest logits of each row.")
        raise Mistake(m["changed_kept"])
    return "each row keeps exactly its k highest logits and the rest are -inf (k = 1 to V)."


GREEDY_MISTAKES = {
    "only_new": "you returned only the new tokens {shape}; return the prompt followed by them, "
    "[B, T0 + max_new_tokens], as GPT.generate does.",
    "random": "two calls with the same prompt gave different tokens: greedy decoding is "
    "deterministic, take the argmax of the logits instead of sampling.",
    "first_position": "you took the logits of the first position, logits[:, 0]: the prediction "
    "for the next token sits at the last position, logits[:, -1].",
    "no_feedback": "every new token is the same one: the chosen token must be appended to the "
    "input before the next step, so the model sees what it has written so far.",
}


def greedy_variant(model, ids: Tensor, n: int, position: int = -1, feedback: bool = True):
    """Greedy decoding written out (no cache), with knobs for the usual mistakes."""
    out = ids
    for _ in range(n):
        logits = model(out if feedback else ids).logits[:, position]  # [B, V]
        out = torch.cat([out, logits.argmax(-1, keepdim=True)], dim=1)
    return out


@exercise("greedy decoding")
def check_greedy_decode(fn) -> str:
    """Check ``fn(model, input_ids [B, T0], max_new_tokens) -> [B, T0 + max_new_tokens]``
    against ``model.generate(input_ids, max_new_tokens, temperature=0)`` on a small random GPT:
    at each step take the argmax of the last position's logits and append it. Recognises the
    mistakes in ``GREEDY_MISTAKES``.
    """
    from ..models.gpt import GPT, GPTConfig

    m = GREEDY_MISTAKES
    with torch.random.fork_rng():
        torch.manual_seed(6)
        model = GPT(GPTConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=2, d_ff=64))
        model.eval()
        g = torch.Generator().manual_seed(7)
        for B, T0, n in [(2, 3, 8), (1, 1, 6), (3, 5, 4)]:
            ids = torch.randint(40, (B, T0), generator=g)
            inputs = f"a GPT with vocab 40, input_ids {[B, T0]}, max_new_tokens={n}"
            with torch.no_grad():
                ref = model.generate(ids, n, temperature=0)
                got = call(fn, model, ids.clone(), n, inputs=inputs)
                again = call(fn, model, ids.clone(), n, inputs=inputs)
                got = expect_tensor(torch.as_tensor(got), "the result")
                if tuple(got.shape) == (B, n) and not torch.equal(got, ref):
                    raise Mistake(m["only_new"].format(shape=list(got.shape)))
                expect_shape(got, ref.shape, "the result", "It should be [B, T0 + max_new_tokens].")
                if not torch.equal(got, torch.as_tensor(again)):
                    raise Mistake(m["random"])
                if torch.equal(got, ref):
                    continue
                if not torch.equal(got[:, :T0], ids):
                    raise Mistake("the result must start with the prompt, unchanged.")
                variants = {
                    m["first_position"]: greedy_variant(model, ids, n, position=0),
                    m["no_feedback"]: greedy_variant(model, ids, n, feedback=False),
                }
                message = next((k for k, v in variants.items() if torch.equal(got, v)), None)
                step = int((got != ref).any(0).nonzero()[0]) - T0
                raise Mistake(
                    message
                    or f"new token {step} differs from the argmax of the last position's logits."
                )
    return "your decoder appends the argmax of the last position, step by step, like generate()."
