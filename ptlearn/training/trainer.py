"""The :class:`Trainer`: the training loop every chapter and the CLI run (see
:mod:`ptlearn.training` for one step, the schedule, clipping and DDP).

About 300 lines because the loop, its evaluation and its checkpoint/resume logic share the
Trainer's state and read best in one place; the pieces that do not need that state (config,
schedule, callbacks, batches, DDP set-up) are the sibling modules.

Imports: :mod:`.config`, :mod:`.schedule`, :mod:`.callbacks`, :mod:`.data`, :mod:`.distributed`,
``ptlearn.checkpoint`` and ``ptlearn.device``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..checkpoint import (
    CHECKPOINT_DIR,
    StepBoundaryInterrupt,
    capture_rng_state,
    interrupted_message,
    load_checkpoint,
    recover_checkpoint,
    resolve_checkpoint_dir,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from ..device import autocast_dtype, needs_grad_scaler
from .callbacks import History
from .config import TrainConfig
from .data import Batches, count_items
from .distributed import resolve_device, setup_distributed
from .schedule import lr_at, make_optimizer


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; training stopped before the bad update was applied."""


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) random number generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken
    elapsed: float = 0.0  # seconds spent in fit(), summed over resumed runs
    tokens_seen: int = 0  # tokens (or examples, for batches without input_ids), all ranks


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
        self.rank, self.world_size, local_rank = setup_distributed(cfg.device)
        self.device = resolve_device(cfg.device, local_rank, self.world_size)
        set_seed(cfg.seed + self.rank)
        self.model = unwrap_model(model).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.amp_dtype = autocast_dtype(self.device, cfg.amp)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=needs_grad_scaler(self.amp_dtype)
        )
        self._train_model = self._wrap(self.model)
        args = (collate_fn, cfg.batch_size, cfg.seed, self.rank, self.world_size)
        self.train_data = None if train_data is None else Batches(train_data, *args)
        self.eval_data = None if eval_data is None else Batches(eval_data, *args)
        self.callbacks, self.metrics = list(callbacks), metrics
        self.history, self.state = History(), TrainState()
        self.last_checkpoint: Path | None = None
        self._saved_step, self._speed_unit = -1, "tok/s"
        if resume:
            if not cfg.out_dir:
                raise ValueError("resume=True needs TrainConfig.out_dir (where checkpoints are).")
            checkpoint = Path(cfg.out_dir) / CHECKPOINT_DIR
            recover_checkpoint(checkpoint)  # one a crash mid-swap left aside counts too
            if checkpoint.exists():
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
            schedule=cfg.schedule,
            decay_frac=cfg.decay_frac,
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
        return loss.detach().float(), count_items(batch)

    def _train_step(self) -> dict:
        cfg, start = self.config, time.perf_counter()
        lr = self._lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # Muon's matrices have their own peak
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
        # Ctrl-C (a notebook's interrupt too) stops after the running step, with a checkpoint
        self.interrupted = False
        with bar, StepBoundaryInterrupt(enabled=self.world_size == 1) as ctrl_c:
            while not self._should_stop(target) and not ctrl_c.interrupted:
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
        if ctrl_c.interrupted:
            self.interrupted = True
            saved = self.save_checkpoint() if self._saved_step != self.state.step else None
            how = "Call fit() again to continue" + (" (or resume=True later)." if saved else ".")
            print(interrupted_message(self.state.step, saved or self.last_checkpoint, how))
            return self.history
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
