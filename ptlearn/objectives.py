"""Pretraining objectives: how unlabelled text becomes a training signal.

- **Masked language modelling** (BERT; Devlin et al. 2018, https://arxiv.org/abs/1810.04805,
  section 3.1 and appendix A.1). Choose 15% of the tokens at random; the model must predict the
  original token at each chosen position from both sides of the context. Of the chosen tokens,
  80% are replaced by ``[MASK]``, 10% by a random token and 10% are left unchanged: ``[MASK]``
  never occurs at fine-tuning time, so the model must not learn that only ``[MASK]`` positions
  matter — any token might be wrong, so it keeps a good representation of every token.
- **Next sentence prediction** (BERT, section 3.1 "Task #2"): ``[CLS] A [SEP] B [SEP]`` where B
  is A's real next sentence half of the time (label 0, "IsNext") and a sentence from another
  document otherwise (label 1, "NotNext"). These are HF's ``next_sentence_label`` values.
- **Sentence order prediction** (ALBERT; Lan et al. 2019, https://arxiv.org/abs/1909.11942,
  section 3.1): A and B are always two consecutive segments of one document; label 0 = in their
  original order, 1 = swapped (HF's ``sentence_order_label``). A random B from another document
  (NSP) can be spotted from its topic alone; a swapped pair shares the topic, so only discourse
  coherence gives the order away.
- **Causal language modelling** (GPT; Radford et al. 2018/2019): the output at position t is
  scored against the token at t + 1.
- **Masked patch modelling** (MAE; He et al. 2021, https://arxiv.org/abs/2111.06377): see the
  "patch masking (MAE)" section at the end of this file.

A sentence pair is laid out as BERT's Fig. 2: ``[CLS] A [SEP] B [SEP]``, with token-type
(segment) ids 0 for ``[CLS] A [SEP]`` and 1 for ``B [SEP]``.

Why one module of about 360 lines: it is the one home of every objective's input transform and
loss, so chapter 08 compares them side by side and no model imports another model's objective.
Its sections (MLM, sentence pairs, causal LM, span corruption, patch masking) do not call one
another; a reader can take any one alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from .validation import check_index_range, check_same_shape

Tensor = torch.Tensor

IGNORE_INDEX = -100  # label of positions that do not count in the loss (PyTorch/HF convention)


# --------------------------------------------------------------------------------------------
# Masked language modelling (BERT)
# --------------------------------------------------------------------------------------------


def mask_tokens(
    input_ids: Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int],
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's masking. Returns ``(masked_input_ids, labels)``, both ``[B, T]``.

    Every token that is not special (``special_ids`` must include the padding id; ``mask_id`` is
    always treated as special) is chosen with probability ``mask_prob``. A chosen token becomes
    ``[MASK]`` (80%), a random non-special token (10%) or stays as it is (10%). ``labels`` hold
    the original id at the chosen positions and -100 everywhere else, so the loss counts only
    them. ``generator`` (a CPU ``torch.Generator``) makes the draw reproducible.
    """
    check_index_range(input_ids, vocab_size, "input_ids")
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}.")
    special = torch.tensor(sorted(set(special_ids) | {mask_id}), device=input_ids.device)
    shape, device = input_ids.shape, input_ids.device
    # choose: each ordinary token independently with probability mask_prob
    draw = torch.rand(shape, generator=generator).to(device)
    chosen = (draw < mask_prob) & ~torch.isin(input_ids, special)  # [B, T]
    labels = torch.where(chosen, input_ids, IGNORE_INDEX)
    # decide what a chosen token becomes: [MASK] / random token / itself = 80 / 10 / 10
    action = torch.rand(shape, generator=generator).to(device)
    vocab = torch.arange(vocab_size, device=device)
    ordinary = vocab[~torch.isin(vocab, special)]  # the ids a random replacement may take
    if ordinary.numel() == 0:
        raise ValueError("Every id in the vocabulary is special: there is nothing to mask.")
    random_ids = ordinary[torch.randint(len(ordinary), shape, generator=generator).to(device)]
    masked = torch.where(chosen & (action < 0.8), mask_id, input_ids)
    masked = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, masked)
    return masked, labels


def masked_lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over the chosen positions only (label -100 elsewhere); 0 if none is chosen."""
    total = F.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
    )
    return total / (labels != -100).sum().clamp(min=1)


def pretraining_loss(logits, labels, pair_logits, pair_labels, input_ids, pair_name: str):
    """MLM loss (when ``labels`` are given) + sentence-pair loss (when ``pair_labels`` are given)."""
    losses = []
    if labels is not None:
        check_same_shape(labels, input_ids, "labels")
        losses.append(masked_lm_loss(logits, labels))
    if pair_labels is not None:
        check_same_shape(pair_labels, input_ids[:, 0], pair_name, "input_ids[:, 0] (one per pair)")
        check_index_range(pair_labels, 2, pair_name)
        losses.append(F.cross_entropy(pair_logits, pair_labels))
    return sum(losses) if losses else None


# --------------------------------------------------------------------------------------------
# Sentence pairs: NSP (BERT) and SOP (ALBERT)
# --------------------------------------------------------------------------------------------

Document = Sequence[Sequence[int]]  # a document = its sentences (segments), each a list of ids


def pair_example(a: Sequence[int], b: Sequence[int], cls_id: int, sep_id: int, max_len: int):
    """``[CLS] A [SEP] B [SEP]`` and its segment ids, cutting the longer of A and B (from its
    end) until the pair fits in ``max_len`` tokens. Returns ``(ids, token_type_ids)`` lists."""
    if max_len < 5:
        raise ValueError(f"max_len={max_len} cannot hold [CLS] A [SEP] B [SEP] (at least 5).")
    a, b = list(a), list(b)
    while len(a) + len(b) > max_len - 3:
        (a if len(a) >= len(b) else b).pop()
    ids = [cls_id, *a, sep_id, *b, sep_id]
    return ids, [0] * (len(a) + 2) + [1] * (len(b) + 1)


def pad_pairs(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Tensor]:
    """Right-pad ``(ids, token_type_ids)`` examples to the longest: input_ids, token_type_ids and
    attention_mask (1 = token, 0 = padding), each ``[N, T]``."""
    T = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros_like(input_ids)
    attention_mask = torch.zeros_like(input_ids)
    for row, (ids, types) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        token_type_ids[row, : len(ids)] = torch.tensor(types)
        attention_mask[row, : len(ids)] = 1
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
    }


def _coin(generator: torch.Generator | None) -> bool:
    return bool(torch.rand((), generator=generator) < 0.5)


def _pick(n: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(n, (), generator=generator))


def nsp_pairs(
    documents: Sequence[Document],
    cls_id: int,
    sep_id: int,
    pad_id: int,
    max_len: int = 128,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One NSP example per pair of consecutive sentences: B is the true next sentence (label 0)
    or, with probability 1/2, a random sentence of another document (label 1). Returns
    ``input_ids``, ``token_type_ids``, ``attention_mask`` ``[N, T]`` and ``next_sentence_label [N]``."""
    others = [d for d, doc in enumerate(documents) if len(doc) > 0]
    if len(others) < 2:
        raise ValueError(
            "NSP needs at least two non-empty documents to draw random sentences from."
        )
    examples, labels = [], []
    for d, doc in enumerate(documents):
        for i in range(len(doc) - 1):
            a, b, label = doc[i], doc[i + 1], 0
            if _coin(generator):  # NotNext: a sentence from a different document
                # uniform over the other documents: draw among all but the last one, and let
                # our own document's slot stand for the last one
                j = others[_pick(len(others) - 1, generator)]
                j = others[-1] if j == d else j
                b, label = documents[j][_pick(len(documents[j]), generator)], 1
            examples.append(pair_example(a, b, cls_id, sep_id, max_len))
            labels.append(label)
    return _pair_batch(examples, labels, pad_id, "next_sentence_label")


def sop_pairs(
    documents: Sequence[Document],
    cls_id: int,
    sep_id: int,
    pad_id: int,
    max_len: int = 128,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One SOP example per pair of consecutive segments: in order (label 0) or, with probability
    1/2, the same two swapped (label 1). Returns ``input_ids``, ``token_type_ids``,
    ``attention_mask`` ``[N, T]`` and ``sentence_order_label [N]``."""
    examples, labels = [], []
    for doc in documents:
        for i in range(len(doc) - 1):
            a, b, label = doc[i], doc[i + 1], 0
            if _coin(generator):
                a, b, label = b, a, 1  # swapped: same content, wrong order
            examples.append(pair_example(a, b, cls_id, sep_id, max_len))
            labels.append(label)
    return _pair_batch(examples, labels, pad_id, "sentence_order_label")


def _pair_batch(examples: list, labels: list[int], pad_id: int, label_name: str) -> dict:
    if not examples:
        raise ValueError("No sentence pairs: every document needs at least two sentences.")
    batch = pad_pairs(examples, pad_id)
    batch[label_name] = torch.tensor(labels)
    return batch


# --------------------------------------------------------------------------------------------
# Span corruption (T5)
# --------------------------------------------------------------------------------------------


def random_segmentation(n_items: int, n_segments: int, generator=None) -> list[int]:
    """Cut ``n_items`` into ``n_segments`` random positive lengths that sum to ``n_items``."""
    cuts = torch.randperm(n_items - 1, generator=generator)[: n_segments - 1] + 1
    bounds = [0, *sorted(cuts.tolist()), n_items]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def random_spans_noise_mask(
    length: int, noise_density: float = 0.15, mean_span_length: float = 3.0, generator=None
) -> Tensor:
    """T5's noise mask ``[length]`` (bool, True = dropped), as in its ``random_spans_noise_mask``:
    ``round(noise_density * length)`` noisy tokens in ``round(n_noise / mean_span_length)``
    spans of random lengths, alternating kept / noisy spans, starting with a kept one."""
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {length}.")
    n_noise = min(max(round(length * noise_density), 1), length - 1)
    n_spans = min(max(round(n_noise / mean_span_length), 1), n_noise, length - n_noise)
    noise_lengths = random_segmentation(n_noise, n_spans, generator)
    keep_lengths = random_segmentation(length - n_noise, n_spans, generator)
    mask = []
    for keep, noise in zip(keep_lengths, noise_lengths):
        mask += [False] * keep + [True] * noise
    return torch.tensor(mask)


def spans_to_sentinels(
    ids: Sequence[int], noise_mask: Sequence[bool], sentinel_ids: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Raffel et al. Fig. 2: ``Thank you <X> me to your party <Y> week.`` -> ``<X> for inviting
    <Y> last <Z>``. Each noisy span becomes the next sentinel in the input; the target is each
    sentinel followed by its span, then one final sentinel. Returns ``(input_ids, target_ids)``."""
    inputs, targets, k, previous = [], [], 0, False
    n_spans = sum(
        1 for i, noisy in enumerate(noise_mask) if noisy and (i == 0 or not noise_mask[i - 1])
    )
    if n_spans + 1 > len(sentinel_ids):
        raise ValueError(f"{n_spans} spans need {n_spans + 1} sentinels, got {len(sentinel_ids)}.")
    for token, noisy in zip(ids, noise_mask):
        if noisy and not previous:  # a span starts: one sentinel stands for all of it
            inputs.append(sentinel_ids[k])
            targets.append(sentinel_ids[k])
            k += 1
        (targets if noisy else inputs).append(int(token))
        previous = bool(noisy)
    targets.append(sentinel_ids[k])  # the final sentinel
    return inputs, targets


def fill_spans(inputs: Sequence[int], targets: Sequence[int], sentinel_ids: Sequence[int]):
    """Undo :func:`spans_to_sentinels`: put each target span back in place of its sentinel."""
    sentinels, spans, current = set(sentinel_ids), {}, None
    for token in targets:
        if token in sentinels:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    return [t for token in inputs for t in (spans[token] if token in sentinels else [token])]


# --------------------------------------------------------------------------------------------
# Causal language modelling (GPT)
# --------------------------------------------------------------------------------------------


def causal_lm_shift(logits: Tensor, labels: Tensor) -> Tensor:
    """Next-token cross-entropy: the logits at position t are scored against ``labels[:, t + 1]``.

    logits ``[B, T, V]``; labels ``[B, T]`` or ``[B, T + 1]`` (-100 = ignore, e.g. padding).

    - ``[B, T]``, usually the input ids themselves (HF's convention): the last position has no
      next token and the first label no predictor, so both drop out and the loss averages over
      the ``T - 1`` shifted pairs. The last position is never trained.
    - ``[B, T + 1]``: the window the inputs were cut from, one token longer (nanoGPT's way of
      drawing ``block_size + 1`` tokens). Every one of the T positions has a target.
    """
    B, T = logits.shape[:2]
    if labels.dim() != 2 or labels.size(0) != B or labels.size(1) not in (T, T + 1):
        raise ValueError(
            f"labels has shape {tuple(labels.shape)}; for logits of {B} rows and {T} positions "
            f"they must be [{B}, {T}] (the inputs themselves) or [{B}, {T + 1}] (the inputs plus "
            f"the next token)."
        )
    shifted_logits = logits[:, : labels.size(1) - 1]  # [B, T-1 or T, V]  predictions made
    shifted_labels = labels[:, 1:]  # [B, T-1 or T]  the tokens they predict
    return F.cross_entropy(
        shifted_logits.flatten(0, 1), shifted_labels.flatten(), ignore_index=IGNORE_INDEX
    )


# --------------------------------------------------------------------------------------------
# Patch masking (MAE)
# --------------------------------------------------------------------------------------------


def random_patch_mask(
    batch: int, n_patches: int, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Choose the patches an MAE encoder sees (He et al. 2021, section 3, "Masking").

    Every image gets its own uniformly random permutation of its N patches (the argsort of N
    uniform draws); the first ``n_keep = int(N * (1 - mask_ratio))`` stay visible, the rest are
    hidden. Sampling without replacement spreads the visible patches over the whole image, and at
    MAE's high ratio (75%) a hidden patch cannot be filled in by copying its neighbours.

    Returns ``keep_idx [B, n_keep]`` (the visible patches, in ascending raster order) and
    ``mask [B, N]`` (bool, True = hidden), both on the generator's device (CPU by default).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}.")
    n_keep = int(n_patches * (1 - mask_ratio))
    device = None if generator is None else generator.device
    noise = torch.rand(batch, n_patches, generator=generator, device=device)  # [B, N]
    order = noise.argsort(dim=1)  # [B, N]  a random permutation per image
    keep_idx = order[:, :n_keep].sort(dim=1).values  # [B, n_keep]
    mask = torch.ones(batch, n_patches, dtype=torch.bool, device=noise.device)
    mask.scatter_(1, keep_idx, False)  # [B, N]  True = hidden
    return keep_idx, mask


def restore_ids(mask: Tensor) -> Tensor:
    """``[B, N]`` bool mask -> for each patch, its index in the decoder's input order.

    The encoder saw the visible patches in raster order; the decoder appends the [MASK] tokens
    after them. A stable sort of the mask lists exactly that order (visible first, each group in
    raster order); sorting that list again inverts the permutation.
    """
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)  # [B, N]  visible, then hidden
    return torch.argsort(order, dim=1)


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``[B, C_in, H_img, W_img]`` -> ``[B, N, P * P * C_in]``: one row per patch in raster order,
    its pixels row by row with the channels last (MAE's layout)."""
    B, C_in, H_img, W_img = images.shape
    P = patch_size
    h, w = H_img // P, W_img // P  # patches per column and per row
    x = images.reshape(B, C_in, h, P, w, P)  # [B, C_in, h, P, w, P]
    x = x.permute(0, 2, 4, 3, 5, 1)  # [B, h, w, P, P, C_in]
    return x.reshape(B, h * w, P * P * C_in)  # [B, N, P * P * C_in]


def unpatchify(patches: Tensor, patch_size: int, n_channels: int) -> Tensor:
    """The inverse of :func:`patchify`: ``[B, N, P * P * C_in]`` -> ``[B, C_in, H_img, W_img]``."""
    B, N, _ = patches.shape
    P, h = patch_size, int(N**0.5)
    x = patches.reshape(B, h, h, P, P, n_channels)  # [B, h, w, P, P, C_in]
    x = x.permute(0, 5, 1, 3, 2, 4)  # [B, C_in, h, P, w, P]
    return x.reshape(B, n_channels, h * P, h * P)
