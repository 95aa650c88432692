"""Turn what a model returned into plain arrays, or say exactly what is wrong with it.

Every view in ``ptlearn.viz`` reads the same thing: ``attentions``, the per-layer tuple that
``model(..., output_attentions=True).attentions`` returns (ptlearn and HF alike), one
``[B, H, Tq, Tk]`` tensor per layer, plus the tokens that label the query and key axes. This module
checks those inputs once and converts them to one NumPy array ``[L, H, Tq, Tk]`` for a single batch
row, so the drawing code never has to think about tensors, devices or dtypes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

MEAN = "mean"  # the head choice that averages all heads of a layer


def to_numpy(x) -> np.ndarray:
    """A tensor (any device, any float dtype, with or without grad) or array-like -> float32 array."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


def attention_maps(attentions, batch: int = 0, name: str = "attentions") -> np.ndarray:
    """Check a per-layer attention tuple and return batch row ``batch`` as ``[L, H, Tq, Tk]``."""
    if isinstance(attentions, torch.Tensor | np.ndarray):
        raise ValueError(
            f"{name} must be a per-layer tuple of [B, H, Tq, Tk] tensors (e.g. outputs.attentions), "
            f"got one array of shape {tuple(attentions.shape)}. For a single layer pass ({name},)."
        )
    if not isinstance(attentions, Sequence) or len(attentions) == 0:
        raise ValueError(
            f"{name} is empty or not a sequence. Call the model with output_attentions=True; for an "
            f'HF model also load it with attn_implementation="eager" (its default "sdpa" '
            f"returns no attention weights)."
        )
    layers = [to_numpy(a) for a in attentions]
    for i, a in enumerate(layers):
        if a.ndim != 4:
            hint = " Add the batch dimension with .unsqueeze(0)." if a.ndim == 3 else ""
            raise ValueError(
                f"{name}[{i}] has shape {a.shape}; every layer must be 4-D [B, H, Tq, Tk].{hint}"
            )
        if a.shape != layers[0].shape:
            raise ValueError(
                f"{name}[{i}] has shape {a.shape} but {name}[0] has {layers[0].shape}; all layers "
                f"must come from the same forward pass."
            )
    n_batch = layers[0].shape[0]
    if not -n_batch <= batch < n_batch:
        raise ValueError(f"batch={batch} is out of range: the attentions hold {n_batch} sequences.")
    return np.stack([a[batch] for a in layers])  # [L, H, Tq, Tk]


def check_tokens(tokens, length: int, axis: str = "query", name: str = "tokens") -> list[str]:
    """Tokens label one axis of the maps: there must be exactly one per position."""
    if tokens is None:
        return [str(i) for i in range(length)]
    tokens = [str(t) for t in tokens]
    if len(tokens) != length:
        raise ValueError(
            f"The attentions have {length} {axis} positions but {len(tokens)} {name} were given. "
            f"Pass the tokens of the same input, e.g. tokenizer.convert_ids_to_tokens(input_ids[0])"
            + (", and tokens_k= for the keys of cross-attention." if axis == "key" else ".")
        )
    return tokens


def labels_for(maps: np.ndarray, tokens, tokens_k=None) -> tuple[list[str], list[str]]:
    """Query and key labels for ``[L, H, Tq, Tk]`` maps (keys default to the query tokens)."""
    t_q, t_k = maps.shape[-2:]
    tokens_q = check_tokens(tokens, t_q, "query")
    if tokens_k is None:
        if t_q != t_k:
            raise ValueError(
                f"These maps have {t_q} queries but {t_k} keys (cross-attention): pass the key side's "
                f"tokens as tokens_k= (e.g. the source sentence)."
            )
        return tokens_q, tokens_q
    return tokens_q, check_tokens(tokens_k, t_k, "key", "tokens_k")


def resolve_layer(layer: int, n_layers: int) -> int:
    """Layer index in ``[0, n_layers)``; negative counts from the end like Python lists."""
    if not isinstance(layer, int | np.integer) or not -n_layers <= layer < n_layers:
        raise ValueError(
            f"layer={layer!r} is out of range: the model has {n_layers} layers (0..{n_layers - 1})."
        )
    return int(layer) % n_layers


def resolve_head(head, n_heads: int):
    """Head index in ``[0, n_heads)``, or ``"mean"`` for the average over all heads."""
    if head == MEAN:
        return MEAN
    if not isinstance(head, int | np.integer) or not -n_heads <= head < n_heads:
        raise ValueError(
            f"head={head!r} is out of range: each layer has {n_heads} heads (0..{n_heads - 1}); "
            f'use head="mean" for the average over heads.'
        )
    return int(head) % n_heads


def select_map(maps: np.ndarray, layer: int, head) -> np.ndarray:
    """One ``[Tq, Tk]`` map: layer ``layer``, head ``head`` (or the mean over heads)."""
    layer = resolve_layer(layer, maps.shape[0])
    head = resolve_head(head, maps.shape[1])
    return maps[layer].mean(axis=0) if head == MEAN else maps[layer, head]
