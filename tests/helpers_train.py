"""Tiny models and data for the Trainer, checkpoint and DDP tests (also run by tests/scripts/).

The task: predict ``(token + 1) % vocab`` at every position. A model with an embedding and a linear
head learns it in a few dozen steps, so a test can assert that the loss really falls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ptlearn.outputs import ModelOutput
from ptlearn.training import TrainConfig, Trainer, set_seed

VOCAB, T = 16, 8


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train fastest on one thread: two threads on a busy 2-core machine can be 30x
    slower (OpenMP spin-waiting). One thread also matches the subprocesses bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class TinyConfig:
    vocab_size: int = VOCAB
    d_model: int = 32
    dropout: float = 0.1
    tie: bool = False


class TinyLM(nn.Module):
    """Embedding -> dropout -> LayerNorm -> linear head; optional tied embedding/head weights."""

    def __init__(self, config: TinyConfig | None = None):
        super().__init__()
        self.config = config = config or TinyConfig()
        self.emb = nn.Embedding(config.vocab_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie:
            self.head.weight = self.emb.weight

    def forward(self, input_ids, labels=None, output_attentions=False):
        logits = self.head(self.norm(self.drop(self.emb(input_ids))))  # [B, T, vocab]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return ModelOutput(loss=loss, logits=logits)


class NaNAfter(TinyLM):
    """A TinyLM whose training loss turns NaN from its ``k``-th training forward on."""

    def __init__(self, k: int):
        super().__init__(TinyConfig(dropout=0.0))
        self.k, self.calls = k, 0

    def forward(self, input_ids, labels=None, output_attentions=False):
        out = super().forward(input_ids, labels)
        if self.training:
            self.calls += 1
            if self.calls >= self.k:
                out.loss = out.loss * float("nan")
        return out


class TinyAttention(nn.Module):
    """Two single-head softmax attention layers that return their ``[B, 1, T, T]`` weights."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 16)
        self.qk = nn.ModuleList([nn.Linear(16, 32) for _ in range(2)])
        self.head = nn.Linear(16, VOCAB)
        self.drop = nn.Dropout(0.1)

    def forward(self, input_ids, labels=None, output_attentions=False):
        x = self.drop(self.emb(input_ids))  # [B, T, C]
        maps = []
        for proj in self.qk:
            q, k = proj(x).chunk(2, dim=-1)  # [B, T, C] each
            att = torch.softmax(q @ k.transpose(1, 2) / 4.0, dim=-1)  # [B, T, T]
            x = x + att @ x
            maps.append(att.unsqueeze(1))  # [B, 1, T, T]
        logits = self.head(x)
        loss = (
            F.cross_entropy(logits.flatten(0, 1), labels.flatten()) if labels is not None else None
        )
        return ModelOutput(
            loss=loss, logits=logits, attentions=tuple(maps) if output_attentions else None
        )


def example(ids: torch.Tensor) -> dict:
    return {"input_ids": ids, "labels": (ids + 1) % VOCAB}


def make_batch_fn(batch_size: int):
    """nanoGPT-style: a fresh random batch from the Trainer's generator at every call."""

    def batch_fn(generator: torch.Generator) -> dict:
        return example(torch.randint(VOCAB, (batch_size, T), generator=generator))

    return batch_fn


def make_dataset(n: int, seed: int = 123) -> list[dict]:
    """A list of single examples (``input_ids`` and ``labels`` of shape [T])."""
    ids = torch.randint(VOCAB, (n, T), generator=torch.Generator().manual_seed(seed))
    return [example(row) for row in ids]


def accuracy(outputs, batch) -> dict:
    return {"accuracy": (outputs.logits.argmax(-1) == batch["labels"]).float().mean().item()}


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_tiny(out_dir: Path, resume: bool, on_step=None) -> TinyLM:
    """The run tests/scripts/train_tiny.py makes: 60 steps, a checkpoint every 10, dropout on."""
    set_seed(0)
    model = TinyLM()
    config = TrainConfig(
        lr=1e-2, warmup_steps=5, max_steps=60, log_every=5, out_dir=str(out_dir),
        checkpoint_every=10, progress=False, device="cpu",
    )  # fmt: skip
    callbacks = [on_step] if on_step else []
    Trainer(model, config, make_batch_fn(8), callbacks=callbacks, resume=resume).fit()
    return model


def ddp_run(kind: str, distributed: bool, out_dir: Path | None = None) -> tuple[TinyLM, dict]:
    """8 steps on a global batch of 8: per rank 4 x 2 ranks, or one process with the same 8.

    A dataset gives the single process batch_size=8; a batch function gives it grad_accum=2
    (the Trainer's DDP rule: W ranks see the batches one process sees with grad_accum=W).
    """
    set_seed(0)
    model = TinyLM(TinyConfig(dropout=0.0))
    single_dataset, single_fn = (
        kind == "dataset" and not distributed,
        kind == "batch_fn" and not distributed,
    )
    config = TrainConfig(
        lr=1e-2, warmup_steps=2, max_steps=8, progress=False, device="cpu", eval_batches=3,
        batch_size=8 if single_dataset else 4, grad_accum=2 if single_fn else 1,
        out_dir=str(out_dir) if out_dir else None,
    )  # fmt: skip
    if kind == "dataset":
        train, evals = make_dataset(40), make_dataset(32, seed=7)
    else:
        train, evals = make_batch_fn(4), make_batch_fn(4)
    trainer = Trainer(model, config, train, evals, metrics=accuracy)
    if single_fn:
        trainer.config.eval_batches = 6  # the two ranks draw 3 + 3 eval batches
    trainer.fit()
    return model, trainer.evaluate()
