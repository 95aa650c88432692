"""Exercise checkers for chapter 05: BERT (masked language modelling, sentence pairs).

Why this module is longer than 350 lines: chapter 05's four checkers (MLM masking, sentence
pairs, BERT's embeddings, the tied MLM head) each carry a catalogue of wrong variants to name the
learner's mistake, plus the glue that puts the learner's modules into ptlearn's BERT; one
chapter's feedback stays in one file.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .framework import (
    Mistake,
    Tensor,
    call,
    close,
    diagnose,
    exercise,
    expect_shape,
    expect_tensor,
)

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


# --- build it: BERT's input embeddings and the tied MLM head --------------------------------------
#
# The learner writes the modules; the checker copies ptlearn's (random, non-trivial) weights into
# them by attribute name, runs both on the same input and compares outputs and gradients. Where
# they differ it computes what the typical mistakes would give with the same weights and names the
# one that matches. ch06 reuses these helpers for ALBERT's factorized embedding.


def named(fn, name: str):
    """``fn`` under ``name``, so that :func:`call`'s messages say which method to finish."""

    def run(*args, **kwargs):
        return fn(*args, **kwargs)

    run.__name__ = name
    return run


def build(cls, *args, inputs: str, **kwargs):
    """Instantiate the learner's class (crashes and stubs become a :class:`Mistake`)."""
    module = call(
        named(cls, getattr(cls, "__name__", "your class")), *args, inputs=inputs, **kwargs
    )
    if not isinstance(module, nn.Module):
        raise Mistake(f"{cls!r} should be an nn.Module subclass (class My...(nn.Module)).")
    return module


def copy_parameters(module: nn.Module, weights: dict[str, Tensor], missing: dict[str, str]) -> None:
    """Copy ``weights`` (name -> tensor) into the learner's parameters of the same names. A missing
    name raises ``missing[name]`` (the mistake it usually means), a wrong shape names both shapes."""
    if not any(True for _ in module.parameters()):
        raise Mistake(
            f"{type(module).__name__} has no parameters yet: create its layers in __init__ "
            f"({', '.join(sorted({n.split('.')[0] for n in weights}))})."
        )
    for name, value in weights.items():
        try:
            param = module.get_parameter(name)
        except AttributeError:
            raise Mistake(missing.get(name, f"your module has no parameter {name}.")) from None
        if tuple(param.shape) != tuple(value.shape):
            raise Mistake(
                f"{name} has shape {list(param.shape)}, expected {list(value.shape)}. "
                + missing.get(f"{name}:shape", "")
            )
        with torch.no_grad():
            param.copy_(value)


def expect_no_extra(module: nn.Module, expected: list[Tensor], what: str) -> None:
    """The learner's module holds exactly the ``expected`` parameters (shared ones count once)."""
    known = {id(p) for p in expected}
    extra = [f"{n} {list(p.shape)}" for n, p in module.named_parameters() if id(p) not in known]
    if extra:
        raise Mistake(f"unexpected parameters: {', '.join(extra)}. {what}")


def compare_grads(pairs: list[tuple[str, Tensor | None, Tensor]], hint: str) -> None:
    """Each (name, learner gradient, reference gradient) must agree."""
    for name, got, ref in pairs:
        if got is None or not close(got, ref, atol=1e-4, rtol=1e-3):
            state = "no gradient reaches" if got is None else "the gradient of"
            raise Mistake(
                f"outputs match, but {state} {name} {'' if got is None else 'differs '}"
                f"from the reference's: {hint}"
            )


def layer_norm(x: Tensor, w: dict[str, Tensor], eps: float, prefix: str = "norm") -> Tensor:
    return F.layer_norm(x, x.shape[-1:], w[f"{prefix}.weight"], w[f"{prefix}.bias"], eps)


EMBEDDINGS_MISTAKES = {
    "no_positions": "positions not added: every token gets position[t] for its index t = 0 .. T-1 "
    "(self.position(torch.arange(T))), or BERT cannot tell word order apart.",
    "positions_by_id": "positions looked up by token id: self.position(input_ids) gives a token "
    "the same 'position' wherever it stands. Look up the indices 0 .. T-1 instead.",
    "no_segments": "segments not added: add self.segment(token_type_ids) (sentence A = 0, "
    "B = 1), so the model knows which sentence each token is in.",
    "no_norm": "no LayerNorm: BERT normalises the sum, x = LayerNorm(token + position + segment).",
    "norm_token_only": "the LayerNorm is applied to the token embedding alone; normalise the sum of "
    "all three (token + position + segment).",
    "scaled": "the token embedding is multiplied by sqrt(d_model): the original Transformer does "
    "that for its sinusoids, BERT does not (its positions are learned at the same scale).",
    "no_default_segments": "token_type_ids=None must mean one sentence: segment 0 everywhere "
    "(torch.zeros_like(input_ids)).",
    "no_dropout": "no dropout in training mode: apply self.dropout to the normalised sum (it does "
    "nothing in eval mode, so it never changes predictions).",
    "dropout_first": "dropout before the LayerNorm: BERT drops out the normalised sum, "
    "dropout(LayerNorm(x)); the norm would undo the dropout's scaling.",
    "dropout_after_projection": "dropout after the projection: ALBERT (like BERT) applies dropout "
    "to the normalised E-wide sum, then projects it up to H.",
    "no_projection": "projection missing: the output is {width} wide (E); ALBERT lifts the E-wide "
    "sum to the model width H with self.project = nn.Linear(d_embed, d_model).",
    "not_a_tensor": "forward should return a tensor [B, T, {width}], not a {kind}.",
}

EMBEDDING_NAMES = {
    "token.weight": "no self.token: the token table is nn.Embedding(vocab_size, d), named token.",
    "position.weight": "no self.position: the learned positions are nn.Embedding(max_len, d), "
    "named position (BERT learns its positions; it has no sinusoids).",
    "segment.weight": "no self.segment: segments are nn.Embedding(type_vocab_size, d), named "
    "segment.",
    "norm.weight": "no LayerNorm: BERT normalises the sum with self.norm = nn.LayerNorm(d).",
    "norm.bias": "the LayerNorm has no bias: use nn.LayerNorm(d) with its default affine weights.",
    "position.weight:shape": "The position table has one row per position: (max_len, d).",
    "segment.weight:shape": "The segment table has one row per segment: (type_vocab_size, d).",
    "token.weight:shape": "The token table has one row per token id: (vocab_size, d).",
}


def random_embedding_weights(V: int, d: int, max_len: int, n_types: int, g) -> dict[str, Tensor]:
    """Weights with every part visible in the output (a zero bias or unit norm weight would let a
    missing piece go unnoticed)."""
    return {
        "token.weight": 0.5 * torch.randn(V, d, generator=g),
        "position.weight": 0.5 * torch.randn(max_len, d, generator=g),
        "segment.weight": 0.5 * torch.randn(n_types, d, generator=g),
        "norm.weight": 1 + 0.3 * torch.randn(d, generator=g),
        "norm.bias": 0.2 * torch.randn(d, generator=g),
    }


def embedding_variants(w: dict[str, Tensor], ids: Tensor, types: Tensor, eps: float) -> dict:
    """The reference (key None) and what each typical mistake gives, with the same weights."""
    m = EMBEDDINGS_MISTAKES
    tok, seg = w["token.weight"][ids], w["segment.weight"][types]  # [B, T, d]
    pos = w["position.weight"][: ids.shape[1]]  # [T, d]
    norm = functools.partial(layer_norm, w=w, eps=eps)
    return {
        None: norm(tok + pos + seg),
        m["no_positions"]: norm(tok + seg),
        m["positions_by_id"]: norm(tok + w["position.weight"][ids] + seg),
        m["no_segments"]: norm(tok + pos),
        m["no_norm"]: tok + pos + seg,
        m["norm_token_only"]: norm(tok) + pos + seg,
        m["scaled"]: norm(tok * tok.shape[-1] ** 0.5 + pos + seg),
    }


def check_embedding_module(cls, factorized: bool) -> str:
    """The body of :func:`check_bert_embeddings` and (``factorized=True``) of ch06's
    ``check_factorized_embeddings``: copy random weights in, compare outputs (eval mode, with and
    without token_type_ids), dropout (train mode, same random seed) and gradients."""
    m, g = EMBEDDINGS_MISTAKES, torch.Generator().manual_seed(5)
    V, d, H, max_len, n_types, eps, p = 40, 12, 20, 48, 2, 1e-12, 0.3
    width = H if factorized else d
    sizes = dict(vocab_size=V, max_len=max_len, type_vocab_size=n_types, dropout=p, norm_eps=eps)
    if factorized:
        sizes.update(d_embed=d, d_model=H)
    else:
        sizes.update(d_model=d)
    described = ", ".join(f"{k}={v}" for k, v in sizes.items())
    module = build(cls, inputs=described, **sizes)
    weights = random_embedding_weights(V, d, max_len, n_types, g)
    names = dict(EMBEDDING_NAMES)
    if factorized:
        weights["project.weight"] = torch.randn(H, d, generator=g) / d**0.5
        weights["project.bias"] = 0.2 * torch.randn(H, generator=g)
        names.update(FACTORIZED_NAMES)
    copy_parameters(module, weights, names)
    expect_no_extra(
        module,
        [module.get_parameter(n) for n in weights],
        "The embeddings hold the token, position and segment tables and the LayerNorm"
        + (", plus the E -> H projection." if factorized else "."),
    )
    forward = named(module, f"{type(module).__name__}.forward")

    def project(x: Tensor) -> Tensor:  # ALBERT's E -> H projection (nothing for BERT)
        return F.linear(x, weights["project.weight"], weights["project.bias"]) if factorized else x

    module.eval()
    for B, T in [(2, 9), (3, max_len)]:
        ids = torch.randint(0, V, (B, T), generator=g)
        types = (torch.arange(T) >= T // 2).long().expand(B, T).clone()  # A then B
        inputs = f"input_ids {[B, T]}, token_type_ids {[B, T]}"
        got = call(forward, ids, types, inputs=inputs)
        if not isinstance(got, Tensor):
            raise Mistake(m["not_a_tensor"].format(width=width, kind=type(got).__name__))
        variants = {k: project(v) for k, v in embedding_variants(weights, ids, types, eps).items()}
        if factorized and tuple(got.shape) == (B, T, d) and d != H:
            raise Mistake(m["no_projection"].format(width=d))
        expect_shape(got, (B, T, width), "the output", "One vector of the model width per token.")
        expect_tensor(got, "the output")
        if not close(got, variants[None]):
            found = diagnose(got, {k: v for k, v in variants.items() if k is not None})
            raise Mistake(
                found
                or "the output differs from token + position + segment, normalised"
                + (", then projected" if factorized else "")
                + f" (largest difference {(got - variants[None]).abs().max():.3g})."
            )
        one_sentence = call(forward, ids, None, inputs=f"input_ids {[B, T]}, token_type_ids=None")
        expected = project(embedding_variants(weights, ids, torch.zeros_like(ids), eps)[None])
        if not isinstance(one_sentence, Tensor) or not close(one_sentence, expected):
            raise Mistake(m["no_default_segments"])
    # dropout: same seed, so nn.Dropout draws the same mask as the reference's
    module.train()
    ids, types = ids[:, :12], types[:, :12]
    inputs = f"input_ids {list(ids.shape)} in training mode, dropout={p}"
    normed = embedding_variants(weights, ids, types, eps)[None]
    tok, pos = weights["token.weight"][ids], weights["position.weight"][: ids.shape[1]]
    summed = tok + pos + weights["segment.weight"][types]
    seeded = {}
    with torch.random.fork_rng():
        for key, run in [
            ("got", lambda: call(forward, ids, types, inputs=inputs)),
            ("expected", lambda: project(F.dropout(normed, p, training=True))),
            ("before_norm", lambda: project(layer_norm(F.dropout(summed, p), weights, eps))),
            ("after_projection", lambda: F.dropout(project(normed), p, training=True)),
        ]:
            torch.manual_seed(11)
            seeded[key] = run()
    got, expected = seeded["got"], seeded["expected"]
    if not isinstance(got, Tensor) or not close(got, expected):
        variants = {
            m["no_dropout"]: project(normed),
            m["dropout_first"]: seeded["before_norm"],
            m["dropout_after_projection"]: seeded["after_projection"],
        }
        found = diagnose(got, variants) if isinstance(got, Tensor) else None
        raise Mistake(
            found
            or "in training mode your output differs from dropout(LayerNorm(sum))"
            + (" projected to H" if factorized else "")
            + ": apply self.dropout once, to the normalised sum, and no other random operation."
        )
    # gradients: the same upstream gradient into both; every table must get the reference's
    module.eval()
    leaves = {k: v.clone().requires_grad_() for k, v in weights.items()}
    upstream = torch.randn(*ids.shape, width, generator=g)
    ref = embedding_variants(leaves, ids, types, eps)[None]
    if factorized:
        ref = F.linear(ref, leaves["project.weight"], leaves["project.bias"])
    (ref * upstream).sum().backward()
    module.zero_grad()
    (call(forward, ids, types, inputs=inputs) * upstream).sum().backward()
    compare_grads(
        [(k, module.get_parameter(k).grad, leaves[k].grad) for k in weights],
        "use the modules themselves (self.position(positions)), not .data or .detach().",
    )
    return (
        "token + position + segment, LayerNorm, dropout"
        + (" at width E, then the E -> H projection" if factorized else "")
        + ": same outputs and gradients as ptlearn's with the same weights."
    )


FACTORIZED_NAMES = {
    "project.weight": "projection missing: ALBERT lifts the E-wide embedding to the model width "
    "with self.project = nn.Linear(d_embed, d_model).",
    "project.bias": "the projection has no bias: it is an ordinary nn.Linear(d_embed, d_model).",
    "token.weight:shape": "Factorize: the token table is vocab_size x d_embed (V x E), not V x H; "
    "the projection does the widening.",
    "position.weight:shape": "Positions (and segments) live at width E too: ALBERT adds all three "
    "embeddings at width E, normalises, and projects once.",
    "segment.weight:shape": "Segments live at width E too: add all three embeddings at width E, "
    "normalise, then project.",
    "norm.weight:shape": "Norm order: the LayerNorm normalises the E-wide sum before the projection "
    "(nn.LayerNorm(d_embed)), as in HF's ALBERT.",
    "project.weight:shape": "The projection maps E to H: nn.Linear(d_embed, d_model).",
}


@exercise("BERT embeddings")
def check_bert_embeddings(cls) -> str:
    """Check the learner's ``cls(vocab_size, d_model, max_len, type_vocab_size, dropout,
    norm_eps)``, whose ``forward(input_ids, token_type_ids=None)`` returns
    ``dropout(LayerNorm(token[id] + position[t] + segment[s]))`` ``[B, T, d_model]`` (BERT,
    Fig. 2). The module's parameters are ``token``, ``position``, ``segment`` (``nn.Embedding``)
    and ``norm`` (``nn.LayerNorm``); the checker copies ptlearn's weights into them and compares
    outputs, dropout and gradients. Recognises the mistakes in ``EMBEDDINGS_MISTAKES``.
    """
    return check_embedding_module(cls, factorized=False)


MLM_HEAD_MISTAKES = {
    "no_decoder": "name the output layer self.decoder: an nn.Linear(d_embed, vocab_size) whose "
    "weight is then replaced by the embedding's (self.decoder.weight = embedding.weight).",
    "copied": "head not tied: self.decoder.weight holds a copy of the embedding matrix, not the "
    "matrix itself. A copy drifts apart at the first training step; assign the Parameter itself: "
    "self.decoder.weight = embedding.weight.",
    "not_tied": "head not tied to the embeddings: self.decoder.weight is a parameter of its own. "
    "BERT scores token v with v's input embedding: self.decoder.weight = embedding.weight.",
    "no_transform": "the hidden states go straight into the decoder: BERT's head first transforms "
    "them, LayerNorm(GELU(dense(h))), then decodes.",
    "no_activation": "no activation: the transform is LayerNorm(GELU(dense(h))).",
    "no_norm": "no LayerNorm in the head: the transform is LayerNorm(GELU(dense(h))).",
    "norm_first": "norm order: the activation comes before the LayerNorm, LayerNorm(GELU(dense(h))).",
    "activation": "wrong activation: BERT's head uses the exact GELU, nn.GELU() ({got} here).",
    "softmax": "return raw scores (logits): cross-entropy applies the (log-)softmax itself.",
    "no_grad": "no gradient reaches the embedding matrix through the head: the decoder must use "
    "embedding.weight itself (not .data or a detached tensor), so the MLM loss trains it.",
}

MLM_HEAD_NAMES = {
    "dense.weight": "no self.dense: the transform starts with nn.Linear(d_model, d_embed), named "
    "dense.",
    "dense.bias": "self.dense has no bias: use an ordinary nn.Linear.",
    "norm.weight": "no LayerNorm: the transform ends with self.norm = nn.LayerNorm(d_embed).",
    "norm.bias": "the LayerNorm has no bias: use nn.LayerNorm(d_embed) with its affine weights.",
    "decoder.bias": "the decoder has no bias: the weight is shared with the embeddings, the output "
    "bias (one score offset per token) is the head's own.",
}


@exercise("tied MLM head")
def check_mlm_head(cls) -> str:
    """Check the learner's ``cls(d_model, embedding, norm_eps)`` MLM head: ``forward(hidden [B, T,
    d_model]) -> logits [B, T, vocab]`` = ``decoder(LayerNorm(GELU(dense(hidden))))``, where
    ``decoder.weight`` IS ``embedding.weight`` (tied) and ``decoder.bias`` is the head's own. The
    checker verifies the tie (identity, and that gradients reach the embedding), copies ptlearn's
    weights into ``dense``, ``norm`` and ``decoder.bias``, and compares logits and gradients.
    Recognises the mistakes in ``MLM_HEAD_MISTAKES``.
    """
    m, g = MLM_HEAD_MISTAKES, torch.Generator().manual_seed(6)
    V, d, eps = 37, 16, 1e-12
    w = {
        "dense.weight": torch.randn(d, d, generator=g) / d**0.5,
        "dense.bias": 0.3 * torch.randn(d, generator=g),
        "norm.weight": 1 + 0.3 * torch.randn(d, generator=g),
        "norm.bias": 0.2 * torch.randn(d, generator=g),
        "decoder.bias": 0.5 * torch.randn(V, generator=g),
    }
    table = 0.5 * torch.randn(V, d, generator=g)
    embedding = nn.Embedding(V, d)
    with torch.no_grad():
        embedding.weight.copy_(table)
    head = build(cls, d, embedding, norm_eps=eps, inputs=f"d_model={d}, an nn.Embedding({V}, {d})")
    decoder = getattr(head, "decoder", None)
    if not isinstance(getattr(decoder, "weight", None), Tensor):
        raise Mistake(m["no_decoder"])
    if decoder.weight is not embedding.weight:
        same = decoder.weight.shape == table.shape and torch.equal(decoder.weight.detach(), table)
        raise Mistake(m["copied"] if same else m["not_tied"])
    copy_parameters(head, w, MLM_HEAD_NAMES)
    expect_no_extra(
        head,
        [head.get_parameter(n) for n in w] + [embedding.weight],
        "The head holds dense, norm and the decoder's bias; its weight is the embedding's.",
    )
    forward = named(head, f"{type(head).__name__}.forward")
    head.eval()
    hidden = torch.randn(2, 7, d, generator=g)
    leaves = {k: v.clone().requires_grad_() for k, v in {**w, "table": table}.items()}

    def logits(h, act=F.gelu, norm=True, activate=True, norm_first=False, transform=True):
        if transform:
            h = F.linear(h, leaves["dense.weight"], leaves["dense.bias"])
            if norm_first and norm:
                h = layer_norm(h, leaves, eps)
            h = act(h) if activate else h
            if norm and not norm_first:
                h = layer_norm(h, leaves, eps)
        return F.linear(h, leaves["table"], leaves["decoder.bias"])

    got = call(forward, hidden, inputs=f"hidden {[2, 7, d]}")
    if not isinstance(got, Tensor):
        raise Mistake(f"forward should return the logits tensor [B, T, vocab], not a {type(got)}.")
    expect_shape(got, (2, 7, V), "the logits", "One score per vocabulary entry at every position.")
    ref = logits(hidden)
    if not close(got, ref):
        with torch.no_grad():
            variants = {
                m["no_transform"]: logits(hidden, transform=False),
                m["no_activation"]: logits(hidden, activate=False),
                m["no_norm"]: logits(hidden, norm=False),
                m["norm_first"]: logits(hidden, norm_first=True),
                m["activation"].format(got="the tanh approximation"): logits(
                    hidden, act=functools.partial(F.gelu, approximate="tanh")
                ),
                m["activation"].format(got="ReLU"): logits(hidden, act=F.relu),
                m["softmax"]: ref.softmax(-1),
                m["softmax"] + " (you returned log-probabilities)": ref.log_softmax(-1),
            }
        found = diagnose(got, variants)
        raise Mistake(
            found
            or "the logits differ from decoder(LayerNorm(GELU(dense(hidden)))) "
            f"(largest difference {(got - ref).abs().max():.3g})."
        )
    upstream = torch.randn(got.shape, generator=g)
    (ref * upstream).sum().backward()
    head.zero_grad()
    embedding.zero_grad()
    (call(forward, hidden, inputs=f"hidden {[2, 7, d]}") * upstream).sum().backward()
    if embedding.weight.grad is None or not embedding.weight.grad.abs().sum() > 0:
        raise Mistake(m["no_grad"])
    compare_grads(
        [(k, head.get_parameter(k).grad, leaves[k].grad) for k in w]
        + [("the embedding matrix", embedding.weight.grad, leaves["table"].grad)],
        "use the layers themselves, not .data or .detach().",
    )
    return (
        "decoder(LayerNorm(GELU(dense(h)))) with the decoder's weight the embedding matrix itself: "
        "same logits and gradients as ptlearn's MaskedLMHead, and the MLM loss trains the embeddings."
    )


def bert_with_your_modules(model, embeddings_class=None, head_class=None):
    """Put the learner's modules into ptlearn's ``BertForPreTraining`` ``model`` (in place; returns
    it): ``embeddings_class(vocab_size, d_model, max_len, type_vocab_size, dropout, norm_eps)``
    replaces ``model.bert.embeddings`` and ``head_class(d_model, embedding, norm_eps)`` replaces
    ``model.mlm``, tied to the (new) token embedding. Each starts from the weights the model had,
    so training follows the same run. ``None`` keeps ptlearn's module."""
    with torch.random.fork_rng(devices=[]):  # building modules must not move the seed
        return _bert_with(model, embeddings_class, head_class)


def _bert_with(model, embeddings_class, head_class):
    c, bert = model.config, model.bert
    if embeddings_class is not None:
        new = embeddings_class(
            c.vocab_size, c.d_model, c.max_len, c.type_vocab_size, dropout=c.dropout,
            norm_eps=c.norm_eps,
        )  # fmt: skip
        load_same_names(new, bert.embeddings)
        bert.embeddings = new.to(bert.embeddings.token.weight.device)
        model.mlm.decoder.weight = new.token.weight  # the head stays tied to the new table
    if head_class is not None:
        head = head_class(c.d_model, bert.embeddings.token, norm_eps=c.norm_eps)
        load_same_names(head, model.mlm, skip=("decoder.weight",))
        model.mlm = head.to(bert.embeddings.token.weight.device)
    return model


def load_same_names(target: nn.Module, source: nn.Module, skip=()) -> None:
    """Copy every parameter of ``source`` into ``target``'s parameter of the same name."""
    with torch.no_grad():
        for name, param in source.named_parameters():
            if name not in skip:
                target.get_parameter(name).copy_(param)
