"""One training loop for every chapter and the CLI: :class:`Trainer` driven by a :class:`TrainConfig`.

One optimisation step, as in nanoGPT's ``train.py``:

1. draw a batch (a dict of tensors) and move it to the device;
2. forward, under autocast on CUDA (bf16, or fp16 with a GradScaler): ``loss = model(**batch).loss``;
3. backward; with ``grad_accum > 1`` steps 1-3 repeat and the gradients add up;
4. clip the gradient norm, set the learning rate from the schedule, take an AdamW step.

**Learning-rate schedule** (:func:`lr_at`). Adam's moment estimates are noisy in the first steps and
the freshly initialised network's gradients are large, so a full learning rate at step 0 can throw
the weights somewhere bad. *Warm-up* raises the rate linearly from ~0 to ``lr`` over
``warmup_steps``. Afterwards *cosine decay* lowers it along half a cosine to ``min_lr_ratio * lr``
at ``max_steps``: big steps while far from a minimum, small ones to settle into it at the end.
With only a ``time_budget`` (no ``max_steps``) the decay follows the elapsed fraction of the
budget instead of the step, so the run ends at the low rate whenever the budget runs out; such
runs depend on the machine's speed, so resuming them is not bit-exact.

**Gradient clipping** rescales all gradients together when their global L2 norm exceeds
``grad_clip``: one unlucky batch then cannot take a huge step (the usual cause of a loss spike).

**Distributed** (``torchrun --nproc_per_node=W``): every rank runs this same code on its share of
each global batch and DistributedDataParallel averages the gradients, so W ranks with batch B train
like one process with batch W x B. A dataset is split as DistributedSampler does (each global
chunk of W x batch_size shuffled indices, rank r keeps every W-th from r). A batch function is
called W times per micro-step with one generator seeded identically on every rank, and rank r keeps
call number r: W ranks see exactly the batches one process sees with ``grad_accum=W``, and rank 0's
generator state is every rank's, so its checkpoint resumes them all. Only rank 0 shows progress,
runs callbacks and writes checkpoints; losses are averaged over ranks.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from .checkpoint import (
    CHECKPOINT_DIR,
    capture_rng_state,
    load_checkpoint,
    resolve_checkpoint_dir,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from .device import AMP_MODES, autocast_dtype, get_device, needs_grad_scaler


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; training stopped before the bad update was applied."""


@dataclass
class TrainConfig:
    lr: float = 3e-4  # peak learning rate, reached at the end of warm-up
    min_lr_ratio: float = 0.1  # cosine decay ends at min_lr_ratio * lr
    weight_decay: float = 0.1  # AdamW decay, only on >=2-D weights (not biases or norms)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int = 0
    max_steps: int | None = 1000  # None: train until time_budget
    time_budget: float | None = None  # seconds; stop there, then evaluate
    batch_size: int | None = None  # per-rank batch for datasets; informational for batch_fn
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping
    grad_accum: int = 1  # micro-batches per optimizer step
    amp: str = (
        "auto"  # see ptlearn.device.autocast_dtype: "auto" = bf16/fp16 on CUDA, fp32 elsewhere
    )
    eval_every: int | None = None  # steps between evaluations (and one at the end)
    eval_batches: int = 20  # batches per evaluation when eval_data is a batch function
    log_every: int = 10  # steps per history record (mean loss over the window)
    seed: int = 0
    out_dir: str | None = None  # checkpoints go to out_dir/checkpoint; None: none written
    checkpoint_every: int | None = None  # steps between checkpoints (and one at the end)
    device: str | torch.device = (
        "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps" | a torch.device
    )
    compile: bool = False  # torch.compile the model for training
    progress: bool = True  # show a tqdm progress bar

    def __post_init__(self):
        def need(ok: bool, name: str, why: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {why}.")

        def optional_int(name: str) -> bool:
            value = getattr(self, name)
            return value is None or (isinstance(value, int) and value > 0)

        need(self.lr > 0, "lr", "must be > 0")
        need(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "must be in [0, 1]")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "two in [0, 1)")
        need(self.eps > 0, "eps", "must be > 0")
        need(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "warmup_steps", ">= 0")
        for name in ("max_steps", "batch_size", "eval_every", "checkpoint_every"):
            need(optional_int(name), name, "must be a positive int or None")
        need(self.time_budget is None or self.time_budget > 0, "time_budget", "seconds > 0 or None")
        need(self.max_steps or self.time_budget, "max_steps", "give max_steps or a time_budget")
        need(self.warmup_steps <= (self.max_steps or math.inf), "warmup_steps", "exceeds max_steps")
        need(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be > 0 or None")
        for name in ("grad_accum", "eval_batches", "log_every"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name, ">= 1")
        need(self.amp in AMP_MODES, "amp", f"must be one of {AMP_MODES}")
        if isinstance(self.device, torch.device):
            self.device = str(self.device)
        name = str(self.device).split(":")[0]
        need(
            name in ("auto", "cpu", "cuda", "mps"),
            "device",
            'must be "auto", "cpu", "cuda[:N]" or "mps"',
        )
        need(bool(self.out_dir) or not self.checkpoint_every, "checkpoint_every", "needs out_dir")


def lr_at(step, *, lr, warmup_steps, max_steps=None, min_lr_ratio=0.1, progress=None) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then cosine decay.

    ``progress`` in [0, 1] replaces the step-based position when training is bounded by time.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if progress is None:
        progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    min_lr = lr * min_lr_ratio
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) random number generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken
    elapsed: float = 0.0  # seconds spent in fit(), summed over resumed runs
    tokens_seen: int = 0  # tokens (or examples, for batches without input_ids), all ranks


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


class _Batches:
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


def _setup_distributed(device: str) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; starts the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        atexit.register(_destroy_process_group)
    return dist.get_rank(), dist.get_world_size(), local_rank


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _resolve_device(name: str, local_rank: int, world: int) -> torch.device:
    """ptlearn.device.get_device's choice; under torchrun each CUDA rank takes its own GPU."""
    device = get_device(name)
    if device.type == "cuda" and world > 1 and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device):
    """AdamW with weight decay on matrices (>= 2-D) only: decaying biases and norm gains hurts."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"  # one kernel for all parameters instead of one per tensor
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused)


def _count_items(batch: dict) -> int:
    """Tokens in ``input_ids``, else examples (the first tensor's batch dimension)."""
    if "input_ids" in batch:
        return batch["input_ids"].numel()
    return next(v.shape[0] for v in batch.values() if torch.is_tensor(v))


class Trainer:
    """Trains ``model`` on ``train_data`` as ``config`` says; see the module docstring.

    ``train_data``/``eval_data``: a batch function ``fn(generator) -> dict`` or a map-style dataset
    (with ``collate_fn``, default: torch's ``default_collate``). ``metrics(outputs, batch) -> dict``
    adds evaluation metrics (averaged over batches). ``resume=True`` continues from
    ``out_dir/checkpoint`` when it exists.

    Making a Trainer seeds Python, NumPy and torch with ``config.seed`` (+ rank), so dropout and
    the data order repeat from run to run; build (initialise) the model before, under your own seed.
    """

    def __init__(
        self,
        model,
        config: TrainConfig | None = None,
        train_data=None,
        eval_data=None,
        *,
        collate_fn=None,
        callbacks=(),
        metrics=None,
        resume: bool = False,
    ):
        self.config = cfg = config or TrainConfig()
        self.rank, self.world_size, local_rank = _setup_distributed(cfg.device)
        self.device = _resolve_device(cfg.device, local_rank, self.world_size)
        set_seed(cfg.seed + self.rank)
        self.model = unwrap_model(model).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.amp_dtype = autocast_dtype(self.device, cfg.amp)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=needs_grad_scaler(self.amp_dtype)
        )
        self._train_model = self._wrap(self.model)
        args = (collate_fn, cfg.batch_size, cfg.seed, self.rank, self.world_size)
        self.train_data = None if train_data is None else _Batches(train_data, *args)
        self.eval_data = None if eval_data is None else _Batches(eval_data, *args)
        self.callbacks, self.metrics = list(callbacks), metrics
        self.history, self.state = History(), TrainState()
        self.last_checkpoint: Path | None = None
        self._saved_step, self._speed_unit = -1, "tok/s"
        if resume:
            if not cfg.out_dir:
                raise ValueError("resume=True needs TrainConfig.out_dir (where checkpoints are).")
            if (Path(cfg.out_dir) / CHECKPOINT_DIR).exists():
                self.resume_from(cfg.out_dir)

    def _wrap(self, model):
        """The module the training forward runs through: compiled and/or DDP-wrapped."""
        if self.config.compile:
            model = torch.compile(model)
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return model

    # --- small helpers ------------------------------------------------------------------------

    def to_device(self, batch: dict) -> dict:
        """Move a batch's tensors to the device; on CUDA through pinned memory, asynchronously."""
        if not isinstance(batch, dict):
            raise TypeError(f"batches must be dicts of tensors, got {type(batch).__name__}.")
        return {k: self._move(v) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _move(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and t.device.type == "cpu":
            # page-locked host memory lets the copy overlap with the GPU's work
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            t = t.to(self.device)
            dist.all_reduce(t)
        return t

    def _callbacks(self, hook: str, *args) -> None:
        if self.rank == 0:
            for cb in self.callbacks:
                getattr(cb, hook)(self, *args)

    def _lr(self) -> float:
        cfg = self.config
        progress = None if cfg.max_steps else self.state.elapsed / cfg.time_budget
        return lr_at(
            self.state.step,
            lr=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            max_steps=cfg.max_steps,
            min_lr_ratio=cfg.min_lr_ratio,
            progress=progress,
        )

    # --- training -----------------------------------------------------------------------------

    def _forward_backward(self, last_micro: bool) -> tuple[torch.Tensor, int]:
        """One micro-batch: forward, backward (DDP syncs gradients only on the last micro-batch)."""
        batch = self.to_device(self.train_data.next())
        sync = self.world_size == 1 or last_micro
        with contextlib.nullcontext() if sync else self._train_model.no_sync():
            with self._autocast():
                loss = self._train_model(**batch).loss
            if loss is None:
                raise ValueError("The model returned no loss: training batches must hold labels.")
            self.scaler.scale(loss / self.config.grad_accum).backward()
        self._speed_unit = "tok/s" if "input_ids" in batch else "items/s"
        return loss.detach().float(), _count_items(batch)

    def _train_step(self) -> dict:
        cfg, start = self.config, time.perf_counter()
        lr = self._lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        losses, items = zip(
            *(self._forward_backward(i == cfg.grad_accum - 1) for i in range(cfg.grad_accum))
        )
        loss = self._all_reduce_sum(torch.stack(losses).mean()).item() / self.world_size
        if not math.isfinite(loss):
            raise self._diverged(self.state.step + 1, f"the loss is {loss}")  # weights untouched
        logs = {"loss": loss, "lr": lr}
        if cfg.grad_clip:
            # unscale first: clip the true gradients, not the fp16 loss-scaled ones
            self.scaler.unscale_(self.optimizer)
            params = self.model.parameters()
            logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip).item()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        n = sum(items) * self.world_size
        self.state.step += 1
        self.state.tokens_seen += n
        logs["tokens_per_s"] = n / (time.perf_counter() - start)
        return logs

    def _diverged(self, step: int, what: str) -> TrainingDivergedError:
        where = (
            f"The last good checkpoint is kept at {self.last_checkpoint}."
            if self.last_checkpoint
            else "No checkpoint was written (set out_dir and checkpoint_every to keep one)."
        )
        return TrainingDivergedError(
            f"Training diverged at step {step}: {what}. {where} "
            f"Try a lower lr, a longer warm-up or gradient clipping (grad_clip)."
        )

    def _should_stop(self, target: float) -> bool:
        cfg = self.config
        stop = self.state.step >= target
        if cfg.time_budget is not None:
            stop = stop or self.state.elapsed >= cfg.time_budget
            if self.world_size > 1:  # ranks must agree, or one would wait forever for the others
                flag = torch.tensor([float(stop)], device=self.device)
                dist.broadcast(flag, src=0)
                stop = bool(flag.item())
        return stop

    def fit(self, steps: int | None = None) -> History:
        """Train until max_steps or the time budget (or for at most ``steps`` more steps)."""
        if self.train_data is None:
            raise ValueError("fit() needs train_data.")
        cfg = self.config
        more = math.inf if steps is None else steps
        target = min(cfg.max_steps or math.inf, self.state.step + more)
        clock = time.perf_counter() - self.state.elapsed
        bar = tqdm(
            total=None if math.isinf(target) else int(target),
            initial=self.state.step,
            disable=not cfg.progress or self.rank != 0,
            desc="train",
            dynamic_ncols=True,
        )
        window = []
        self._callbacks("on_train_begin")
        with bar:
            while not self._should_stop(target):
                logs = self._train_step()
                self.state.elapsed = time.perf_counter() - clock
                step = self.state.step
                window.append(logs)
                speed = {self._speed_unit: f"{logs['tokens_per_s']:.0f}"}
                bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}", **speed)
                bar.update(1)
                self._callbacks("on_step_end", step, logs)
                if step % cfg.log_every == 0:
                    self._record_window(window)
                    window = []
                self._periodic(step)
        self._record_window(window)
        self._finish()
        return self.history

    def _record_window(self, window: list[dict]) -> None:
        """One train record per log window: mean loss and speed, the last lr."""
        if window:
            mean = {k: sum(w[k] for w in window) / len(window) for k in ("loss", "tokens_per_s")}
            record = {**mean, "lr": window[-1]["lr"], "elapsed": self.state.elapsed}
            self.history.add(self.state.step, "train", **record)

    def _periodic(self, step: int) -> None:
        cfg = self.config
        if self.eval_data is not None and cfg.eval_every and step % cfg.eval_every == 0:
            self._evaluate_and_record()
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            self.save_checkpoint()

    def _finish(self) -> None:
        last_eval = self.history.last("eval")
        if self.eval_data is not None and (last_eval or {}).get("step") != self.state.step:
            self._evaluate_and_record()
        if self.config.out_dir and self._saved_step != self.state.step:
            self.save_checkpoint()
        self._callbacks("on_train_end")

    # --- evaluation ---------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Mean loss (and metrics) over the eval batches, averaged over all ranks."""
        if self.eval_data is None:
            raise ValueError("evaluate() needs eval_data.")
        was_training = self.model.training
        self.model.eval()
        sums: dict[str, float] = {}
        n = 0
        for batch in self.eval_data.eval_iter(self.config.eval_batches):
            batch = self.to_device(batch)
            with self._autocast():
                out = self.model(**batch)
            values = {
                "loss": out.loss.float().item(),
                **(self.metrics(out, batch) if self.metrics else {}),
            }
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
        self.model.train(was_training)
        totals = self._all_reduce_sum(torch.tensor([n, *sums.values()], dtype=torch.float64))
        return {k: v / totals[0].item() for k, v in zip(sums, totals[1:].tolist())}

    def _evaluate_and_record(self) -> dict:
        metrics = self.evaluate()
        self.history.add(self.state.step, "eval", **metrics)
        self._callbacks("on_eval_end", self.state.step, metrics)
        return metrics

    # --- checkpoints --------------------------------------------------------------------------

    def trainer_state(self) -> dict:
        """Everything besides the weights needed to continue exactly (tensors and plain data)."""
        return {
            **dataclasses.asdict(self.state),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "train_data": self.train_data.state_dict() if self.train_data else None,
            "history": self.history.records,
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``out_dir/checkpoint`` atomically (rank 0 only); refuses non-finite weights."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):  # on every rank
            raise self._diverged(self.state.step, "the weights are not finite (NaN/inf)")
        if self.rank != 0 or not self.config.out_dir:
            return None
        path = Path(self.config.out_dir) / CHECKPOINT_DIR
        save_checkpoint(path, self.model, self.trainer_state(), config=self.config)
        self.last_checkpoint, self._saved_step = path, self.state.step
        return path

    def resume_from(self, path) -> None:
        """Restore weights, optimizer, RNGs, data position and history from a checkpoint."""
        path = resolve_checkpoint_dir(path)
        state = load_checkpoint(path, model=self.model)["trainer_state"]
        if state is None:
            raise FileNotFoundError(f"{path} holds weights only (no trainer_state.pt) to resume.")
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty when saved without fp16 (CPU, bf16)
            self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        if self.rank > 0:  # rank 0's dropout stream was saved; give the others their own
            torch.manual_seed(self.config.seed + self.rank + 1_000_003 * state["step"])
        if self.train_data and state["train_data"]:
            self.train_data.load_state_dict(state["train_data"])
        self.history.records = list(state["history"])
        self.state = TrainState(state["step"], state["elapsed"], state["tokens_seen"])
        self.last_checkpoint, self._saved_step = path, self.state.step
