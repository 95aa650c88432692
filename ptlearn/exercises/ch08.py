"""Exercise checkers for chapter 08: pretraining objectives (ELECTRA's replaced-token labels, T5's span corruption)."""

from __future__ import annotations

import torch

from .framework import Mistake, Tensor, call, describe, exercise, expect_shape, expect_tensor

RTD_MISTAKES = {
    "labels_from_chosen": "every chosen position is labelled 1, but where the generator sampled "
    "the original token nothing was replaced: ELECTRA labels such a token 0, 'original' (Clark et "
    "al. 2020, section 2). Compare the corrupted ids with the original ids instead of using chosen.",
    "labels_from_samples": "the labels compare sampled_ids with the original everywhere, but the "
    "samples are only used at the chosen positions: compare the corrupted ids (what the "
    "discriminator reads) with the original ids.",
    "inverted": "the labels are inverted: 1 must mean 'replaced' and 0 'original'.",
    "padding": "padding positions (attention_mask 0) must get the label -100, which the loss "
    "ignores; yours get {value}.",
    "replaced_everywhere": "tokens outside the chosen positions changed: only the chosen positions "
    "take the generator's sample. Use torch.where(chosen, sampled_ids, original_ids).",
    "not_replaced": "the corrupted ids equal the original ids: put the generator's samples at the "
    "chosen positions.",
}


def rtd_case(seed: int, B: int = 3, T: int = 10, V: int = 50):
    """Original ids with right padding (id 0), ~40% chosen positions (never padding), and samples
    that equal the original at every other chosen position (the generator guessed right)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([T, T - 3, T - 5])[:B]
    attention_mask = (torch.arange(T) < lengths[:, None]).long()  # [B, T]
    original = torch.randint(5, V, (B, T), generator=g) * attention_mask
    chosen = (torch.rand(B, T, generator=g) < 0.4) & attention_mask.bool()
    sampled = (original + torch.randint(1, V - 5, (B, T), generator=g) - 5) % (V - 5) + 5
    lucky = chosen & (torch.arange(T) % 2 == 0)  # some chosen samples equal the original
    sampled = torch.where(lucky, original, sampled)
    return original, chosen, sampled, attention_mask


def as_pair(result, what: str) -> tuple[Tensor, Tensor]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Mistake(f"return a pair {what}, got {type(result).__name__}.")
    return result


@exercise("replaced-token detection labels")
def check_rtd_labels(fn) -> str:
    """Check ``fn(original_ids, chosen, sampled_ids, attention_mask) -> (corrupted_ids, labels)``,
    ELECTRA's discriminator input and targets, against :func:`ptlearn.pretraining.replace_and_label`.
    Recognises labels taken from ``chosen``, inverted labels, unmasked padding and a wrong corruption."""
    from ..pretraining import replace_and_label

    m = RTD_MISTAKES
    for seed in range(3):
        original, chosen, sampled, mask = rtd_case(seed)
        args = [t.clone() for t in (original, chosen, sampled, mask)]
        inputs = describe(original_ids=original, chosen=chosen, sampled_ids=sampled)
        corrupted, labels = as_pair(call(fn, *args, inputs=inputs), "(corrupted_ids, labels)")
        ref_corrupted, ref_labels = replace_and_label(original, chosen, sampled, mask)
        expect_shape(expect_tensor(corrupted, "corrupted_ids"), original.shape, "corrupted_ids")
        expect_shape(expect_tensor(labels, "labels"), original.shape, "labels")
        if not torch.equal(corrupted.long(), ref_corrupted):
            if torch.equal(corrupted.long(), original):
                raise Mistake(m["not_replaced"])
            if torch.equal(corrupted.long(), sampled):
                raise Mistake(m["replaced_everywhere"])
            raise Mistake(
                "corrupted_ids differ from torch.where(chosen, sampled_ids, original_ids)."
            )
        got, pad = labels.long(), mask == 0
        if torch.equal(got, ref_labels):
            continue
        if torch.equal(got[~pad], ref_labels[~pad]):
            raise Mistake(m["padding"].format(value=sorted(set(got[pad].tolist()))))
        if torch.equal(got[~pad], chosen.long()[~pad]):
            raise Mistake(m["labels_from_chosen"])
        if torch.equal(got[~pad], (sampled != original).long()[~pad]):
            raise Mistake(m["labels_from_samples"])
        if torch.equal(got[~pad], 1 - ref_labels[~pad]):
            raise Mistake(m["inverted"])
        raise Mistake("the labels differ from (corrupted_ids != original_ids), -100 at padding.")
    return "the discriminator sees the samples only where chosen, and a lucky guess counts as original."


SPAN_MISTAKES = {
    "per_token": "each dropped token got its own sentinel: a whole span of consecutive dropped "
    "tokens is replaced by ONE sentinel (Raffel et al. 2019, Fig. 2).",
    "same_sentinel": "every span uses the same sentinel: use the next one for each span "
    "(sentinel_ids[0], sentinel_ids[1], ...), so the target says which span goes where.",
    "no_final": "the target lacks the final sentinel: after the last span, append the next "
    "unused sentinel (T5's Fig. 2 ends its target with <Z>).",
    "no_target_sentinels": "the target holds the dropped tokens but not the sentinels: write each "
    "span's sentinel before the span.",
    "kept_in_input": "the dropped tokens are still in the input: the input keeps only the tokens "
    "that are not dropped, plus one sentinel per span.",
}
# (ids, noise mask as a string of 0/1): T5's Fig. 2, spans at both ends, one-token spans,
# neighbouring spans one token apart, no noise at all
SPAN_CASES = [
    (list(range(10, 21)), "00110000100"),
    (list(range(30, 38)), "11000111"),
    (list(range(40, 47)), "0101010"),
    (list(range(50, 54)), "0000"),
]


def sentinel_spans(ids, mask, sentinels, per_token=False, same=False, final=True, tagged=True):
    """:func:`ptlearn.pretraining.spans_to_sentinels` and the mistakes a learner makes in it."""
    inputs, targets, k = [], [], 0
    for i, (token, noisy) in enumerate(zip(ids, mask)):
        if noisy and (per_token or i == 0 or not mask[i - 1]):
            sentinel = sentinels[0 if same else k]
            inputs.append(sentinel)
            targets += [sentinel] if tagged else []
            k += 1
        (targets if noisy else inputs).append(token)
    if final and tagged:
        targets.append(sentinels[0 if same else k])
    return inputs, targets


@exercise("T5 span corruption")
def check_span_corruption(fn) -> str:
    """Check ``fn(ids, noise_mask, sentinel_ids) -> (input_ids, target_ids)`` (lists of ints)
    against :func:`ptlearn.pretraining.spans_to_sentinels`. Recognises one sentinel per token,
    a reused sentinel, a missing final sentinel, untagged targets and dropped tokens left in."""
    from ..pretraining import spans_to_sentinels

    sentinels = [100, 101, 102, 103, 104, 105]
    for ids, code in SPAN_CASES:
        mask = [c == "1" for c in code]
        inputs = f"ids={ids}, noise_mask={[int(x) for x in mask]}, sentinel_ids={sentinels}"
        got = as_pair(
            call(fn, list(ids), list(mask), list(sentinels), inputs=inputs), "(inputs, targets)"
        )
        got = tuple([int(t) for t in part] for part in got)
        ref = spans_to_sentinels(ids, mask, sentinels)
        if got == ref:
            continue
        variants = {
            "per_token": sentinel_spans(ids, mask, sentinels, per_token=True),
            "same_sentinel": sentinel_spans(ids, mask, sentinels, same=True),
            "no_final": sentinel_spans(ids, mask, sentinels, final=False),
            "no_target_sentinels": sentinel_spans(ids, mask, sentinels, tagged=False),
        }
        found = next((k for k, v in variants.items() if v == got), None)
        if found is None and [t for t in got[0] if t not in sentinels] == list(ids):
            found = "kept_in_input"
        if found:
            raise Mistake(SPAN_MISTAKES[found])
        raise Mistake(
            f"for {inputs} you returned {got[0]} and {got[1]}, expected {ref[0]} and {ref[1]}."
        )
    return (
        "spans become one sentinel each, and the target lists them in order with a final sentinel."
    )


LAST_TOKEN_MISTAKES = {
    "position_minus_one": "you read position -1, the last column of the batch: in a right-padded "
    "batch that is a [PAD] token for every sentence shorter than the longest. Read each sentence "
    "at its own last real token, index attention_mask.sum(1) - 1.",
    "first_token": "you read the first token, BERT's [CLS] habit: in a causal model the first "
    "position has seen only itself. GPT-1 reads the last token (its <extract>), the only one that "
    "has seen the whole input.",
    "one_past": "you read one position too far, attention_mask.sum(1): the first padding position "
    "(or past the end). The last real token is at attention_mask.sum(1) - 1.",
    "mean": "you averaged the tokens: GPT-1's head reads the last token's hidden state alone.",
}


@exercise("GPT-1's last-token head")
def check_last_token_pool(fn) -> str:
    """Check ``fn(hidden [B, T, C], attention_mask [B, T]) -> [B, C]``: each sequence's hidden state
    at its last real token (right padding), the vector GPT-1's classification head reads. Random
    hidden states, sentences of different lengths, one without padding; names the mistakes in
    ``LAST_TOKEN_MISTAKES``: position -1, the first token, one past the end, a mean."""
    m, g = LAST_TOKEN_MISTAKES, torch.Generator().manual_seed(8)
    for B, T, C in [(4, 7, 6), (3, 5, 4)]:
        hidden = torch.randn(B, T, C, generator=g)
        lengths = torch.tensor([T, 2, T - 1, 3][:B])  # row 0 unpadded, the others padded
        mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # [B, T]
        got = expect_tensor(
            call(
                fn,
                hidden.clone(),
                mask.clone(),
                inputs=describe(hidden=hidden, attention_mask=mask),
            ),
            "the result",
        )
        expect_shape(got, (B, C), "the result", "It should be [B, C]: one vector per sequence.")
        expected = hidden[torch.arange(B), lengths - 1]  # [B, C]
        if torch.allclose(got.float(), expected, atol=1e-6):
            continue
        m_f = mask[..., None].float()
        variants = {
            m["position_minus_one"]: hidden[:, -1],
            m["first_token"]: hidden[:, 0],
            m["one_past"]: hidden[torch.arange(B), lengths.clamp(max=T - 1)],
            m["mean"]: (hidden * m_f).sum(1) / m_f.sum(1),
        }
        found = next(
            (msg for msg, v in variants.items() if torch.allclose(got.float(), v, atol=1e-6)), None
        )
        if found is None and torch.allclose(got[1:].float(), hidden[1:, -1], atol=1e-6):
            found = m["position_minus_one"]
        raise Mistake(found or "the result differs from each sequence's last real token's vector.")
    return "each sequence is read at its own last real token, padding or not."
