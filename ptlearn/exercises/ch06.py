"""Exercise checkers for chapter 06: ALBERT (factorized embeddings, sentence-order pairs; Lan et al. 2019).

Why this module is longer than 350 lines: chapter 06's checkers (parameter count, SOP pairs, the
factorized embedding, the shared encoder) each carry their catalogue of mistakes and the glue that
puts the learner's modules into ptlearn's ALBERT; one chapter's feedback stays in one file.
"""

from __future__ import annotations

import torch
from torch import nn

from .ch05 import named
from .framework import Mistake, Tensor, call, close, diagnose, exercise, expect_shape

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


# --- build it: the factorized embedding and the shared encoder --------------------------------------


@exercise("factorized embeddings")
def check_factorized_embeddings(cls) -> str:
    """Check the learner's ``cls(vocab_size, d_embed, d_model, max_len, type_vocab_size, dropout,
    norm_eps)``: BERT's embeddings at the small width E (``token``, ``position``, ``segment``,
    ``norm``, ``dropout``), then ``project = nn.Linear(d_embed, d_model)``; ``forward(input_ids,
    token_type_ids=None)`` returns ``[B, T, d_model]``. The checker copies ptlearn's weights in by
    name and compares outputs, dropout and gradients (as chapter 05's ``check_bert_embeddings``);
    it names a missing projection, an unfactorized V x H table, positions or the LayerNorm at
    width H (norm order), and the embedding mistakes of chapter 05."""
    from .ch05 import check_embedding_module

    return check_embedding_module(cls, factorized=True)


SHARED_MISTAKES = {
    "not_shared": "layers not shared: your encoder has {got:,} parameters, {n} x the {one:,} of one "
    "block. ALBERT builds ONE block and applies it n_layers times (a list with the same module "
    "n times, or a loop over one self.block).",
    "count": "your encoder has {got:,} parameters; one post-norm block of this shape has {one:,}, "
    "and with all layers shared that is the whole encoder.",
    "names": "your parameter {name} does not match a parameter of ptlearn's TransformerBlock: "
    "build the block with ptlearn.layers.TransformerBlock (the checker copies its weights by name).",
    "times": "the shared block is applied {k} times; ALBERT applies it config.n_layers = {n} times "
    "(sharing saves parameters, not layers).",
    "pre_norm": "norm order: ALBERT is post-norm like BERT, x = LayerNorm(x + sublayer(x)). "
    "TransformerBlock's default is pre-norm (GPT-2, ViT): pass norm_first=False.",
    "no_mask": "attention_mask ignored: padded keys must be masked. Turn the [B, T] mask (1 = "
    "token, 0 = padding) into the block's key mask with ptlearn.attention.padding_mask and pass "
    "it as mask=.",
    "inverted": "the mask is inverted: attention_mask has 1 = token, 0 = padding, and "
    "padding_mask(attention_mask) keeps the 1s; your padded keys are the only ones attended to.",
    "nan": "the output contains NaN: some attention row has every key masked. Is the mask "
    "inverted? 1 = token, 0 = padding, and padding_mask(attention_mask) keeps the 1s.",
    "activation": "wrong activation: ALBERT uses config.activation ('{act}'); pass it to the block "
    "(you used the exact GELU).",
    "dropout": "dropout: pass config.dropout to the block (your block's dropout is p={got}, the "
    "config says {want}).",
    "detached": "outputs match, but the gradient of the shared {name} differs: the gradient of a "
    "shared block is the sum over all n_layers applications. Do not detach x between layers.",
    "not_a_tensor": "forward should return the last hidden states [B, T, d_model] as a tensor, not "
    "a {kind}.",
}


def shared_reference(c):
    """ptlearn's ALBERT encoder (``share="all"``) with random, non-trivial weights."""
    from ..models.albert import albert_blocks
    from ..transformer import Encoder

    encoder = Encoder(albert_blocks(c)).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in encoder.layers[0].named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "norm" in name:
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    return encoder


def match_block_names(module, block) -> dict[str, str]:
    """Map each (unique) parameter of the learner's encoder to the reference block's parameter whose
    name it ends with (``block.attn.q.weight`` -> ``attn.q.weight``)."""
    ref_names = [n for n, _ in block.named_parameters()]
    mapping = {}
    for name, _ in module.named_parameters():
        hits = [r for r in ref_names if name == r or name.endswith("." + r)]
        if len(hits) != 1:
            raise Mistake(SHARED_MISTAKES["names"].format(name=name))
        mapping[name] = hits[0]
    return mapping


def applied(block, x: Tensor, mask, times: int) -> Tensor:
    for _ in range(times):
        x = block(x, mask=mask)[0]
    return x


@exercise("shared encoder")
def check_shared_encoder(cls) -> str:
    """Check the learner's ``cls(config)``: ONE post-norm ``TransformerBlock`` of the config's shape
    (``norm_first=False``, ``config.activation``, ``config.dropout``, ``config.norm_eps``), and
    ``forward(x [B, T, C], attention_mask [B, T] or None) -> [B, T, C]`` applying it
    ``config.n_layers`` times with the padding mask. The checker counts the parameters (one
    block's), copies ptlearn's weights in by name, and compares outputs (with and without padding)
    and gradients with ptlearn's ALBERT encoder. Recognises the mistakes in ``SHARED_MISTAKES``."""
    import copy

    from ..attention import padding_mask
    from ..models.albert import AlbertConfig

    m, g = SHARED_MISTAKES, torch.Generator().manual_seed(8)
    shape = dict(vocab_size=50, d_embed=8, d_model=16, n_layers=3, n_heads=2, d_ff=32, max_len=16)
    c = AlbertConfig(**shape, dropout=0.1)
    module = call(named(cls, cls.__name__), c, inputs="an AlbertConfig with d_model=16, n_layers=3")
    dropouts = {mod.p for mod in module.modules() if isinstance(mod, nn.Dropout)}
    if dropouts and c.dropout not in dropouts:
        raise Mistake(m["dropout"].format(got=max(dropouts), want=c.dropout))
    module.eval()
    reference = shared_reference(c)
    block = reference.layers[0]
    one = sum(p.numel() for p in block.parameters())
    got_n = sum(p.numel() for p in module.parameters())
    if got_n != one:
        key = "not_shared" if got_n == c.n_layers * one else "count"
        raise Mistake(m[key].format(got=got_n, n=c.n_layers, one=one))
    mapping = match_block_names(module, block)
    ref_params = dict(block.named_parameters())
    with torch.no_grad():
        for name, ref_name in mapping.items():
            module.get_parameter(name).copy_(ref_params[ref_name])
    forward = named(module, f"{type(module).__name__}.forward")
    x = torch.randn(3, 7, c.d_model, generator=g)
    attention_mask = torch.ones(3, 7, dtype=torch.long)
    attention_mask[1, 5:], attention_mask[2, 3:] = 0, 0  # two padded rows
    mask = padding_mask(attention_mask)
    pre_norm = copy.deepcopy(block)
    pre_norm.norm_first = True
    exact_gelu = copy.deepcopy(block)
    exact_gelu.ffn.act = nn.GELU()
    for given in (None, attention_mask):
        inputs = f"x {list(x.shape)}, attention_mask {'None' if given is None else [3, 7]}"
        got = call(forward, x, given, inputs=inputs)
        if not isinstance(got, Tensor):
            raise Mistake(m["not_a_tensor"].format(kind=type(got).__name__))
        expect_shape(got, x.shape, "the output", "The encoder keeps the shape [B, T, C].")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise Mistake(m["nan"])
        key_mask = None if given is None else mask
        with torch.no_grad():
            ref = reference(x, given).last_hidden_state
            if close(got, ref):
                continue
            variants = {
                m["pre_norm"]: applied(pre_norm, x, key_mask, c.n_layers),
                m["activation"].format(act=c.activation): applied(
                    exact_gelu, x, key_mask, c.n_layers
                ),
            }
            if given is not None:
                variants[m["no_mask"]] = applied(block, x, None, c.n_layers)
                variants[m["inverted"]] = applied(block, x, ~mask, c.n_layers)
            for k in range(1, 2 * c.n_layers + 1):
                if k != c.n_layers:
                    variants[m["times"].format(k=k, n=c.n_layers)] = applied(block, x, key_mask, k)
        raise Mistake(
            diagnose(got, variants)
            or "the output differs from ptlearn's shared post-norm encoder "
            f"(largest difference {(got - ref).abs().max():.3g})."
        )
    upstream = torch.randn(x.shape, generator=g)
    reference.zero_grad()
    (reference(x, attention_mask).last_hidden_state * upstream).sum().backward()
    module.zero_grad()
    (call(forward, x, attention_mask, inputs="x, attention_mask") * upstream).sum().backward()
    for name, ref_name in mapping.items():
        grad, ref_grad = module.get_parameter(name).grad, ref_params[ref_name].grad
        if grad is None or not close(grad, ref_grad, atol=1e-4, rtol=1e-3):
            raise Mistake(m["detached"].format(name=ref_name))
    return (
        f"one post-norm block ({one:,} parameters) applied {c.n_layers} times with the padding "
        "mask: same outputs and gradients as ptlearn's ALBERT encoder."
    )


class EncoderAdapter(nn.Module):
    """Wraps an encoder ``module(x, attention_mask) -> [B, T, C]`` so that ``AlbertModel`` can call
    it like ptlearn's :class:`~ptlearn.transformer.Encoder` (which returns a ``ModelOutput``)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x, attention_mask=None, output_attentions=False, output_hidden_states=False):
        from ..outputs import ModelOutput

        if output_attentions or output_hidden_states:
            raise ValueError(
                "this model's encoder is your shared encoder, which returns only the last hidden "
                "states: it cannot report attentions or per-layer hidden states."
            )
        return ModelOutput(last_hidden_state=self.module(x, attention_mask))


def albert_with_your_modules(model, embeddings_class=None, encoder_class=None):
    """Put the learner's modules into ptlearn's ``AlbertForPreTraining`` ``model`` (in place;
    returns it). ``embeddings_class(vocab_size, d_embed, d_model, max_len, type_vocab_size,
    dropout, norm_eps)`` replaces the embeddings and the E -> H projection (the MLM head stays tied
    to its token table); ``encoder_class(config)`` replaces the encoder. Each starts from the
    weights the model had, so training follows the same run. ``None`` keeps ptlearn's module."""
    with torch.random.fork_rng(devices=[]):  # building modules must not move the seed
        return _albert_with(model, embeddings_class, encoder_class)


def _albert_with(model, embeddings_class, encoder_class):
    from .ch05 import load_same_names

    c, albert = model.config, model.albert
    device = albert.embeddings.token.weight.device
    if embeddings_class is not None:
        new = embeddings_class(
            c.vocab_size, c.d_embed, c.d_model, c.max_len, c.type_vocab_size,
            dropout=c.dropout, norm_eps=c.norm_eps,
        )  # fmt: skip
        load_same_names(new, albert.embeddings)
        load_same_names(new.project, albert.project)
        albert.embeddings, albert.project = new.to(device), nn.Identity()
        model.mlm.decoder.weight = new.token.weight  # the MLM head stays tied to the new table
    if encoder_class is not None:
        new = encoder_class(c)
        block = albert.encoder.layers[0]
        params = dict(block.named_parameters())
        with torch.no_grad():
            for name, ref_name in match_block_names(new, block).items():
                new.get_parameter(name).copy_(params[ref_name])
        albert.encoder = EncoderAdapter(new.to(device))
    return model
