"""Exercise checkers for chapter 05: BERT (masked language modelling, sentence pairs)."""

from __future__ import annotations

import torch

from .framework import Mistake, Tensor, call, exercise, expect_shape, expect_tensor

MLM_MISTAKES = {
    "not_pair": "return two tensors, (masked_input_ids, labels), each shaped like input_ids.",
    "labels_everywhere": "labels are not -100 at the unmasked positions: set labels to -100 "
    "wherever the token was not chosen, so the loss only counts the chosen ~15%.",
    "labels_masked": "the labels hold the masked input (e.g. the [MASK] id); they must hold the "
    "original token at each chosen position: that is what the model has to predict.",
    "labels_wrong": "at {n} chosen positions the label is not the original token; labels = the "
    "original id where chosen, -100 elsewhere.",
    "unlabelled_change": "{n} tokens were changed at positions whose label is -100: every "
    "position you change must be a chosen one (with its original token as the label).",
    "specials": "masked special tokens: {n} special tokens ({names}) were chosen. [CLS], [SEP] "
    "and [PAD] carry no word to predict; choose only among the other tokens.",
    "fraction": "wrong mask fraction: with mask_prob={p} you chose {got:.1%} of the ordinary "
    "tokens, expected about {p:.0%} (each ordinary token independently with probability "
    "mask_prob).",
    "only_masks": "only the [MASK]ed tokens got a label: the tokens replaced by a random token "
    "and those left unchanged are chosen too, and the model must predict them as well. Give every "
    "chosen position its original token as the label.",
    "split": "80/10/10 split off: of the chosen tokens {mask:.1%} became [MASK], {rand:.1%} a "
    "random token and {same:.1%} stayed unchanged; expected about 80% / 10% / 10%.",
    "special_replacement": "a random replacement was a special token (id {tok}). Draw replacements "
    "from the ordinary vocabulary (ptlearn's choice; HF's DataCollatorForLanguageModeling draws "
    "from the whole vocabulary): a [PAD] or [CLS] inside a sentence is not a plausible word.",
    "same_every_call": "two calls chose exactly the same positions: the masks must be random "
    "(did you seed a generator inside the function?). A fresh mask per batch is what makes "
    "MLM see every token masked eventually.",
}

MLM_SPECIALS = {0: "[PAD]", 1: "[UNK]", 2: "[CLS]", 3: "[SEP]", 4: "[MASK]"}


def mlm_check_batch(g: torch.Generator, B: int = 128, T: int = 128, vocab: int = 30) -> Tensor:
    """``[CLS] A [SEP] B [SEP] [PAD] ...`` rows of random ordinary ids (5 .. vocab - 1)."""
    ids = torch.randint(5, vocab, (B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    for row, n in enumerate(lengths.tolist()):
        ids[row, 0], ids[row, n // 2], ids[row, n - 1] = 2, 3, 3  # [CLS], the two [SEP]s
        ids[row, n:] = 0  # [PAD]
    return ids


def mlm_outputs(result, input_ids: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Mistake(MLM_MISTAKES["not_pair"])
    masked = expect_tensor(torch.as_tensor(result[0]), "masked_input_ids")
    labels = expect_tensor(torch.as_tensor(result[1]), "labels")
    for t, what in ((masked, "masked_input_ids"), (labels, "labels")):
        expect_shape(t, input_ids.shape, what, "It should have the shape of input_ids.")
    return masked.long(), labels.long()


def check_masking_once(ids, masked, labels, mask_id, vocab, special, p) -> tuple[int, float]:
    """Raise a Mistake if one call's result breaks a rule; return (chosen, mask share)."""
    m = MLM_MISTAKES
    is_special = torch.isin(ids, special)
    chosen = labels != -100
    if chosen.all() and torch.equal(labels, ids):
        raise Mistake(m["labels_everywhere"])
    if torch.equal(labels[chosen], masked[chosen]) and (masked[chosen] == mask_id).any():
        raise Mistake(m["labels_masked"])
    if (labels[chosen] != ids[chosen]).any():
        raise Mistake(m["labels_wrong"].format(n=int((labels[chosen] != ids[chosen]).sum())))
    only_masks = chosen.any() and (masked[chosen] == mask_id).all()
    if (masked[~chosen] != ids[~chosen]).any():
        n = int((masked[~chosen] != ids[~chosen]).sum())
        raise Mistake(m["only_masks"] if only_masks else m["unlabelled_change"].format(n=n))
    if (chosen & is_special).any():
        hit = sorted(set(ids[chosen & is_special].tolist()))
        names = ", ".join(MLM_SPECIALS.get(i, str(i)) for i in hit)
        raise Mistake(m["specials"].format(n=int((chosen & is_special).sum()), names=names))
    fraction = chosen.sum().item() / (~is_special).sum().item()
    to_mask = masked[chosen] == mask_id
    to_same = masked[chosen] == ids[chosen]
    to_random = ~to_mask & ~to_same
    if abs(fraction - p) > 0.02:
        raise Mistake(m["only_masks"] if only_masks else m["fraction"].format(p=p, got=fraction))
    replaced = masked[chosen][to_random]
    if ((replaced < 0) | (replaced >= vocab)).any():
        raise Mistake(f"a random replacement is outside the vocabulary [0, {vocab}).")
    if torch.isin(replaced, special).any():
        raise Mistake(
            m["special_replacement"].format(tok=int(replaced[torch.isin(replaced, special)][0]))
        )
    n = to_mask.numel()
    shares = to_mask.sum().item() / n, to_random.sum().item() / n, to_same.sum().item() / n
    # a random token equals the original 1 time in (vocab - 5): that moves ~0.4% from "random"
    # to "unchanged"; the tolerance covers it and the sampling noise (~1% here)
    if abs(shares[0] - 0.8) > 0.05 or abs(shares[1] - 0.1) > 0.04 or abs(shares[2] - 0.1) > 0.04:
        raise Mistake(m["split"].format(mask=shares[0], rand=shares[1], same=shares[2]))
    return int(chosen.sum()), shares[0]


@exercise("MLM masking")
def check_mlm_masking(fn) -> str:
    """Check ``fn(input_ids, mask_id, vocab_size, special_ids, mask_prob=0.15) -> (masked,
    labels)`` against the rules of :func:`ptlearn.objectives.mask_tokens` (BERT, section 3.1):
    each ordinary token is chosen with probability ``mask_prob``, special tokens never; a chosen
    token becomes ``[MASK]`` (80%), a random ordinary token (10%) or stays (10%); ``labels`` hold
    the original id at chosen positions and -100 elsewhere. The masking is random, so the checker
    measures the fractions on a 128 x 128 batch and allows for sampling noise. Recognises the
    mistakes in ``MLM_MISTAKES``.
    """
    m, mask_id, vocab = MLM_MISTAKES, 4, 30
    special_ids = set(MLM_SPECIALS)  # [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4
    special = torch.tensor(sorted(special_ids))
    ids = mlm_check_batch(torch.Generator().manual_seed(8))
    inputs = f"input_ids {list(ids.shape)}, mask_id={mask_id}, vocab_size={vocab}, specials 0-4"
    with torch.random.fork_rng():
        torch.manual_seed(9)
        picks = []
        for p in (0.15, 0.15, 0.3):
            result = call(fn, ids, mask_id, vocab, set(special_ids), mask_prob=p, inputs=inputs)
            masked, labels = mlm_outputs(result, ids)
            check_masking_once(ids, masked, labels, mask_id, vocab, special, p)
            picks.append(labels != -100)
    if torch.equal(picks[0], picks[1]):
        raise Mistake(m["same_every_call"])
    return (
        "about 15% of the ordinary tokens are chosen (30% with mask_prob=0.3), never a special "
        "one; they become [MASK] / random / unchanged about 80/10/10, and only they have labels."
    )


PAIR_MISTAKES = {
    "length": "the pair has {got} tokens, expected {ref}: [CLS] A [SEP] B [SEP] adds three "
    "special tokens to the two sentences.",
    "types_length": "input_ids has {n_ids} tokens but token_type_ids has {n_types}: one segment "
    "id per token.",
    "no_cls": "the pair must start with [CLS]: its final vector is the one NSP and classifiers "
    "read.",
    "order": "the tokens should read [CLS] A [SEP] B [SEP]; yours read {got}.",
    "segment_values": "segment ids are 0 for sentence A and 1 for sentence B (BERT's embedding "
    "table has two rows); you used {values}.",
    "first_sep": "the [SEP] after sentence A belongs to segment 0, with [CLS] and A.",
    "last_sep": "the final [SEP] belongs to sentence B: segment 1.",
    "cls_segment": "[CLS] belongs to segment 0.",
}


@exercise("sentence pair")
def check_sentence_pair(fn) -> str:
    """Check ``fn(a, b, cls_id, sep_id) -> (input_ids, token_type_ids)`` (lists or 1-D tensors)
    against :func:`ptlearn.objectives.pair_example`: ``[CLS] A [SEP] B [SEP]`` with segment 0 for
    ``[CLS] A [SEP]`` and 1 for ``B [SEP]`` (BERT, Fig. 2). Recognises the mistakes in
    ``PAIR_MISTAKES``.
    """
    from ..objectives import pair_example

    m, cls_id, sep_id = PAIR_MISTAKES, 2, 3
    for a, b in [([10, 11, 12], [20, 21]), ([7], [8, 9, 9, 9]), ([15, 16], [15, 16])]:
        result = call(
            fn, list(a), list(b), cls_id, sep_id, inputs=f"a={a}, b={b}, cls_id=2, sep_id=3"
        )
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Mistake("return two sequences: (input_ids, token_type_ids).")
        ids, types = (torch.as_tensor(x).flatten().tolist() for x in result)
        ref_ids, ref_types = pair_example(a, b, cls_id, sep_id, max_len=len(a) + len(b) + 3)
        if len(ids) != len(ref_ids):
            raise Mistake(m["length"].format(got=len(ids), ref=len(ref_ids)))
        if len(types) != len(ids):
            raise Mistake(m["types_length"].format(n_ids=len(ids), n_types=len(types)))
        if ids[0] != cls_id:
            raise Mistake(m["no_cls"])
        if ids != ref_ids:
            raise Mistake(m["order"].format(got=ids))
        if set(types) - {0, 1}:
            raise Mistake(m["segment_values"].format(values=sorted(set(types))))
        first_sep = len(a) + 1
        for position, key in [(0, "cls_segment"), (first_sep, "first_sep"), (-1, "last_sep")]:
            if types[position] != ref_types[position]:
                raise Mistake(m[key])
        if types != ref_types:
            raise Mistake(f"the segment ids should be {ref_types}; yours are {types}.")
    return "[CLS] A [SEP] B [SEP], with segment 0 for [CLS] A [SEP] and 1 for B [SEP]."
