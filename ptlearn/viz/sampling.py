"""The model calls behind the playgrounds: masked-token predictions and step-by-step sampling.

These are plain functions (no widgets) so notebooks and tests can call them directly. They work with
any model that follows ptlearn's call convention, ``model(input_ids=..., output_attentions=...)``
returning ``.logits`` (HF models too), and any tokenizer with ``encode``, ``decode`` and
``convert_ids_to_tokens`` plus the special ids (``mask_id``, ``cls_id``, ``sep_id``, ``bos_id``,
``eos_id``).

Sampling the next token, with :func:`ptlearn.models.gpt.filter_logits` (the one GPT.generate uses):

    p = softmax(filter(logits / temperature))      temperature < 1 sharpens, > 1 flattens
    top-k:  keep the k highest logits               (0 or None: off)
    top-p:  keep the smallest set of tokens whose probabilities add up to at least p   (1.0: off)
"""

from __future__ import annotations

import re

import torch

from ..models.gpt import filter_logits
from .inputs import attention_maps


def model_device(model) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


def context_limit(model) -> int | None:
    """The longest input the model accepts (ptlearn ``max_len`` or the HF equivalents)."""
    config = getattr(model, "config", None)
    for name in ("max_len", "n_positions", "max_position_embeddings"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return None


@torch.no_grad()
def run_model(model, ids: list[int], **kwargs):
    """One forward pass on a single sequence in eval mode (dropout off), restoring the mode."""
    was_training = model.training
    model.eval()
    try:
        return model(input_ids=torch.tensor([ids], device=model_device(model)), **kwargs)
    finally:
        model.train(was_training)


def mlm_logits(outputs) -> torch.Tensor:
    """Masked-LM scores ``[B, T, vocab]`` (ptlearn ``.logits``; HF BertForPreTraining calls them
    ``.prediction_logits``)."""
    logits = getattr(outputs, "logits", None)
    if logits is None:
        logits = getattr(outputs, "prediction_logits", None)
    if logits is None or logits.dim() != 3:
        raise ValueError(
            "The model must return masked-LM logits [B, T, vocab]: use a pretraining or masked-LM "
            "model (e.g. BertForPreTraining, AlbertForPreTraining), not a classifier."
        )
    return logits


def encode_with_masks(tokenizer, text: str) -> list[int]:
    """``[CLS] text [SEP]`` with each ``[MASK]`` (or the tokenizer's own mask token) as ``mask_id``.

    The text is split at the masks and each piece encoded separately, so even a character-level
    tokenizer sees ``[MASK]`` as one token; [CLS]/[SEP] that ``encode`` adds itself are not doubled.
    """
    if getattr(tokenizer, "mask_id", None) is None:
        raise ValueError(
            "This tokenizer has no mask token (mask_id is None): train it with [MASK]."
        )
    mask_token = tokenizer.convert_ids_to_tokens([tokenizer.mask_id])[0]
    pieces = re.split(f"{re.escape(mask_token)}|\\[MASK\\]", text)
    specials = {tokenizer.cls_id, tokenizer.sep_id} - {None}
    ids = [] if tokenizer.cls_id is None else [tokenizer.cls_id]
    for i, piece in enumerate(pieces):
        if i:
            ids.append(tokenizer.mask_id)
        ids += [t for t in tokenizer.encode(piece) if t not in specials]
    return ids + ([] if tokenizer.sep_id is None else [tokenizer.sep_id])


def fill_mask_predictions(model, tokenizer, text: str, top_k: int = 5) -> dict:
    """Top-k predictions for every ``[MASK]`` in ``text``.

    Returns ``tokens``, ``masks`` (positions of the masks), ``predictions`` (one list of
    ``(token, probability)`` per mask, best first) and ``attentions`` (``[L, H, T, T]``).
    """
    ids = encode_with_masks(tokenizer, text)
    outputs = run_model(model, ids, output_attentions=True)
    masks = [i for i, t in enumerate(ids) if t == tokenizer.mask_id]
    probs = torch.softmax(mlm_logits(outputs)[0, masks].float(), dim=-1)  # [M, vocab]
    best = probs.topk(min(top_k, probs.size(-1)), dim=-1)
    predictions = [
        list(zip(tokenizer.convert_ids_to_tokens(i.tolist()), p.tolist()))
        for p, i in zip(best.values, best.indices)
    ]
    return {
        "tokens": tokenizer.convert_ids_to_tokens(ids),
        "masks": masks,
        "predictions": predictions,
        "attentions": attention_maps(outputs.attentions),
    }


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt's ids; an empty prompt starts from the BOS (or end-of-text) token."""
    ids = list(tokenizer.encode(prompt)) if prompt else []
    start = next((t for t in (tokenizer.bos_id, tokenizer.eos_id) if t is not None), None)
    if not ids and start is None:
        raise ValueError("Type a prompt: this tokenizer has no BOS/EOS token to start from.")
    return ids or [start]


@torch.no_grad()
def sample_steps(
    model,
    ids,
    max_new_tokens=20,
    temperature=1.0,
    top_k=None,
    top_p=1.0,
    seed=0,
    n_candidates=5,
    eos_id=None,
) -> list[dict]:
    """Generate token by token from ``model(input_ids).logits[:, -1]``; one dict per step with the
    chosen ``id``, its probability ``prob`` and the ``candidates`` ``[(id, prob), ...]`` it was
    drawn from. Probabilities are those of the distribution sampled from (after temperature and
    filtering). Texts longer than the model's context (``max_len``) slide a window: each step reads
    the last ``max_len`` tokens. Stops early at ``eos_id``; a seeded generator makes runs
    repeatable."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    generator = torch.Generator().manual_seed(int(seed))
    limit, ids, steps = context_limit(model), list(ids), []
    for _ in range(max_new_tokens):
        # slide a window over the last `limit` tokens: ptlearn trains on windows of max_len + 1
        # tokens, so every position, the last included, has learnt to predict its next token
        logits = run_model(model, ids[-limit:] if limit else ids).logits[0, -1].float().cpu()
        nucleus = None if top_p is None or top_p >= 1 else top_p
        probs = torch.softmax(
            filter_logits(logits[None] / temperature, top_k or None, nucleus)[0], -1
        )
        next_id = int(torch.multinomial(probs, 1, generator=generator))
        best = probs.topk(min(n_candidates, probs.numel()))
        candidates = list(zip(best.indices.tolist(), best.values.tolist()))
        steps.append({"id": next_id, "prob": float(probs[next_id]), "candidates": candidates})
        ids.append(next_id)
        if next_id == eos_id:
            break
    return steps
