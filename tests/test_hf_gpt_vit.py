"""GPT-2 and ViT against HF transformers: same weights -> same logits, hidden states, every attention
map (relative error <= 1e-5 in fp32), same greedy tokens; save_pretrained/from_pretrained; to_hf."""

import json

import pytest
import torch
from parity import ATTENTION, assert_all_parity, assert_parity

from ptlearn.models import GPT, GPT_PRESETS, GPTConfig, ViTForImageClassification, ViTModel

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

GPT2_CONFIGS = {
    "2L-32w-4h": dict(n_layer=2, n_embd=32, n_head=4),
    "3L-48w-6h-gelu-eps1e-6": dict(
        n_layer=3,
        n_embd=48,
        n_head=6,
        n_inner=80,
        activation_function="gelu",
        layer_norm_epsilon=1e-6,
    ),
    "1L-64w-2h-relu-eps1e-3": dict(
        n_layer=1, n_embd=64, n_head=2, activation_function="relu", layer_norm_epsilon=1e-3
    ),
    "2L-32w-8h-pytorch_tanh": dict(
        n_layer=2, n_embd=32, n_head=8, activation_function="gelu_pytorch_tanh"
    ),
}
VIT_CONFIGS = {
    "8px-p2-1ch-2L-32w": dict(image_size=8, patch_size=2, num_channels=1),
    "12px-p4-3ch-3L-48w-eps1e-6": dict(
        image_size=12,
        patch_size=4,
        num_channels=3,
        num_hidden_layers=3,
        hidden_size=48,
        num_attention_heads=6,
        intermediate_size=96,
        layer_norm_eps=1e-6,
    ),  # fmt: skip
    "10px-p5-2ch-1L-24w": dict(
        image_size=10,
        patch_size=5,
        num_channels=2,
        num_hidden_layers=1,
        hidden_size=24,
        num_attention_heads=2,
        intermediate_size=40,
        hidden_act="gelu_new",
    ),  # fmt: skip
}


def redrawn(hf_model):
    """Weights ~ N(0, 0.25): large enough that attention is far from uniform."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in hf_model.parameters():
            p.normal_(0.0, 0.25)
    return hf_model.eval()


def hf_gpt2(**fields):
    config = transformers.GPT2Config(
        vocab_size=100, n_positions=40, bos_token_id=None, eos_token_id=None,
        attn_implementation="eager", **fields,
    )  # fmt: skip
    return redrawn(transformers.GPT2LMHeadModel(config))


def hf_vit(cls, **fields):
    base = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64)
    config = transformers.ViTConfig(**{**base, **fields}, num_labels=5, attn_implementation="eager")
    return redrawn(cls(config))


def assert_same(ours, theirs, fields=("logits",)):
    for name in fields:
        assert_parity(ours[name], theirs[name], name)
    assert_all_parity(ours.attentions, theirs.attentions, "attentions", **ATTENTION)
    assert_all_parity(ours.hidden_states, theirs.hidden_states, "hidden_states")


def run(model, x, **kw):
    with torch.no_grad():
        return model(x, output_attentions=True, output_hidden_states=True, **kw)


@pytest.mark.parametrize("name", GPT2_CONFIGS)
def test_gpt_from_hf_matches_logits_attentions_and_greedy_tokens(name):
    hf = hf_gpt2(**GPT2_CONFIGS[name])
    ours = GPT.from_hf(hf)
    ids = torch.randint(0, 100, (2, 12))
    assert_same(run(ours, ids), run(hf, ids))
    prompt = ids[:, :4]
    theirs = hf.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, 20, temperature=0), theirs)


@pytest.mark.parametrize("name", VIT_CONFIGS)
@pytest.mark.parametrize("cls", ["ViTModel", "ViTForImageClassification"])
def test_vit_from_hf_matches_outputs_and_attentions(name, cls):
    hf = hf_vit(getattr(transformers, cls), **VIT_CONFIGS[name])
    ours = {"ViTModel": ViTModel, "ViTForImageClassification": ViTForImageClassification}[cls]
    ours = ours.from_hf(hf)
    c = hf.config
    pixels = torch.randn(3, c.num_channels, c.image_size, c.image_size)
    field = "logits" if cls == "ViTForImageClassification" else "last_hidden_state"
    assert_same(run(ours, pixels), run(hf, pixels), fields=(field,))


def test_gpt2_preset_is_hf_gpt2_small_with_the_same_parameter_count():
    def config_from_hf(
        hf_config: dict,
    ) -> GPTConfig:  # what GPT.from_hf reads, as the model binds it
        return GPT.hf_converter.config_from_hf(hf_config, GPT.config_class)

    gpt2_small = config_from_hf(transformers.GPT2Config().to_dict())  # HF's defaults
    assert gpt2_small == GPTConfig(**GPT_PRESETS["gpt2"], dropout=0.1)
    for fields in GPT2_CONFIGS.values():  # same architecture -> same count, tied head once
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=100, **fields))
        ours = GPT(config_from_hf(hf.config.to_dict()))
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_save_pretrained_then_from_pretrained(tmp_path):
    hf = hf_gpt2(**GPT2_CONFIGS["2L-32w-4h"])
    hf.save_pretrained(tmp_path / "gpt2")
    ids = torch.randint(0, 100, (2, 9))
    assert_same(run(GPT.from_pretrained(tmp_path / "gpt2"), ids), run(hf, ids))
    for cls, ours in [
        (transformers.ViTForImageClassification, ViTForImageClassification),
        (transformers.ViTModel, ViTModel),
    ]:
        hf = hf_vit(cls, **VIT_CONFIGS["12px-p4-3ch-3L-48w-eps1e-6"])
        hf.save_pretrained(tmp_path / cls.__name__)  # written with HF's legacy tensor names
        pixels = torch.randn(2, 3, 12, 12)
        field = "logits" if ours is ViTForImageClassification else "last_hidden_state"
        assert_same(
            run(ours.from_pretrained(tmp_path / cls.__name__), pixels), run(hf, pixels), (field,)
        )


def test_vit_model_loads_the_backbone_of_a_classifier_checkpoint(tmp_path):
    hf = hf_vit(transformers.ViTForImageClassification, **VIT_CONFIGS["8px-p2-1ch-2L-32w"])
    hf.save_pretrained(tmp_path)
    pixels = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        theirs = hf.vit(pixels).last_hidden_state
    ours = ViTModel.from_pretrained(tmp_path)(pixels).last_hidden_state
    assert_parity(ours, theirs, "last_hidden_state")


def test_gpt_to_hf_round_trip():
    ours = GPT.from_hf(hf_gpt2(**GPT2_CONFIGS["3L-48w-6h-gelu-eps1e-6"]))
    hf = ours.to_hf()
    assert isinstance(hf, transformers.GPT2LMHeadModel) and not hf.training
    ids = torch.randint(0, 100, (2, 10))
    assert_same(run(ours, ids), run(hf, ids))
    again = GPT.from_hf(hf).state_dict()
    assert all(torch.equal(t, again[k]) for k, t in ours.state_dict().items())


def test_mismatched_checkpoints_list_the_keys(tmp_path):
    hf_gpt2(**GPT2_CONFIGS["2L-32w-4h"]).save_pretrained(tmp_path / "gpt2")
    config = json.loads((tmp_path / "gpt2" / "config.json").read_text())
    config["n_layer"] = 3  # the file now claims a layer its weights lack
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"missing keys: \['decoder.layers.2.attn.out_proj.bias'"):
        GPT.from_pretrained(tmp_path / "gpt2")
    hf_vit(transformers.ViTModel, **VIT_CONFIGS["8px-p2-1ch-2L-32w"]).save_pretrained(
        tmp_path / "vit"
    )
    config = json.loads((tmp_path / "vit" / "config.json").read_text())
    config["patch_size"] = 4  # 4 patches instead of 16: positions and conv kernel no longer fit
    (tmp_path / "vit" / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError,
        match=r"embeddings.position: model expects \(1, 5, 32\), the checkpoint has \(1, 17, 32\)",
    ):
        ViTModel.from_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match="not 'gpt2'"):
        GPT.from_pretrained(tmp_path / "vit")
