"""Fine-tuning and PEFT: freezing, LoRA, adapters, prefix tuning and BitFit on chapter 09's path
(BertForSequenceClassification), each starting from the base model and learning a toy task."""

import pytest
import torch

from ptlearn.attention import KVCache
from ptlearn.finetune import (
    Adapter,
    LoRALinear,
    PrefixAttention,
    SequenceClassifier,
    apply_adapters,
    apply_bitfit,
    apply_lora,
    apply_prefix_tuning,
    count_parameters,
    freeze,
    freeze_except,
    merge_lora,
    strip_prefix,
    trainable_summary,
    unfreeze,
)
from ptlearn.layers import TransformerBlock
from ptlearn.models.albert import AlbertConfig, AlbertForSequenceClassification
from ptlearn.models.bert import BertConfig, BertForSequenceClassification, BertModel
from ptlearn.transformer import Decoder

V, T = 100, 8


def tiny_bert(**overrides) -> BertForSequenceClassification:
    cfg = dict(vocab_size=V, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=16)
    return BertForSequenceClassification(BertConfig(**{**cfg, **overrides})).eval()


def separable_batch(n: int = 32, seed: int = 0) -> dict:
    """Class 0 sequences use tokens 10-54, class 1 tokens 55-99: a task a probe can learn."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids = torch.randint(10, 55, (n, T), generator=g) + 45 * labels[:, None]
    return {
        "input_ids": ids,
        "attention_mask": torch.ones(n, T, dtype=torch.long),
        "labels": labels,
    }


def train_steps(model, batch: dict, steps: int = 40, lr: float = 1e-2) -> tuple[float, float]:
    """A few AdamW steps on the trainable parameters; returns (first loss, last loss)."""
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses[0], losses[-1]


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def logits(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


# --- freezing and counting ------------------------------------------------------------------------


def test_counting_and_freezing():
    model = tiny_bert()
    total = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == total == count_parameters(model, trainable_only=True)
    freeze(model.bert)
    head = model.classifier.weight.numel() + model.classifier.bias.numel()
    assert trainable_summary(model) == {
        "trainable": head,
        "total": total,
        "percent": pytest.approx(100 * head / total),
    }
    unfreeze(model)
    assert count_parameters(model, trainable_only=True) == total


def test_freeze_except_refuses_a_name_that_matches_nothing():
    with pytest.raises(ValueError, match="'clasifier'"):
        freeze_except(tiny_bert(), train=("clasifier",))


# --- LoRA -----------------------------------------------------------------------------------------


def test_lora_starts_equal_to_the_base_model():
    model, batch = tiny_bert(), separable_batch()
    before = logits(model, batch)
    apply_lora(model, r=4)
    assert isinstance(model.bert.encoder.layers[0].attn.qkv_proj, LoRALinear)
    torch.testing.assert_close(logits(model, batch), before, rtol=0, atol=0)


def test_lora_trains_only_its_matrices_and_the_head_under_five_percent():
    cfg = dict(vocab_size=1000, d_model=128, n_layers=4, n_heads=4, d_ff=512, max_len=64)
    model = apply_lora(BertForSequenceClassification(BertConfig(**cfg)), r=8, alpha=16)
    expected = {
        f"bert.encoder.layers.{i}.attn.qkv_proj.lora_{m}" for i in range(4) for m in "AB"
    } | {"classifier.weight", "classifier.bias"}
    assert trainable_names(model) == expected
    summary = trainable_summary(model)
    # A [8, 128] and B [3 * 128, 8] per layer: as many as the paper's separate W_q and W_v updates
    assert summary["trainable"] == 4 * 8 * (128 + 3 * 128) + 128 * 2 + 2
    assert summary["trainable"] == 4 * 2 * 8 * (128 + 128) + 128 * 2 + 2
    assert summary["percent"] < 5.0


def test_lora_learns_a_separable_task_and_leaves_the_base_weights_alone():
    model, batch = tiny_bert(), separable_batch()
    apply_lora(model, r=4)
    lora = model.bert.encoder.layers[0].attn.qkv_proj
    w_before = lora.base.weight.clone()
    first, last = train_steps(model, batch)
    assert last < 0.5 * first and last < 0.2
    assert lora.lora_B.abs().max() > 0  # B left zero: the update B A is no longer 0
    torch.testing.assert_close(lora.base.weight, w_before, rtol=0, atol=0)


def test_lora_merged_equals_unmerged_and_unmerge_restores_the_base():
    model, batch = tiny_bert(), separable_batch()
    apply_lora(model, r=4, targets=("qkv_proj", "out_proj", "fc_in"))
    for m in model.modules():
        if isinstance(m, LoRALinear):
            torch.nn.init.normal_(m.lora_B, std=0.1)  # a non-zero update, as after training
    unmerged = logits(model, batch)
    lora = model.bert.encoder.layers[1].attn.qkv_proj
    w = lora.base.weight.clone()
    lora.merge()
    assert lora.merged and not torch.equal(lora.base.weight, w)
    lora.unmerge()
    torch.testing.assert_close(lora.base.weight, w, rtol=0, atol=1e-6)
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert type(model.bert.encoder.layers[1].attn.qkv_proj) is torch.nn.Linear
    torch.testing.assert_close(logits(model, batch), unmerged, rtol=1e-5, atol=1e-5)


def test_lora_wraps_a_shared_albert_layer_once():
    cfg = AlbertConfig(vocab_size=V, d_embed=16, d_model=32, n_layers=3, n_heads=4, d_ff=64)
    model = apply_lora(AlbertForSequenceClassification(cfg), r=2)
    layers = model.albert.encoder.layers
    assert layers[0].attn.qkv_proj is layers[2].attn.qkv_proj  # still one shared module
    assert sum(isinstance(m, LoRALinear) for m in model.modules()) == 1


def test_lora_rejects_targets_that_match_nothing():
    with pytest.raises(ValueError, match="No nn.Linear named"):
        apply_lora(tiny_bert(), targets=("query",))


# --- adapters -------------------------------------------------------------------------------------


def test_adapters_start_as_the_identity_then_learn():
    model, batch = tiny_bert(), separable_batch()
    before = logits(model, batch)
    apply_adapters(model, bottleneck=8)
    torch.testing.assert_close(logits(model, batch), before, rtol=1e-6, atol=1e-6)
    names = trainable_names(model)
    assert all(("adapter" in n) or ("norm" in n) or n.startswith("classifier") for n in names)
    assert (
        sum(isinstance(m, Adapter) for m in model.modules()) == 2 * 2
    )  # attention + FFN per block
    assert "bert.encoder.layers.0.norm_attn.weight" in names  # LayerNorms train, as in Houlsby
    first, last = train_steps(model, batch)
    assert last < 0.5 * first


# --- prefix tuning --------------------------------------------------------------------------------


def test_prefix_tuning_shapes_attentions_and_gradients():
    P, B = 5, 4
    model, batch = apply_prefix_tuning(tiny_bert(), n_prefix=P), separable_batch(B)
    out = model(**batch, output_attentions=True)
    assert out.logits.shape == (B, 2)
    assert [a.shape for a in out.attentions] == [(B, 4, T, P + T)] * 2
    assert all(a[..., :P].sum() > 0 for a in out.attentions)  # the prefix columns get weight
    assert [a.shape for a in strip_prefix(out.attentions, P)] == [(B, 4, T, T)] * 2
    out.loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    prefixes = {f"bert.encoder.layers.{i}.attn.prefix" for i in range(2)}
    assert (
        with_grad == trainable_names(model) == prefixes | {"classifier.weight", "classifier.bias"}
    )


def test_prefix_tuning_keeps_padding_masked_and_fused_equals_written_out():
    P = 3
    model = apply_prefix_tuning(tiny_bert(), n_prefix=P, reparam_dim=16)
    ids = torch.randint(10, V, (2, T))
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, 5:] = 0  # the second sequence has 3 padding tokens
    out = model(ids, attention_mask=mask, output_attentions=True)
    assert all(torch.all(a[1, :, :, P + 5 :] == 0) for a in out.attentions)
    torch.testing.assert_close(
        model(ids, attention_mask=mask).logits, out.logits, rtol=1e-5, atol=1e-6
    )
    short = model(ids[1:, :5], attention_mask=mask[1:, :5]).logits  # padding changes nothing
    torch.testing.assert_close(out.logits[1:], short, rtol=1e-5, atol=1e-6)


def test_prefix_attention_with_causal_mask_and_kv_cache():
    P, C = 4, 32
    decoder = Decoder([TransformerBlock(C, 4, 64) for _ in range(2)]).eval()
    for block in decoder.layers:
        block.attn = PrefixAttention(block.attn, n_prefix=P)
    x = torch.randn(2, 6, C)
    full = decoder(x, output_attentions=True)
    for a in full.attentions:  # query t sees the prefix and keys <= t, never the future
        future = ~torch.ones(6, 6, dtype=torch.bool).tril()
        assert torch.all(a[..., P:][..., future] == 0) and torch.all(a[..., :P] > 0)
    caches = [KVCache() for _ in decoder.layers]
    steps = [decoder(x[:, t : t + 1], caches=caches).last_hidden_state for t in range(6)]
    assert len(caches[0]) == 6  # the real cache holds the tokens only, not the prefix
    torch.testing.assert_close(torch.cat(steps, 1), full.last_hidden_state, rtol=1e-5, atol=1e-5)


def test_prefix_tuning_learns():
    model, batch = apply_prefix_tuning(tiny_bert(), n_prefix=4, reparam_dim=32), separable_batch()
    first, last = train_steps(model, batch, steps=60)
    assert last < 0.5 * first


# --- BitFit and the generic classifier ------------------------------------------------------------


def test_bitfit_trains_exactly_the_biases_and_the_head():
    model = apply_bitfit(tiny_bert())
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert trainable_names(model) == biases | {"classifier.weight"}
    assert "bert.encoder.layers.0.attn.qkv_proj.bias" in biases
    assert "bert.encoder.layers.0.norm_ffn.bias" in biases


@pytest.mark.parametrize("pooling", ["cls", "mean", "last"])
def test_sequence_classifier_pools_real_tokens_and_computes_the_loss(pooling):
    cfg = BertConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=16)
    model = SequenceClassifier(BertModel(cfg), d_model=32, n_classes=3, pooling=pooling).eval()
    ids, labels = torch.randint(10, V, (2, T)), torch.tensor([0, 2])
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, 5:] = 0
    out = model(ids, attention_mask=mask, labels=labels, output_attentions=True)
    assert out.logits.shape == (2, 3) and len(out.attentions) == 2
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    short = model(ids[1:, :5], attention_mask=mask[1:, :5]).logits  # padding changes nothing
    torch.testing.assert_close(out.logits[1:], short, rtol=1e-5, atol=1e-6)


def test_sequence_classifier_rejects_an_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier(torch.nn.Identity(), 32, 2, pooling="max")
