"""Muon (ptlearn.training.muon): equal to torch's own Muon and AdamW, orthogonalises, trains."""

import pytest
import torch

from ptlearn.models import GPT, GPTConfig
from ptlearn.training import TrainConfig
from ptlearn.training.muon import Muon, hidden_matrices, orthogonalize
from ptlearn.training.schedule import make_optimizer


def test_orthogonalize_pushes_every_singular_value_towards_one():
    g = torch.Generator().manual_seed(0)
    for shape in [(32, 64), (64, 32), (24, 48)]:  # square random matrices have s ~ 0
        G = torch.randn(*shape, generator=g) * torch.logspace(-1, 1, shape[1])  # ill-conditioned
        before = torch.linalg.svdvals(G)
        after = torch.linalg.svdvals(orthogonalize(G))
        assert before.max() / before.min() > 20
        assert after.min() > 0.5 and after.max() < 1.3  # the quintic's band, not exactly 1


def run_steps(optimizer_cls_or_factory, param, grads):
    p = torch.nn.Parameter(param.clone())
    opt = optimizer_cls_or_factory([p])
    for grad in grads:
        p.grad = grad.clone()
        opt.step()
    return p.detach()


def test_muon_groups_equal_torch_muon_and_adamw_groups_equal_torch_adamw():
    g = torch.Generator().manual_seed(1)
    for shape in [(16, 8), (8, 16)]:
        w = torch.randn(*shape, generator=g)
        grads = [torch.randn(*shape, generator=g) for _ in range(5)]
        ours = run_steps(
            lambda ps: Muon([dict(params=ps, muon=True, lr=0.02, weight_decay=0.1)]), w, grads
        )
        theirs = run_steps(lambda ps: torch.optim.Muon(ps, lr=0.02, weight_decay=0.1), w, grads)
        # torch computes the orthogonalisation in bfloat16, ptlearn on a CPU in float32
        torch.testing.assert_close(ours, theirs, rtol=0, atol=5e-3)
        assert (ours - w).abs().max() > 0.05  # it moved
    w = torch.randn(10, generator=g)
    grads = [torch.randn(10, generator=g) for _ in range(5)]
    kw = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    ours = run_steps(lambda ps: Muon([dict(params=ps, **kw)]), w, grads)
    theirs = run_steps(lambda ps: torch.optim.AdamW(ps, **kw), w, grads)
    torch.testing.assert_close(ours, theirs)


def test_orthogonalize_in_bfloat16_equals_torchs_newton_schulz():
    from torch.optim._muon import _zeropower_via_newtonschulz  # the reference's own iteration

    G = torch.randn(24, 40, generator=torch.Generator().manual_seed(3))
    theirs = _zeropower_via_newtonschulz(G, (3.4445, -4.7750, 2.0315), 5, 1e-7).float()
    for ours in (orthogonalize(G, dtype=torch.bfloat16), orthogonalize(G)):  # float32 on a CPU
        diff = (ours - theirs).abs()  # bfloat16 rounds each product: a few % on single entries
        assert diff.max() < 5e-2 and diff.mean() < 5e-3


def test_muon_refuses_vectors():
    with pytest.raises(ValueError, match="matrices only"):
        Muon([dict(params=[torch.nn.Parameter(torch.zeros(4))], muon=True, lr=0.02)])


def test_trainer_optimizer_gives_block_matrices_to_muon_and_the_rest_to_adamw():
    model = GPT(GPTConfig(vocab_size=20, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=8))
    opt = make_optimizer(model, TrainConfig(lr=1e-3, muon_lr=0.02), torch.device("cpu"))
    muon = [g for g in opt.param_groups if g["muon"]]
    assert len(muon) == 1 and muon[0]["lr_scale"] == pytest.approx(20.0)
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = sorted(names[id(p)] for p in muon[0]["params"])
    assert all(".layers." in n and n.endswith("weight") for n in muon_names)
    assert len(muon_names) == 2 * 4  # qkv, out, fc_in, fc_out per block
    assert "embeddings.token.weight" not in muon_names  # the tied embedding/head stays on AdamW
    assert len(hidden_matrices(model)) == 8
    total = sum(len(g["params"]) for g in opt.param_groups)
    assert total == len(list(model.parameters()))
