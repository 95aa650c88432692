"""Where batches come from: a batch function ``fn(generator) -> dict`` or a map-style dataset,
split across DDP ranks so that W ranks see what one process sees with ``grad_accum=W``.

Imports: nothing from ptlearn.
"""

from __future__ import annotations

import torch
from torch.utils.data import default_collate


class Batches:
    """This rank's batches from a batch function or a dataset, with a position that can be saved."""

    def __init__(self, data, collate_fn, batch_size, seed: int, rank: int, world: int):
        self.data, self.collate, self.batch_size = data, collate_fn or default_collate, batch_size
        self.seed, self.rank, self.world = seed, rank, world
        self.is_fn = callable(data)
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.pos, self._perm = 0, 0, None
        if not self.is_fn:
            if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
                raise TypeError("data must be a batch function or a map-style dataset (a list).")
            if not batch_size:
                raise ValueError("TrainConfig.batch_size is needed to batch a dataset.")
            if len(data) < batch_size * world:
                raise ValueError(f"dataset has {len(data)} examples, fewer than one global batch.")

    def _call_fn(self, generator: torch.Generator) -> dict:
        batches = [self.data(generator) for _ in range(self.world)]
        return batches[self.rank]

    def next(self) -> dict:
        """The next training batch (shuffled dataset: drops the incomplete last global chunk)."""
        if self.is_fn:
            return self._call_fn(self.generator)
        chunk = self.batch_size * self.world
        if self.pos + chunk > len(self.data):
            self.epoch, self.pos = self.epoch + 1, 0
        if self._perm is None or self._perm[0] != self.epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            self._perm = (self.epoch, torch.randperm(len(self.data), generator=g).tolist())
        indices = self._perm[1][self.pos : self.pos + chunk][self.rank :: self.world]
        self.pos += chunk
        return self.collate([self.data[i] for i in indices])

    def eval_iter(self, n_batches: int):
        """Fixed evaluation batches: n_batches from a fresh generator, or the dataset in order."""
        if self.is_fn:
            g = torch.Generator().manual_seed(self.seed + 1)
            yield from (self._call_fn(g) for _ in range(n_batches))
            return
        indices = list(range(len(self.data)))[self.rank :: self.world]
        for i in range(0, len(indices), self.batch_size):
            yield self.collate([self.data[j] for j in indices[i : i + self.batch_size]])

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.epoch, self.pos = state["epoch"], state["pos"]


def count_items(batch: dict) -> int:
    """Tokens in ``input_ids``, else examples (the first tensor's batch dimension)."""
    if "input_ids" in batch:
        return batch["input_ids"].numel()
    return next(v.shape[0] for v in batch.values() if torch.is_tensor(v))
