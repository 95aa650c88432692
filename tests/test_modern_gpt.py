"""Chapter 12's modern GPT options: RMSNorm, rotary positions, QK-norm, gated and ReLU² feed-forwards,
no biases, untied head, the warm-up-stable-decay schedule; and Llama / Qwen3 conversion, proven
equal to HF ``transformers`` (logits, hidden states, attention maps, greedy tokens)."""

import math

import pytest
import torch
from parity import ATTENTION, assert_all_parity, assert_parity

from ptlearn.attention import MultiHeadAttention
from ptlearn.layers import FeedForward, GatedFeedForward, activation_layer
from ptlearn.models import GPT, GPTConfig
from ptlearn.norms import RMSNorm, make_norm
from ptlearn.recipes import GPT_RECIPES
from ptlearn.rotary import Rotary, rotate_half
from ptlearn.training import lr_at
from ptlearn.training.muon import hidden_matrices

LLAMA_STYLE = dict(positional="rotary", norm="rmsnorm", mlp="gated", activation="silu", bias=False)


def tiny(**kw) -> GPTConfig:
    return GPTConfig(**{**dict(vocab_size=40, d_model=32, n_heads=4, d_ff=48, max_len=24), **kw})


# --- the pieces --------------------------------------------------------------------------------


def test_rmsnorm_fast_path_equals_the_written_out_formula_and_torch():
    torch.manual_seed(0)
    norm = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
    x = 3 * torch.randn(4, 5, 16) + 1  # a non-zero mean: RMSNorm must not subtract it
    assert_parity(norm(x), norm.forward_written_out(x), "fast vs written out")
    theirs = torch.nn.RMSNorm(16, eps=1e-6)
    theirs.weight.data.copy_(norm.weight)
    assert_parity(norm(x), theirs(x), "ours vs torch.nn.RMSNorm")
    unit = RMSNorm(16)(x)  # gain 1: every vector comes out with root-mean-square 1
    assert torch.allclose(unit.pow(2).mean(-1), torch.ones(4, 5), atol=1e-4)
    # and it is not LayerNorm: the mean survives
    assert not torch.allclose(unit, torch.nn.functional.layer_norm(x, (16,)), atol=1e-2)


def test_make_norm_names_an_unknown_norm():
    assert isinstance(make_norm("layernorm", 8, 1e-5, bias=False), torch.nn.LayerNorm)
    assert make_norm("layernorm", 8, 1e-5, bias=False).bias is None
    with pytest.raises(ValueError, match="batchnorm"):
        make_norm("batchnorm", 8, 1e-5)


def test_rotary_keeps_lengths_and_scores_depend_only_on_the_offset():
    torch.manual_seed(0)
    rotary = Rotary(d_head=8, max_len=64)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    assert torch.allclose(rotary(q, 5).norm(), q.norm(), atol=1e-5)  # a rotation

    def score(m: int, n: int) -> float:
        return (rotary(q, m) * rotary(k, n)).sum().item()

    assert score(7, 3) == pytest.approx(score(30, 26), abs=1e-4)  # same offset 4
    assert score(7, 3) == pytest.approx(score(4, 0), abs=1e-4)
    assert score(7, 3) != pytest.approx(score(7, 6), abs=1e-2)  # another offset, another score
    # position 0 is not rotated; a rotate_half twice is a half turn
    assert torch.equal(rotary(q, 0), q)
    assert torch.equal(rotate_half(rotate_half(q)), -q)


def test_rotary_refuses_an_odd_head_width():
    with pytest.raises(ValueError, match="even"):
        Rotary(d_head=7, max_len=8)
    with pytest.raises(ValueError, match="even d_head"):
        tiny(d_model=36, n_heads=4, positional="rotary")  # d_head 9


def test_qk_norm_gives_every_head_unit_rms_queries_and_keys():
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, qk_norm=True)
    seen = {}
    mha.q_norm.register_forward_hook(lambda m, i, o: seen.setdefault("q", o))
    mha.k_norm.register_forward_hook(lambda m, i, o: seen.setdefault("k", o))
    mha(5 * torch.randn(2, 6, 32))
    for name in "qk":
        assert seen[name].shape == (2, 4, 6, 8)  # per head: [B, H, T, d_head]
        assert torch.allclose(seen[name].pow(2).mean(-1), torch.ones(2, 4, 6), atol=1e-3)


def test_relu2_and_the_gated_feed_forward_follow_their_formulas():
    x = torch.randn(3, 5, 16)
    assert torch.equal(activation_layer("relu2")(x), torch.relu(x) ** 2)
    torch.manual_seed(0)
    ffn = GatedFeedForward(16, 24, "silu")
    w_gate, w_up = ffn.fc_in.weight[:24], ffn.fc_in.weight[24:]
    b_gate, b_up = ffn.fc_in.bias[:24], ffn.fc_in.bias[24:]
    gate = torch.nn.functional.silu(x @ w_gate.T + b_gate)
    expected = (gate * (x @ w_up.T + b_up)) @ ffn.fc_out.weight.T + ffn.fc_out.bias
    assert_parity(ffn(x), expected, "SwiGLU")
    assert FeedForward(16, 24, bias=False).fc_in.bias is None


def test_no_bias_means_no_bias_anywhere_and_untied_means_two_matrices():
    model = GPT(tiny(**LLAMA_STYLE, tie_embeddings=False))
    assert not [n for n, _ in model.named_parameters() if n.endswith(".bias")]
    assert model.lm_head.weight is not model.embeddings.token.weight
    assert model.embeddings.position is None  # rotary: no position table
    tied = GPT(tiny(bias=False))
    assert tied.lm_head.weight is tied.embeddings.token.weight
    assert not [n for n, _ in tied.named_parameters() if n.endswith(".bias")]


@pytest.mark.parametrize(
    "options",
    [LLAMA_STYLE, dict(LLAMA_STYLE, qk_norm=True), dict(activation="relu2", norm="rmsnorm")],
    ids=["llama", "qwen3", "relu2-rmsnorm"],
)
def test_modern_options_stay_causal_and_the_kv_cache_gives_the_same_tokens(options):
    torch.manual_seed(0)
    model = GPT(tiny(**options)).eval()
    x = torch.randint(0, 40, (2, 10))
    x_changed = x.clone()
    x_changed[:, 6:] = (x[:, 6:] + 1) % 40
    assert torch.equal(model(x).logits[:, :6], model(x_changed).logits[:, :6])
    prompt = x[:, :4]
    cached = model.generate(prompt, 12, temperature=0)
    assert torch.equal(cached, model.generate(prompt, 12, temperature=0, use_cache=False))


def test_muon_takes_the_gated_matrices_but_no_norm_gain():
    model = GPT(tiny(**LLAMA_STYLE, qk_norm=True))
    chosen = {id(p) for p in hidden_matrices(model)}
    block = model.decoder.layers[0]
    assert id(block.ffn.fc_in.weight) in chosen and id(block.attn.qkv_proj.weight) in chosen
    assert id(block.attn.q_norm.weight) not in chosen
    assert id(model.lm_head.weight) not in chosen  # the head keeps AdamW


def test_config_names_a_wrong_option():
    for field, value in (("norm", "batchnorm"), ("positional", "alibi"), ("mlp", "moe")):
        with pytest.raises(ValueError, match=field):
            tiny(**{field: value})


# --- the schedule -----------------------------------------------------------------------------


def test_wsd_holds_the_peak_then_decays_linearly_to_the_floor():
    kw = dict(
        lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.0, schedule="wsd", decay_frac=0.2
    )
    assert lr_at(4, **kw) == pytest.approx(0.5)  # warm-up as before
    assert [lr_at(s, **kw) for s in (10, 50, 90)] == pytest.approx([1.0] * 3)  # flat until 80%
    assert lr_at(100, **kw) == pytest.approx(0.5)  # half-way through the cool-down
    assert lr_at(110, **kw) == pytest.approx(0.0)
    cosine = lr_at(50, **{**kw, "schedule": "cosine"})
    assert cosine < 0.9  # the cosine has long started to fall where WSD is still flat
    assert lr_at(0, lr=1.0, warmup_steps=0, progress=0.9, schedule="wsd", decay_frac=0.5,
                 min_lr_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.2)  # fmt: skip


def test_train_config_names_a_wrong_schedule():
    from ptlearn.training import TrainConfig

    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="decay_frac"):
        TrainConfig(schedule="wsd", decay_frac=0.0)


# --- HF parity: Llama and Qwen3 ---------------------------------------------------------------

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

HF_CONFIGS = {
    "llama-2L-32w-4h": ("llama", dict()),
    "llama-3L-48w-6h-untied-theta500": (
        "llama",
        dict(
            num_hidden_layers=3,
            hidden_size=48,
            num_attention_heads=6,
            num_key_value_heads=6,
            intermediate_size=80,
            rope_theta=500.0,
            rms_norm_eps=1e-5,
        ),
    ),  # fmt: skip
    "llama-1L-64w-2h-tied": (
        "llama",
        dict(
            num_hidden_layers=1,
            hidden_size=64,
            num_attention_heads=2,
            num_key_value_heads=2,
            tie_word_embeddings=True,
        ),
    ),  # fmt: skip
    "qwen3-2L-32w-4h": ("qwen3", dict(head_dim=8)),
    "qwen3-2L-48w-4h-untied": (
        "qwen3",
        dict(hidden_size=48, head_dim=12, intermediate_size=64, tie_word_embeddings=False),
    ),
}


def hf_model(kind: str, overrides: dict):
    base = dict(
        vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32,
        attn_implementation="eager", tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,  # no early stop at token 2
    )  # fmt: skip
    base.update(overrides)
    if "rope_theta" in base:
        base["rope_parameters"] = {"rope_type": "default", "rope_theta": base.pop("rope_theta")}
    cls, config = (
        (transformers.LlamaForCausalLM, transformers.LlamaConfig)
        if kind == "llama"
        else (transformers.Qwen3ForCausalLM, transformers.Qwen3Config)
    )
    torch.manual_seed(0)
    model = cls(config(**base)).eval()
    with torch.no_grad():  # large random weights and gains: attention far from uniform
        for p in model.parameters():
            p.normal_(1.0 if p.dim() == 1 else 0.0, 0.25)
    return model


@pytest.mark.parametrize("name", list(HF_CONFIGS))
def test_llama_and_qwen3_convert_exactly(name):
    kind, overrides = HF_CONFIGS[name]
    theirs = hf_model(kind, overrides)
    ours = GPT.from_hf(theirs)
    assert ours.config.qk_norm == (kind == "qwen3")
    ids = torch.randint(0, 40, (2, 11))
    with torch.no_grad():
        a = ours(ids, output_attentions=True, output_hidden_states=True)
        b = theirs(ids, output_attentions=True, output_hidden_states=True)
    assert_parity(a.logits, b.logits, "logits")
    assert_all_parity(a.hidden_states, b.hidden_states, "hidden states")
    assert_all_parity(a.attentions, b.attentions, "attentions", **ATTENTION)
    prompt = ids[:, :3]
    hf_tokens = theirs.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False
    )
    assert torch.equal(ours.generate(prompt, 8, temperature=0), hf_tokens)
    # and back: to_hf rebuilds the same class with the same outputs
    again = ours.to_hf()
    assert type(again) is type(theirs)
    assert_parity(again(ids).logits, b.logits, "to_hf logits")


def test_conversion_refuses_what_ptlearn_does_not_build():
    gqa = hf_model("llama", dict(num_key_value_heads=2))
    with pytest.raises(ValueError, match="num_key_value_heads"):
        GPT.from_hf(gqa)
    biased = hf_model("llama", dict(attention_bias=True))
    with pytest.raises(ValueError, match="attention_bias"):
        GPT.from_hf(biased)
    mixed = GPT(tiny(norm="rmsnorm"))  # GPT-2 with RMSNorm: no HF class builds it
    with pytest.raises(ValueError, match="no HF class"):
        mixed.to_hf()
    # chapter 12's winner: rotary positions with GPT-2's LayerNorm and GELU
    speedrun_winner = GPT(GPTConfig(vocab_size=65, **GPT_RECIPES["cpu"]["model"]))
    with pytest.raises(ValueError, match="no HF class"):
        speedrun_winner.to_hf()


def test_gpt2_still_converts_to_gpt2():
    model = GPT(tiny(activation="gelu_tanh")).eval()
    hf = model.to_hf()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    ids = torch.randint(0, 40, (1, 7))
    assert_parity(model(ids).logits, hf(ids).logits, "GPT-2 logits")
    assert math.isfinite(model(ids, labels=ids).loss.item())


@pytest.mark.parametrize("tied", [True, False])
def test_a_saved_qwen3_checkpoint_loads_from_its_folder(tmp_path, tied):
    theirs = hf_model("qwen3", dict(head_dim=8, tie_word_embeddings=tied))
    theirs.save_pretrained(tmp_path)
    ours = GPT.from_pretrained(tmp_path)
    assert ours.config.tie_embeddings == tied and ours.config.qk_norm
    ids = torch.randint(0, 40, (1, 9))
    assert_parity(ours(ids).logits, theirs(ids).logits, "logits from the saved folder")
