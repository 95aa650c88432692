"""GPT-2: HF config and weight names to ptlearn's GPT, and back (``to_hf``).

GPT-2 writes its linear layers as ``Conv1D``: y = x @ W + b with W of shape [in, out], the
transpose of nn.Linear's [out, in]. Its attention packs q, k and v into one ``c_attn`` of shape
[C, 3C], the transpose of ptlearn's ``qkv_proj`` [3C, C]. The LM head is tied to ``wte``.

``GPT.hf_converter`` is ``GPT2``. Imports: ``ptlearn.hf.convertible``; never ``ptlearn.models``.
"""

from __future__ import annotations

import torch
from torch import nn

from .convertible import ACT_TO_HF, activation_from_hf, check_model_type, check_supported, rename

Tensor = torch.Tensor

GPT2_NAMES = [  # (HF substring, ptlearn substring), applied in this order
    ("transformer.wte.", "embeddings.token."),
    ("transformer.wpe.", "embeddings.position."),
    ("transformer.ln_f.", "decoder.final_norm."),
    ("transformer.h.", "decoder.layers."),
    (".ln_1.", ".norm_attn."),
    (".attn.c_attn.", ".attn.qkv_proj."),  # rows [0, C) are q, [C, 2C) k, [2C, 3C) v
    (".attn.c_proj.", ".attn.out_proj."),
    (".ln_2.", ".norm_ffn."),
    (".mlp.c_fc.", ".ffn.fc_in."),
    (".mlp.c_proj.", ".ffn.fc_out."),
]
_GPT2_HF_DEFAULTS = dict(
    vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=None,
    activation_function="gelu_new", resid_pdrop=0.1, layer_norm_epsilon=1e-5,
)  # fmt: skip
# GPT-2 options that change the computation and that ptlearn's GPT does not have
_GPT2_SUPPORTED = dict(
    scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, add_cross_attention=False
)


def gpt2_config_from_hf(hf: dict, config_class: type):
    """HF ``GPT2Config`` fields -> ``config_class`` (ptlearn's GPTConfig)."""
    check_model_type(hf, "gpt2")
    hf = {**_GPT2_HF_DEFAULTS, **hf}
    check_supported(hf, _GPT2_SUPPORTED)
    return config_class(
        vocab_size=hf["vocab_size"],
        d_model=hf["n_embd"],
        n_layers=hf["n_layer"],
        n_heads=hf["n_head"],
        d_ff=hf["n_inner"] or 4 * hf["n_embd"],
        max_len=hf["n_positions"],
        dropout=hf["resid_pdrop"],
        activation=activation_from_hf(hf["activation_function"]),
        norm_eps=hf["layer_norm_epsilon"],
    )


def gpt2_weights_from_hf(hf_state: dict[str, Tensor], config=None) -> dict[str, Tensor]:
    """GPT-2 tensors under ptlearn names, Conv1D weights transposed.
    (``config`` is not needed: every name carries its layer.)"""
    state = {}
    for name, tensor in hf_state.items():
        if not name.startswith(("transformer.", "lm_head.")):
            name = "transformer." + name  # GPT2Model and the original hub files have no prefix
        if name == "lm_head.weight" or name.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # tied to wte; causal-mask buffers of old checkpoints
        if name.startswith("transformer.h.") and tensor.dim() == 2:
            tensor = tensor.t()  # Conv1D [in, out] -> nn.Linear [out, in]
        state[rename(name, GPT2_NAMES)] = tensor
    if "embeddings.token.weight" in state:
        state["lm_head.weight"] = state["embeddings.token.weight"]  # tied
    return state


def gpt2_config_to_hf(config) -> dict:
    """ptlearn GPTConfig -> keyword arguments of ``transformers.GPT2Config`` (eager attention)."""
    return dict(
        vocab_size=config.vocab_size,
        n_positions=config.max_len,
        n_embd=config.d_model,
        n_layer=config.n_layers,
        n_head=config.n_heads,
        n_inner=config.d_ff,
        activation_function=ACT_TO_HF[config.activation],
        layer_norm_epsilon=config.norm_eps,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        bos_token_id=None,  # GPT-2's 50256 would lie outside a small vocabulary
        eos_token_id=None,
        attn_implementation="eager",  # sdpa would return no attention maps
    )


def gpt2_to_hf(model: nn.Module) -> nn.Module:
    """An HF ``transformers.GPT2LMHeadModel`` holding a ptlearn GPT's weights."""
    import transformers

    hf_model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(**gpt2_config_to_hf(model.config))
    )
    ours, state = model.state_dict(), {}
    inverse = [(new, old) for old, new in reversed(GPT2_NAMES)]
    for name, tensor in ours.items():
        name = rename(name, inverse)
        if name.startswith("transformer.h.") and tensor.dim() == 2:
            tensor = tensor.t()  # nn.Linear [out, in] -> Conv1D [in, out]
        state[name] = tensor
    hf_model.load_state_dict(state, strict=True)
    return hf_model.eval()


class GPT2Converter:
    """``GPT.hf_converter``: the three functions above, bound for the mix-in."""

    config_from_hf = staticmethod(gpt2_config_from_hf)
    weights_from_hf = staticmethod(gpt2_weights_from_hf)
    to_hf = staticmethod(gpt2_to_hf)


GPT2 = GPT2Converter()
