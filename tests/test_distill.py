"""Distillation (the loss on a worked example, T^2 scaling, the Trainer-ready wrapper) and
compression (int8 quantization, size on disk, latency)."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ptlearn.distill import (
    DistillationModel,
    Int8Linear,
    distillation_loss,
    hidden_state_loss,
    latency_ms,
    model_size_bytes,
    quantize_dynamic_int8,
    quantize_linear_int8,
    uniform_layer_map,
)
from ptlearn.models.bert import BertConfig, BertForSequenceClassification

V, T = 100, 8


def bert(d_model: int, n_layers: int) -> BertForSequenceClassification:
    cfg = BertConfig(vocab_size=V, d_model=d_model, n_layers=n_layers, n_heads=4, d_ff=2 * d_model)
    return BertForSequenceClassification(cfg)


def batch(n: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids = torch.randint(10, 55, (n, T), generator=g) + 45 * labels[:, None]
    return {
        "input_ids": ids,
        "attention_mask": torch.ones(n, T, dtype=torch.long),
        "labels": labels,
    }


# --- the loss -------------------------------------------------------------------------------------


def test_distillation_loss_on_a_worked_example():
    student, teacher, label = [1.0, 2.0, 0.5], [2.0, 1.0, 0.0], 0
    # T = 2: p = softmax([1.0, 0.5, 0.0]) = [0.506480, 0.307196, 0.186324]  (teacher)
    #        q = softmax([0.5, 1.0, 0.25]) = [0.291756, 0.481024, 0.227220]  (student)
    p, q = [0.506480, 0.307196, 0.186324], [0.291756, 0.481024, 0.227220]
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))  # = 0.104629
    ce = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(2.0) + math.exp(0.5)))  # = 1.464369
    expected = 0.5 * 2**2 * kl + 0.5 * ce  # = 0.941443
    assert expected == pytest.approx(0.941443, abs=1e-5)
    loss = distillation_loss(
        torch.tensor([student]), torch.tensor([teacher]), torch.tensor([label]), 2.0, 0.5
    )
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_alpha_zero_is_cross_entropy_and_alpha_one_is_the_scaled_kl():
    s, t, y = torch.randn(6, 4), torch.randn(6, 4), torch.randint(0, 4, (6,))
    torch.testing.assert_close(distillation_loss(s, t, y, 3.0, alpha=0.0), F.cross_entropy(s, y))
    kl = F.kl_div(F.log_softmax(s / 3, -1), F.softmax(t / 3, -1), reduction="batchmean")
    torch.testing.assert_close(distillation_loss(s, t, y, 3.0, alpha=1.0), 9 * kl)
    torch.testing.assert_close(distillation_loss(s, t, None, 3.0), 9 * kl)  # no labels: soft only


def test_t_squared_keeps_the_soft_gradient_the_same_size_at_any_temperature():
    B, K = 4, 5
    s, t = torch.randn(B, K), torch.randn(B, K)
    grads = {}
    for temperature in (2.0, 20.0):
        z = s.clone().requires_grad_()
        distillation_loss(z, t, None, temperature).backward()
        grads[temperature] = z.grad
    # dL/dz = T (q - p) -> (z - v) / K per example for large T (centred logits), / B for the mean
    centred = (s - s.mean(-1, keepdim=True)) - (t - t.mean(-1, keepdim=True))
    torch.testing.assert_close(grads[20.0], centred / (K * B), rtol=0.1, atol=2e-3)
    assert grads[2.0].norm() / grads[20.0].norm() == pytest.approx(1.0, abs=0.1)


def test_positions_labelled_minus_100_are_left_out_of_both_terms():
    s, t = torch.randn(2, 3, 7), torch.randn(2, 3, 7)  # [B, T, K]: every position is an example
    y = torch.tensor([[1, 2, -100], [-100, 4, 5]])
    keep = y != -100
    expected = distillation_loss(s[keep], t[keep], y[keep], 2.0, 0.3)
    torch.testing.assert_close(distillation_loss(s, t, y, 2.0, 0.3), expected)


def test_hidden_state_loss_projects_to_the_teacher_width():
    hs, ht = torch.randn(2, T, 16), torch.randn(2, T, 32)
    with pytest.raises(ValueError, match="projection"):
        hidden_state_loss(hs, ht)
    proj = nn.Linear(16, 32)
    torch.testing.assert_close(hidden_state_loss(hs, ht, proj), F.mse_loss(proj(hs), ht))
    assert uniform_layer_map(2, 4) == [(0, 0), (1, 2), (2, 4)]


# --- DistillationModel ----------------------------------------------------------------------------


def test_distillation_model_sends_gradients_to_the_student_only():
    teacher, student = bert(64, 4), bert(32, 2)
    model = DistillationModel(student, teacher, temperature=2.0, alpha=0.7, hidden_weight=0.5)
    model.train()
    assert not teacher.training and student.training
    out = model(**batch())
    parts = out.extra
    expected = 0.7 * parts["soft_loss"] + 0.3 * parts["hard_loss"] + 0.5 * parts["hidden_loss"]
    torch.testing.assert_close(out.loss.detach(), expected)
    assert out.logits.shape == (16, 2)
    out.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert model.projection.weight.grad is not None  # 32 -> 64: learned with the student
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in [*student.parameters(), *model.projection.parameters()]}


def fit(model: nn.Module, data: dict, steps: int = 30, lr: float = 1e-2) -> list[float]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(**data).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_distillation_without_labels_teaches_the_student_the_teachers_answers():
    teacher, student = bert(32, 2), bert(16, 1)
    fit(teacher, batch(32))  # a teacher with opinions
    transfer = batch(32, seed=1)
    del transfer["labels"]  # an unlabelled transfer set: the soft targets are all there is
    losses = fit(DistillationModel(student, teacher, temperature=2.0), transfer)
    assert losses[-1] < 0.1 * losses[0]
    with torch.no_grad():
        agree = student.eval()(**transfer).logits.argmax(-1) == teacher(**transfer).logits.argmax(
            -1
        )
    assert agree.float().mean() >= 0.95


# --- compression ----------------------------------------------------------------------------------


def linear_heavy() -> nn.Module:
    return nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU())


@pytest.mark.parametrize("quantize", [quantize_dynamic_int8, quantize_linear_int8])
def test_int8_quantization_is_smaller_and_close(quantize):
    model, x = linear_heavy().eval(), torch.randn(8, 256)
    q = quantize(model)
    assert isinstance(model[0], nn.Linear)  # the float model is left as it was
    assert model_size_bytes(model) / model_size_bytes(q) > 3.0
    with torch.no_grad():
        y, yq = model(x), q(x)
    assert (yq - y).norm() / y.norm() < 0.02


@pytest.mark.parametrize("quantize", [quantize_dynamic_int8, quantize_linear_int8])
def test_quantized_bert_keeps_its_predictions(quantize):
    model, data = bert(64, 2).eval(), batch()
    del data["labels"]
    q = quantize(model)
    with torch.no_grad():
        torch.testing.assert_close(q(**data).logits, model(**data).logits, rtol=0.05, atol=0.02)


def test_int8_linear_rounds_each_weight_to_within_half_a_step():
    linear = nn.Linear(32, 8)
    q = Int8Linear(linear)
    restored = q.weight_int8.float() * q.weight_scale[:, None]
    assert q.weight_int8.dtype == torch.int8 and q.weight_int8.abs().max() == 127
    assert torch.all((restored - linear.weight).abs() <= q.weight_scale[:, None] / 2 + 1e-7)


def test_latency_is_measured_in_eval_mode_and_restores_the_mode():
    model = linear_heavy().train()
    ms = latency_ms(model, {"input": torch.randn(4, 256)}, repeats=3, warmup=1)
    assert ms > 0 and model.training


# --- chapter 10's claim, over the seeds measured by benchmarks/distillation_seeds.py --------------

ROOT = Path(__file__).resolve().parents[1]


def test_chapter_10_bars_hold_on_every_measured_seed():
    """Chapter 10 runs one seed live; the bars its check asserts must hold on every seed that
    benchmarks/distillation_seeds.py measured (0, 1, 2 at least): the distilled student within
    NULL_BAND of labels alone (no reliable effect at this budget) and every student at least
    TEACHER_GAP below the teacher. The stored summary must be the one its records give."""
    stored = json.loads((ROOT / "benchmarks/results/distillation_seeds.json").read_text())
    notebook = json.loads((ROOT / "notebooks/10_distillation.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    band, gap = map(
        float, re.search(r"^NULL_BAND, TEACHER_GAP = ([0-9.]+), ([0-9.]+)", code, re.M).groups()
    )
    records = stored["seeds"]
    assert {0, 1, 2} <= {r["seed"] for r in records}
    gains = [r["transfer set"] - r["labels alone"] for r in records]
    assert max(abs(g) for g in gains) <= band, f"gains {gains} vs the chapter's band {band}"
    students = ("labels alone", "soft targets", "transfer set")
    assert all(r["teacher"] >= max(r[s] for s in students) + gap for r in records)
    assert stored["summary"]["transfer set - labels alone"]["min"] == pytest.approx(min(gains))


def test_every_other_layer_is_the_teacher_with_layers_0_2_4():
    """DistilBERT's student: running it is running the teacher's embeddings and its layers
    0, 2 and 4 in a row (nothing left random, nothing else copied)."""
    from ptlearn.distill import every_other_layer
    from ptlearn.models.bert import BertModel

    torch.manual_seed(0)
    teacher = BertModel(
        BertConfig(vocab_size=50, d_model=16, n_layers=6, n_heads=2, d_ff=32, max_len=16)
    ).eval()
    student = every_other_layer(teacher).eval()
    assert student.config.n_layers == 3 and student.config.d_model == 16
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        x = teacher.embeddings(ids)
        for i in (0, 2, 4):
            x = teacher.encoder.layers[i](x)[0]
        torch.testing.assert_close(student(ids).last_hidden_state, x)
        assert not torch.allclose(x, teacher(ids).last_hidden_state)  # a real difference


def test_pseudo_labelled_batches_are_the_same_draws_with_the_teachers_argmax():
    from ptlearn.distill import pseudo_labelled

    torch.manual_seed(0)
    teacher = bert(16, 2).eval()
    rows = torch.randint(1, V, (10, T))

    def batch_fn(generator):
        pick = torch.randint(0, 10, (4,), generator=generator)
        return {"input_ids": rows[pick], "labels": torch.full((4,), -1)}

    plain = batch_fn(torch.Generator().manual_seed(3))
    labelled = pseudo_labelled(batch_fn, teacher)(torch.Generator().manual_seed(3))
    assert torch.equal(labelled["input_ids"], plain["input_ids"])  # same draws
    with torch.no_grad():
        expected = teacher(input_ids=plain["input_ids"]).logits.argmax(-1)
    assert torch.equal(labelled["labels"], expected) and labelled["labels"].min() >= 0


class _WordTokenizer:
    """Ids from word lengths: enough to check the split without a real vocabulary."""

    sep_id = 3

    def encode(self, text):
        return [2, *(10 + len(w) for w in text.split()), 3]


def test_labelled_and_transfer_split_the_rows_without_overlap_or_labels_in_the_transfer_set():
    from ptlearn.distill import labelled_and_transfer

    # row i's first id is 11 + i, so every row can be traced back
    texts = [" ".join(["w" * (1 + i)] * (1 + i % 9)) for i in range(100)]
    labels = [i % 2 for i in range(100)]
    labelled, transfer, rows = labelled_and_transfer(
        texts, labels, 10, 30, _WordTokenizer(), max_len=6
    )
    assert len(labelled) == 10
    assert len(transfer) == 40  # the transfer set holds the labelled rows' text too
    assert set(transfer.columns) == {"input_ids"}  # text only: no label reaches the student
    lengths = [len(transfer[i]["input_ids"]) for i in range(40)]
    assert lengths == sorted(lengths) and max(lengths) <= 6  # sorted by length, cut at max_len
    assert all(transfer[i]["input_ids"][-1] == 3 for i in range(40))  # cut rows end in [SEP]
    labelled_rows = [labelled[i]["input_ids"][1] - 11 for i in range(10)]
    assert all(labelled[i]["labels"] == labels[row] for i, row in enumerate(labelled_rows))
    assert sorted(rows) == sorted(labelled_rows)  # the rows it reports are the ones it labelled
    transfer_rows = {transfer[i]["input_ids"][1] - 11 for i in range(40)}
    assert len(transfer_rows) == 40  # no row twice
    assert set(labelled_rows) <= transfer_rows
    again, _, _ = labelled_and_transfer(texts, labels, 10, 30, _WordTokenizer(), max_len=6)
    assert [again[i] for i in range(10)] == [labelled[i] for i in range(10)]  # seeded
    other, _, _ = labelled_and_transfer(texts, labels, 10, 30, _WordTokenizer(), max_len=6, seed=1)
    assert [other[i] for i in range(10)] != [labelled[i] for i in range(10)]
    with pytest.raises(ValueError, match="do not fit in the 100 rows"):
        labelled_and_transfer(texts, labels, 80, 30, _WordTokenizer(), max_len=6)
    with pytest.raises(ValueError, match="99 labels"):
        labelled_and_transfer(texts, labels[:99], 10, 30, _WordTokenizer(), max_len=6)
