"""Batch functions for the Trainer: ``fn(generator) -> dict`` of tensors, one per objective.

Each draws its examples with the ``generator`` it is given, so a seeded run sees the same batches
(the Trainer passes its own generator). Text builders take a WordPiece
:class:`~ptlearn.tokenization.HFTokenizer` for its special ids; the transforms they apply
(masking, sentence pairs, span corruption) are the ones chapter 05-08 explain in
:mod:`ptlearn.objectives`.

- masked LM windows (:func:`mlm_batch`), sentence-order pairs cut from windows (:func:`sop_batch`)
  and T5 span corruption (:func:`span_batch`, :func:`span_corruption_batch`) over a token stream;
- BERT/ALBERT pretraining pairs from documents (:func:`pair_batch`);
- random labelled examples (:func:`labeled_batch`) and images (:func:`random_image_batch`);
- a held-out set as one batch (:func:`whole_set`).

Imports: ``ptlearn.objectives`` and :mod:`.batching`; nothing above them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.functional import pad

from ..objectives import (
    mask_tokens,
    nsp_pairs,
    random_spans_noise_mask,
    sop_pairs,
    spans_to_sentinels,
)
from .batching import collate, random_lm_batch

Tensor = torch.Tensor


def mask_with(tokenizer, input_ids: Tensor, generator=None) -> tuple[Tensor, Tensor]:
    """BERT's 15% masking (80/10/10) with the tokenizer's ``[MASK]``, vocabulary and special ids:
    ``(masked input_ids, labels)``."""
    return mask_tokens(
        input_ids, tokenizer.mask_id, tokenizer.vocab_size, tokenizer.special_ids,
        generator=generator,
    )  # fmt: skip


# --- token streams (chapter 08) -----------------------------------------------------------------


def wrap_window(windows: Tensor, tokenizer) -> Tensor:
    """``[CLS] window [SEP]`` for every row of ``windows [B, W]`` -> ``[B, W + 2]``."""
    B = windows.size(0)
    cls = torch.full((B, 1), tokenizer.cls_id, dtype=windows.dtype)
    sep = torch.full((B, 1), tokenizer.sep_id, dtype=windows.dtype)
    return torch.cat([cls, windows, sep], dim=1)


def mlm_batch(stream, window, batch_size, tokenizer, generator=None) -> dict:
    """BERT: ``[CLS] window [SEP]`` with 15% of the tokens masked (80/10/10)."""
    ids = wrap_window(
        random_lm_batch(stream, window, batch_size, generator)["input_ids"], tokenizer
    )
    masked, labels = mask_with(tokenizer, ids, generator)
    return {"input_ids": masked, "labels": labels}


def sop_batch(stream, window, batch_size, tokenizer, generator=None) -> dict:
    """ALBERT: each window cut at a random point into segments A, B; swapped half of the time
    (:func:`~ptlearn.objectives.sop_pairs`); then masked. The pair head reads the order label."""
    windows = random_lm_batch(stream, window, batch_size, generator)["input_ids"].tolist()
    cuts = torch.randint(1, window, (batch_size,), generator=generator).tolist()
    docs = [[w[:k], w[k:]] for w, k in zip(windows, cuts)]  # one two-segment document each
    specials = dict(cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, pad_id=tokenizer.pad_id)
    batch = sop_pairs(docs, **specials, max_len=window + 3, generator=generator)
    batch["input_ids"], batch["labels"] = mask_with(tokenizer, batch["input_ids"], generator)
    batch["next_sentence_label"] = batch.pop("sentence_order_label")  # the pair head's labels
    return batch


def span_batch(stream, window, batch_size, tokenizer, sentinel_ids, generator=None) -> dict:
    """T5: span-corrupted windows for the encoder-decoder ([SEP] ends input and target)."""
    windows = random_lm_batch(stream, window, batch_size, generator)["input_ids"]
    return span_corruption_batch(
        windows, sentinel_ids, tokenizer.sep_id, tokenizer.pad_id, generator=generator
    )


def labeled_batch(ids: list[list[int]], labels: list[int], batch_size, pad_id, generator=None):
    """Supervised pretraining: ``batch_size`` random labelled examples, padded."""
    picks = torch.randint(len(ids), (batch_size,), generator=generator).tolist()
    return collate([{"input_ids": ids[i], "labels": labels[i]} for i in picks], pad_id=pad_id)


def span_corruption_batch(
    windows: Tensor,
    sentinel_ids: Sequence[int],
    eos_id: int,
    pad_id: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    generator=None,
) -> dict[str, Tensor]:
    """Token windows ``[B, W]`` -> an :class:`~ptlearn.EncoderDecoder` batch: ``input_ids`` (the
    corrupted window + EOS) and ``attention_mask`` ``[B, S]``; ``decoder_input_ids`` (the target
    shifted right behind a start token, T5 starts with the pad id) and ``labels`` (target + EOS,
    -100 at padding) ``[B, T_tgt]``."""
    examples = []
    for window in windows.tolist():
        mask = random_spans_noise_mask(len(window), noise_density, mean_span_length, generator)
        source, target = spans_to_sentinels(window, mask.tolist(), sentinel_ids)
        examples.append(
            {
                "input_ids": source + [eos_id],
                "decoder_input_ids": [pad_id] + target,
                "labels": target + [eos_id],
            }
        )
    return collate(examples, pad_id=pad_id)  # pads ids with pad_id, labels with -100


# --- sentence pairs from documents (chapters 05-06, ``ptlearn train bert``) -----------------------


def pair_batch(
    documents, tokenizer, batch_size: int, max_len: int, objective: str, generator
) -> dict:
    """One MLM + NSP/SOP batch: ``batch_size`` random pairs of consecutive sentences.

    Each pair becomes a two-sentence document, so :func:`~ptlearn.objectives.nsp_pairs` draws its
    "NotNext" sentences from the other pairs of the batch and :func:`~ptlearn.objectives.sop_pairs`
    swaps half of them; then 15% of the tokens are masked for the MLM loss.
    """
    picks = torch.randint(len(documents), (batch_size,), generator=generator).tolist()
    pairs = []
    for d in picks:
        i = int(torch.randint(len(documents[d]) - 1, (), generator=generator))
        pairs.append(documents[d][i : i + 2])  # [sentence A ids, sentence B ids]
    make_pairs = nsp_pairs if objective == "nsp" else sop_pairs
    ids = dict(cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, pad_id=tokenizer.pad_id)
    batch = make_pairs(pairs, **ids, max_len=max_len, generator=generator)
    batch["input_ids"], batch["labels"] = mask_with(tokenizer, batch["input_ids"], generator)
    return batch


# --- images (chapter 07, ``ptlearn train vit``) ------------------------------------------------


def whole_set(batch: dict, generator=None) -> dict:
    """An evaluation "batch function" that always returns one batch: the whole held-out set.
    With ``eval_batches=1`` the reported accuracy is exactly the set's (a mean over batches of
    unequal size would weigh the last, smaller batch too much)."""
    return batch


def random_image_batch(pixels, labels, batch_size: int, generator, max_shift: int = 0) -> dict:
    """``batch_size`` training images drawn at random, each shifted by up to ``max_shift`` pixels
    in x and y (zeros fill the border): a digit moved by a pixel is the same digit, and on 1,437
    training images this augmentation is what keeps a long run from memorising them."""
    idx = torch.randint(len(labels), (batch_size,), generator=generator)
    images = pixels[idx]  # [B, C, H_img, W_img]
    if max_shift:
        m, (H_img, W_img) = max_shift, images.shape[-2:]
        padded = pad(images, (m, m, m, m))  # [B, C, H_img + 2m, W_img + 2m]
        dy, dx = torch.randint(2 * m + 1, (2, batch_size), generator=generator).tolist()
        images = torch.stack(
            [p[:, y : y + H_img, x : x + W_img] for p, y, x in zip(padded, dy, dx)]
        )
    return {"pixel_values": images, "labels": labels[idx]}
