"""What a run reports: the :class:`History` of logged values and the :class:`Callback` hooks
(with :class:`AttentionRecorder`, which snapshots attention maps while a model learns).

Imports: nothing from ptlearn (the Trainer is passed in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # annotations only: the Trainer imports this module, not the reverse
    from .trainer import Trainer


@dataclass
class History:
    """Everything logged: ``records`` are dicts {"step", "split": "train"|"eval", "loss", ...}."""

    records: list[dict] = field(default_factory=list)

    def add(self, step: int, split: str, **values) -> None:
        self.records.append({"step": step, "split": split, **values})

    def series(self, key: str = "loss", split: str = "train") -> tuple[list[int], list[float]]:
        """(steps, values) of ``key`` over the records of ``split``, ready for ``plt.plot``."""
        rows = [r for r in self.records if r["split"] == split and key in r]
        return [r["step"] for r in rows], [r[key] for r in rows]

    def last(self, split: str = "eval") -> dict | None:
        rows = [r for r in self.records if r["split"] == split]
        return rows[-1] if rows else None


class Callback:
    """Hooks the Trainer calls on rank 0; override the ones you need."""

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, step: int, logs: dict) -> None: ...

    def on_eval_end(self, trainer: Trainer, step: int, metrics: dict) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...


class AttentionRecorder(Callback):
    """Snapshots of the attention maps on a fixed probe batch, at the start and every ``every`` steps.

    ``snapshots`` is a list of ``(step, attentions)`` with one ``[B, H, T, T]`` CPU tensor per layer:
    replay them to watch heads specialise as training goes on.
    """

    def __init__(self, probe_batch: dict, every: int):
        self.probe_batch, self.every, self.snapshots = probe_batch, every, []

    @torch.no_grad()
    def record(self, trainer: Trainer) -> None:
        model, was_training = trainer.model, trainer.model.training
        model.eval()  # no dropout: the maps show what the model computes
        out = model(**trainer.to_device(self.probe_batch), output_attentions=True)
        model.train(was_training)
        self.snapshots.append((trainer.state.step, tuple(a.detach().cpu() for a in out.attentions)))

    def on_train_begin(self, trainer):
        if not self.snapshots or self.snapshots[-1][0] != trainer.state.step:
            self.record(trainer)

    def on_step_end(self, trainer, step, logs):
        if step % self.every == 0:
            self.record(trainer)
