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

The loop is split by job: :mod:`.config` (TrainConfig), :mod:`.schedule` (``lr_at``,
``make_optimizer``), :mod:`.callbacks` (History, Callback, AttentionRecorder), :mod:`.data`
(batches and their DDP share), :mod:`.distributed` (process group, device per rank) and
:mod:`.trainer` (the Trainer). Every public name is importable from ``ptlearn.training``.

Imports run one way: ``ptlearn.training`` uses the models only through ``model(**batch).loss`` and
imports ``ptlearn.checkpoint`` and ``ptlearn.device``; course helpers import it, never the core.
"""

from .callbacks import AttentionRecorder, Callback, History
from .config import TrainConfig
from .schedule import lr_at, make_optimizer
from .trainer import Trainer, TrainingDivergedError, TrainState, set_seed

__all__ = [
    "AttentionRecorder",
    "Callback",
    "History",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "TrainingDivergedError",
    "lr_at",
    "make_optimizer",
    "set_seed",
]
