"""Trainer: schedule, config checks, learning, determinism, callbacks, divergence, exact resume."""

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers_train import (
    NaNAfter,
    TinyAttention,
    TinyConfig,
    TinyLM,
    accuracy,
    make_batch_fn,
    make_dataset,
    one_thread,  # noqa: F401  (autouse fixture)
    params,
    train_tiny,
)

from ptlearn.checkpoint import load_checkpoint
from ptlearn.training import (
    AttentionRecorder,
    Callback,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    lr_at,
    make_optimizer,
    set_seed,
)

SCRIPT = Path(__file__).parent / "scripts" / "train_tiny.py"


def config(**overrides) -> TrainConfig:
    base = dict(lr=1e-2, max_steps=20, log_every=5, progress=False, device="cpu", batch_size=8)
    return TrainConfig(**{**base, **overrides})


def assert_same_params(a: dict, b: dict, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=f"parameter {k} differs")


# --- schedule and config ------------------------------------------------------------------------


def test_lr_warms_up_linearly_then_decays_along_a_cosine():
    kw = dict(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    warm = [lr_at(s, **kw) for s in range(10)]
    assert warm == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)  # halfway: (1 + 0.1) / 2
    assert lr_at(110, **kw) == pytest.approx(0.1)
    assert lr_at(500, **kw) == pytest.approx(0.1)  # stays at min_lr after max_steps
    decay = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_lr_follows_elapsed_fraction_of_a_time_budget():
    kw = dict(lr=2.0, warmup_steps=0, min_lr_ratio=0.0)
    assert lr_at(123, progress=0.0, **kw) == pytest.approx(2.0)
    assert lr_at(5, progress=0.5, **kw) == pytest.approx(1.0)
    assert lr_at(7, progress=1.5, **kw) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "field, value",
    [("lr", 0.0), ("min_lr_ratio", 2.0), ("betas", (0.9, 1.0)), ("warmup_steps", -1),
     ("max_steps", 0), ("grad_accum", 0), ("amp", "fp8"), ("device", "tpu"),
     ("grad_clip", -1.0), ("time_budget", 0), ("checkpoint_every", 5)],
)  # fmt: skip
def test_bad_config_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}="):
        TrainConfig(**{field: value})


def test_config_needs_max_steps_or_time_budget():
    with pytest.raises(ValueError, match="max_steps or a time_budget"):
        TrainConfig(max_steps=None)
    assert TrainConfig(max_steps=None, time_budget=5).time_budget == 5


def test_weight_decay_applies_only_to_matrices():
    model = TinyLM()
    groups = make_optimizer(model, TrainConfig(weight_decay=0.3), torch.device("cpu")).param_groups
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.3 and groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model.emb.weight), id(model.head.weight)}
    assert {id(p) for p in groups[1]["params"]} == {id(model.norm.weight), id(model.norm.bias)}


def test_cpu_adamw_is_the_fused_kernel_and_steps_like_the_per_tensor_one():
    """make_optimizer takes PyTorch's fused AdamW on the CPU (about 5x faster per step here); it
    must move the weights exactly as the default per-tensor AdamW does, up to float rounding."""
    torch.manual_seed(0)
    fused_model = TinyLM(TinyConfig(dropout=0.0))
    plain_model = copy.deepcopy(fused_model)
    config = TrainConfig(lr=1e-2, weight_decay=0.1)
    fused = make_optimizer(fused_model, config, torch.device("cpu"))
    assert all(g["fused"] for g in fused.param_groups)
    plain = torch.optim.AdamW(
        [
            {"params": [p for p in plain_model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in plain_model.parameters() if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=1e-2, betas=config.betas, eps=config.eps,
    )  # fmt: skip
    ids = torch.randint(0, TinyConfig().vocab_size, (4, 8))
    for _ in range(5):
        for model, opt in ((fused_model, fused), (plain_model, plain)):
            model(ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(fused_model.head.weight, TinyLM().head.weight)  # it did train


# --- learning, evaluation, determinism ----------------------------------------------------------


def test_loss_falls_and_evaluate_reports_loss_and_metrics():
    set_seed(0)
    model = TinyLM(TinyConfig(dropout=0.0))
    trainer = Trainer(
        model, config(max_steps=60, eval_every=20, warmup_steps=5), make_batch_fn(16),
        eval_data=make_dataset(40), metrics=accuracy,
    )  # fmt: skip
    history = trainer.fit()
    steps, losses = history.series("loss", "train")
    assert steps == list(range(5, 61, 5))
    assert losses[0] > 2.0 and losses[-1] < 0.3  # ln(16) = 2.77 at chance
    eval_steps, eval_losses = history.series("loss", "eval")
    assert eval_steps == [20, 40, 60]
    final = trainer.evaluate()
    assert final["loss"] == pytest.approx(eval_losses[-1])
    assert final["accuracy"] == pytest.approx(1.0)
    assert trainer.state.step == 60 and trainer.state.tokens_seen == 60 * 16 * 8


def test_same_seed_gives_the_same_losses():
    def run():
        set_seed(0)
        trainer = Trainer(TinyLM(), config(max_steps=10, log_every=1), make_dataset(64))
        return trainer.fit().series("loss")[1]

    assert run() == run()


def test_grad_accumulation_equals_one_big_batch():
    def run(batch_size, grad_accum):
        set_seed(0)
        model = TinyLM(TinyConfig(dropout=0.0))
        cfg = config(max_steps=6, batch_size=batch_size, grad_accum=grad_accum)
        Trainer(model, cfg, make_dataset(48)).fit()
        return params(model)

    assert_same_params(run(4, 3), run(12, 1))


def test_time_budget_stops_training_then_evaluates():
    set_seed(0)
    cfg = config(max_steps=None, time_budget=0.5, warmup_steps=2)
    trainer = Trainer(TinyLM(), cfg, make_batch_fn(8), eval_data=make_batch_fn(8))
    trainer.fit()
    assert 0.5 <= trainer.state.elapsed < 2.0
    assert trainer.history.last("eval")["step"] == trainer.state.step > 2
    assert trainer.history.series("lr")[1][-1] < cfg.lr / 2  # decayed with elapsed time


def test_progress_bar_shows_loss_lr_and_speed(capsys):
    Trainer(TinyLM(), config(max_steps=3, progress=True), make_batch_fn(4)).fit()
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err and "lr=" in err and "tok/s=" in err
    Trainer(TinyLM(), config(max_steps=3, progress=False), make_batch_fn(4)).fit()
    assert capsys.readouterr().err == ""


def test_batches_must_carry_labels():
    trainer = Trainer(
        TinyLM(), config(), lambda g: {"input_ids": torch.zeros(2, 3, dtype=torch.long)}
    )
    with pytest.raises(ValueError, match="no loss"):
        trainer.fit()


# --- callbacks ----------------------------------------------------------------------------------


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, trainer):
        self.events.append("begin")

    def on_step_end(self, trainer, step, logs):
        assert {"loss", "lr", "tokens_per_s"} <= logs.keys()
        self.events.append(step)

    def on_eval_end(self, trainer, step, metrics):
        self.events.append(("eval", step, round(metrics["loss"], 6) > 0))

    def on_train_end(self, trainer):
        self.events.append("end")


def test_callbacks_are_called_in_order():
    rec = Recorder()
    cfg = config(max_steps=4, eval_every=2)
    Trainer(TinyLM(), cfg, make_batch_fn(4), make_batch_fn(4), callbacks=[rec]).fit()
    assert rec.events == ["begin", 1, 2, ("eval", 2, True), 3, 4, ("eval", 4, True), "end"]


def test_attention_recorder_snapshots_at_start_and_every_k_steps():
    set_seed(0)
    model = TinyAttention()
    probe = {"input_ids": torch.arange(6).unsqueeze(0)}
    recorder = AttentionRecorder(probe, every=3)
    Trainer(model, config(max_steps=7), make_batch_fn(4), callbacks=[recorder]).fit()
    assert [step for step, _ in recorder.snapshots] == [0, 3, 6]
    for _, maps in recorder.snapshots:
        assert len(maps) == 2 and all(
            m.shape == (1, 1, 6, 6) and m.device.type == "cpu" for m in maps
        )
        torch.testing.assert_close(maps[0].sum(-1), torch.ones(1, 1, 6))
    assert not torch.equal(recorder.snapshots[0][1][0], recorder.snapshots[-1][1][0])
    assert model.training  # restored after each snapshot


# --- divergence ---------------------------------------------------------------------------------


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    model = NaNAfter(k=8)
    cfg = config(max_steps=20, out_dir=str(tmp_path), checkpoint_every=5)
    trainer = Trainer(model, cfg, make_batch_fn(4))
    with pytest.raises(TrainingDivergedError, match="step 8") as err:
        trainer.fit()
    assert str(tmp_path / "checkpoint") in str(err.value)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["meta"]["step"] == 5
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN update never ran


# --- exact resume -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["batch_fn", "dataset"])
def test_resume_continues_exactly(tmp_path, kind):
    """2N steps == N steps, checkpoint, fresh model and Trainer, N more (dropout on)."""

    def new_trainer(out_dir, seed, resume=False):
        set_seed(seed)
        data = make_batch_fn(8) if kind == "batch_fn" else make_dataset(36)
        cfg = config(max_steps=12, warmup_steps=3, out_dir=str(out_dir), batch_size=8)
        return Trainer(TinyLM(TinyConfig(dropout=0.3)), cfg, data, resume=resume)

    straight = new_trainer(tmp_path / "a", seed=0)
    straight.fit()
    first = new_trainer(tmp_path / "b", seed=0)
    first.fit(steps=6)
    resumed = new_trainer(tmp_path / "b", seed=99, resume=True)  # different init: weights load
    assert resumed.state.step == 6
    resumed.fit()
    assert_same_params(params(straight.model), params(resumed.model))
    # the first run flushed its partial log window at step 6; the others line up
    expected = dict(zip(*straight.history.series("loss")))
    got = dict(zip(*resumed.history.series("loss")))
    assert [got[s] for s in (5, 12)] == pytest.approx([expected[s] for s in (5, 12)], abs=1e-6)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL a real training process mid-run, restart it with resume: same final weights."""
    reference = params(train_tiny(tmp_path / "ref", resume=False))  # one thread, as the script
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(out), "--resume", "--slow"], env=env)
    meta = out / "checkpoint" / "meta.json"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if meta.exists() and json.loads(meta.read_text())["step"] >= 20:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = load_checkpoint(out)["meta"]["step"]
    assert 20 <= killed_at < 60
    subprocess.run([sys.executable, str(SCRIPT), str(out), "--resume"], env=env, check=True)
    resumed = load_checkpoint(out)
    assert resumed["meta"]["step"] == 60
    assert_same_params(reference, resumed["state_dict"])
    assert not math.isnan(resumed["trainer_state"]["history"][-1]["loss"])
