"""Turning token ids into training batches: dicts of tensors that go straight into ``model(**batch)``.

Two styles, both accepted by :class:`ptlearn.Trainer`:

- a *batch function* ``fn(generator) -> dict`` that samples a fresh batch each step, nanoGPT's
  ``get_batch``: ``functools.partial(random_lm_batch, train_ids, block_size, batch_size)``
  (windows of ``block_size + 1`` tokens, so that every position has a next token to predict);
- a *map-style dataset* (``data[i]`` is one example dict) plus :func:`collate`, which pads the
  examples of a batch to a common length and builds the ``attention_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

Tensor = torch.Tensor

__all__ = [
    "DictDataset",
    "LMDataset",
    "bucketed_batches",
    "collate",
    "eval_batches",
    "random_lm_batch",
    "sorted_by_length",
]

# padding value per key: token ids -> the tokenizer's pad id; labels -> -100 (ignored by the loss)
_PAD_VALUES = {"labels": -100, "token_type_ids": 0, "attention_mask": 0}


def random_lm_batch(
    data: Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """``batch_size`` random windows of ``block_size + 1`` tokens from a 1-D id tensor, nanoGPT's
    ``get_batch``.

    Returns ``{"input_ids": [B, T], "labels": [B, T + 1]}`` with ``T = block_size``: the inputs are
    the first T tokens of each window and the labels the whole window. The model scores the
    prediction made at position t against ``labels[:, t + 1]``, so every one of the T positions,
    the last included, has a target (with windows of T tokens and ``labels == input_ids``, HF's
    convention, the last position would never be trained). Token-only objectives (MLM, span
    corruption) read ``input_ids``: windows of exactly ``block_size`` tokens.
    """
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got shape {tuple(data.shape)}.")
    if len(data) <= block_size:
        raise ValueError(
            f"data has {len(data)} tokens; a window of block_size + 1 = {block_size + 1} needs more."
        )
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # [B]
    windows = torch.stack([data[i : i + block_size + 1] for i in starts.tolist()])  # [B, T+1]
    return {"input_ids": windows[:, :-1], "labels": windows}


class LMDataset(torch.utils.data.Dataset):
    """A 1-D id tensor cut into windows of ``block_size + 1`` tokens that start ``stride`` apart
    (default ``block_size``), for evaluation: unlike :func:`random_lm_batch`, it visits the text once,
    in order.

    Each item is ``{"input_ids": [T], "labels": [T + 1]}`` (T = ``block_size``), as in
    :func:`random_lm_batch`; torch's default collate stacks them. With the default stride
    consecutive windows share one token, so every token after the first is predicted exactly once.
    """

    def __init__(self, data: Tensor, block_size: int, stride: int | None = None):
        if data.dim() != 1 or len(data) <= block_size:
            raise ValueError(
                f"data must be a 1-D tensor with more than block_size={block_size} ids, "
                f"got shape {tuple(data.shape)}."
            )
        self.data, self.block_size, self.stride = data, block_size, stride or block_size

    def __len__(self) -> int:
        return (len(self.data) - self.block_size - 1) // self.stride + 1

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} windows")
        start = i * self.stride
        window = self.data[start : start + self.block_size + 1]  # [T+1]
        return {"input_ids": window[:-1], "labels": window}


class DictDataset(torch.utils.data.Dataset):
    """Columns of equal length, like ``TensorDataset`` but with names: ``data[i]`` is a dict.

    Columns may be tensors or lists (e.g. token-id lists of different lengths, padded later by
    :func:`collate`)::

        data = DictDataset(input_ids=[tok.encode(t) for t in texts], labels=labels)
    """

    def __init__(self, **columns: Sequence):
        lengths = {name: len(col) for name, col in columns.items()}
        if not columns or len(set(lengths.values())) != 1:
            raise ValueError(f"DictDataset needs columns of one common length, got {lengths}.")
        self.columns = columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, i: int) -> dict:
        return {name: col[i] for name, col in self.columns.items()}


def collate(examples: list[dict], pad_id: int = 0) -> dict[str, Tensor]:
    """Stack example dicts into a batch, padding 1-D sequences on the right to the longest one.

    Each field becomes one tensor: scalars (a class label) -> ``[B]``; equal-shape tensors (an
    image) -> stacked; sequences of different lengths -> ``[B, T]``, padded with ``pad_id`` (token
    ids), ``-100`` (``labels``, so the loss ignores padding) or ``0`` (``token_type_ids``). When
    the examples have ``input_ids`` and no ``attention_mask``, one is built: ``[B, T]`` with 1 for
    real tokens and 0 for padding. As a ``collate_fn``: ``functools.partial(collate,
    pad_id=tokenizer.pad_id)``.
    """
    batch = {}
    for key in examples[0]:
        seqs = [torch.as_tensor(ex[key]) for ex in examples]
        if len({s.shape for s in seqs}) == 1:
            batch[key] = torch.stack(seqs)  # [B, ...]
        elif all(s.dim() == 1 for s in seqs):
            pad = _PAD_VALUES.get(key, pad_id)
            batch[key] = pad_sequence(seqs, batch_first=True, padding_value=pad)  # [B, T]
        else:
            raise ValueError(
                f"collate: field {key!r} mixes shapes {[tuple(s.shape) for s in seqs]}."
            )
        if key == "input_ids" and "attention_mask" not in examples[0]:
            lengths = torch.tensor([len(s) for s in seqs])  # [B]
            T = batch[key].size(1)
            batch["attention_mask"] = (torch.arange(T) < lengths[:, None]).long()  # [B, T]
    return batch


def encode_texts(tokenizer, texts, max_len: int) -> list[list[int]]:
    """WordPiece ids ``[CLS] text [SEP]`` for every text, cut to ``max_len`` tokens; a cut
    sequence still ends with ``[SEP]``, so the model always sees where the text stops."""
    rows = [tokenizer.encode(text) for text in texts]
    return [ids if len(ids) <= max_len else ids[: max_len - 1] + [tokenizer.sep_id] for ids in rows]


def sorted_by_length(**columns: Sequence) -> DictDataset:
    """A :class:`DictDataset` of these columns with its rows sorted by the length of ``input_ids``
    (shortest first), so that neighbours need almost no padding when they share a batch."""
    if "input_ids" not in columns:
        raise ValueError(f"sorted_by_length sorts by input_ids; the columns are {sorted(columns)}.")
    ids = columns["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    data = DictDataset(**columns)  # checks the columns have one common length
    return DictDataset(**{name: [col[i] for i in order] for name, col in data.columns.items()})


def bucketed_batches(dataset: DictDataset, batch_size: int, pad_id: int = 0):
    """A :class:`~ptlearn.Trainer` batch function over a length-sorted dataset: each call takes
    ``batch_size`` neighbours from a random start, so a batch holds texts of about one length.

    Random batches of short texts are mostly padding (chapter 09 measures it), and every padded
    position costs as much compute as a real one. The rows nearest the two ends are drawn a little
    less often than the others; over a run the data still mixes well."""
    if batch_size > len(dataset):
        raise ValueError(
            f"bucketed_batches: batch_size {batch_size} exceeds the {len(dataset)} rows."
        )

    def batch_fn(generator: torch.Generator | None = None) -> dict[str, Tensor]:
        start = int(torch.randint(len(dataset) - batch_size + 1, (), generator=generator))
        return collate([dataset[i] for i in range(start, start + batch_size)], pad_id=pad_id)

    return batch_fn


def eval_batches(dataset: DictDataset, batch_size: int = 64, pad_id: int = 0) -> list[dict]:
    """Every row of ``dataset`` once, in order, as padded batches of ``batch_size`` (the last one
    smaller): for evaluation, where each example must count exactly once."""
    rows = range(len(dataset))
    return [
        collate([dataset[i] for i in rows[s : s + batch_size]], pad_id=pad_id)
        for s in range(0, len(dataset), batch_size)
    ]
