"""Reading an HF checkpoint from disk or the hub: ``config.json`` plus named tensors.

``from_pretrained`` reads a directory written by HF ``save_pretrained`` (``config.json`` +
``model.safetensors``) without importing ``transformers`` at all; a hub name is fetched with
``huggingface_hub`` when online. Pickled ``pytorch_model.bin`` files can run arbitrary code when
loaded, so they are refused unless the caller passes ``allow_pickle=True`` (and even then they are
read with ``torch.load(weights_only=True)``). Remote code is never run.

Imports: nothing from ptlearn.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

Tensor = torch.Tensor


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
