"""ViT: HF config and weight names to ptlearn's ViT.

HF ViT in memory (transformers >= 5) names layer i ``layers.{i}`` with q/k/v/o_proj and
mlp.fc1/fc2; files on disk (and transformers 4) use the older names, normalised first.

``ViTModel.hf_converter`` is ``VIT_MODEL`` (backbone at the top level) and
``ViTForImageClassification.hf_converter`` is ``VIT_FOR_IMAGE_CLASSIFICATION`` (backbone under
``vit.``). Imports: ``ptlearn.hf.convertible``; never ``ptlearn.models``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .convertible import (
    activation_from_hf,
    check_model_type,
    n_classes_from_hf,
    rename,
    stack_qkv,
)

Tensor = torch.Tensor

_VIT_LEGACY_NAMES = [
    ("encoder.layer.", "layers."),
    ("attention.attention.query", "attention.q_proj"),
    ("attention.attention.key", "attention.k_proj"),
    ("attention.attention.value", "attention.v_proj"),
    ("attention.output.dense", "attention.o_proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
]
VIT_NAMES = [  # (HF substring, ptlearn substring), applied in this order
    ("embeddings.patch_embeddings.projection.", "embeddings.proj."),
    ("embeddings.position_embeddings", "embeddings.position"),
    ("layers.", "encoder.layers."),
    (".attention.o_proj.", ".attn.out_proj."),
    (".attention.", ".attn."),  # q_proj, k_proj, v_proj: stacked into qkv_proj afterwards
    (".layernorm_before.", ".norm_attn."),
    (".layernorm_after.", ".norm_ffn."),
    (".mlp.fc1.", ".ffn.fc_in."),
    (".mlp.fc2.", ".ffn.fc_out."),
    ("layernorm.", "norm."),  # the final LayerNorm
]
_VIT_HF_DEFAULTS = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", hidden_dropout_prob=0.0, layer_norm_eps=1e-12, image_size=224,
    patch_size=16, num_channels=3, qkv_bias=True,
)  # fmt: skip


def _square(value, name: str) -> int:
    """HF allows (height, width) pairs; ptlearn's ViT takes square images and patches."""
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"HF config has {name}={value}; ptlearn's ViT supports squares only.")
        value = value[0]
    return value


def vit_config_from_hf(hf: dict, config_class: type):
    """HF ``ViTConfig`` fields -> ``config_class`` (ptlearn's ViTConfig)."""
    check_model_type(hf, "vit")
    hf = {**_VIT_HF_DEFAULTS, **hf}
    if not hf["qkv_bias"]:
        raise ValueError("HF config has qkv_bias=False; ptlearn's attention always has biases.")
    return config_class(
        d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        d_ff=hf["intermediate_size"],
        dropout=hf["hidden_dropout_prob"],
        activation=activation_from_hf(hf["hidden_act"]),
        norm_eps=hf["layer_norm_eps"],
        image_size=_square(hf["image_size"], "image_size"),
        patch_size=_square(hf["patch_size"], "patch_size"),
        n_channels=hf["num_channels"],
        n_classes=n_classes_from_hf(hf),
    )


@dataclass(frozen=True)
class ViTConverter:
    """Conversion for one ptlearn ViT class; ``backbone`` is where it keeps the encoder."""

    backbone: str  # "" for ViTModel, "vit." under the classifier

    def config_from_hf(self, hf: dict, config_class: type):
        return vit_config_from_hf(hf, config_class)

    def weights_from_hf(self, hf_state: dict[str, Tensor], config=None) -> dict[str, Tensor]:
        """HF ViT tensors under ptlearn names. HF's optional pooler (dense + tanh on [CLS], which
        its own classifier does not use) has no ptlearn counterpart and is skipped, and so is the
        classifier head when loading into a bare ``ViTModel``."""
        state = {}
        for name, tensor in hf_state.items():
            name = rename(rename(name.removeprefix("vit."), _VIT_LEGACY_NAMES), VIT_NAMES)
            if name.startswith("pooler.") or (not self.backbone and name.startswith("classifier.")):
                continue
            state[name if name.startswith("classifier.") else self.backbone + name] = tensor
        return stack_qkv(state)  # query, key, value -> one qkv_proj


VIT_MODEL = ViTConverter(backbone="")
VIT_FOR_IMAGE_CLASSIFICATION = ViTConverter(backbone="vit.")
