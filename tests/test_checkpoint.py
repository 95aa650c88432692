"""Checkpoints: round trip, tied weights, clear errors on damage, safe loading, atomic switching."""

import json
import os
import pickle
import signal
from pathlib import Path

import pytest
import torch
from helpers_train import TinyConfig, TinyLM, one_thread, params  # noqa: F401  (autouse fixture)

from ptlearn import checkpoint as ckpt
from ptlearn.checkpoint import (
    FORMAT_VERSION,
    StepBoundaryInterrupt,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
)


def saved(tmp_path, model=None, step=3):
    model = model or TinyLM()
    state = {"step": step, "values": [torch.arange(3), {"lr": 0.1}], "name": "x"}
    path = save_checkpoint(tmp_path / "checkpoint", model, state, config={"lr": 0.1})
    return path, model


def test_round_trip_restores_weights_state_and_meta(tmp_path):
    path, model = saved(tmp_path)
    assert sorted(os.listdir(path)) == ["meta.json", "model.safetensors", "trainer_state.pt"]
    assert os.listdir(tmp_path) == ["checkpoint"]  # no temporary files left behind
    fresh = TinyLM()
    out = load_checkpoint(tmp_path, model=fresh)  # an out_dir resolves to out_dir/checkpoint
    for k, v in params(model).items():
        torch.testing.assert_close(fresh.state_dict()[k], v, rtol=0, atol=0)
    assert out["meta"] == {
        "format_version": FORMAT_VERSION,
        "model_class": "TinyLM",
        "model_config": {"vocab_size": 16, "d_model": 32, "dropout": 0.1, "tie": False},
        "train_config": {"lr": 0.1},
        "step": 3,
    }
    assert out["trainer_state"]["name"] == "x"
    assert torch.equal(out["trainer_state"]["values"][0], torch.arange(3))


def test_tied_weights_are_saved_once_and_stay_tied(tmp_path):
    path, model = saved(tmp_path, TinyLM(TinyConfig(tie=True)))
    fresh = TinyLM(TinyConfig(tie=True))
    load_model_weights(fresh, path / "model.safetensors")
    assert fresh.head.weight is fresh.emb.weight
    torch.testing.assert_close(fresh.emb.weight, model.emb.weight, rtol=0, atol=0)
    untied = TinyLM(TinyConfig(tie=False))  # a model that does not tie gets both copies
    load_model_weights(untied, path)
    torch.testing.assert_close(untied.head.weight, model.emb.weight, rtol=0, atol=0)


def test_saving_again_replaces_the_checkpoint(tmp_path):
    saved(tmp_path, step=1)
    saved(tmp_path, step=2)
    assert load_checkpoint(tmp_path)["meta"]["step"] == 2
    assert os.listdir(tmp_path) == ["checkpoint"]


def test_non_finite_weights_are_never_saved(tmp_path):
    model = TinyLM()
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        save_checkpoint(tmp_path / "checkpoint", model)
    assert not (tmp_path / "checkpoint").exists()


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_checkpoint(tmp_path / "nowhere")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_weights_raise_a_clear_error(tmp_path, damage):
    path, _ = saved(tmp_path)
    file = path / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a tensor file" * 9)
    with pytest.raises(ValueError, match="model.safetensors.*truncated"):
        load_checkpoint(path, model=TinyLM())


def test_garbage_trainer_state_raises_a_clear_error(tmp_path):
    path, _ = saved(tmp_path)
    (path / "trainer_state.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="trainer_state.pt"):
        load_checkpoint(path)


def test_checkpoint_from_a_future_version_is_refused(tmp_path):
    path, _ = saved(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ValueError, match="newer ptlearn"):
        load_checkpoint(path)


def test_mismatched_weights_list_every_problem(tmp_path):
    path, _ = saved(tmp_path)
    other = TinyLM(TinyConfig(d_model=24))
    other.extra = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError) as err:
        load_model_weights(other, path)
    message = str(err.value)
    assert "emb.weight: model expects (16, 24), file has (16, 32)" in message
    assert "missing keys: ['extra.bias', 'extra.weight']" in message
    small = TinyLM()
    del small.norm
    with pytest.raises(ValueError, match=r"unexpected keys: \['norm.bias', 'norm.weight'\]"):
        load_model_weights(small, path)


class Exploit:
    """Unpickling this would create a marker file: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, writer):
    path, _ = saved(tmp_path)
    marker = tmp_path / "pwned"
    payload = {"step": 1, "evil": Exploit(marker)}
    if writer == "pickle":
        (path / "trainer_state.pt").write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path / "trainer_state.pt")
    with pytest.raises(ValueError, match="refused for safety"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_crash_between_the_directory_renames_recovers_the_new_checkpoint(tmp_path, monkeypatch):
    saved(tmp_path, step=1)
    real_replace = os.replace

    def replace(src, dst):
        # old checkpoint moved aside, new one not yet renamed into place: the process "dies" here
        if Path(src).name.startswith("checkpoint.tmp-") and Path(dst).name == "checkpoint":
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        saved(tmp_path, step=2)
    monkeypatch.undo()
    assert not (tmp_path / "checkpoint").exists()
    assert load_checkpoint(tmp_path)["meta"]["step"] == 2  # the complete new one is put back
    saved(tmp_path, step=3)
    assert os.listdir(tmp_path) == ["checkpoint"]


def test_a_reader_recovering_between_the_renames_does_not_fail_the_writer(tmp_path, monkeypatch):
    """A reader of the live folder that finds no checkpoint between the writer's two renames puts
    the newest complete one in place: the writer's new one. The save is then done, not failed."""
    saved(tmp_path, step=1)
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if ".old-" in Path(dst).name:  # the old checkpoint moved aside: a reader looks now
            assert ckpt.recover_checkpoint(tmp_path / "checkpoint")

    monkeypatch.setattr(os, "replace", replace)
    saved(tmp_path, step=2)  # used to raise "Cannot write the checkpoint"
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)["meta"]["step"] == 2
    assert os.listdir(tmp_path) == ["checkpoint"]


def test_a_crash_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    saved(tmp_path, step=1)

    def die(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "_swap_in", die)  # every file written, directory not yet switched
    with pytest.raises(KeyboardInterrupt):
        saved(tmp_path, step=2)
    monkeypatch.undo()
    assert len(os.listdir(tmp_path)) == 2  # checkpoint + the abandoned checkpoint.tmp-XXXX
    assert load_checkpoint(tmp_path)["meta"]["step"] == 1
    saved(tmp_path, step=3)
    assert os.listdir(tmp_path) == ["checkpoint"]


# --- the Ctrl-C guard ---------------------------------------------------------------------------


def test_first_ctrl_c_sets_a_flag_and_says_so_the_second_interrupts_at_once():
    said = []
    with StepBoundaryInterrupt(say=said.append) as outer:
        with StepBoundaryInterrupt() as inner:  # the Trainer's guard inside the command's
            signal.raise_signal(signal.SIGINT)  # a real SIGINT: no KeyboardInterrupt yet
            assert outer.interrupted and not inner.interrupted  # the caller's guard is in charge
            assert said == ["stopping after this step (press Ctrl-C again to abort at once)"]
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C is back


def test_a_disabled_guard_leaves_ctrl_c_alone():
    with StepBoundaryInterrupt(enabled=False) as guard:  # a DDP rank
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert not guard.interrupted
