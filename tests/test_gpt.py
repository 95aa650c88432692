"""GPT: shapes, the shifted LM loss, causality, the KV cache, sampling filters, bad input, learning."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ptlearn.models import GPT, GPTConfig
from ptlearn.models.gpt import filter_logits

V, B, T = 100, 2, 10


def tiny(**overrides) -> GPT:
    return GPT(GPTConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=4, **overrides)).eval()


def test_shapes_of_logits_attentions_and_hidden_states():
    model = tiny()
    out = model(torch.randint(0, V, (B, T)), output_attentions=True, output_hidden_states=True)
    assert out.logits.shape == (B, T, V)
    assert [a.shape for a in out.attentions] == [(B, 4, T, T)] * 2
    assert [h.shape for h in out.hidden_states] == [(B, T, 32)] * 3
    assert out.loss is None and out.past_key_values is None


def test_lm_head_is_tied_to_the_token_embedding():
    model = tiny()
    assert model.lm_head.weight is model.embeddings.token.weight
    assert model.lm_head.bias is None


def test_loss_is_next_token_cross_entropy_and_ignores_minus_100():
    model = tiny()
    ids = torch.randint(0, V, (B, T))
    out = model(ids, labels=ids)
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    labels = ids.clone()
    labels[:, 5:] = -100
    partial = model(ids, labels=labels).loss
    expected = F.cross_entropy(out.logits[:, :4].reshape(-1, V), ids[:, 1:5].reshape(-1))
    torch.testing.assert_close(partial, expected)


def test_labels_one_token_longer_train_every_position():
    """A window of T + 1 tokens (nanoGPT's way): the inputs are its first T, and position T - 1,
    which HF's convention never trains, is scored against the extra token."""
    model = tiny()
    window = torch.randint(0, V, (B, T + 1))
    out = model(window[:, :-1], labels=window)
    expected = F.cross_entropy(out.logits.reshape(-1, V), window[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    last_position = model.embeddings.position.weight.grad[T - 1]
    assert last_position.abs().sum() > 0  # the last position's embedding now gets a gradient


def test_output_at_t_has_no_gradient_from_later_inputs():
    model = tiny()
    captured = {}

    def keep(module, args, output):
        output.retain_grad()
        captured["x"] = output

    model.embeddings.register_forward_hook(keep)
    t = 4
    model(torch.randint(0, V, (1, T))).logits[0, t].sum().backward()
    grad = captured["x"].grad[0].abs().sum(-1)  # [T]
    assert torch.all(grad[t + 1 :] == 0) and torch.all(grad[: t + 1] > 0)


@settings(max_examples=25, deadline=None)
@given(length=st.integers(2, 24), cut=st.integers(0, 22), seed=st.integers(0, 10_000))
def test_changing_later_tokens_never_changes_earlier_logits(length, cut, seed):
    """The whole model is causal: logits up to ``cut`` ignore every token after it."""
    torch.manual_seed(seed)
    model, cut = tiny(max_len=24), cut % (length - 1)
    ids = torch.randint(0, V, (2, length))
    changed = ids.clone()
    changed[:, cut + 1 :] = torch.randint(0, V, changed[:, cut + 1 :].shape)
    with torch.no_grad():
        logits, logits_changed = model(ids).logits, model(changed).logits  # [B, T, V]
    torch.testing.assert_close(logits_changed[:, : cut + 1], logits[:, : cut + 1])


def test_padding_mask_hides_keys():
    model = tiny()
    ids, mask = torch.randint(0, V, (B, T)), torch.ones(B, T, dtype=torch.long)
    mask[0, :3] = 0  # left padding in row 0
    out = model(ids, attention_mask=mask, output_attentions=True)
    assert all(torch.all(a[0, :, 3:, :3] == 0) for a in out.attentions)
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("n_layers,n_heads", [(1, 2), (2, 4), (3, 8)])
def test_cached_forward_equals_full_forward(n_layers, n_heads):
    model = GPT(GPTConfig(vocab_size=V, d_model=32, n_layers=n_layers, n_heads=n_heads)).eval()
    ids = torch.randint(0, V, (B, T))
    full = model(ids).logits
    first = model(ids[:, :6], use_cache=True)
    rest = [model(ids[:, t : t + 1], past_key_values=first.past_key_values) for t in range(6, T)]
    steps = torch.cat([first.logits] + [r.logits for r in rest], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_tokens_with_and_without_cache_are_identical(seed):
    torch.manual_seed(seed)
    model = tiny(max_len=64)
    prompt = torch.randint(0, V, (3, 5))
    cached = model.generate(prompt, 30, temperature=0)
    uncached = model.generate(prompt, 30, temperature=0, use_cache=False)
    assert cached.shape == (3, 35) and torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, uncached)


def test_sampling_is_reproducible_and_top_k_1_is_greedy():
    model = tiny()
    prompt = torch.randint(0, V, (2, 4))
    draw = [model.generate(prompt, 12, generator=torch.Generator().manual_seed(7)) for _ in "ab"]
    assert torch.equal(draw[0], draw[1])
    assert torch.equal(
        model.generate(prompt, 12, top_k=1), model.generate(prompt, 12, temperature=0)
    )


def test_filter_logits_top_k_and_nucleus():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert torch.isfinite(filter_logits(logits, top_k=3)).tolist() == [[True, True, True, False]]
    # nucleus 0.75: 0.5 is not enough, 0.5 + 0.3 is; the rest go
    assert torch.isfinite(filter_logits(logits, top_p=0.75)).tolist() == [
        [True, True, False, False]
    ]
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [
        [True, False, False, False]
    ]
    assert torch.equal(filter_logits(logits), logits)
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(logits, top_p=0.0)


def test_bad_input_gives_clear_errors():
    model = tiny(max_len=16)
    ids = torch.randint(0, V, (B, 8))
    with pytest.raises(
        ValueError, match=r"max_len is 16.*8-token prompt|8-token prompt.*max_len is 16"
    ):
        model.generate(ids, 9)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[1, V]]))
    with pytest.raises(TypeError, match="integer token ids"):
        model(ids.float())
    with pytest.raises(ValueError, match="max_len is 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(ids, attention_mask=torch.ones(B, 7))
    with pytest.raises(ValueError, match="labels has shape"):
        model(ids, labels=ids[:, :5])
    with pytest.raises(ValueError, match="labels has shape"):
        model(ids, labels=torch.cat([ids, ids[:, :2]], dim=1))  # two tokens too long
    with pytest.raises(ValueError, match="no segment embeddings"):
        model(ids, token_type_ids=torch.zeros_like(ids))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(ids, 2, temperature=-1.0)
    with pytest.raises(ValueError, match="n_heads=5 does not divide d_model=32"):
        GPTConfig(d_model=32, n_heads=5)


def test_gpt_learns_to_count():
    """Sequences count up mod 20 from a random start: after the first token, every next token is
    determined, so the loss must fall far below log(20) = 3.0."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(80):
        ids = (torch.randint(0, 20, (32, 1)) + torch.arange(12)) % 20
        loss = model(ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5
    model.eval()
    assert model.generate(torch.tensor([[3, 4]]), 5, temperature=0).tolist() == [
        [3, 4, 5, 6, 7, 8, 9]
    ]
