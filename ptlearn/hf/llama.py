"""Llama and Qwen3: HF config and weight names to ptlearn's GPT with chapter 12's options, and back.

Llama (Touvron et al. 2023, https://arxiv.org/abs/2302.13971) is GPT-2's decoder with rotary
positions, RMSNorm, a SwiGLU feed-forward, no biases and (usually) an untied head; Qwen3 adds
QK-norm. ptlearn's ``GPT`` builds both from :class:`~ptlearn.models.GPTConfig` fields, so the
conversion is renaming plus two stackings: HF's separate q/k/v projections become one
``qkv_proj`` (:func:`~ptlearn.hf.convertible.stack_qkv`), and ``gate_proj`` / ``up_proj`` become
the rows of the gated feed-forward's one ``fc_in`` (gate first). Both use the same rotary
convention (dimension j paired with j + d/2), so no weight is permuted.

Grouped-query attention (fewer key/value heads than query heads) and rope scaling are not
built by ptlearn's GPT: such configs are refused with a message that names the field.

``GPT.hf_converter`` is ``DECODERS``: it reads GPT-2, Llama and Qwen3 checkpoints (by their
``model_type``) and writes whichever of the three the config's architecture is.
Imports: ``ptlearn.hf.convertible`` and ``ptlearn.hf.gpt2``; never ``ptlearn.models``.
"""

from __future__ import annotations

import torch
from torch import nn

from .convertible import activation_from_hf, check_supported, rename, stack_qkv, unstack_qkv
from .gpt2 import GPT2

Tensor = torch.Tensor

LLAMA_NAMES = [  # (HF substring, ptlearn substring), applied in this order
    ("model.embed_tokens.", "embeddings.token."),
    ("model.norm.", "decoder.final_norm."),
    ("model.layers.", "decoder.layers."),
    (".self_attn.", ".attn."),  # q_proj, k_proj, v_proj (then stacked), q_norm, k_norm
    (".attn.o_proj.", ".attn.out_proj."),
    (".mlp.", ".ffn."),  # gate_proj, up_proj (then stacked into fc_in)
    (".ffn.down_proj.", ".ffn.fc_out."),
    (".input_layernorm.", ".norm_attn."),
    (".post_attention_layernorm.", ".norm_ffn."),
]
# options that change the computation and that ptlearn's GPT does not build
_SUPPORTED = dict(attention_bias=False, mlp_bias=False, pretraining_tp=1, use_sliding_window=False)


def llama_config_from_hf(hf: dict, config_class: type):
    """HF ``LlamaConfig`` / ``Qwen3Config`` fields -> ptlearn's GPTConfig with the modern options."""
    check_supported(hf, _SUPPORTED)
    heads, width = hf["num_attention_heads"], hf["hidden_size"]
    if hf.get("num_key_value_heads", heads) != heads:
        raise ValueError(
            f"num_key_value_heads={hf['num_key_value_heads']} < num_attention_heads={heads}: "
            f"grouped-query attention is not built by ptlearn's GPT."
        )
    if hf.get("head_dim", width // heads) != width // heads:
        raise ValueError(f"head_dim={hf['head_dim']} must be hidden_size / num_attention_heads.")
    rope = hf.get("rope_parameters") or {"rope_theta": hf.get("rope_theta", 10000.0)}
    if rope.get("rope_type", "default") != "default" or hf.get("rope_scaling"):
        raise ValueError(f"rope scaling {rope} is not supported; only the default rotary table.")
    return config_class(
        vocab_size=hf["vocab_size"],
        d_model=width,
        n_layers=hf["num_hidden_layers"],
        n_heads=heads,
        d_ff=hf["intermediate_size"],
        max_len=hf["max_position_embeddings"],
        dropout=hf.get("attention_dropout", 0.0),
        activation=activation_from_hf(hf["hidden_act"]),
        norm_eps=hf["rms_norm_eps"],
        positional="rotary",
        norm="rmsnorm",
        mlp="gated",
        qk_norm=hf["model_type"] == "qwen3",
        bias=False,
        tie_embeddings=hf.get("tie_word_embeddings", False),
        rope_base=rope["rope_theta"],
    )


def llama_weights_from_hf(hf_state: dict[str, Tensor], config) -> dict[str, Tensor]:
    """Llama/Qwen3 tensors under ptlearn names: q/k/v stacked, gate/up stacked."""
    state = {rename(name, LLAMA_NAMES): t for name, t in hf_state.items() if "rotary" not in name}
    state = stack_qkv(state)
    for name in [n for n in state if ".ffn.gate_proj." in n]:
        up = name.replace(".gate_proj.", ".up_proj.")
        state[name.replace(".gate_proj.", ".fc_in.")] = torch.cat([state.pop(name), state.pop(up)])
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)  # the same matrix as the token embedding
        state["lm_head.weight"] = state["embeddings.token.weight"]
    return state


def is_llama_style(config) -> bool:
    """Rotary + RMSNorm + gated feed-forward + no biases: Llama's block (Qwen3's with QK-norm)."""
    return (config.positional, config.norm, config.mlp, config.bias) == (
        "rotary", "rmsnorm", "gated", False,
    )  # fmt: skip


def llama_to_hf(model: nn.Module) -> nn.Module:
    """An HF ``LlamaForCausalLM`` (``Qwen3ForCausalLM`` with QK-norm) holding a ptlearn GPT's weights."""
    import transformers

    c = model.config
    kwargs = dict(
        vocab_size=c.vocab_size,
        hidden_size=c.d_model,
        intermediate_size=c.d_ff,
        num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads,
        num_key_value_heads=c.n_heads,
        head_dim=c.d_head,
        hidden_act={"gelu_tanh": "gelu_pytorch_tanh"}.get(c.activation, c.activation),
        max_position_embeddings=c.max_len,
        rms_norm_eps=c.norm_eps,
        tie_word_embeddings=c.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_base},
        attention_dropout=c.dropout,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        attn_implementation="eager",
    )
    if c.qk_norm:
        hf_model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**kwargs))
    else:
        hf_model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**kwargs))
    inverse = [(new, old) for old, new in reversed(LLAMA_NAMES)]
    state = {}
    for name, tensor in unstack_qkv(model.state_dict()).items():
        if ".ffn.fc_in." in name:
            gate, up = tensor.chunk(2, dim=0)
            state[rename(name.replace(".fc_in.", ".gate_proj."), inverse)] = gate
            state[rename(name.replace(".fc_in.", ".up_proj."), inverse)] = up
        else:
            state[rename(name, inverse)] = tensor
    hf_model.load_state_dict(state, strict=True)
    return hf_model.eval()


class DecoderConverter:
    """``GPT.hf_converter``: GPT-2, Llama or Qwen3, told apart by ``model_type`` (reading) or by
    the config's architecture (writing)."""

    LLAMA_TYPES = ("llama", "qwen3")

    def config_from_hf(self, hf: dict, config_class: type):
        if hf.get("model_type") in self.LLAMA_TYPES:
            return llama_config_from_hf(hf, config_class)
        return GPT2.config_from_hf(hf, config_class)  # refuses any other model_type by name

    def weights_from_hf(self, hf_state: dict[str, Tensor], config) -> dict[str, Tensor]:
        if config.positional == "rotary":
            return llama_weights_from_hf(hf_state, config)
        return GPT2.weights_from_hf(hf_state, config)

    def to_hf(self, model: nn.Module) -> nn.Module:
        c = model.config
        if is_llama_style(c):
            return llama_to_hf(model)
        gpt2_style = (c.positional, c.norm, c.mlp, c.qk_norm, c.bias, c.tie_embeddings) == (
            "learned", "layernorm", "standard", False, True, True,
        )  # fmt: skip
        if not gpt2_style:
            raise ValueError(
                "This GPT mixes GPT-2's and Llama's architectures, which no HF class builds: "
                "to_hf needs either GPT-2's defaults or positional='rotary', norm='rmsnorm', "
                "mlp='gated' and bias=False (Llama; with qk_norm=True, Qwen3)."
            )
        return GPT2.to_hf(model)


DECODERS = DecoderConverter()
