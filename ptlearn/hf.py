"""Weights in and out of HF ``transformers``: ``from_hf``, ``to_hf`` and ``from_pretrained``.

A checkpoint is just named tensors. Converting one means (1) reading the HF config into ours and
(2) renaming — sometimes transposing or splitting — each tensor into our module layout. Both steps
are plain functions per model family below, so a reader can see exactly which HF tensor becomes
which ptlearn parameter.

``from_pretrained`` reads a directory written by HF ``save_pretrained`` (``config.json`` +
``model.safetensors``) without importing ``transformers`` at all; a hub name is fetched with
``huggingface_hub`` when online. Pickled ``pytorch_model.bin`` files can run arbitrary code when
loaded, so they are refused unless the caller passes ``allow_pickle=True`` (and even then they are
read with ``torch.load(weights_only=True)``). Remote code is never run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------
# Generic machinery (lead)
# --------------------------------------------------------------------------------------------


def resolve_pretrained_dir(name_or_dir: str | os.PathLike) -> Path:
    """A local directory as is; otherwise download the hub repo's config and safetensors files."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path} is a file; from_pretrained expects a directory or a hub name.")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # pragma: no cover - huggingface_hub ships with transformers
        raise ValueError(
            f"{name_or_dir!r} is not a local directory, and huggingface_hub is not installed to "
            f"download it. `pip install huggingface_hub`, or pass a save_pretrained directory."
        ) from err
    try:
        local = snapshot_download(
            str(name_or_dir), allow_patterns=["config.json", "*.safetensors", "*.json", "*.txt"]
        )
    except Exception as err:
        raise ValueError(
            f"Could not find {name_or_dir!r} locally or download it from the HF hub ({err}). "
            f"Check the name and your connection, or pass a directory written by save_pretrained."
        ) from err
    return Path(local)


def read_hf_checkpoint(
    directory: Path, allow_pickle: bool = False
) -> tuple[dict, dict[str, Tensor]]:
    """Return ``(config_dict, state_dict)`` from a ``save_pretrained`` directory."""
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{directory} has no config.json: is it a save_pretrained directory?")
    config = json.loads(config_file.read_text())
    safetensors_files = sorted(directory.glob("*.safetensors"))
    if safetensors_files:
        from safetensors.torch import load_file

        state = {}
        for f in safetensors_files:
            try:
                state.update(load_file(str(f)))
            except Exception as err:
                raise ValueError(
                    f"Could not read {f}: the file is truncated or not safetensors ({err})."
                ) from err
        return config, state
    pickled = sorted(directory.glob("*.bin"))
    if not pickled:
        raise ValueError(f"{directory} holds no *.safetensors (or *.bin) weights.")
    if not allow_pickle:
        raise ValueError(
            f"{directory} only has pickled weights ({pickled[0].name}). Unpickling a file from a "
            f"stranger can run arbitrary code, so ptlearn refuses it. Convert it to safetensors, or "
            f"pass allow_pickle=True if you trust its source (it is then read with weights_only=True)."
        )
    state = {}
    for f in pickled:
        state.update(torch.load(f, map_location="cpu", weights_only=True))
    return config, state


def load_state_dict_strict(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Copy ``state`` into ``model``; on any missing, unexpected or mis-shaped key raise one
    ValueError that lists them all (``source`` names where the weights came from)."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = [
        f"{k}: model {tuple(own[k].shape)} vs {source} {tuple(state[k].shape)}"
        for k in own
        if k in state and own[k].shape != state[k].shape
    ]
    if missing or unexpected or mismatched:
        lines = [f"The weights from {source} do not fit this {type(model).__name__}'s config:"]
        if mismatched:
            lines += ["  shape mismatch:"] + [f"    {m}" for m in mismatched]
        if missing:
            lines += [f"  missing keys: {missing}"]
        if unexpected:
            lines += [f"  unexpected keys: {unexpected}"]
        lines.append("Build the model from the checkpoint's own config (from_pretrained does).")
        raise ValueError("\n".join(lines))
    with torch.no_grad():
        for k, t in own.items():
            t.copy_(state[k])


class HFConvertible:
    """Mixed into every ptlearn model that has an HF counterpart.

    A model class sets ``hf_family`` (a key of ``FAMILIES``); the family's two functions turn an HF
    config dict into our config and an HF state dict into ours. ``FAMILIES`` maps a family name to
    ``(config_from_hf, weights_from_hf)``; each family section below adds its entry.
    """

    hf_family: str = ""

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
        config_from_hf, weights_from_hf = FAMILIES[cls.hf_family]
        config = config_from_hf(cls, hf_config)
        model = cls(config)
        load_state_dict_strict(model, weights_from_hf(cls, hf_state, config), source)
        return model.eval()


FAMILIES: dict[str, tuple] = {}


# --------------------------------------------------------------------------------------------
# BERT and ALBERT (helper-4)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# GPT-2 and ViT (helper-5)
# --------------------------------------------------------------------------------------------
