"""Checks that turn a beginner's bad input into an error that says what is wrong and how to fix it.

PyTorch's own messages for these mistakes ("index out of range in self", a CUDA device-side assert,
a shape mismatch deep inside a matmul) point at the symptom, not the cause. Models call these
checks at their entrance, so the message names the argument the user passed.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def check_token_ids(input_ids, vocab_size: int, max_len: int, offset: int = 0, name="input_ids"):
    """input_ids must be an integer tensor ``[B, T]`` with ids in [0, vocab_size) and T <= max_len."""
    if not isinstance(input_ids, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of token ids, got {type(input_ids).__name__}."
        )
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integer token ids (torch.long), got dtype {input_ids.dtype}. "
            f"Tokenize text first, or convert with {name}.long()."
        )
    if input_ids.dim() != 2:
        raise ValueError(
            f"{name} must have shape [batch, seq_len], got {tuple(input_ids.shape)}. "
            f"For a single sequence use {name}.unsqueeze(0)."
        )
    if input_ids.size(0) == 0:
        raise ValueError(
            f"{name} is an empty batch (shape {tuple(input_ids.shape)}): pass at least one "
            f"sequence."
        )
    T = input_ids.size(1)
    if T == 0:
        raise ValueError(f"{name} is empty (seq_len 0): give the model at least one token.")
    if offset + T > max_len:
        raise ValueError(
            f"Sequence too long: {offset + T} positions but the model's max_len is {max_len}. "
            f"Truncate the input to {max_len - offset} tokens or build a config with a larger max_len."
        )
    if _compiling():
        return  # reading the ids back to Python would split a compiled graph on every call
    lo, hi = torch.aminmax(input_ids)
    lo, hi = int(lo), int(hi)
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name} contains id {bad}, outside the vocabulary [0, {vocab_size}). Use the tokenizer "
            f"that matches this model, or a config whose vocab_size covers every id."
        )


def _compiling() -> bool:
    """True while ``torch.compile`` traces the model (torch >= 2.3 can tell; older never skip).
    Measured on an H200: the id range check's ``int(...)`` was a graph break in every forward."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling and is_compiling())


CHECK_FINITE = True  # set to False (or use finite_checks(False)) to skip the NaN/inf input check


def check_finite(tensor: Tensor, name: str) -> None:
    """Float model inputs (pixels) must be finite: one NaN pixel makes every logit NaN silently.
    Costs one pass over the input; switch it off with ``ptlearn.validation.CHECK_FINITE = False``."""
    if CHECK_FINITE and tensor.is_floating_point() and not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"{name} holds {bad} NaN/inf value(s); every output would be NaN. Clean the input "
            f"(torch.nan_to_num) or find where it came from (set "
            f"ptlearn.validation.CHECK_FINITE = False to skip this check)."
        )


def check_same_shape(tensor, reference: Tensor, name: str, ref_name: str = "input_ids") -> None:
    """An attention mask or token-type ids must match input_ids' ``[B, T]`` shape."""
    if tensor is None:
        return
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.shape != reference.shape:
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)} but {ref_name} has shape "
            f"{tuple(reference.shape)}; they must match (one entry per token)."
        )


def check_index_range(tensor: Tensor | None, size: int, name: str) -> None:
    """Integer ids (e.g. token_type_ids) must lie in [0, size)."""
    if tensor is None:
        return
    if tensor.is_floating_point():
        raise TypeError(f"{name} must be an integer tensor, got dtype {tensor.dtype}.")
    lo, hi = (int(x) for x in torch.aminmax(tensor))
    if lo < 0 or hi >= size:
        raise ValueError(f"{name} must lie in [0, {size}), got values in [{lo}, {hi}].")


def state_dict_mismatch(
    expected: dict[str, Tensor], state: dict[str, Tensor], source: str = "file"
) -> list[str]:
    """Every way ``state`` fails to fit a model whose ``state_dict()`` is ``expected``, one line
    each (shape mismatches, then missing keys, then unexpected keys); empty when it fits.

    The one diff behind both loaders that must name every problem at once: HF conversion
    (:mod:`ptlearn.hf`) and checkpoint loading.
    """
    mismatched = [
        f"  {k}: model expects {tuple(t.shape)}, {source} has {tuple(state[k].shape)}"
        for k, t in expected.items()
        if k in state and t.shape != state[k].shape
    ]
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    lines = ["shape mismatches:", *mismatched] if mismatched else []
    lines += [f"missing keys: {missing}"] if missing else []
    lines += [f"unexpected keys: {unexpected}"] if unexpected else []
    return lines
