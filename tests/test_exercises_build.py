"""Build-it exercises (chapters 01, 02, 04): the checkers copy ptlearn's weights into the learner's
module and compare. Each test writes the learner's module independently of ptlearn's code (einsum,
unflatten, torch.where, pos_emb(arange)), then makes one typical mistake at a time and asserts the
exact verdict the checker gives."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ptlearn import GPT
from ptlearn.attention import KVCache, MultiHeadAttention
from ptlearn.exercises import ch04
from ptlearn.exercises.ch01 import MHA_MISTAKES, check_multi_head_attention
from ptlearn.exercises.ch02 import (
    BLOCK_MISTAKES,
    DECODER_MASK_MISTAKES,
    check_decoder_mask,
    check_transformer_block,
)
from ptlearn.exercises.ch04 import (
    KV_MISTAKES,
    LR_MISTAKES,
    MY_GPT_MISTAKES,
    TRAIN_MISTAKES,
    check_kv_cache,
    check_my_gpt,
    check_training_loop,
)
from ptlearn.exercises.framework import (
    CheckResult,
    hint_markdown,
    solution_markdown,
    use_learner,
)
from ptlearn.layers import FeedForward, TransformerBlock


def fails_with(result: CheckResult, message: str) -> bool:
    return isinstance(result, CheckResult) and not result.passed and result.message == message


# --- the conventions -------------------------------------------------------------------------


def test_use_learner_continues_with_the_learners_code_only_where_it_passed(capsys):
    mine, reference = object(), GPT
    assert use_learner(CheckResult("x", True, "ok"), mine, reference, name="MyGPT") is mine
    assert "Using your MyGPT" in capsys.readouterr().out
    assert use_learner(CheckResult("x", False, "no"), mine, reference, name="MyGPT") is GPT
    out = capsys.readouterr().out
    assert "did not pass" in out and "ptlearn.models.gpt.GPT" in out
    assert use_learner(None, mine, reference, name="MyGPT") is GPT  # check cell never ran


def test_hint_and_solution_markdown_are_collapsed_details_blocks():
    hint = hint_markdown(2, "Use `torch.tril`.")
    assert hint.startswith("<details><summary>Hint 2</summary>") and hint.endswith("</details>")
    solution = solution_markdown("def f_solution():\n    return 1", note="Why it works.")
    assert solution.startswith("<details><summary>Solution</summary>")
    assert "```python\ndef f_solution():\n    return 1\n```" in solution
    assert solution.index("Why it works.") > solution.index("```python")


# --- chapter 01: multi-head attention ---------------------------------------------------------


def learner_mha(scale="d_head", split=True, merge=True, out=True, context=True, mask="before"):
    class LearnerMHA(nn.Module):
        def __init__(self, d_model, n_heads):
            super().__init__()
            self.h, self.d = n_heads, d_model // n_heads
            self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
            self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

        def forward(self, x, context_=None, mask_=None, **kw):
            ctx, msk = kw.get("context", context_), kw.get("mask", mask_)
            B, T, C = x.shape
            src = ctx if (ctx is not None and context) else x

            def heads(t):
                if split:
                    return t.unflatten(-1, (self.h, self.d)).permute(0, 2, 1, 3)
                return t.reshape(B, self.h, t.shape[1], self.d)

            q, k, v = heads(self.q_proj(x)), heads(self.k_proj(src)), heads(self.v_proj(src))
            s = torch.einsum("bhqd,bhkd->bhqk", q, k)
            s = s / {"d_head": self.d**0.5, "none": 1.0, "d_model": C**0.5}[scale]
            if msk is not None and mask == "before":
                s = torch.where(msk, s, torch.tensor(float("-inf")))
            w = s.softmax(-1)
            if msk is not None and mask == "after":
                w = w * msk
            y = torch.einsum("bhqk,bhkd->bhqd", w, v)
            y = y.permute(0, 2, 1, 3).flatten(2) if merge else y.reshape(B, T, C)
            return self.out_proj(y) if out else y

    return LearnerMHA


def test_mha_checker_passes_an_independent_module():
    assert check_multi_head_attention(learner_mha()).passed


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(scale="none"), "unscaled"),
        (dict(scale="d_model"), "scaled_by_d_model"),
        (dict(split=False), "wrong_split"),
        (dict(merge=False), "wrong_merge"),
        (dict(out=False), "no_out_proj"),
        (dict(context=False), "context_ignored"),
        (dict(mask="ignored"), "mask_ignored"),
        (dict(mask="after"), "mask_after_softmax"),
    ],
)
def test_mha_checker_names_the_mistake(kwargs, key):
    assert fails_with(check_multi_head_attention(learner_mha(**kwargs)), MHA_MISTAKES[key])


def test_mha_checker_reports_misnamed_parameters_and_stubs():
    class Misnamed(nn.Module):
        def __init__(self, d_model, n_heads):
            super().__init__()
            self.qkv = nn.Linear(d_model, 3 * d_model)

        def forward(self, x, context=None, mask=None):
            return x

    result = check_multi_head_attention(Misnamed)
    assert not result.passed and "not named like ptlearn's" in result.message
    assert "q_proj.weight" in result.message

    class Stub(nn.Module):
        def __init__(self, d_model, n_heads):
            super().__init__()
            for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
                setattr(self, name, nn.Linear(d_model, d_model))

        def forward(self, x, context=None, mask=None):
            raise NotImplementedError

    assert "not implemented yet" in check_multi_head_attention(Stub).message


def test_mha_checker_catches_a_detached_computation():
    class Detached(learner_mha()):
        def forward(self, x, context=None, mask=None):
            return super().forward(x.detach(), context=context, mask=mask)

    result = check_multi_head_attention(Detached)
    assert not result.passed and "gradient with respect to x" in result.message


# --- chapter 02: the Transformer block and the decoder mask -----------------------------------


def learner_block(kind=None):
    class LearnerBlock(nn.Module):
        def __init__(self, d_model, n_heads, d_ff, norm_first=True):
            super().__init__()
            self.norm_first = norm_first
            self.attn = MultiHeadAttention(d_model, n_heads)
            self.norm_attn = nn.LayerNorm(d_model)
            self.ffn = FeedForward(d_model, d_ff)
            self.norm_ffn = nn.LayerNorm(d_model)

        def forward(self, x, mask=None):
            pre = self.norm_first != (kind == "swapped")

            def attn(h):
                return self.attn(h, mask=None if kind == "mask_ignored" else mask)[0]

            if pre:
                if kind == "residual_of_normed":
                    h = self.norm_attn(x)
                    x = h + attn(h)
                    h = self.norm_ffn(x)
                    return h + self.ffn(h)
                if kind == "no_residual":
                    return self.ffn(self.norm_ffn(attn(self.norm_attn(x))))
                x = x + attn(self.norm_attn(x))
                h = self.ffn(self.norm_ffn(x))
                return h if kind == "no_ffn_residual" else x + h
            x = self.norm_attn(x + attn(x))
            return self.norm_ffn(x + self.ffn(x))

    return LearnerBlock


def test_block_checker_passes_an_independent_block_pre_and_post_norm():
    assert check_transformer_block(learner_block()).passed


@pytest.mark.parametrize(
    "kind, key",
    [
        ("swapped", "norm_order_pre"),
        ("residual_of_normed", "residual_of_normed"),
        ("no_residual", "no_residual"),
        ("no_ffn_residual", "no_ffn_residual"),
        ("mask_ignored", "mask_ignored"),
    ],
)
def test_block_checker_names_the_mistake(kind, key):
    assert fails_with(check_transformer_block(learner_block(kind)), BLOCK_MISTAKES[key])


def test_block_checker_names_post_norm_mistakes():
    class PostOnlyWrong(learner_block()):
        def forward(self, x, mask=None):
            if self.norm_first:
                return super().forward(x, mask)
            x = x + self.norm_attn(self.attn(x, mask=mask)[0])  # the sums are not normalised
            return x + self.norm_ffn(self.ffn(x))

    result = check_transformer_block(PostOnlyWrong)
    assert fails_with(result, BLOCK_MISTAKES["norm_inside_post"])


def allowed(am):
    T = am.shape[1]
    keys = am.bool().unsqueeze(1).unsqueeze(1)  # [B, 1, 1, T]
    past = torch.arange(T)[:, None] >= torch.arange(T)[None, :]  # [T, T]
    return keys, past


def test_decoder_mask_checker_passes_keys_only_and_keys_and_queries():
    def keys_only(am):
        keys, past = allowed(am)
        return keys & past

    def keys_and_queries(am):
        keys, past = allowed(am)
        return keys & past & am.bool()[:, None, :, None]

    assert check_decoder_mask(keys_only).passed
    assert check_decoder_mask(keys_and_queries).passed


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda keys, past, am: past.expand(am.shape[0], 1, *past.shape), "causal_only"),
        (lambda keys, past, am: keys.expand(-1, 1, am.shape[1], -1), "padding_only"),
        (lambda keys, past, am: keys | past, "or"),
        (lambda keys, past, am: am.bool()[:, None, :, None] & past, "queries_padded"),
        (lambda keys, past, am: keys & past.T, "transposed"),
        (lambda keys, past, am: ~(keys & past), "inverted"),
    ],
)
def test_decoder_mask_checker_names_the_mistake(make, key):
    def fn(am):
        keys, past = allowed(am)
        return make(keys, past, am)

    assert fails_with(check_decoder_mask(fn), DECODER_MASK_MISTAKES[key])


def test_decoder_mask_checker_wants_bool():
    def as_float(am):
        keys, past = allowed(am)
        return (keys & past).float()

    assert "dtype torch.float32" in check_decoder_mask(as_float).message


# --- chapter 04: the whole GPT, the KV cache, the training loop -------------------------------


def learner_gpt(kind=None):
    class LearnerGPT(nn.Module):
        def __init__(self, config):
            super().__init__()
            c = self.config = config
            self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
            self.pos_emb = nn.Embedding(c.max_len, c.d_model)
            self.blocks = nn.ModuleList(
                TransformerBlock(
                    c.d_model, c.n_heads, c.d_ff, activation=c.activation, norm_eps=c.norm_eps
                )
                for _ in range(c.n_layers)
            )
            self.norm = nn.LayerNorm(c.d_model, eps=c.norm_eps)
            self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
            if kind != "untied":
                self.lm_head.weight = self.tok_emb.weight

        def forward(self, input_ids, caches=None):
            T = input_ids.shape[1]
            past = 0 if not caches or caches[0].k is None else caches[0].k.shape[2]
            if kind == "no_offset":
                past = 0
            x = self.tok_emb(input_ids)
            if kind == "scaled":
                x = x * math.sqrt(self.config.d_model)
            if kind != "no_positions":
                x = x + self.pos_emb(torch.arange(past, past + T))
            for i, block in enumerate(self.blocks):
                use = caches is not None and kind != "no_cache"
                x = block(x, causal=kind != "no_causal", cache=caches[i] if use else None)[0]
            if kind == "hidden":
                return self.norm(x)
            return self.lm_head(x if kind == "no_final_norm" else self.norm(x))

    return LearnerGPT


@torch.no_grad()
def learner_generate(model, input_ids, max_new_tokens, whole=False):
    caches = [KVCache() for _ in model.blocks]
    ids, step = input_ids, input_ids
    for _ in range(max_new_tokens):
        nxt = model(step, caches=caches)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
        step = ids if whole else nxt
    return ids


def test_gpt_checker_passes_an_independent_gpt_and_its_weights_round_trip():
    assert check_my_gpt(learner_gpt()).passed
    config = ch04.small_gpt_config()
    ref, mine = ch04.build_my_gpt(learner_gpt(), config)
    back = GPT(config)
    back.load_state_dict(ch04.gpt_state_dict_from_mine(mine.state_dict()))
    ids = torch.randint(config.vocab_size, (2, 5))
    torch.testing.assert_close(back.eval()(ids).logits, ref(ids).logits)


@pytest.mark.parametrize(
    "kind, key",
    [
        ("untied", "not_tied"),
        ("no_positions", "no_positions"),
        ("no_causal", "no_causal"),
        ("no_final_norm", "no_final_norm"),
        ("scaled", "scaled_embedding"),
        ("hidden", "hidden_not_logits"),
    ],
)
def test_gpt_checker_names_the_mistake(kind, key):
    assert fails_with(check_my_gpt(learner_gpt(kind)), MY_GPT_MISTAKES[key])


def test_exercise_gpt_fallback_passes_the_gpt_and_cache_checkers():
    assert check_my_gpt(ch04.ExerciseGPT).passed
    assert check_kv_cache(ch04.ExerciseGPT, learner_generate).passed


def test_kv_cache_checker_passes_an_independent_cache():
    assert check_kv_cache(learner_gpt(), learner_generate).passed


def test_kv_cache_checker_names_the_mistake():
    result = check_kv_cache(learner_gpt("no_offset"), learner_generate)
    assert fails_with(result, KV_MISTAKES["no_offset"].format(past=6))
    assert fails_with(
        check_kv_cache(learner_gpt("no_cache"), learner_generate), KV_MISTAKES["not_extended"]
    )

    def whole(model, ids, n):
        return learner_generate(model, ids, n, whole=True)

    assert fails_with(check_kv_cache(learner_gpt(), whole), KV_MISTAKES["whole_sequence"])

    def sampled(model, ids, n):  # samples instead of taking the argmax
        caches, g = [KVCache() for _ in model.blocks], torch.Generator().manual_seed(0)
        out, step = ids, ids
        with torch.no_grad():
            for _ in range(n):
                probs = model(step, caches=caches)[:, -1].softmax(-1)
                nxt = torch.multinomial(probs, 1, generator=g)
                out, step = torch.cat([out, nxt], 1), nxt
        return out

    assert fails_with(check_kv_cache(learner_gpt(), sampled), KV_MISTAKES["tokens_differ"])


def learner_lr(step, max_lr, warmup_steps, total_steps, min_lr=0.0, kind=None):
    if step < warmup_steps:
        if kind == "no_warmup":
            return max_lr
        if kind == "warmup_from_zero":
            return max_lr * step / warmup_steps
        return max_lr * (step + 1) / warmup_steps
    p = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if kind == "linear_decay":
        return min_lr + (1 - p) * (max_lr - min_lr)
    if kind == "decay_to_zero":
        min_lr = 0.0
    if kind == "progress_from_zero":
        p = step / total_steps
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * p)) / 2


def learner_train(kind=None):
    def train(
        model, get_batch, steps, max_lr, warmup_steps, min_lr=0.0, weight_decay=0.1, clip=1.0
    ):
        matrices = [p for p in model.parameters() if p.ndim >= 2]
        others = [p for p in model.parameters() if p.ndim < 2]
        groups = [
            dict(params=matrices, weight_decay=weight_decay),
            dict(params=others, weight_decay=0.0),
        ]
        if kind == "decay_everything":
            groups = [dict(params=list(model.parameters()), weight_decay=weight_decay)]
        betas = (0.9, 0.999) if kind == "betas" else (0.9, 0.99)
        opt = torch.optim.AdamW(groups, lr=max_lr, betas=betas)
        losses = []
        for s in range(steps):
            if kind != "constant_lr":
                for group in opt.param_groups:
                    group["lr"] = learner_lr(s, max_lr, warmup_steps, steps, min_lr)
            window = get_batch()  # [B, T + 1]
            ids = window if kind == "whole_window" else window[:, :-1]
            logits = model(ids)
            V = logits.size(-1)
            if kind == "no_shift":
                loss = F.cross_entropy(logits.reshape(-1, V), ids.reshape(-1))
            elif kind in ("whole_window", "last_untrained"):  # HF's labels == inputs
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
            else:  # nanoGPT: inputs window[:, :-1], targets window[:, 1:]
                loss = F.cross_entropy(logits.reshape(-1, V), window[:, 1:].reshape(-1))
            if kind != "no_zero_grad":
                opt.zero_grad()
            loss.backward()
            if kind not in ("no_clip", "clip_after_step"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            if kind == "clip_after_step":
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            losses.append(loss.item())
        return losses

    return train


def test_training_loop_checker_passes_an_independent_loop():
    assert check_training_loop(learner_train(), learner_lr).passed


@pytest.mark.parametrize(
    "kind", ["no_warmup", "warmup_from_zero", "linear_decay", "decay_to_zero", "progress_from_zero"]
)
def test_training_loop_checker_names_schedule_mistakes(kind):
    def lr(*args):
        return learner_lr(*args, kind=kind)

    assert fails_with(check_training_loop(learner_train(), lr), LR_MISTAKES[kind])


@pytest.mark.parametrize(
    "kind",
    [
        "no_zero_grad",
        "no_clip",
        "constant_lr",
        "decay_everything",
        "betas",
        "no_shift",
        "whole_window",
        "last_untrained",
    ],  # fmt: skip
)
def test_training_loop_checker_names_loop_mistakes(kind):
    result = check_training_loop(learner_train(kind), learner_lr)
    assert fails_with(result, TRAIN_MISTAKES[kind])


def test_training_loop_checker_counts_clipping_after_the_step_as_no_clipping():
    result = check_training_loop(learner_train("clip_after_step"), learner_lr)
    assert fails_with(result, TRAIN_MISTAKES["no_clip"])
