"""Exercise checkers for chapter 04: GPT (the next-token loss, top-k filtering, greedy decoding),
and the build-it exercises: the whole GPT, its KV cache and a training loop written by the learner.

The learner's GPT (the exercise's ``MyGPT``) names its parts ``tok_emb``, ``pos_emb``, ``blocks``
(a ``ModuleList`` of :class:`ptlearn.layers.TransformerBlock`), ``norm`` and ``lm_head``;
:func:`my_gpt_state_dict` renames a :class:`ptlearn.GPT`'s weights to those names and
:func:`gpt_state_dict_from_mine` renames them back, so weights travel both ways.
:class:`ExerciseGPT` is ptlearn's own answer with that interface: the fallback a chapter continues
with where the learner's model does not pass yet.

Why this module is longer than 350 lines: chapter 04 has the course's largest exercises (a whole
GPT, its KV cache and a training loop) besides three function exercises; each checker needs its
reference, its catalogue of typical mistakes and its weight-renaming glue, and a learner or an
instructor looking for "what does the chapter 04 checker accept" should find it in one file.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import KVCache
from ..layers import TransformerBlock
from ..models.gpt import GPT, GPTConfig
from ..objectives import causal_lm_shift
from ..training import lr_at
from .framework import (
    Mistake,
    Tensor,
    build,
    call,
    close,
    compare_gradients,
    copy_weights,
    describe,
    diagnose,
    exercise,
    expect_shape,
    expect_tensor,
    first_output,
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
    "long_labels": "with labels one token longer than the logits ([B, T + 1]: the window the "
    "inputs were cut from, as ptlearn's batches give them) every one of the T positions has a "
    "target. The targets are labels[:, 1:]; score as many logits against them, "
    "logits[:, :targets.size(1)], instead of always dropping the last position.",
}


def lm_loss_variant(logits, labels, shift=1, reduction="mean", ignore=True, probs=False):
    """The next-token loss with knobs that reproduce the usual mistakes: position t is scored
    against ``labels[:, t + shift]`` (``shift=0``: no shift), for every position that has one."""
    targets = labels[:, shift:]
    n = min(targets.size(1), logits.size(1))
    scores, targets = logits[:, :n], targets[:, :n]
    if probs:
        scores = scores.softmax(-1)
    flat_scores, flat_targets = scores.flatten(0, 1), targets.flatten()
    if not ignore:  # a -100 label is scored as if it were token 0
        return F.cross_entropy(flat_scores, flat_targets.clamp(min=0), reduction=reduction)
    return F.cross_entropy(flat_scores, flat_targets, ignore_index=-100, reduction=reduction)


@exercise("causal LM loss")
def check_causal_lm_loss(fn) -> str:
    """Check ``fn(logits [B, T, V], labels) -> loss`` (a scalar) against
    :func:`ptlearn.objectives.causal_lm_shift`, with ``labels [B, T]`` (the inputs themselves) and
    ``[B, T + 1]`` (the window the inputs were cut from): the logits at position t are scored
    against ``labels[:, t + 1]``, positions labelled -100 are ignored, and the loss is the mean over
    the counted positions. Recognises the mistakes in ``CAUSAL_LM_MISTAKES``.
    """
    m, g = CAUSAL_LM_MISTAKES, torch.Generator().manual_seed(4)
    cases = [(2, 6, 11, 0, False), (3, 9, 7, 0, False), (4, 8, 13, 0, True)]
    cases += [(3, 7, 9, 1, False), (2, 6, 11, 1, True)]  # labels one token longer than the logits
    for B, T, V, extra, padded in cases:
        logits = torch.randn(B, T, V, generator=g) * 2
        labels = torch.randint(V, (B, T + extra), generator=g)
        if padded:  # right padding, labelled -100 as the data collator does
            labels[:, T - 3 :] = -100
        inputs = describe(logits=logits, labels=labels) + (" (-100 = padding)" if padded else "")
        try:
            got = call(fn, logits.clone(), labels.clone(), inputs=inputs)
        except Mistake as crash:
            if extra:  # a fixed logits[:, :-1] meets T targets: a shape error
                raise Mistake(f"{m['long_labels']} ({crash})") from None
            raise
        got = expect_tensor(torch.as_tensor(got, dtype=torch.float32), "the loss")
        if got.numel() != 1:
            raise Mistake(m["not_scalar"].format(shape=list(got.shape)))
        got = got.reshape(())
        ref = causal_lm_shift(logits, labels)
        if close(got, ref):
            continue
        counted = labels[:, 1:] != -100
        if extra and close(got, causal_lm_shift(logits, labels[:, :T])):
            raise Mistake(m["long_labels"])  # the last label dropped: the last position untrained
        variants = {
            m["no_shift"]: lm_loss_variant(logits, labels, shift=0),
            m["wrong_direction"]: lm_loss_variant(logits[:, 1:], labels, shift=0),
            m["sum"]: lm_loss_variant(logits, labels, reduction="sum"),
            m["probs"]: lm_loss_variant(logits, labels, probs=True),
            m["ignored_in_mean"]: ref * counted.sum() / counted.numel(),
            m["ignored_counted"]: lm_loss_variant(logits, labels, ignore=False),
        }
        raise Mistake(
            diagnose(got, variants)
            or f"your loss is {got.item():.4f}, expected {ref.item():.4f} (the mean cross-entropy "
            "of the logits at each position t against labels[:, t + 1])."
        )
    return (
        "position t is scored against token t + 1 (for every position when the labels are one "
        "token longer), padding is ignored, and the loss is a mean."
    )


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


# --- build it: the whole GPT -------------------------------------------------------------------


def my_gpt_state_dict(gpt: GPT) -> dict[str, Tensor]:
    """A :class:`ptlearn.GPT`'s weights under the exercise's names (``tok_emb``, ``pos_emb``,
    ``blocks.i``, ``norm``, ``lm_head``), ready for ``my_gpt.load_state_dict(...)``."""
    renames = {
        "embeddings.token.": "tok_emb.",
        "embeddings.position.": "pos_emb.",
        "decoder.layers.": "blocks.",
        "decoder.final_norm.": "norm.",
    }
    out = {}
    for key, value in gpt.state_dict().items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def gpt_state_dict_from_mine(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`my_gpt_state_dict`: the exercise's weights under ptlearn's names, for
    ``GPT(config).load_state_dict(...)`` (so generate, the playground and the attention views of
    ptlearn work on the model the learner trained)."""
    renames = {
        "tok_emb.": "embeddings.token.",
        "pos_emb.": "embeddings.position.",
        "blocks.": "decoder.layers.",
        "norm.": "decoder.final_norm.",
    }
    out = {}
    for key, value in state.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


class ExerciseGPT(nn.Module):
    """ptlearn's answer to the chapter's build-it exercise, with the exercise's interface:
    ``forward(input_ids, caches=None) -> logits [B, T, vocab]``, parts named as in
    :func:`my_gpt_state_dict`. ``caches`` is a list of one :class:`~ptlearn.attention.KVCache`
    per block, extended in place."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        c = self.config = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.max_len, c.d_model)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                c.d_model, c.n_heads, c.d_ff, c.dropout, c.activation, c.norm_eps, norm_first=True
            )
            for _ in range(c.n_layers)
        )
        self.norm = nn.LayerNorm(c.d_model, eps=c.norm_eps)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied
        self.load_state_dict(my_gpt_state_dict(GPT(config)))  # GPT-2's initialisation

    def forward(self, input_ids: Tensor, caches: list[KVCache] | None = None) -> Tensor:
        past = 0 if caches is None else len(caches[0])
        T = input_ids.size(1)
        x = self.tok_emb(input_ids) + self.pos_emb.weight[past : past + T]  # [B, T, C]
        for i, block in enumerate(self.blocks):
            x = block(x, causal=True, cache=None if caches is None else caches[i])[0]
        return self.lm_head(self.norm(x))  # [B, T, vocab]


MY_GPT_MISTAKES = {
    "not_tied": "the head is not tied: lm_head.weight must be the same Parameter as "
    "tok_emb.weight (self.lm_head.weight = self.tok_emb.weight), one [vocab, C] matrix used twice.",
    "no_positions": "positions are not added: without pos_emb the model cannot tell the order of "
    "the tokens. Add self.pos_emb.weight[:T] (or pos_emb(torch.arange(T))) to the token embeddings.",
    "no_causal": "no causal mask: every position sees the tokens after it, so predicting the next "
    "token becomes copying it. Call each block with causal=True.",
    "no_final_norm": "the final LayerNorm is missing: apply self.norm to the last block's output "
    "before the head (GPT-2 adds it after the last pre-norm block).",
    "scaled_embedding": "the token embeddings are multiplied by sqrt(d_model), as in the original "
    "Transformer; GPT-2 adds token and position embeddings unscaled.",
    "hidden_not_logits": "forward returned the hidden states [B, T, C]; apply the head: "
    "self.lm_head(...) gives logits [B, T, vocab].",
}


def gpt_variant(ref: GPT, ids: Tensor, positions=True, causal=True, final_norm=True, scale=1.0):
    """ptlearn's GPT (its weights) computed with a known mistake."""
    T = ids.size(1)
    x = ref.embeddings.token(ids) * scale
    if positions:
        x = x + ref.embeddings.position.weight[:T]
    for block in ref.decoder.layers:
        x = block(x, causal=causal)[0]
    if final_norm:
        x = ref.decoder.final_norm(x)
    return ref.lm_head(x)


def small_gpt_config(**overrides) -> GPTConfig:
    """The shape the GPT checkers test on: 2 layers, 4 heads, 32 wide, 40 tokens, 24 positions."""
    shape = dict(vocab_size=40, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=24)
    return GPTConfig(**{**shape, **overrides})


def build_my_gpt(cls, config: GPTConfig, seed: int = 0):
    """ptlearn's GPT (perturbed, so that LayerNorms are not the identity) and the learner's
    model with the same weights."""
    torch.manual_seed(seed)
    ref = GPT(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    name = getattr(cls, "__name__", "your class")
    mine = build(cls, config, what=f"{name}(config)")
    copy_weights(mine, my_gpt_state_dict(ref), "your model")
    ref.eval()
    mine.eval()
    return ref, mine


@exercise("build GPT")
def check_my_gpt(cls) -> str:
    """Check the learner's GPT class ``cls(config)``, ``forward(input_ids) -> logits [B, T, V]``,
    against :class:`ptlearn.GPT` with the same weights (copied in with
    :func:`my_gpt_state_dict`): the tied head, logits and gradients on two shapes. Names the
    mistakes in ``MY_GPT_MISTAKES``: head not tied, positions not added, no causal mask, no final
    LayerNorm, scaled embeddings, hidden states returned instead of logits.
    """
    m, g = MY_GPT_MISTAKES, torch.Generator().manual_seed(4)
    config = small_gpt_config()
    for B, T in [(2, 7), (3, config.max_len)]:
        ref, mine = build_my_gpt(cls, config, seed=T)
        head, emb = getattr(mine, "lm_head", None), getattr(mine, "tok_emb", None)
        if head is None or emb is None or head.weight is not emb.weight:
            raise Mistake(m["not_tied"])
        ids = torch.randint(config.vocab_size, (B, T), generator=g)
        got = first_output(call(mine, ids, inputs=f"input_ids {[B, T]}"), "your model's output")
        if tuple(got.shape) == (B, T, config.d_model) and config.d_model != config.vocab_size:
            raise Mistake(m["hidden_not_logits"])
        expected = ref(ids).logits
        expect_shape(got, expected.shape, "the logits", "They should be [B, T, vocab_size].")
        if not close(got, expected):
            with torch.no_grad():
                variants = {
                    m["no_positions"]: gpt_variant(ref, ids, positions=False),
                    m["no_causal"]: gpt_variant(ref, ids, causal=False),
                    m["no_final_norm"]: gpt_variant(ref, ids, final_norm=False),
                    m["scaled_embedding"]: gpt_variant(ref, ids, scale=math.sqrt(config.d_model)),
                }
            raise Mistake(
                diagnose(got.detach(), variants)
                or f"the logits differ from ptlearn's GPT with the same weights (input_ids {[B, T]})."
            )
        grad_out = torch.randn(expected.shape, generator=g)
        (got * grad_out).sum().backward()
        (expected * grad_out).sum().backward()
        names = {
            k: next(iter(gpt_state_dict_from_mine({k: p}))) for k, p in mine.named_parameters()
        }
        compare_gradients(mine, ref, {}, "your GPT", names)
    return (
        "your GPT gives ptlearn's logits and gradients with the same weights, and its head is tied "
        "to the token embedding."
    )


KV_MISTAKES = {
    "not_extended": "the cache is not extended: after a forward pass with caches, caches[i] must "
    "hold the keys and values of every token seen so far. Pass cache=caches[i] to block i.",
    "no_offset": "positions are not offset by the cache: the new token at position {past} got the "
    "position embedding of position 0. Add pos_emb.weight[past : past + T], past = len(caches[0]).",
    "cache_ignored": "the cached keys and values are not used: the new token's logits are what it "
    "would predict alone. Pass cache=caches[i] to block i, so that it attends to the past.",
    "whole_sequence": "my_generate feeds more than the newest token to the model after the first "
    "step: with a cache, each step feeds only the token just generated, ids[:, -1:].",
    "tokens_differ": "my_generate's tokens differ from greedy decoding without a cache: take the "
    "argmax of the last position's logits and feed it back with the same caches.",
}


class _CallLog(nn.Module):
    """Wrap a model and record the length of every input it is called with."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.lengths = model, []

    def forward(self, input_ids, *args, **kwargs):
        self.lengths.append(input_ids.size(1))
        return self.model(input_ids, *args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)


@exercise("KV cache")
def check_kv_cache(cls, generate_fn) -> str:
    """Check the learner's GPT with a KV cache and their ``generate_fn(model, input_ids,
    max_new_tokens) -> [B, T0 + max_new_tokens]`` (greedy, with one ``KVCache`` per block).

    ``model(input_ids, caches=caches)`` must extend each cache and offset the positions by the
    cached length: a prefix then one token must give the logits of the whole sequence. The
    generated tokens must equal ``ptlearn.GPT.generate(..., temperature=0)`` with the same weights,
    and after the prompt every step must feed exactly one token. Names the mistakes in
    ``KV_MISTAKES``: cache not extended or not used, positions not offset, the whole sequence fed
    again, tokens that differ.
    """
    m, g = KV_MISTAKES, torch.Generator().manual_seed(5)
    config = small_gpt_config()
    ref, mine = build_my_gpt(cls, config, seed=1)
    n_layers = config.n_layers
    ids = torch.randint(config.vocab_size, (2, 9), generator=g)
    full = ref(ids).logits  # [B, 9, V]
    with torch.no_grad():
        caches = [KVCache() for _ in range(n_layers)]
        first = first_output(
            call(mine, ids[:, :6], caches=caches, inputs="input_ids [2, 6] with empty caches"),
            "your model's output",
        )
        if not close(first, full[:, :6]):
            raise Mistake(
                "with empty caches the logits differ from a forward pass without caches: an empty "
                "cache must change nothing (past = 0)."
            )
        if any(len(c) != 6 for c in caches):
            raise Mistake(m["not_extended"])
        for past in (6, 7, 8):
            step = first_output(
                call(mine, ids[:, past : past + 1], caches=caches, inputs=f"one token at {past}"),
                "your model's output",
            )
            if close(step, full[:, past : past + 1]):
                continue
            alone = ref(ids[:, past : past + 1]).logits
            T = 1
            x = ref.embeddings.token(ids[:, past : past + 1]) + ref.embeddings.position.weight[:T]
            if close(step, alone):
                raise Mistake(m["cache_ignored"])
            shifted = _with_cache_no_offset(ref, ids[:, : past + 1], x)
            if close(step, shifted):
                raise Mistake(m["no_offset"].format(past=past))
            raise Mistake(
                f"the logits of the token at position {past}, computed with the cache, differ "
                "from the logits of the whole sequence computed without it."
            )
        if any(len(c) != 9 for c in caches):
            raise Mistake(m["not_extended"])

    prompt = torch.randint(config.vocab_size, (2, 4), generator=g)
    logged = _CallLog(mine)
    try:
        got = call(generate_fn, logged, prompt, 12, inputs="a prompt [2, 4], max_new_tokens=12")
    except Mistake:
        if any(n != 1 for n in logged.lengths[1:]):  # e.g. positions ran out: the cause is this
            raise Mistake(m["whole_sequence"]) from None
        raise
    got = expect_tensor(got, "my_generate's result")
    expected = ref.generate(prompt, 12, temperature=0)
    expect_shape(got, expected.shape, "my_generate's result", "It should be [B, T0 + new].")
    if any(n != 1 for n in logged.lengths[1:]):
        raise Mistake(m["whole_sequence"])
    if not torch.equal(got, expected):
        raise Mistake(m["tokens_differ"])
    return (
        "your cache extends by one position per step, positions are offset by its length, and "
        "your cached greedy decoding gives ptlearn's tokens, one token per step."
    )


def _with_cache_no_offset(ref: GPT, ids: Tensor, x_last: Tensor) -> Tensor:
    """The last token's logits with the past cached but its position embedding taken at 0."""
    T = ids.size(1)
    caches = [KVCache() for _ in ref.decoder.layers]
    h = ref.embeddings.token(ids[:, :-1]) + ref.embeddings.position.weight[: T - 1]
    for i, block in enumerate(ref.decoder.layers):
        h = block(h, causal=True, cache=caches[i])[0]
    h = x_last
    for i, block in enumerate(ref.decoder.layers):
        h = block(h, causal=True, cache=caches[i])[0]
    return ref.lm_head(ref.decoder.final_norm(h))


@torch.no_grad()
def reference_generate(model, input_ids: Tensor, max_new_tokens: int) -> Tensor:
    """ptlearn's answer to the KV-cache exercise: greedy decoding that feeds the prompt once, then
    one token per step, with one :class:`~ptlearn.attention.KVCache` per block."""
    caches = [KVCache() for _ in model.blocks]
    ids, step = input_ids, input_ids
    for _ in range(max_new_tokens):
        next_id = model(step, caches=caches)[:, -1].argmax(dim=-1, keepdim=True)  # [B, 1]
        ids, step = torch.cat([ids, next_id], dim=1), next_id
    return ids


@torch.no_grad()
def generate_without_cache(model, input_ids: Tensor, max_new_tokens: int) -> Tensor:
    """Greedy decoding that runs the whole prefix at every step (the baseline the cache beats)."""
    ids = input_ids
    for _ in range(max_new_tokens):
        ids = torch.cat([ids, model(ids)[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return ids


def time_generation(generate, model, input_ids, max_new_tokens, repeats: int = 2) -> float:
    """The fastest of ``repeats`` runs of ``generate(model, input_ids, max_new_tokens)``, in
    seconds (the fastest is the least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            generate(model, input_ids, max_new_tokens)
        if input_ids.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


# --- build it: the training loop -----------------------------------------------------------------


def reference_lr(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float):
    """The schedule of the exercise: ptlearn's :func:`~ptlearn.training.lr_at`."""
    return lr_at(
        step, lr=max_lr, warmup_steps=warmup_steps, max_steps=total_steps,
        min_lr_ratio=min_lr / max_lr,
    )  # fmt: skip


def reference_train(
    model, get_batch, steps, *, max_lr, warmup_steps, min_lr=0.0, weight_decay=0.1, clip=1.0,
    betas=(0.9, 0.99), log_every=0,
):  # fmt: skip
    """ptlearn's answer to the training-loop exercise: AdamW (weight decay on the matrices only),
    linear warm-up then cosine decay set before every step, gradients clipped to norm ``clip``.
    ``model(input_ids)`` returns logits (or an output with ``.logits``); ``get_batch()`` returns a
    window of ``T + 1`` tokens, ``[B, T + 1]`` (the ``labels`` of
    :func:`~ptlearn.data.random_lm_batch`): the model reads its first T tokens and every position
    is scored against the token after it. Returns the training loss of every step."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=max_lr, betas=betas)
    model.train()
    losses = []
    for step in range(steps):
        lr = reference_lr(step, max_lr, warmup_steps, steps, min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        window = get_batch()  # [B, T+1]
        out = model(window[:, :-1])
        logits = getattr(out, "logits", out)  # [B, T, V]
        loss = causal_lm_shift(logits, window)  # all T positions have a target
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}  lr {lr:.2e}  loss {losses[-1]:.4f}")
    return losses


LR_MISTAKES = {
    "no_warmup": "there is no warm-up: the first steps already use max_lr. Raise the rate "
    "linearly, max_lr * (step + 1) / warmup_steps, for step < warmup_steps.",
    "warmup_from_zero": "the warm-up starts at 0: step 0 gets lr 0, a wasted step. Use "
    "max_lr * (step + 1) / warmup_steps, which reaches max_lr at the last warm-up step.",
    "linear_decay": "the decay is linear; use half a cosine: "
    "min_lr + 0.5 * (1 + cos(pi * progress)) * (max_lr - min_lr).",
    "decay_to_zero": "the decay ends at 0 instead of min_lr.",
    "progress_from_zero": "the cosine's progress counts from step 0, not from the end of the "
    "warm-up: progress = (step - warmup_steps) / (total_steps - warmup_steps).",
}

TRAIN_MISTAKES = {
    "no_zero_grad": "the gradients are never reset: loss.backward() adds to .grad, so each step "
    "uses the sum of all gradients so far. Call optimizer.zero_grad() every step.",
    "no_clip": "the gradients are not clipped before the update: call "
    "torch.nn.utils.clip_grad_norm_(model.parameters(), clip) between loss.backward() and "
    "optimizer.step() (clipping after the step comes too late: the update has used them).",
    "constant_lr": "the learning rate never changes: set each param group's 'lr' to "
    "my_lr(step, ...) before every optimizer.step().",
    "decay_everything": "weight decay is applied to every parameter; decay only the matrices "
    "(p.dim() >= 2) and put biases and LayerNorm weights in a group with weight_decay=0.",
    "no_decay": "there is no weight decay: give the matrices weight_decay=weight_decay.",
    "betas": "AdamW's betas are not (0.9, 0.99): the exercise uses betas=(0.9, 0.99).",
    "no_shift": "the loss does not shift the labels: position t must predict token t + 1 "
    "(your my_lm_loss(logits, window), or the logits against window[:, 1:]).",
    "whole_window": "the model read the whole window: give it window[:, :-1], the first T tokens, "
    "and score its logits against the window (my_lm_loss(logits, window)): the last token is "
    "only a target.",
    "last_untrained": "the loss leaves the last position out: the window is one token longer "
    "than the model's input so that every position, the last one included, has a target. Score "
    "the logits of window[:, :-1] against the whole window: my_lm_loss(logits, window).",
}


def train_variant(model, batches, steps, kind, **kw):
    """A training loop with a known mistake ``kind`` (see ``TRAIN_MISTAKES``)."""
    params = list(model.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    wd = kw["weight_decay"]
    if kind == "decay_everything":
        groups = [{"params": params, "weight_decay": wd}]
    else:
        groups = [
            {"params": decay, "weight_decay": 0.0 if kind == "no_decay" else wd},
            {"params": no_decay, "weight_decay": 0.0},
        ]
    betas = (0.9, 0.999) if kind == "betas" else (0.9, 0.99)
    optimizer = torch.optim.AdamW(groups, lr=kw["max_lr"], betas=betas)
    batches = iter(batches)
    for step in range(steps):
        if kind != "constant_lr":
            lr = reference_lr(step, kw["max_lr"], kw["warmup_steps"], steps, kw["min_lr"])
            for group in optimizer.param_groups:
                group["lr"] = lr
        window = next(batches)  # [B, T+1]
        ids = window if kind == "whole_window" else window[:, :-1]
        logits = model(ids)
        if kind == "no_shift":
            loss = F.cross_entropy(logits.flatten(0, 1), ids.flatten())
        elif kind in ("whole_window", "last_untrained"):  # labels == inputs: T - 1 targets
            loss = causal_lm_shift(logits, ids)
        else:
            loss = causal_lm_shift(logits, window)
        if kind != "no_zero_grad":
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if kind != "no_clip":
            torch.nn.utils.clip_grad_norm_(params, kw["clip"])
        optimizer.step()


@exercise("training loop")
def check_training_loop(train_fn, lr_fn) -> str:
    """Check the learner's schedule ``lr_fn(step, max_lr, warmup_steps, total_steps, min_lr)`` and
    loop ``train_fn(model, get_batch, steps, max_lr=..., warmup_steps=..., min_lr=...,
    weight_decay=..., clip=...) -> list of losses`` against :func:`reference_train`.

    The schedule is compared value by value with linear warm-up + cosine decay; the loop runs 8
    steps on a small GPT from the same weights and the same batches as the reference, and the
    weights after it must agree. Names the mistakes in ``LR_MISTAKES`` and ``TRAIN_MISTAKES``:
    no or off-by-one warm-up, linear decay, wrong floor, no zero_grad, no clipping before the step, a
    constant learning rate, weight decay on every parameter or none, wrong betas, no shift, the
    whole window fed to the model, the last position left untrained.
    """
    m = LR_MISTAKES
    for max_lr, warmup, total, min_lr in [(1e-3, 10, 100, 1e-4), (6e-4, 5, 40, 0.0)]:
        for step in range(total):
            got = call(lr_fn, step, max_lr, warmup, total, min_lr, inputs=f"step={step}")
            try:
                got = float(got)
            except (TypeError, ValueError):
                raise Mistake(f"my_lr returned {type(got).__name__}; return a float.") from None
            expected = reference_lr(step, max_lr, warmup, total, min_lr)
            if math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-12):
                continue
            progress = (step - warmup) / max(1, total - warmup)
            if step < warmup:
                if math.isclose(got, max_lr, rel_tol=1e-6):
                    raise Mistake(m["no_warmup"])
                if math.isclose(got, max_lr * step / warmup, rel_tol=1e-6, abs_tol=1e-12):
                    raise Mistake(m["warmup_from_zero"])
            else:
                linear = min_lr + (1 - progress) * (max_lr - min_lr)
                if math.isclose(got, linear, rel_tol=1e-6):
                    raise Mistake(m["linear_decay"])
                to_zero = 0.5 * (1 + math.cos(math.pi * progress)) * max_lr
                if min_lr > 0 and math.isclose(got, to_zero, rel_tol=1e-6):
                    raise Mistake(m["decay_to_zero"])
                from_zero = min_lr + 0.5 * (1 + math.cos(math.pi * step / total)) * (
                    max_lr - min_lr
                )
                if math.isclose(got, from_zero, rel_tol=1e-6):
                    raise Mistake(m["progress_from_zero"])
            raise Mistake(
                f"my_lr(step={step}, max_lr={max_lr}, warmup_steps={warmup}, total_steps={total}, "
                f"min_lr={min_lr}) = {got:.6g}, expected {expected:.6g}."
            )

    config = small_gpt_config()
    torch.manual_seed(6)
    start = ExerciseGPT(config).state_dict()
    g = torch.Generator().manual_seed(6)
    batches = [torch.randint(config.vocab_size, (4, 13), generator=g) for _ in range(8)]  # windows
    kw = dict(max_lr=3e-2, warmup_steps=3, min_lr=1e-3, weight_decay=0.5, clip=0.05)

    def fresh():
        model = ExerciseGPT(config)
        model.load_state_dict(start)
        return model

    mine = fresh()
    queue = iter(batches)
    inputs = "a small GPT, 8 steps, get_batch() -> windows [4, 13]"
    losses = call(train_fn, mine, lambda: next(queue), 8, inputs=inputs, **kw)
    reference = fresh()
    queue_ref = iter(batches)
    ref_losses = reference_train(reference, lambda: next(queue_ref), 8, **kw)
    try:
        losses = [float(x) for x in losses]
    except TypeError:
        raise Mistake("my_train should return the list of the losses of every step.") from None
    if len(losses) != 8:
        raise Mistake(f"my_train returned {len(losses)} losses for 8 steps; return one per step.")

    def same(a, b):
        return all(close(x, y, atol=1e-5, rtol=1e-4) for x, y in zip(a.values(), b.values()))

    if not same(mine.state_dict(), reference.state_dict()):
        for message, kind in ((TRAIN_MISTAKES[k], k) for k in TRAIN_MISTAKES):
            variant = fresh()
            train_variant(variant, batches, 8, kind, **kw)
            if same(mine.state_dict(), variant.state_dict()):
                raise Mistake(message)
        raise Mistake(
            "after 8 steps your model's weights differ from the reference loop's (same start, same "
            f"batches); your losses {[round(x, 3) for x in losses[:4]]}..., the reference's "
            f"{[round(x, 3) for x in ref_losses[:4]]}..."
        )
    if not all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(losses, ref_losses)):
        raise Mistake("the weights are right but the losses you return are not the step losses.")
    return (
        "your schedule is warm-up + cosine, and 8 steps of your loop (AdamW, weight decay on the "
        "matrices, clipping) give the reference loop's weights."
    )
