"""The build-it checkers of chapters 05 (BERT's embeddings, the tied MLM head) and 06 (ALBERT's
factorized embedding, the shared encoder): a solution written here independently passes, each
typical mistake gets its own message, and the learner's modules drop into ptlearn's models."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ptlearn import AlbertConfig, AlbertForPreTraining, BertConfig, BertForPreTraining
from ptlearn.attention import padding_mask
from ptlearn.exercises.ch05 import (
    EMBEDDINGS_MISTAKES,
    FACTORIZED_NAMES,
    MLM_HEAD_MISTAKES,
    MLM_HEAD_NAMES,
    bert_with_your_modules,
    check_bert_embeddings,
    check_mlm_head,
)
from ptlearn.exercises.ch06 import (
    SHARED_MISTAKES,
    albert_with_your_modules,
    check_factorized_embeddings,
    check_shared_encoder,
)
from ptlearn.layers import TransformerBlock


def fails_with(result, message: str) -> None:
    assert not result.passed, result.message
    assert message.split("{")[0] in result.message, result.message


# --- chapter 05: BERT's embeddings ----------------------------------------------------------------


class Embeddings(nn.Module):
    """A correct solution, written the way a learner would (HF-style position ids), with switches
    that reproduce the typical mistakes."""

    def __init__(self, vocab_size, d_model, max_len, type_vocab_size=2, dropout=0.1,
                 norm_eps=1e-12, mistake=None, d_embed=None):  # fmt: skip
        super().__init__()
        self.mistake = mistake
        d = d_embed or d_model  # width of the tables (E for ALBERT)
        table = d_model if mistake == "unfactorized" else d
        self.token = nn.Embedding(vocab_size, table)
        self.position = nn.Embedding(max_len, d)
        self.segment = nn.Embedding(type_vocab_size, d)
        if mistake != "no_norm_module":
            self.norm = nn.LayerNorm(d_model if mistake == "norm_after" else d, eps=norm_eps)
        self.dropout = nn.Dropout(dropout)
        if d_embed is not None and mistake != "no_projection_module":
            self.project = nn.Linear(d_embed, d_model, bias=mistake != "no_bias")

    def forward(self, input_ids, token_type_ids=None):
        m = self.mistake
        T = input_ids.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(T, device=input_ids.device)
        x = self.token(input_ids)
        if m == "scaled":
            x = x * math.sqrt(x.shape[-1])
        if m == "positions_by_id":
            x = x + self.position(input_ids)
        elif m != "no_positions":
            x = x + self.position(positions)
        if m != "no_segments":
            x = x + self.segment(token_type_ids)
        if m == "dropout_first":
            x = self.dropout(x)
        if m not in ("no_norm", "norm_after"):
            x = self.norm(x)
        if m not in ("no_dropout", "dropout_first", "dropout_after"):
            x = self.dropout(x)
        if hasattr(self, "project") and m != "no_projection":
            x = self.project(x)
        if m == "norm_after":
            x = self.norm(x)
        if m == "dropout_after":
            x = self.dropout(x)
        return x


def embeddings_with(mistake):
    def make(*args, **kwargs):
        return Embeddings(*args, **kwargs, mistake=mistake)

    make.__name__ = f"Embeddings_{mistake}"
    return make


def test_bert_embeddings_solution_passes_and_stub_is_reported():
    assert check_bert_embeddings(Embeddings).passed

    class Stub(nn.Module):  # the notebook's stub
        def __init__(self, *args, **kwargs):
            super().__init__()
            raise NotImplementedError

    result = check_bert_embeddings(Stub)
    assert not result.passed and "Stub is not implemented yet" in result.message

    class Empty(nn.Module):
        def forward(self, input_ids, token_type_ids=None):
            return input_ids

    fails_with(check_bert_embeddings(lambda *a, **k: Empty()), "has no parameters yet")


@pytest.mark.parametrize(
    "mistake, key",
    [
        ("no_positions", "no_positions"),
        ("positions_by_id", "positions_by_id"),
        ("no_segments", "no_segments"),
        ("no_norm", "no_norm"),
        ("scaled", "scaled"),
        ("no_dropout", "no_dropout"),
        ("dropout_first", "dropout_first"),
    ],
)
def test_bert_embeddings_mistakes_are_named(mistake, key):
    fails_with(check_bert_embeddings(embeddings_with(mistake)), EMBEDDINGS_MISTAKES[key])


def test_bert_embeddings_missing_norm_module_and_detached_positions():
    fails_with(check_bert_embeddings(embeddings_with("no_norm_module")), "no LayerNorm")

    class Detached(Embeddings):
        def forward(self, input_ids, token_type_ids=None):
            T = input_ids.shape[1]
            x = self.token(input_ids) + self.position.weight[:T].detach()
            x = x + self.segment(torch.zeros_like(input_ids) if token_type_ids is None else
                                 token_type_ids)  # fmt: skip
            return self.dropout(self.norm(x))

    fails_with(check_bert_embeddings(Detached), "no gradient reaches position.weight")


def test_bert_embeddings_wrong_table_size_is_named():
    class PositionsByVocab(Embeddings):
        def __init__(self, vocab_size, d_model, max_len, *args, **kwargs):
            super().__init__(vocab_size, d_model, max_len, *args, **kwargs)
            self.position = nn.Embedding(vocab_size, d_model)

    result = check_bert_embeddings(PositionsByVocab)
    fails_with(result, "position.weight has shape [40, 12], expected [48, 12]")


# --- chapter 05: the tied MLM head -----------------------------------------------------------------


class Head(nn.Module):
    """A correct tied head (the embedding kept as a submodule too), with mistake switches."""

    def __init__(self, d_model, embedding, norm_eps=1e-12, mistake=None):
        super().__init__()
        self.mistake = mistake
        vocab, width = embedding.weight.shape
        self.embedding = embedding
        self.dense = nn.Linear(d_model, width)
        self.norm = nn.LayerNorm(width, eps=norm_eps)
        self.decoder = nn.Linear(width, vocab, bias=mistake != "no_bias")
        if mistake == "copied":
            self.decoder.weight = nn.Parameter(embedding.weight.detach().clone())
        elif mistake == "detached":
            del self.decoder.weight
            self.decoder.weight = embedding.weight.detach()
        elif mistake != "not_tied":
            self.decoder.weight = embedding.weight

    def forward(self, hidden):
        m = self.mistake
        if m == "no_transform":
            return self.decoder(hidden)
        h = self.dense(hidden)
        if m == "norm_first":
            return self.decoder(F.gelu(self.norm(h)))
        h = torch.relu(h) if m == "relu" else F.gelu(h)
        logits = self.decoder(self.norm(h))
        return logits.log_softmax(-1) if m == "log_softmax" else logits


def head_with(mistake):
    def make(*args, **kwargs):
        return Head(*args, **kwargs, mistake=mistake)

    make.__name__ = f"Head_{mistake}"
    return make


def test_mlm_head_solution_passes():
    assert check_mlm_head(Head).passed


@pytest.mark.parametrize(
    "mistake, message",
    [
        ("copied", MLM_HEAD_MISTAKES["copied"]),
        ("not_tied", MLM_HEAD_MISTAKES["not_tied"]),
        ("no_bias", MLM_HEAD_NAMES["decoder.bias"]),
        ("no_transform", MLM_HEAD_MISTAKES["no_transform"]),
        ("norm_first", MLM_HEAD_MISTAKES["norm_first"]),
        ("relu", "wrong activation"),
        ("log_softmax", MLM_HEAD_MISTAKES["softmax"]),
    ],
)
def test_mlm_head_mistakes_are_named(mistake, message):
    fails_with(check_mlm_head(head_with(mistake)), message)


def test_mlm_head_without_gradient_to_the_embedding_is_named():
    # a plain tensor in place of the tied Parameter: the same values, but the MLM loss cannot
    # train the embeddings through the head
    result = check_mlm_head(head_with("detached"))
    assert not result.passed
    assert "not tied" in result.message or "no gradient" in result.message, result.message


def test_bert_with_your_modules_gives_the_same_model():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=12)
    reference = BertForPreTraining(config).eval()
    mine = BertForPreTraining(config)
    mine.load_state_dict(reference.state_dict())
    rng = torch.get_rng_state()
    mine = bert_with_your_modules(mine, Embeddings, Head).eval()
    assert torch.equal(torch.get_rng_state(), rng), "building the modules must not move the seed"
    assert isinstance(mine.bert.embeddings, Embeddings) and isinstance(mine.mlm, Head)
    assert mine.mlm.decoder.weight is mine.bert.embeddings.token.weight
    ids = torch.randint(5, 60, (2, 12))
    types = (torch.arange(12) >= 6).long().expand(2, 12)
    ref, got = reference(ids, token_type_ids=types), mine(ids, token_type_ids=types)
    torch.testing.assert_close(got.logits, ref.logits)
    torch.testing.assert_close(got.pair_logits, ref.pair_logits)


# --- chapter 06: the factorized embedding -----------------------------------------------------------


def factorized(mistake=None):
    def make(vocab_size, d_embed, d_model, max_len, type_vocab_size=2, dropout=0.0, norm_eps=1e-12):
        return Embeddings(vocab_size, d_model, max_len, type_vocab_size, dropout, norm_eps,
                          mistake=mistake, d_embed=d_embed)  # fmt: skip

    make.__name__ = f"Factorized_{mistake}"
    return make


def test_factorized_solution_passes():
    assert check_factorized_embeddings(factorized()).passed


@pytest.mark.parametrize(
    "mistake, message",
    [
        ("no_projection_module", FACTORIZED_NAMES["project.weight"]),
        ("no_projection", EMBEDDINGS_MISTAKES["no_projection"]),
        ("unfactorized", FACTORIZED_NAMES["token.weight:shape"]),
        ("norm_after", FACTORIZED_NAMES["norm.weight:shape"]),
        ("no_bias", FACTORIZED_NAMES["project.bias"]),
        ("no_positions", EMBEDDINGS_MISTAKES["no_positions"]),
        ("no_segments", EMBEDDINGS_MISTAKES["no_segments"]),
        ("dropout_after", EMBEDDINGS_MISTAKES["dropout_after_projection"]),
    ],
)
def test_factorized_mistakes_are_named(mistake, message):
    fails_with(check_factorized_embeddings(factorized(mistake)), message)


# --- chapter 06: the shared encoder -------------------------------------------------------------------


class Shared(nn.Module):
    """A correct shared encoder: one ptlearn block in a loop; switches for the typical mistakes."""

    def __init__(self, config, mistake=None):
        super().__init__()
        c, self.config, self.mistake = config, config, mistake
        kw = dict(
            dropout=0.0 if mistake == "no_dropout" else c.dropout,
            activation="gelu" if mistake == "activation" else c.activation,
            norm_eps=c.norm_eps,
            norm_first=mistake == "pre_norm",
        )
        if mistake == "not_shared":
            self.layers = nn.ModuleList(
                TransformerBlock(c.d_model, c.n_heads, c.d_ff, **kw) for _ in range(c.n_layers)
            )
        else:
            self.block = TransformerBlock(c.d_model, c.n_heads, c.d_ff, **kw)

    def forward(self, x, attention_mask=None):
        m = self.mistake
        mask = None
        if attention_mask is not None and m != "no_mask":
            mask = padding_mask(attention_mask)
            if m == "inverted":
                mask = ~mask
        times = 1 if m == "once" else self.config.n_layers
        for i in range(times):
            block = self.layers[i] if m == "not_shared" else self.block
            x = block(x, mask=mask)[0]
            if m == "detached" and i == 0:
                x = x.detach()
        return x


def shared_with(mistake):
    def make(config):
        return Shared(config, mistake)

    make.__name__ = f"Shared_{mistake}"
    return make


def test_shared_encoder_solution_passes():
    assert check_shared_encoder(Shared).passed


@pytest.mark.parametrize(
    "mistake, key",
    [
        ("not_shared", "not_shared"),
        ("once", "times"),
        ("pre_norm", "pre_norm"),
        ("no_mask", "no_mask"),
        ("inverted", "inverted"),
        ("activation", "activation"),
        ("no_dropout", "dropout"),
        ("detached", "detached"),
    ],
)
def test_shared_encoder_mistakes_are_named(mistake, key):
    fails_with(check_shared_encoder(shared_with(mistake)), SHARED_MISTAKES[key])


def test_albert_with_your_modules_gives_the_same_model():
    torch.manual_seed(0)
    config = AlbertConfig(vocab_size=60, d_embed=8, d_model=16, n_layers=3, n_heads=2, d_ff=32,
                          max_len=12)  # fmt: skip
    reference = AlbertForPreTraining(config).eval()
    mine = AlbertForPreTraining(config)
    mine.load_state_dict(reference.state_dict())
    rng = torch.get_rng_state()
    mine = albert_with_your_modules(mine, factorized(), Shared).eval()
    assert torch.equal(torch.get_rng_state(), rng), "building the modules must not move the seed"
    assert mine.mlm.decoder.weight is mine.albert.embeddings.token.weight
    assert sum(p.numel() for p in mine.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    ids = torch.randint(5, 60, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    ref, got = reference(ids, attention_mask=mask), mine(ids, attention_mask=mask)
    torch.testing.assert_close(got.logits, ref.logits)
    torch.testing.assert_close(got.pair_logits, ref.pair_logits)


# --- the notebooks' own solutions pass their checkers -------------------------------------------------


def notebook_solution(notebook: str, marker: str) -> str:
    """The fenced code of the collapsed solution that contains ``marker``."""
    import json
    import re
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / notebook
    for cell in json.loads(path.read_text())["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and marker in text:
            solution = text.split("<summary>Solution</summary>", 1)[1]
            return re.search(r"```python\n(.*?)```", solution, re.S).group(1)
    raise AssertionError(f"no solution with {marker!r} in {notebook}")


@pytest.mark.parametrize(
    "notebook, name, checker",
    [
        ("05_bert.ipynb", "BertEmbeddingsSolution", check_bert_embeddings),
        ("05_bert.ipynb", "MLMHeadSolution", check_mlm_head),
        ("06_albert.ipynb", "FactorizedEmbeddingsSolution", check_factorized_embeddings),
        ("06_albert.ipynb", "SharedEncoderSolution", check_shared_encoder),
    ],
)
def test_the_notebooks_solutions_pass(notebook, name, checker):
    namespace = {"torch": torch, "nn": nn, "padding_mask": padding_mask,
                 "TransformerBlock": TransformerBlock}  # fmt: skip
    exec(notebook_solution(notebook, f"class {name}("), namespace)
    assert checker(namespace[name]).passed
