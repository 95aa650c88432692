"""The mix-in that gives a ptlearn model ``from_hf`` and ``from_pretrained``.

A model class declares what conversion needs as two class attributes, so nothing here knows the
models and a renamed or subclassed model keeps converting:

- ``config_class``: its config dataclass (HF's own convention), built from the HF config's fields;
- ``hf_converter``: an object with ``config_from_hf(hf_config, config_class)`` and
  ``weights_from_hf(hf_state, config)`` (one per family, in :mod:`ptlearn.hf.bert`,
  :mod:`ptlearn.hf.gpt2` and :mod:`ptlearn.hf.vit`).

Imports: ``ptlearn.hf.io`` and ``ptlearn.validation``; never ``ptlearn.models``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from ..config import check_plausible_size, planned_parameters
from ..validation import state_dict_mismatch
from .io import read_hf_checkpoint, resolve_pretrained_dir

Tensor = torch.Tensor


class HFConverter(Protocol):
    """What a model's ``hf_converter`` provides: HF config -> our config, HF tensors -> ours."""

    def config_from_hf(self, hf: dict, config_class: type) -> Any: ...

    def weights_from_hf(self, hf_state: dict[str, Tensor], config: Any) -> dict[str, Tensor]: ...


def load_state_dict_strict(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Copy ``state`` into ``model``; on any missing, unexpected or mis-shaped key raise one
    ValueError that lists them all (``source`` names where the weights came from)."""
    own = model.state_dict()
    problems = state_dict_mismatch(own, state, source="the checkpoint")
    if problems:
        lines = [f"The weights from {source} do not fit this {type(model).__name__}'s config:"]
        lines += [f"  {p}" for p in problems]
        lines.append("Build the model from the checkpoint's own config (from_pretrained does).")
        raise ValueError("\n".join(lines))
    with torch.no_grad():
        for k, t in own.items():
            t.copy_(state[k])


class HFConvertible:
    """Mixed into every ptlearn model that has an HF counterpart (see the module docstring)."""

    config_class: ClassVar[type]
    hf_converter: ClassVar[HFConverter]

    @classmethod
    def from_hf(cls, hf_model) -> nn.Module:
        """Copy the weights of an HF ``transformers`` model (already built) into a new ptlearn model."""
        return cls._from_hf_parts(
            hf_model.config.to_dict(), hf_model.state_dict(), type(hf_model).__name__
        )

    @classmethod
    def from_pretrained(
        cls, name_or_dir: str | os.PathLike, allow_pickle: bool = False
    ) -> nn.Module:
        """Load a hub model (online) or a local ``save_pretrained`` directory. Never runs remote code."""
        directory = resolve_pretrained_dir(name_or_dir)
        config, state = read_hf_checkpoint(directory, allow_pickle)
        return cls._from_hf_parts(config, state, str(directory))

    @classmethod
    def _from_hf_parts(cls, hf_config: dict, hf_state: dict[str, Tensor], source: str) -> nn.Module:
        try:
            config = cls.hf_converter.config_from_hf(hf_config, cls.config_class)
        except KeyError as e:
            raise ValueError(f"{source}: the HF config has no field {e}.") from None
        except (TypeError, ValueError) as e:
            raise type(e)(f"{source}: {e}") from None
        check_plausible_size(config, source)
        check_weights_cover_config(config, hf_state, source)
        model = cls(config)
        load_state_dict_strict(model, cls.hf_converter.weights_from_hf(hf_state, config), source)
        return model.eval()


def check_weights_cover_config(config, hf_state: dict[str, Tensor], source: str) -> None:
    """A config that plans far more parameters than the checkpoint holds is damaged: say so before
    building anything (a config.json with num_hidden_layers=10**9 would otherwise build layers for
    minutes). Heads and tied tables make the two counts differ a little, never by 4x."""
    held = sum(t.numel() for t in hf_state.values())
    planned = planned_parameters(config)
    if planned > 4 * held + 10**6:
        raise ValueError(
            f"{source}: the config plans about {planned:,} parameters (n_layers={config.n_layers}, "
            f"d_model={config.d_model}, vocab_size={config.vocab_size}) but the weights hold "
            f"{held:,}. The config.json does not belong to these weights (or is damaged)."
        )


# --- helpers every family uses -----------------------------------------------------------------

_ACT_FROM_HF = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "relu2": "relu2",
    "silu": "silu",
}
ACT_TO_HF = {
    "gelu": "gelu",
    "gelu_tanh": "gelu_new",
    "relu": "relu",
    "relu2": "relu2",
    "silu": "silu",
}


def activation_from_hf(name: str) -> str:
    """HF ``hidden_act`` -> ptlearn: "gelu" is the exact GELU, "gelu_new" its tanh approximation."""
    if name not in _ACT_FROM_HF:
        raise ValueError(
            f"HF activation {name!r} is not supported; use one of {sorted(_ACT_FROM_HF)}."
        )
    return _ACT_FROM_HF[name]


def check_model_type(hf: dict, model_type: str) -> None:
    """Refuse a checkpoint of another family (HF's ``model_type``) with a message that says so."""
    if hf.get("model_type", model_type) != model_type:
        raise ValueError(
            f"The checkpoint is a {hf['model_type']!r} model, not {model_type!r}: "
            f"load it with the matching ptlearn class."
        )


def check_supported(hf: dict, supported: dict) -> None:
    """Refuse HF options that change the computation in a way ptlearn's model does not."""
    for key, value in supported.items():
        if hf.get(key, value) != value:
            raise ValueError(f"HF config has {key}={hf[key]!r}; ptlearn supports only {value!r}.")


def n_classes_from_hf(hf: dict) -> int:
    """Classifier width: the number of named labels, else ``num_labels`` (HF's default 2)."""
    return len(hf.get("id2label") or {}) or hf.get("num_labels", 2)


def rename(name: str, pairs: list[tuple[str, str]]) -> str:
    """Apply ``(old substring, new substring)`` replacements in order."""
    for old, new in pairs:
        name = name.replace(old, new)
    return name


QKV_PARTS = ("q_proj", "k_proj", "v_proj")  # the rows of ptlearn's qkv_proj, in this order


def _swap_part(name: str, old: str, new: str) -> str:
    """``name`` with its dotted component ``old`` replaced by ``new``."""
    return ".".join(new if part == old else part for part in name.split("."))


def stack_qkv(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Separate ``q_proj`` / ``k_proj`` / ``v_proj`` tensors (HF BERT's and ViT's query, key and
    value, already renamed; a learner's three projections) -> one ``qkv_proj`` tensor, rows q then
    k then v: the layout of :class:`~ptlearn.attention.MultiHeadAttention`. A triple with a part
    missing is left as it is, so a strict load names the missing part."""
    out = {}
    for name, tensor in state.items():
        part = next((p for p in QKV_PARTS if p in name.split(".")), None)
        if part is None:
            out[name] = tensor
            continue
        triple = [_swap_part(name, part, p) for p in QKV_PARTS]
        if not all(t in state for t in triple):
            out[name] = tensor
        elif part == "q_proj":
            stacked = torch.cat([state[t] for t in triple])  # [3C, C] or [3C]
            out[_swap_part(name, "q_proj", "qkv_proj")] = stacked
    return out


def unstack_qkv(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`stack_qkv`: every ``qkv_proj`` tensor cut into its three parts."""
    out = {}
    for name, tensor in state.items():
        if "qkv_proj" not in name.split("."):
            out[name] = tensor
            continue
        for part, rows in zip(QKV_PARTS, tensor.chunk(3, dim=0)):
            out[_swap_part(name, "qkv_proj", part)] = rows
    return out
