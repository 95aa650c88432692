"""Exercise checkers for chapter 06: ALBERT (factorized embeddings, sentence-order pairs; Lan et al. 2019)."""

from __future__ import annotations

import torch

from .framework import Mistake, Tensor, call, exercise

FACTORIZED_MISTAKES = {
    "bert": "without d_embed (BERT) the token embedding is one V x H table: vocab_size * d_model "
    "parameters. For V={V}, H={H} that is {ref:,}; you returned {got:,}.",
    "no_projection": "you counted only the V x E table. The factorized embedding also needs the "
    "projection from E up to the model width H: an nn.Linear(E, H).",
    "no_bias": "the E -> H projection is an nn.Linear, so it has a bias too: E * H weights + H "
    "biases.",
    "bias_size": "the projection's bias has one entry per output, so H of them, not E.",
    "unfactorized": "with d_embed given, the table is V x E, not V x H: shrinking that table is "
    "the whole point of the factorization.",
    "not_a_number": "return the number of parameters as an int, not a {kind}.",
}
# (vocab_size V, d_model H, d_embed E): BERT-base, ALBERT-base, ALBERT-xxlarge, tiny, large E
FACTORIZED_CASES = [(30000, 768, None), (30000, 768, 128), (30000, 4096, 128), (100, 32, 8),
                    (50000, 1024, 256)]  # fmt: skip


def embedding_parameters(vocab_size: int, d_model: int, d_embed: int | None = None) -> int:
    """Parameters of the token embedding: BERT's ``nn.Embedding(V, H)``, or ALBERT's
    ``nn.Embedding(V, E)`` followed by ``nn.Linear(E, H)``, counted on the meta device (no memory)."""
    from torch import nn

    with torch.device("meta"):
        if d_embed is None:
            modules = [nn.Embedding(vocab_size, d_model)]
        else:
            modules = [nn.Embedding(vocab_size, d_embed), nn.Linear(d_embed, d_model)]
    return sum(p.numel() for m in modules for p in m.parameters())


@exercise("factorized embedding parameters")
def check_factorized_param_count(fn) -> str:
    """Check ``fn(vocab_size, d_model, d_embed=None) -> int``: the parameters of the token
    embedding, V * H for BERT (no ``d_embed``) and V * E + (E * H + H) for ALBERT (the table plus
    the E -> H ``nn.Linear``). Recognises a missing projection, a missing or wrong-sized bias and
    an unfactorized table."""
    import numbers

    m = FACTORIZED_MISTAKES
    for V, H, E in FACTORIZED_CASES:
        got = call(fn, V, H, E, inputs=f"vocab_size={V}, d_model={H}, d_embed={E}")
        if isinstance(got, Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            raise Mistake(m["not_a_number"].format(kind=type(got).__name__))
        ref = embedding_parameters(V, H, E)
        if got == ref:
            continue
        if E is None:
            raise Mistake(m["bert"].format(V=V, H=H, ref=ref, got=got))
        variants = {
            m["no_projection"]: V * E,
            m["no_bias"]: V * E + E * H,
            m["bias_size"]: V * E + E * H + E,
            m["unfactorized"]: V * H,
        }
        found = next((message for message, wrong in variants.items() if got == wrong), None)
        raise Mistake(
            found
            or f"for V={V}, H={H}, E={E} the embedding has V*E + E*H + H = {ref:,} "
            f"parameters; you returned {got:,}."
        )
    return (
        "right for BERT (V x H) and ALBERT (V x E + E x H + H). At ALBERT-base sizes that is "
        f"{embedding_parameters(30000, 768, 128):,} instead of {embedding_parameters(30000, 768):,}."
    )


SOP_MISTAKES = {
    "not_a_list": "return a list of (segment_a, segment_b, label) triples, not a {kind}.",
    "count": "a document of {n} segments has {pairs} consecutive pairs (0, 1), (1, 2), ...: one "
    "example each. You returned {got}.",
    "triple": "each example should be a triple (segment_a, segment_b, label); example {i} is {ex!r}.",
    "inverted": "the labels are inverted: 0 means 'in the original order' and 1 'swapped' (HF's "
    "sentence_order_label).",
    "constant_label": "every label is {label}: the label must say whether that pair was swapped "
    "(swap[i] True -> 1).",
    "never_swapped": "the labels are right but the segments are never swapped: when swap[i] is "
    "True the example is (document[i + 1], document[i], 1).",
    "not_consecutive": "example {i} is not a pair of neighbouring segments: SOP only uses "
    "consecutive segments i and i + 1 (both from the same document, so the topic gives nothing "
    "away; only the order can be wrong).",
    "changed_input": "your function changed the document; build new lists instead.",
}


def sop_reference(document, swap):
    """ALBERT's SOP examples from one document: consecutive segments, in order (0) or swapped (1)."""
    return [
        (document[i + 1], document[i], 1) if s else (document[i], document[i + 1], 0)
        for i, s in enumerate(swap)
    ]


def as_triples(result) -> list[tuple[list[int], list[int], int]]:
    """The learner's examples as ([ids], [ids], int) triples (tuples/lists/tensors accepted)."""
    if not isinstance(result, list | tuple):
        raise Mistake(SOP_MISTAKES["not_a_list"].format(kind=type(result).__name__))
    triples = []
    for i, ex in enumerate(result):
        if not isinstance(ex, list | tuple) or len(ex) != 3:
            raise Mistake(SOP_MISTAKES["triple"].format(i=i, ex=ex))
        try:
            triples.append(([int(t) for t in ex[0]], [int(t) for t in ex[1]], int(ex[2])))
        except (TypeError, ValueError):
            raise Mistake(SOP_MISTAKES["triple"].format(i=i, ex=ex)) from None
    return triples


@exercise("sentence-order pairs")
def check_sop_pairs(fn) -> str:
    """Check ``fn(document, swap) -> [(segment_a, segment_b, label), ...]``: one SOP example per
    pair of consecutive segments of ``document`` (a list of token-id lists); ``swap[i]`` says
    whether pair i is swapped. In order: ``(document[i], document[i + 1], 0)``; swapped:
    ``(document[i + 1], document[i], 1)``. Recognises inverted or constant labels, pairs that are
    never swapped, non-consecutive pairs, a wrong number of examples and a changed input."""
    m, g = SOP_MISTAKES, torch.Generator().manual_seed(0)
    for n in (5, 2, 4, 1):
        document = [torch.randint(5, 100, (3 + i,), generator=g).tolist() for i in range(n)]
        swap = [bool(s) for s in torch.rand(n - 1, generator=g) < 0.5]
        if n > 2:
            swap[0], swap[1] = True, False  # at least one pair of each kind
        given = [list(seg) for seg in document]
        got = as_triples(call(fn, given, list(swap), inputs=f"a document of {n} segments"))
        if given != document:
            raise Mistake(m["changed_input"])
        if len(got) != n - 1:
            raise Mistake(m["count"].format(n=n, pairs=n - 1, got=len(got)))
        ref = sop_reference(document, swap)
        if got == ref:
            continue
        labels, ref_labels = [t[2] for t in got], [t[2] for t in ref]
        segments = [(a, b) for a, b, _ in got]
        if segments == [(a, b) for a, b, _ in ref] and labels == [1 - x for x in ref_labels]:
            raise Mistake(m["inverted"])
        if len(set(labels)) == 1 and len(set(ref_labels)) > 1:
            raise Mistake(m["constant_label"].format(label=labels[0]))
        if labels == ref_labels and segments == [
            (document[i], document[i + 1]) for i in range(n - 1)
        ]:
            raise Mistake(m["never_swapped"])
        for i, (a, b) in enumerate(segments):
            if {tuple(a), tuple(b)} != {tuple(document[i]), tuple(document[i + 1])}:
                raise Mistake(m["not_consecutive"].format(i=i))
        i = next(i for i, (x, y) in enumerate(zip(got, ref)) if x != y)
        raise Mistake(f"example {i} is {got[i]}, expected {ref[i]} (swap[{i}] = {swap[i]}).")
    return "consecutive segments, swapped exactly where asked, labelled 0 = in order, 1 = swapped."
