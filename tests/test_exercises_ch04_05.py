"""The chapter 04 (GPT) and 05 (BERT) exercise checkers: the reference passes, each known mistake
gets its own message, and an unfinished stub is reported without raising."""

import torch
import torch.nn.functional as F

from ptlearn.exercises.ch04 import (
    CAUSAL_LM_MISTAKES,
    GREEDY_MISTAKES,
    TOP_K_MISTAKES,
    check_causal_lm_loss,
    check_greedy_decode,
    check_top_k,
)
from ptlearn.exercises.ch05 import (
    MLM_MISTAKES,
    PAIR_MISTAKES,
    check_mlm_masking,
    check_sentence_pair,
)
from ptlearn.models.gpt import filter_logits
from ptlearn.objectives import mask_tokens, pair_example


def stub(*args, **kwargs):
    raise NotImplementedError


def assert_fails_with(result, message: str) -> None:
    assert not result.passed
    assert message.split("{")[0] in result.message, result.message


# --- chapter 04: causal LM loss ----------------------------------------------------------------


def lm_loss(logits, labels, **kwargs):
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, **kwargs)


def test_causal_lm_loss_passes_a_written_out_version():
    def written_out(logits, labels):  # labels [B, T] or [B, T + 1]
        targets = labels[:, 1:]  # [B, T-1] or [B, T]
        logp = logits[:, : targets.size(1)].log_softmax(-1)
        keep = targets != -100
        picked = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]  # [B, T-1]
        return -(picked * keep).sum() / keep.sum()

    assert check_causal_lm_loss(written_out).passed


def test_causal_lm_loss_names_mistakes():
    m = CAUSAL_LM_MISTAKES
    cases = {
        "no_shift": lambda lo, la: lm_loss(lo, la),
        "wrong_direction": lambda lo, la: lm_loss(lo[:, 1:], la[:, :-1]),
        "sum": lambda lo, la: lm_loss(lo[:, :-1], la[:, 1:], reduction="sum"),
        "probs": lambda lo, la: lm_loss(lo[:, :-1].softmax(-1), la[:, 1:]),
        "not_scalar": lambda lo, la: lm_loss(lo[:, :-1], la[:, 1:], reduction="none"),
        "ignored_counted": lambda lo, la: lm_loss(lo[:, :-1], la[:, 1:].clamp(min=0)),
    }
    for key, fn in cases.items():
        assert_fails_with(check_causal_lm_loss(fn), m[key])

    def mean_over_all(logits, labels):
        logp = logits[:, :-1].log_softmax(-1)
        targets = labels[:, 1:]
        picked = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        return -(picked * (targets != -100)).mean()

    assert_fails_with(check_causal_lm_loss(mean_over_all), m["ignored_in_mean"])


def test_causal_lm_loss_names_labels_one_token_longer():
    """The HF-only answer (always drop the last position) crashes on a window of T + 1 labels,
    and the one that cuts the labels to T leaves the last position untrained: both are named."""
    m = CAUSAL_LM_MISTAKES

    def hf_only(logits, labels):
        return lm_loss(logits[:, :-1], labels[:, 1:])

    def cut_labels(logits, labels):
        labels = labels[:, : logits.size(1)]
        return lm_loss(logits[:, :-1], labels[:, 1:])

    assert_fails_with(check_causal_lm_loss(hf_only), m["long_labels"])
    assert_fails_with(check_causal_lm_loss(cut_labels), m["long_labels"])


def test_unfinished_stub_is_reported_not_raised():
    for check in (check_causal_lm_loss, check_top_k, check_greedy_decode, check_mlm_masking):
        result = check(stub)
        assert not result.passed and "not implemented yet" in result.message
    assert "not implemented yet" in check_sentence_pair(stub).message


# --- chapter 04: top-k -------------------------------------------------------------------------


def test_top_k_passes_sorting_in_place_and_large_negative_fill():
    def by_sorting(logits, k):  # keep the k largest of each row, found by sorting
        kth = logits.sort(dim=-1, descending=True).values[:, k - 1 : k]
        return torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))

    assert check_top_k(by_sorting).passed

    def in_place(logits, k):  # the checker passes copies, so editing them is harmless
        return logits.masked_fill_(logits < logits.topk(k, dim=-1).values[:, -1:], float("-inf"))

    assert check_top_k(in_place).passed

    def big_negative(logits, k):
        kth = logits.topk(k, dim=-1).values[:, -1:]
        return logits.masked_fill(logits < kth, -1e9)

    assert check_top_k(big_negative).passed


def test_top_k_names_mistakes():
    m = TOP_K_MISTAKES

    def kth(logits, k):
        return logits.topk(k, dim=-1).values[:, -1:]

    def probs(logits, k):
        return filter_logits(logits, top_k=k).softmax(-1)

    def zero_fill(logits, k):
        return logits.masked_fill(logits < kth(logits, k), 0.0)

    def smallest(logits, k):
        low = logits.topk(k, dim=-1, largest=False).values[:, -1:]
        return logits.masked_fill(logits > low, float("-inf"))

    def off_by_one(logits, k):
        return logits.masked_fill(logits <= kth(logits, k), float("-inf"))

    def whole_batch(logits, k):
        return logits.masked_fill(logits < logits.flatten().topk(k).values[-1], float("-inf"))

    def shifted(logits, k):
        return filter_logits(logits, top_k=k) - logits.max(-1, keepdim=True).values

    cases = {
        "probs": probs,
        "zero_fill": zero_fill,
        "smallest": smallest,
        "count": off_by_one,
        "whole_batch": whole_batch,
        "changed_kept": shifted,
    }
    for key, fn in cases.items():
        assert_fails_with(check_top_k(fn), m[key])


# --- chapter 04: greedy decoding ---------------------------------------------------------------


def greedy(model, ids, n, position=-1, feedback=True, sample=False, only_new=False):
    out = ids
    for _ in range(n):
        logits = model(out if feedback else ids).logits[:, position]
        if sample:
            nxt = torch.multinomial(logits.softmax(-1), 1)
        else:
            nxt = logits.argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], dim=1)
    return out[:, ids.size(1) :] if only_new else out


def test_greedy_passes_loop_and_generate():
    assert check_greedy_decode(greedy).passed
    assert check_greedy_decode(lambda model, ids, n: model.generate(ids, n, temperature=0)).passed


def test_greedy_names_mistakes():
    m = GREEDY_MISTAKES
    cases = {
        "only_new": lambda model, ids, n: greedy(model, ids, n, only_new=True),
        "random": lambda model, ids, n: greedy(model, ids, n, sample=True),
        "first_position": lambda model, ids, n: greedy(model, ids, n, position=0),
        "no_feedback": lambda model, ids, n: greedy(model, ids, n, feedback=False),
    }
    for key, fn in cases.items():
        assert_fails_with(check_greedy_decode(fn), m[key])


def test_greedy_check_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_greedy_decode(greedy)
    assert torch.equal(torch.rand(3), expected)


# --- chapter 05: MLM masking -------------------------------------------------------------------


def reference_masking(input_ids, mask_id, vocab_size, special_ids, mask_prob=0.15):
    return mask_tokens(input_ids, mask_id, vocab_size, special_ids, mask_prob)


def hf_style(input_ids, mask_id, vocab_size, special_ids, mask_prob=0.15):
    """HF DataCollatorForLanguageModeling's three Bernoulli draws (random ids: ordinary only)."""
    special = torch.isin(input_ids, torch.tensor(sorted(special_ids)))
    chosen = torch.bernoulli(torch.full(input_ids.shape, mask_prob)).bool() & ~special
    labels = torch.where(chosen, input_ids, -100)
    out = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(out.shape, 0.8)).bool() & chosen
    out[to_mask] = mask_id
    to_random = torch.bernoulli(torch.full(out.shape, 0.5)).bool() & chosen & ~to_mask
    out[to_random] = torch.randint(5, vocab_size, out.shape)[to_random]
    return out, labels


def masking_with(**changes):
    """A masking function with one rule broken (see the keys below)."""

    def fn(input_ids, mask_id, vocab_size, special_ids, mask_prob=0.15):
        special = torch.isin(input_ids, torch.tensor(sorted(special_ids)))
        p = changes.get("p", mask_prob)
        chosen = torch.rand(input_ids.shape) < p
        if not changes.get("specials"):
            chosen &= ~special
        action = torch.rand(input_ids.shape)
        low = changes.get("random_low", 5)
        random_ids = torch.randint(low, vocab_size, input_ids.shape)
        split = changes.get("split", (0.8, 0.9))
        out = torch.where(chosen & (action < split[0]), mask_id, input_ids)
        out = torch.where(chosen & (action >= split[0]) & (action < split[1]), random_ids, out)
        labels = torch.where(chosen, input_ids, -100)
        if changes.get("labels_everywhere"):
            labels = input_ids.clone()
        if changes.get("labels_masked"):
            labels = torch.where(chosen, out, -100)
        if changes.get("only_masks"):
            labels = torch.where(out == mask_id, input_ids, -100)
        return out, labels

    return fn


def test_mlm_masking_passes_reference_and_hf_style():
    assert check_mlm_masking(reference_masking).passed
    assert check_mlm_masking(hf_style).passed


def test_mlm_masking_names_mistakes():
    m = MLM_MISTAKES
    cases = {
        "fraction": masking_with(p=0.25),
        "specials": masking_with(specials=True),
        "labels_everywhere": masking_with(labels_everywhere=True),
        "labels_masked": masking_with(labels_masked=True),
        "split": masking_with(split=(0.6, 0.8)),
        "special_replacement": masking_with(random_low=0),
        "not_pair": lambda input_ids, *args, **kwargs: input_ids,
    }
    for key, fn in cases.items():
        assert_fails_with(check_mlm_masking(fn), m[key])
    assert_fails_with(check_mlm_masking(masking_with(only_masks=True)), m["only_masks"])


def test_mlm_masking_ignores_mask_prob_and_fixed_seed():
    def ignores_prob(input_ids, mask_id, vocab_size, special_ids, mask_prob=0.15):
        return reference_masking(input_ids, mask_id, vocab_size, special_ids)

    result = check_mlm_masking(ignores_prob)
    assert not result.passed and "mask_prob=0.3" in result.message

    def seeded(input_ids, mask_id, vocab_size, special_ids, mask_prob=0.15):
        g = torch.Generator().manual_seed(0)
        return mask_tokens(input_ids, mask_id, vocab_size, special_ids, mask_prob, generator=g)

    assert_fails_with(check_mlm_masking(seeded), MLM_MISTAKES["same_every_call"])


# --- chapter 05: sentence pairs ----------------------------------------------------------------


def pair_with(mistake=None):
    def fn(a, b, cls_id, sep_id):
        ids = [cls_id, *a, sep_id, *b, sep_id]
        types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        if mistake == "no_final_sep":
            ids, types = ids[:-1], types[:-1]
        if mistake == "first_sep":
            types[len(a) + 1] = 1
        if mistake == "last_sep":
            types[-1] = 0
        if mistake == "segment_values":
            types = [t + 1 for t in types]
        if mistake == "order":
            ids = [cls_id, *b, sep_id, *a, sep_id]
        if mistake == "no_cls":
            ids = [sep_id, *ids[1:]]
        return ids, types

    return fn


def test_sentence_pair_passes_reference_and_tensors():
    assert check_sentence_pair(pair_with()).passed

    def as_tensors(a, b, cls_id, sep_id):
        ids, types = pair_example(a, b, cls_id, sep_id, max_len=100)
        return torch.tensor(ids), torch.tensor(types)

    assert check_sentence_pair(as_tensors).passed


def test_sentence_pair_names_mistakes():
    m = PAIR_MISTAKES
    cases = {
        "length": "no_final_sep",
        "first_sep": "first_sep",
        "last_sep": "last_sep",
        "segment_values": "segment_values",
        "order": "order",
        "no_cls": "no_cls",
    }
    for key, mistake in cases.items():
        assert_fails_with(check_sentence_pair(pair_with(mistake)), m[key])
